"""The `simulate` command: write a seeded world, replay and truth files, or stream live."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from devices.health.drawn import HealthConfig
from devices.sensing.noise import PRESETS
from devices.sim.fleet import DEFAULT_EPOCH, Message, SimConfig, SimRun, Simulation
from devices.world.city import LONDON, build_world

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """'3h', '90m', '45s', '1h30m', '3600' -> seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhd]?)", text.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != re.sub(r"\s+", "", text.lower()):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 3h, 90m, 45s)")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise argparse.ArgumentTypeError("duration must be > 0")
    return seconds


def parse_center(text: str) -> tuple[float, float]:
    """'51.5074,-0.1278' -> (lat, lon)."""
    try:
        lat, lon = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not LAT,LON: {text!r}") from None
    if not (-85 <= lat <= 85 and -180 <= lon <= 180):
        raise argparse.ArgumentTypeError(f"LAT,LON out of range: {text!r}")
    return lat, lon


def parse_time(text: str) -> float:
    """Unix seconds or an RFC 3339 time ('2026-03-28T17:30:00Z')."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r}") from None
    if t.tzinfo is None:
        raise argparse.ArgumentTypeError(f"time needs a UTC offset: {text!r}")
    return t.timestamp()


def parse_broker(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host:
        return text, 1883
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {text!r}") from None


def _positive(text: str) -> float:
    v = float(text)
    if v <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return v


def _fraction(text: str) -> float:
    v = float(text)
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError("must be within 0-1")
    return v


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--seed", type=int, help="random seed (default 1; a scenario file's own)")
    sp.add_argument("--subjects", type=int, default=50, help="subjects (default %(default)s)")
    sp.add_argument(
        "--rate", type=_positive, default=1.0, help="fixes per minute per tag (default %(default)s)"
    )
    sp.add_argument(
        "--phone-rate",
        type=_positive,
        default=1.0,
        help="victim phone reports per minute (default %(default)s)",
    )
    sp.add_argument(
        "--duration",
        type=parse_duration,
        help="sim time to cover: 3h, 90m, 45s (default 3h; demo preset 2h)",
    )
    sp.add_argument(
        "--breach-fraction",
        type=_fraction,
        default=0.3,
        help="fraction of subjects that breach (default %(default)s)",
    )
    sp.add_argument(
        "--quick",
        type=int,
        default=0,
        metavar="N",
        help="N breaching subjects start 50-200 m from a zone and go straight in",
    )
    sp.add_argument(
        "--center",
        type=parse_center,
        default=LONDON,
        metavar="LAT,LON",
        help="city centre (default London %(default)s)",
    )
    sp.add_argument(
        "--start",
        type=parse_time,
        metavar="TIME",
        help="sim start, Unix or RFC 3339 (default: 2026-03-28T17:30:00Z for files, now when live)",
    )
    sp.add_argument(
        "--preset",
        choices=["demo"],
        help="demo: fixes every 5 s and some subjects breaching within a minute",
    )
    sp.add_argument(
        "--family",
        metavar="NAME",
        help="with --out-dir: write scenario family NAME (episodes with ground truth) instead "
        "of a fleet run; see devices/families/catalog.py",
    )
    sp.add_argument(
        "--episodes",
        type=int,
        default=20,
        metavar="N",
        help="--family: independent episodes to generate (default %(default)s)",
    )
    sp.add_argument(
        "--scenario",
        type=Path,
        metavar="FILE",
        help="run a scenario file (TOML: zones, subjects, scripted timelines; see "
        "examples/scenarios/) instead of a seeded fleet; --seed and --start override its own",
    )
    sp.add_argument(
        "--noise",
        choices=sorted(PRESETS),
        default="simple",
        help="tag GPS error: simple (independent 3 m, the fast default), or correlated "
        "Gauss-Markov error: open_sky, street, urban; canyon: urban-canyon error (12-25 m, "
        "drifting over minutes, under-reported) with multipath bursts "
        "(devices/sensing/noise.py)",
    )
    sp.add_argument(
        "--health",
        action="store_true",
        help="device health too: battery drain and charging, tamper, coverage gaps with "
        "store-and-forward uploads, indoor cell-only periods (devices/health/drawn.py)",
    )
    sp.add_argument(
        "--obey",
        action="store_true",
        help="with --out-dir: replay.jsonl holds what tags obeying the engine's reporting-rate "
        "commands sent (15 s fixes while an approach or breach episode is open), decided "
        "closed loop by this version's engine with default settings (`tagwatch` only)",
    )
    sp.add_argument(
        "--world-dir", type=Path, metavar="DIR", help="write zones.geojson and subjects.toml here"
    )
    sp.add_argument(
        "--out-dir",
        type=Path,
        metavar="DIR",
        help="write the world, replay.jsonl and truth.jsonl here",
    )
    sp.add_argument(
        "--broker", type=parse_broker, metavar="HOST:PORT", help="publish live to this MQTT broker"
    )
    sp.add_argument(
        "--warp",
        type=_positive,
        default=1.0,
        help="live: sim seconds per wall second (default %(default)s)",
    )
    sp.add_argument(
        "--every",
        type=int,
        default=1000,
        metavar="N",
        help="live: print a line every N messages (default %(default)s)",
    )
    sp.add_argument(
        "--truth",
        type=Path,
        metavar="FILE",
        help="live: also write the live run's ground truth here",
    )


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `simulate` subcommand to an argparse subparsers object."""
    sp: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="seeded fleet simulator: world, replay and truth files, or live MQTT",
        description="Simulate GPS-tagged subjects, their zones and victims' phones. "
        "Same seed, same files, byte for byte.",
    )
    add_arguments(sp)
    sp.set_defaults(func=cmd_simulate)
    return sp


def _simulation(args: argparse.Namespace) -> Simulation:
    if args.preset == "demo":
        from devices.scenarios.presets import demo_scenario

        _, sim = demo_scenario(args.seed, args.subjects, args.center)
        if args.duration:
            sim = Simulation(sim.world, replace(sim.config, duration_s=args.duration))
        if args.health:
            sim = Simulation(sim.world, replace(sim.config, health=HealthConfig()))
        return sim
    world = build_world(args.seed, args.subjects, args.center)
    config = SimConfig(
        duration_s=args.duration or 3 * 3600.0,
        fix_interval_s=60.0 / args.rate,
        phone_interval_s=max(2.0, 60.0 / args.phone_rate),
        breach_fraction=args.breach_fraction,
        quick_start=args.quick,
        health=HealthConfig() if args.health else None,
        noise=PRESETS[args.noise],
    )
    return Simulation(world, config)


def cmd_simulate(args: argparse.Namespace) -> int:
    """Handler for `simulate`: world files, then files and/or a live stream."""
    if not (args.world_dir or args.out_dir or args.broker):
        print("simulate: give --out-dir, --world-dir and/or --broker", file=sys.stderr)
        return 2
    if args.obey and (args.broker or not args.out_dir):
        print("simulate: --obey writes files (live runs obey anyway): give --out-dir, "
              "not --broker", file=sys.stderr)  # fmt: skip
        return 2
    if args.obey and getattr(args, "obey_factory", None) is None:
        print("simulate: --obey needs the engine: run it as `tagwatch simulate`", file=sys.stderr)
        return 2
    if args.scenario is not None:
        return _scenario(args)
    if args.seed is None:
        args.seed = 1
    if args.family is not None:
        return _family(args)
    if args.subjects < 1:
        print("simulate: --subjects must be >= 1", file=sys.stderr)
        return 2
    started = time.monotonic()
    sim = _simulation(args)
    world = sim.world
    if args.world_dir:
        zones, subjects = world.write(args.world_dir)
        print(
            f"world: {len(world.subjects)} subjects, {len(world.zones)} zones -> "
            f"{zones}, {subjects}"
        )
    if args.out_dir:
        from devices.sim.output import write_run

        run = sim.run(DEFAULT_EPOCH if args.start is None else args.start)
        paths = write_run(run, args.out_dir)
        summary = run.summary() + (_obeyed(args, run, paths) if args.obey else "")
        _wrote(summary, paths, started)
    if args.broker:
        return _live(args, sim)
    return 0


def _family(args: argparse.Namespace) -> int:
    """`simulate --family NAME --episodes N --out-dir DIR`: one scenario family's files."""
    from devices.families.catalog import FAMILIES, build_family, write_family

    if args.family not in FAMILIES:
        known = ", ".join(sorted(FAMILIES))
        print(f"simulate: unknown family {args.family!r}; known: {known}", file=sys.stderr)
        return 2
    if not args.out_dir or args.broker or args.world_dir:
        print("simulate: --family writes files: give --out-dir only", file=sys.stderr)
        return 2
    if args.episodes < 1:
        print("simulate: --episodes must be >= 1", file=sys.stderr)
        return 2
    started = time.monotonic()
    obey = args.obey_factory if args.obey else None
    run = build_family(args.family, args.seed, args.episodes, obey=obey)
    summary = run.summary() + (f"; obedient: {len(run.commands)} rate commands" if obey else "")
    _wrote(summary, write_family(run, args.out_dir), started)
    return 0


def _obeyed(args: argparse.Namespace, run: SimRun, paths: dict[str, Path]) -> str:
    """Rewrite paths["replay"] with what tags obeying the engine sent; a summary line."""
    from devices.sim.output import write_messages
    from devices.sim.ratecontrol import obey

    feed = args.obey_factory(paths["zones"], paths["subjects"])
    sent = list(obey(run, feed))
    write_messages((o.message for o in sent), paths["replay"])
    extra = sum(o.extra for o in sent)
    return f"\nobedient: {len(sent)} messages sent, {extra} extra fixes at commanded rates"


def _wrote(summary: str, paths: dict[str, Path], started: float) -> None:
    print(summary)
    print(
        f"wrote {', '.join(str(p) for p in paths.values())} in {time.monotonic() - started:.1f} s"
    )


def _scenario(args: argparse.Namespace) -> int:
    """`simulate --scenario FILE`: files and/or a live stream of one scenario file."""
    from devices.scenarios.file import (
        ScenarioError,
        check_expectations,
        load_scenario,
        run_scenario,
    )

    clash = [
        name
        for name, given in (("--family", args.family), ("--preset", args.preset),
                            ("--health", args.health), ("--duration", args.duration))
        if given
    ]  # fmt: skip
    if clash:
        print(f"simulate: --scenario sets the run itself; drop {clash[0]}", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        scenario = load_scenario(args.scenario)
        run = run_scenario(scenario, seed=args.seed, start_t=args.start)
    except ScenarioError as e:
        print(f"simulate: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    if args.world_dir:
        zones, subjects = run.world.write(args.world_dir)
        print(f"world: {len(run.world.subjects)} subjects, {len(run.world.zones)} zones -> "
              f"{zones}, {subjects}")  # fmt: skip
    problems = check_expectations(scenario, run)
    if args.out_dir:
        from devices.sim.output import write_run

        paths = write_run(run, args.out_dir)
        summary = run.summary() + (_obeyed(args, run, paths) if args.obey else "")
        _wrote(summary, paths, started)
    if scenario.expect:
        kept = len(scenario.expect) - len(problems)
        print(f"expectations: {kept} of {len(scenario.expect)} kept")
        for p in problems:
            print(f"simulate: {args.scenario}: {p}", file=sys.stderr)
    if args.broker:
        return _live(args, run)
    return 1 if problems else 0


def _live(args: argparse.Namespace, sim: Simulation | SimRun) -> int:
    from devices.sim.live import run_live

    host, port = args.broker

    def progress(sent: int, total: int, m: Message) -> None:
        stamp = dt.datetime.fromtimestamp(m.t, dt.UTC).strftime("%H:%M:%S")
        print(f"live: {sent}/{total} messages sent, sim time {stamp}Z", flush=True)

    print(f"live: publishing to {host}:{port} at warp {args.warp:g} (Ctrl-C stops)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        stats = asyncio.run(
            run_live(
                sim,
                host,
                port,
                warp=args.warp,
                start_t=args.start,
                progress=progress,
                progress_every=max(1, args.every),
                truth_path=args.truth,
            )
        )
        print(
            f"live: {stats.sent} messages acknowledged in {stats.elapsed_s:.1f} s "
            f"({stats.reconnects} reconnects); rate commands obeyed {stats.commands}, "
            f"ignored {stats.ignored}, extra fixes {stats.extra}"
        )
        return 0
    print("live: stopped")
    return 130


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m devices.cli simulate ...` without the rest of the tagwatch CLI."""
    import logging

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    parser = argparse.ArgumentParser(prog="python -m devices.cli")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
