"""The one settings object: every threshold and limit with its documented default."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from engine.errors import ConfigError


@dataclass(frozen=True)
class Settings:
    """Engine settings. Load overrides from TOML with `Settings.from_toml` (a flat table
    of the field names below, or the same under `[engine]`); unknown keys are errors."""

    # --- ingest -----------------------------------------------------------------------
    # Largest micro-batch handed to the pipeline, and the longest a record waits for
    # one to fill: 20 ms keeps p99 fix->alert latency well under 50 ms.
    batch_max: int = 5000
    batch_wait_s: float = 0.02
    # Bound on decoded-but-unprocessed messages; beyond it the receiver waits (back-pressure)
    queue_max: int = 50_000
    # Per-tag (tag, seq) duplicate window held in memory, in sequence numbers
    dedupe_window: int = 1024
    # Largest raw payload kept in a dead-letter row (the rest is cut, with the size noted)
    dead_letter_max_bytes: int = 65_536

    # --- decisions (issue 3: point-in-zone; issue 4 makes these uncertainty-aware) ----
    # Number of (tag, seq) pairs kept as evidence on one alert
    evidence_max: int = 50
    # Risk weight at or above which a zone breach is critical rather than high
    critical_risk: int = 3

    # --- alerts -----------------------------------------------------------------------
    alert_topic_prefix: str = "tagwatch/v1/alerts"

    @classmethod
    def from_toml(cls, path: str | Path) -> Settings:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"settings file {p} does not exist") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"settings file {p}: {e}") from None
        if isinstance(data.get("engine"), dict):
            data = data["engine"]
        return cls.from_mapping(data, origin=str(p))

    @classmethod
    def from_mapping(cls, data: dict[str, Any], origin: str = "settings") -> Settings:
        known = {f.name: f for f in fields(cls)}
        base = cls()
        changes: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise ConfigError(f"{origin}: unknown setting '{key}'")
            default = getattr(base, key)
            if isinstance(default, bool) or not isinstance(default, (int, float, str)):
                ok = isinstance(value, type(default))
            elif isinstance(default, float):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            else:
                ok = isinstance(value, type(default)) and not isinstance(value, bool)
            if not ok:
                raise ConfigError(
                    f"{origin}: setting '{key}' must be {type(default).__name__}, got {value!r}"
                )
            if isinstance(default, (int, float)) and not isinstance(default, bool) and value < 0:
                raise ConfigError(f"{origin}: setting '{key}' must be >= 0, got {value!r}")
            changes[key] = float(value) if isinstance(default, float) else value
        return replace(base, **changes)
