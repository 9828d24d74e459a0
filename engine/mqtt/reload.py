"""Configuration reload (SIGHUP) for the serve loop: read and validate the zones and
subjects files and build their pipeline off to the side, so that a file with any problem
changes nothing; what the status and the log say about it."""

from __future__ import annotations

from engine.core.pipeline import Pipeline
from engine.settings import Settings
from engine.store.config import ConfigError, ConfigFiles


def prepare(current: ConfigFiles, settings: Settings) -> tuple[ConfigFiles, Pipeline]:
    """Re-read the files `current` came from; their pipeline, not yet holding any state
    (a worker thread: the live pipeline is untouched). ConfigError on any problem."""
    files = ConfigFiles.read(current.zones_path, current.subjects_path, current.shard)
    zs = files.zoneset()
    try:
        return files, Pipeline(zs, settings)
    except (ValueError, TypeError, KeyError) as e:  # problems only compiling sees
        raise ConfigError(f"{files.zones_path}: {e}") from None


def status(outcome: str, files: ConfigFiles, at: float, reason: str = "") -> dict[str, str]:
    """The retained status fields after a reload: `config` (reloaded, unchanged, refused),
    when, why it was refused, and the sha256 of the files in force."""
    hz, hs = files.hashes
    d = {"config": outcome, "config_at": f"{at:.3f}"}
    if reason:
        d["config_reason"] = reason
    return {**d, "config_zones_sha256": hz, "config_subjects_sha256": hs}


def line(files: ConfigFiles, old: ConfigFiles, new: Pipeline, seconds: float) -> str:
    """What the log says after a reload that was taken."""
    if files.hashes == old.hashes:
        return f"SIGHUP: zones and subjects unchanged ({hashes_line(files)})"
    reg = new.registry
    return (
        f"configuration reloaded in {seconds * 1000:.0f} ms, state carried across by ids:"
        f" {len(reg.subject_ids)} subjects, {len(new.table.zone_ids)} zones,"
        f" {reg.n_slots} devices; {hashes_line(files)}"
    )


def hashes_line(files: ConfigFiles) -> str:
    hz, hs = files.hashes
    return f"{files.zones_path} sha256 {hz[:12]}, {files.subjects_path} sha256 {hs[:12]}"
