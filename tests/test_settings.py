"""Settings: defaults, TOML overrides, and clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.settings import Settings


def test_toml_overrides_and_engine_table(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    p.write_text("[engine]\nbatch_max = 10\nbatch_wait_s = 1\n")
    s = Settings.from_toml(p)
    assert s.batch_max == 10 and s.batch_wait_s == 1.0 and isinstance(s.batch_wait_s, float)
    assert s.queue_max == Settings().queue_max


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope = 1", "unknown setting 'nope'"),
        ("batch_max = 'many'", "must be int"),
        ("batch_max = true", "must be int"),
        ("batch_max = -1", "must be >= 0"),
        ("batch_max = ", "settings file"),
        ("live_clock = 'sundial'", "live_clock' must be one of wall, fleet"),
    ],
)
def test_bad_settings_are_explained(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "s.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message):
        Settings.from_toml(p)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.from_toml(tmp_path / "none.toml")


def test_every_setting_is_documented_with_its_default() -> None:
    import ast
    from dataclasses import fields

    doc = (Path(__file__).parent.parent / "docs" / "settings.md").read_text()
    base = Settings()
    for f in fields(Settings):
        row = next((ln for ln in doc.splitlines() if ln.startswith(f"| `{f.name}` |")), None)
        assert row is not None, f"docs/settings.md lacks {f.name}"
        shown = row.split("|")[2].strip().strip("`").replace("_", "")
        assert ast.literal_eval(shown) == getattr(base, f.name), f.name
