"""Scenario families with ground truth: build a family's episodes into zones, subjects,
arrival-ordered replay lines and truth; write them; redeliver the same fixes four ways.

    run = build_family("drive_through", seed=1, n_episodes=40)
    write_family(run, "out/drive_through")   # zones.geojson subjects.toml replay.jsonl truth.jsonl

With `obey` (an engine factory, `devices.families.obedient`), the replay holds what tags
obeying that engine's reporting-rate commands sent: fixes sampled every 15 s, sent at the
family's interval until the engine asks for 15 s. Without it, nothing changes.

Episodes are independent (one subject, tag and zone set each, in a frame of their own,
3-4 km apart) and overlap in time, so the replay interleaves their tags as a live feed
would. The labelling rule for material / ambiguous episodes is in `devices.families.truth`."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from devices.families import more as families_more  # noqa: F401  (they register families)
from devices.families import urban as families_urban  # noqa: F401
from devices.families import zone as families_zone  # noqa: F401
from devices.families.kit import FAMILIES, FAST_S, Ctx, Family, Outcome
from devices.families.obedient import Command, ObeyFactory
from devices.families.obedient import obey as obey_loop
from devices.families.truth import Judge, TrueEpisode
from devices.motion.paths import TruePath
from devices.sim import delivery as dv
from devices.sim.output import _write_lines
from devices.world.city import LONDON, SubjectSpec, ZoneSpec
from devices.world.files import subject_toml, zone_feature
from devices.world.geo import LocalFrame

__all__ = ["FAMILIES", "FamilyRun", "Track", "build_family", "delivery_variants", "write_family"]

# Zone families start within an hour of this (a Tuesday morning, no clock change near)
EPOCH = dt.datetime(2026, 3, 24, 8, 0, tzinfo=dt.UTC).timestamp()
SPREAD_S = 3600.0
GRID_COLS = 8
GRID_DLAT, GRID_DLON = 0.03, 0.05  # ~3.3 km x 3.5 km between episode origins
MAX_TRIES = 40


@dataclass(frozen=True)
class Track:
    """An episode's true paths in its own metric frame (for oracles and plots)."""

    frame: LocalFrame
    path: TruePath
    phone_path: TruePath | None


@dataclass(frozen=True, eq=False)
class FamilyRun:
    """One generated family: contract zones and subjects, deliveries, truth, manifest."""

    family: str
    seed: int
    interval: float
    zones: dict[str, Any]  # GeoJSON FeatureCollection
    subjects_toml: str
    deliveries: tuple[dv.Delivery, ...]  # arrival order
    truth: tuple[TrueEpisode, ...]  # sorted (start, subject, kind, zone)
    episodes: tuple[dict[str, Any], ...]  # one per episode: subject, tag, variant, expect, ...
    tracks: dict[str, Track]  # subject -> true paths
    obedient: bool = False
    commands: tuple[Command, ...] = ()  # obedient: (arrival, tag, rate_s) the tags obeyed

    @property
    def lines(self) -> list[dv.Line]:
        """Contract replay lines in arrival order (late batches and shuffles included)."""
        return dv.flatten(self.deliveries)

    @property
    def records(self) -> list[dv.Line]:
        """Every distinct (device, seq) record once, in event-time order."""
        seen: dict[tuple[str, int], dv.Line] = {}
        for d in self.deliveries:
            for r in d.records:
                seen.setdefault((r["tag"], r["seq"]), r)
        return sorted(seen.values(), key=lambda r: (r["t"], r["tag"], r["seq"]))

    def summary(self) -> str:
        mat = sum(e.material for e in self.truth)
        variants: dict[str, int] = {}
        for e in self.episodes:
            variants[e["variant"]] = variants.get(e["variant"], 0) + 1
        mix = ", ".join(f"{k} {v}" for k, v in sorted(variants.items()))
        return (
            f"{self.family}: {len(self.episodes)} episodes ({mix}); {len(self.lines)} lines; "
            f"true episodes {len(self.truth)} ({mat} material)"
        )


def _frame(k: int) -> LocalFrame:
    row, col = divmod(k, GRID_COLS)
    return LocalFrame(LONDON[0] - 0.1 + row * GRID_DLAT, LONDON[1] - 0.2 + col * GRID_DLON)


def _deliveries(o: Outcome, ctx: Ctx, seq0: int) -> list[dv.Delivery]:
    rng = ctx.rng
    lines = dv.tag_lines(ctx.tag, ctx.frame, o.fixes, seq0)
    if o.late_span is not None:
        out = dv.late_batch(lines, rng, o.late_span, o.late_after)
    elif o.shuffle_s > 0:
        out = dv.shuffled(lines, rng, o.shuffle_s)
    else:
        out = dv.live(lines, rng)
    if o.dup_p > 0:
        out = dv.duplicated(out, rng, o.dup_p, 5 * ctx.interval)
    if o.phone is not None and o.phone_fixes is not None:
        out += dv.live(dv.phone_lines(o.phone.device, ctx.frame, o.phone_fixes), rng, "owntracks")
    return out


def dense_factor(interval: float) -> int:
    """Fixes an obedient tag samples per family interval (every FAST_S seconds)."""
    return max(1, round(interval / FAST_S))


def _episode(
    fam: Family, seed: int, k: int, dense: int = 1
) -> tuple[Ctx, Outcome, list[TrueEpisode]]:
    problem = ""
    for attempt in range(MAX_TRIES):
        rng = np.random.default_rng([seed, fam.code, k, attempt])
        ctx = Ctx(
            fam.name,
            k,
            rng,
            f"S{k + 1:04d}",
            f"T{k + 1:04d}",
            _frame(k),
            round(EPOCH + float(rng.uniform(0.0, SPREAD_S))),
            fam.interval,
            dense,
        )
        try:
            o = fam.make(ctx, fam.variants[k % len(fam.variants)])
        except ValueError as e:  # this draw does not fit (e.g. a zone too thin): redraw
            problem = str(e)
            continue
        judge = Judge(fam.name, ctx.subject, ctx.tag, fam.interval, o.cell_only)
        truth = judge.zones(ctx.frame, o.zones, o.path, ctx.t0, o.t1)
        if o.phone is not None and o.phone_path is not None:
            truth += judge.proximity(o.phone, o.path, o.phone_path, ctx.t0, o.t1)
        why = o.check(truth)
        if why is None:
            return ctx, o, truth
        problem = why
    raise RuntimeError(f"{fam.name} episode {k}: no draw matched its variant ({problem})")


def build_family(
    name: str, seed: int = 1, n_episodes: int = 20, obey: ObeyFactory | None = None
) -> FamilyRun:
    """Generate `n_episodes` independent episodes of family `name`; same seed, same run.
    `obey`: an obedient build against the engine it makes from the run's zones and
    subjects (same seed and engine, same run; paths and truth as without it)."""
    if name not in FAMILIES:
        raise KeyError(f"unknown family {name!r}; known: {', '.join(sorted(FAMILIES))}")
    if n_episodes < 1:
        raise ValueError("n_episodes must be >= 1")
    fam = FAMILIES[name]
    zones: list[ZoneSpec] = []
    subjects: list[SubjectSpec] = []
    deliveries: list[dv.Delivery] = []
    truth: list[TrueEpisode] = []
    manifest: list[dict[str, Any]] = []
    tracks: dict[str, Track] = {}
    pending: list[tuple[Ctx, Outcome, int]] = []
    dense = 1 if obey is None else dense_factor(fam.interval)
    for k in range(n_episodes):
        ctx, o, ep_truth = _episode(fam, seed, k, dense)
        seq0 = int(ctx.rng.integers(0, 5000))
        zones += o.zones
        subjects.append(
            SubjectSpec(ctx.subject, ctx.tag, o.risk, (0.0, 0.0), tuple(o.zones), o.phone)
        )
        if obey is None:
            deliveries += _deliveries(o, ctx, seq0)
        else:
            pending.append((ctx, o, seq0))
        truth += ep_truth
        tracks[ctx.subject] = Track(ctx.frame, o.path, o.phone_path)
        manifest.append(
            {
                "subject": ctx.subject,
                "tag": ctx.tag,
                "variant": o.variant,
                "expect": o.expect,
                "t0": ctx.t0,
                "t1": round(o.t1, 3),
                "device": o.phone.device if o.phone else None,
            }
        )
    head = f"# tagwatch scenario family {name}: seed {seed}, {n_episodes} episodes\n\n"
    zones_fc = {"type": "FeatureCollection", "features": [zone_feature(z) for z in zones]}
    subjects_toml = head + "\n".join(subject_toml(s) for s in subjects)
    commands: list[Command] = []
    if obey is not None:
        with tempfile.TemporaryDirectory() as tmp:
            zp, sp = _write_world(zones_fc, subjects_toml, Path(tmp))
            feed = obey(zp, sp)
        deliveries, commands = obey_loop(pending, feed)
    return FamilyRun(
        family=name,
        seed=seed,
        interval=fam.interval,
        zones=zones_fc,
        subjects_toml=subjects_toml,
        deliveries=tuple(dv.arrival_order(deliveries)),
        truth=tuple(sorted(truth)),
        episodes=tuple(manifest),
        tracks=tracks,
        obedient=obey is not None,
        commands=tuple(commands),
    )


def _write_world(zones: dict[str, Any], subjects_toml: str, d: Path) -> tuple[Path, Path]:
    feats = [json.dumps(f, separators=(",", ":")) for f in zones["features"]]
    zp, sp = d / "zones.geojson", d / "subjects.toml"
    zp.write_text('{"type":"FeatureCollection","features":[\n' + ",\n".join(feats) + "\n]}\n")
    sp.write_text(subjects_toml)
    return zp, sp


def write_family(run: FamilyRun, directory: str | Path) -> dict[str, Path]:
    """zones.geojson, subjects.toml, replay.jsonl (arrival order), truth.jsonl and
    episodes.jsonl (which variant each subject plays) into `directory`."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = {
        k: d / f
        for k, f in (
            ("zones", "zones.geojson"),
            ("subjects", "subjects.toml"),
            ("replay", "replay.jsonl"),
            ("truth", "truth.jsonl"),
            ("episodes", "episodes.jsonl"),
        )
    }
    _write_world(run.zones, run.subjects_toml, d)
    _write_lines(paths["replay"], run.lines)
    _write_lines(paths["truth"], (e.record() for e in run.truth))
    _write_lines(paths["episodes"], run.episodes)
    return paths


def delivery_variants(run: FamilyRun, seed: int = 0) -> dict[str, list[dv.Line]]:
    """The run's records delivered four ways, each holding the same (tag, seq) set:
    `on_time` (each fix live as taken), `late` (per tag a window of 5-10 fixes withheld
    and uploaded as one batch after 3-6 more live fixes), `shuffled` (arrivals delayed up
    to 3 fix intervals) and `duplicated` (about 10 % sent twice, up to 5 intervals apart)."""
    rng = np.random.default_rng([seed, 77])
    by_dev: dict[str, list[dv.Line]] = {}
    for r in run.records:
        by_dev.setdefault(r["tag"], []).append(r)
    on_time: list[dv.Delivery] = []
    late: list[dv.Delivery] = []
    shuf: list[dv.Delivery] = []
    for dev, lines in sorted(by_dev.items()):
        channel: dv.Channel = "owntracks" if "/" in dev else "fix"
        on_time += [dv.Delivery(r["t"], dev, channel, (r,)) for r in lines]
        if channel == "fix" and len(lines) > 12:
            i = int(rng.integers(0, len(lines) - 11))
            w = int(rng.integers(5, 11))
            span = (lines[i]["t"], lines[i + w]["t"])
            late += dv.late_batch(lines, rng, span, int(rng.integers(3, 7)))
            shuf += dv.shuffled(lines, rng, 3 * run.interval)
        else:
            late += dv.live(lines, rng, channel)
            shuf += dv.live(lines, rng, channel)
    dup = dv.duplicated(on_time, rng, 0.1, 5 * run.interval)
    return {
        name: dv.flatten(ds)
        for name, ds in (
            ("on_time", on_time),
            ("late", late),
            ("shuffled", shuf),
            ("duplicated", dup),
        )
    }
