"""The zones and subjects files in force, as evidence: their names, contents and sha256,
read from disk (start, SIGHUP) or from a `config` step of the ledger (restart recovery
replays a reload with exactly the files it took), and the ZoneSet they give."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import tempfile
import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from zones.errors import ZoneError
from zones.load import load
from zones.model import ZoneSet
from zones.shard import Shard


class ConfigError(ZoneError):
    """A configuration that cannot be taken: unreadable, not UTF-8, or invalid."""


@dataclass(frozen=True)
class ConfigFiles:
    zones_path: str
    zones: str
    subjects_path: str
    subjects: str
    # An engine serving one shard (`serve --shard i/N`) takes its part of the files; the
    # files and their hashes stay whole, and the ledger's config step names the shard
    shard: Shard | None = None

    @cached_property
    def hashes(self) -> tuple[str, str]:
        """(zones sha256, subjects sha256): what identifies this configuration. Worked out
        once, a chunk at a time: a whole UTF-8 copy of a 300 MB zones text made each time it
        was asked was the peak of a 500,000-subject restart."""
        return _sha256(self.zones), _sha256(self.subjects)

    @classmethod
    def read(
        cls, zones_path: str | Path, subjects_path: str | Path, shard: Shard | None = None
    ) -> ConfigFiles:
        texts = []
        for p in (zones_path, subjects_path):
            try:
                texts.append(Path(p).read_bytes().decode("utf-8"))
            except OSError as e:
                raise ConfigError(f"cannot read {p}: {e.strerror or e}") from None
            except UnicodeDecodeError as e:
                raise ConfigError(f"{p} is not UTF-8 text: {e}") from None
        return cls(str(zones_path), texts[0], str(subjects_path), texts[1], shard)

    def zoneset(self) -> ZoneSet:
        """The validated ZoneSet (ConfigError listing every problem). Loaded from the
        contents held here, not from the paths: what was hashed is what is used."""
        with tempfile.TemporaryDirectory(prefix="tagwatch-config-") as d:
            zp = Path(d) / (Path(self.zones_path).name or "zones.geojson")
            sp = Path(d) / (Path(self.subjects_path).name or "subjects.toml")
            if zp.name == sp.name:
                sp = sp.with_name("subjects-" + sp.name)
            zp.write_text(self.zones, encoding="utf-8")
            sp.write_text(self.subjects, encoding="utf-8")
            try:
                zs = load(zp, sp)
            except ZoneError as e:
                msg = str(e).replace(str(zp), self.zones_path).replace(str(sp), self.subjects_path)
                raise ConfigError(msg, e.problems) from None
        zs = dataclasses.replace(zs, sources=(self.zones_path, self.subjects_path))
        return zs if self.shard is None else self.shard.split(zs)

    def summary(self) -> dict[str, Any]:
        """Names and hashes (the engine status, logs)."""
        hz, hs = self.hashes
        d: dict[str, Any] = {
            "zones": {"file": self.zones_path, "sha256": hz},
            "subjects": {"file": self.subjects_path, "sha256": hs},
        }
        if self.shard is not None:
            d["shard"] = str(self.shard)
        return d

    def data(self) -> dict[str, Any]:
        """What a config step records: names, hashes and the full texts; a text over
        PACK_OVER characters as `zlib` (base64 of its zlib-compressed UTF-8) instead of
        `text`, so a national zones file (300 MB at 500,000 subjects) is not written and
        held as JSON whole (`section_text` reads either)."""
        d = self.summary()
        for name, text in (("zones", self.zones), ("subjects", self.subjects)):
            if len(text) > PACK_OVER:
                d[name]["zlib"] = _pack(text)
            else:
                d[name]["text"] = text
        return d

    @classmethod
    def from_data(cls, d: dict[str, Any]) -> ConfigFiles:
        try:
            got = cls(
                str(d["zones"]["file"]), section_text(d["zones"]),
                str(d["subjects"]["file"]), section_text(d["subjects"]),
                Shard.parse(str(d["shard"])) if d.get("shard") is not None else None,
            )  # fmt: skip
        except (KeyError, TypeError, ValueError, zlib.error) as e:
            raise ConfigError(f"config step malformed: {e!r}") from None
        if list(got.hashes) != [d["zones"].get("sha256"), d["subjects"].get("sha256")]:
            raise ConfigError("config step texts do not match their recorded sha256")
        return got


PACK_OVER = 1 << 20  # characters: a config text longer than this is stored compressed
_CHUNK = 1 << 20


def _sha256(text: str) -> str:
    """sha256 of the UTF-8 of `text`, encoded a chunk at a time."""
    h = hashlib.sha256()
    for i in range(0, len(text), _CHUNK):
        h.update(text[i : i + _CHUNK].encode())
    return h.hexdigest()


def _pack(text: str) -> str:
    """base64 of the zlib-compressed UTF-8 of `text`, encoded a chunk at a time (no whole
    UTF-8 copy of a 300 MB text next to the text itself)."""
    z = zlib.compressobj(6)
    parts = [z.compress(text[i : i + _CHUNK].encode()) for i in range(0, len(text), _CHUNK)]
    parts.append(z.flush())
    return base64.b64encode(b"".join(parts)).decode("ascii")


def section_text(section: dict[str, Any]) -> str:
    """A config step section's file text: `text`, or `zlib` unpacked (KeyError: neither;
    ValueError or zlib.error: not base64 zlib UTF-8)."""
    if "text" in section:
        return str(section["text"])
    return zlib.decompress(base64.b64decode(section["zlib"], validate=True)).decode("utf-8")
