"""Runs a world for a while: plans, time-ordered messages and ground truth.

Every subject is planned, its tag's fixes and its victim phone's OwnTracks reports are
sampled into one list in send order, and the truth is judged from the true paths. With
`SimConfig.health`, tags also charge, run flat, get tampered with and lose coverage
(`health.py`): they then send events and `/fixes` batches too, and the truth gains the
health episodes (`healthtruth.py`). Scenario files script a tag's health instead
(`healthscript.py`)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from devices.health.drawn import HealthConfig, tag_health
from devices.health.records import TagHealth, TagSchedule
from devices.health.truth import health_truth
from devices.motion.planner import Plan, plan_subject
from devices.sensing.sensor import FixColumns, NoiseModel, SimpleGpsNoise, sample_fixes
from devices.sim.delivery import phone_rows, tag_rows
from devices.sim.truth import Episode, compute_truth
from devices.world.city import World
from engine.wire import payloads, topics

# Saturday evening before the clocks change: a 3 h run covers the 19:00 curfew start.
DEFAULT_EPOCH = dt.datetime(2026, 3, 28, 17, 30, tzinfo=dt.UTC).timestamp()


@dataclass(frozen=True)
class SimConfig:
    """How to run a world: for how long, how often devices report, who breaches."""

    duration_s: float = 3 * 3600.0
    fix_interval_s: float = 60.0
    start_t: float | None = None  # None: DEFAULT_EPOCH for files, now for live runs
    breach_fraction: float = 0.3
    quick_start: int = 0  # breaching subjects that start 50-200 m from a zone and go in
    phone_interval_s: float = 60.0
    seed: int | None = None  # behaviour/sensor seed; None: the world's seed
    noise: NoiseModel = field(default_factory=SimpleGpsNoise)
    phone_noise: NoiseModel = field(default_factory=lambda: SimpleGpsNoise(4.0, (5.0, 25.0)))
    health: HealthConfig | None = None  # None: tags never run flat, tamper or lose coverage

    def __post_init__(self) -> None:
        if self.duration_s <= 0 or self.fix_interval_s <= 0 or self.phone_interval_s < 2:
            raise ValueError("duration and intervals must be positive (phone interval >= 2 s)")
        if not 0.0 <= self.breach_fraction <= 1.0:
            raise ValueError("breach_fraction must be within 0-1")


@dataclass(frozen=True, slots=True)
class Message:
    """One publication: at sim time t (send time), device's payload on topic (as sent over
    MQTT). The payload is a JSON object, except on `/fixes`: a list of fix objects."""

    t: float
    device: str
    topic: str
    payload: Any  # dict[str, Any]; list[dict[str, Any]] for a /fixes batch

    @property
    def is_owntracks(self) -> bool:
        return self.topic.startswith(topics.OWNTRACKS_PREFIX)

    @property
    def kind(self) -> str:
        """ "fix", "fixes", "event" or "owntracks"."""
        return "owntracks" if self.is_owntracks else self.topic.rsplit("/", 1)[1]

    def replay_records(self) -> list[dict[str, Any]]:
        """The contract's replay lines for this publication: one per fix of a batch."""
        return payloads.replay_lines(self.device, self.kind, self.payload)

    def replay_record(self) -> dict[str, Any]:
        """The contract's replay line: a fix object plus "tag" (OwnTracks: seq = tst), or an
        event object plus "tag" and "type": "event". A `/fixes` batch has one line per fix:
        use `replay_records`."""
        return payloads.replay_line(self.device, self.kind, self.payload)


@dataclass(frozen=True, eq=False)
class SimRun:
    """The result of a run: plans (true paths), messages in send order, ground truth."""

    world: World
    config: SimConfig  # start_t resolved
    plans: tuple[Plan, ...]
    messages: tuple[Message, ...]
    truth: tuple[Episode, ...]
    health: tuple[TagHealth, ...] = ()  # each tag's health script, when config.health is set

    @property
    def start_t(self) -> float:
        assert self.config.start_t is not None
        return self.config.start_t

    @property
    def end_t(self) -> float:
        return self.start_t + self.config.duration_s

    def summary(self) -> str:
        fixes = sum(len(m.payload) if m.kind == "fixes" else m.kind == "fix" for m in self.messages)
        events = sum(m.kind == "event" for m in self.messages)
        phone = sum(m.is_owntracks for m in self.messages)
        kinds = Counter(e.kind for e in self.truth)
        material = Counter(e.kind for e in self.truth if e.material)
        eps = ", ".join(f"{k} {kinds[k]} ({material[k]} material)" for k in sorted(kinds))
        return (
            f"{len(self.world.subjects)} subjects, {len(self.world.zones)} zones; "
            f"{fixes} tag fixes, {f'{events} tag events, ' if events else ''}{phone} phone reports; "
            f"{sum(1 for p in self.plans if p.breaches)} breaching subjects; "
            f"true episodes: {eps or 'none'}"
        )


def _tag_messages(tag: str, world: World, cols: FixColumns) -> list[Message]:
    topic = topics.fix(tag)
    return [
        Message(t, tag, topic, payloads.fix(i, t, la, lo, a, b, s))
        for i, (t, la, lo, a, b, s) in enumerate(tag_rows(world.frame, cols))
    ]


def health_messages(h: TagHealth, world: World) -> list[Message]:
    """A tag's records as published: live ones on their own when taken; what a coverage gap
    buffered at its end, as one `/fixes` batch followed by the buffered events."""
    rows = list(tag_rows(world.frame, h.fixes))
    keyed: list[tuple[tuple[float, int, int, int], Message]] = []
    batches: dict[float, list[dict[str, Any]]] = {}
    for r in h.records:
        if r.event is None:
            _, la, lo, a, _, s = rows[r.fix]
            p = payloads.fix(r.seq, r.t, la, lo, a, r.batt, s)
            if r.sent_t > r.t:
                batches.setdefault(r.sent_t, []).append(p)
                continue
            m = Message(r.t, h.tag, topics.fix(h.tag), p)
        else:
            p = payloads.event(r.seq, r.t, r.event, r.batt)
            m = Message(r.sent_t, h.tag, topics.event(h.tag), p)
        # at one send time: a batch, then the events it buffered, then live records
        keyed.append(((r.sent_t, int(r.sent_t == r.t), 1, r.seq), m))
    for sent, fixes in batches.items():
        keyed.append(((sent, 0, 0, 0), Message(sent, h.tag, topics.fixes(h.tag), fixes)))
    keyed.sort(key=lambda km: km[0])
    return [m for _, m in keyed]


def phone_messages(device: str, world: World, cols: FixColumns) -> list[Message]:
    """A victim phone's OwnTracks `_type: location` reports on owntracks/{device}, one per
    fix (`tst` whole seconds, `acc` whole metres, `tid` two letters of the user)."""
    topic = topics.owntracks(device)
    return [
        Message(float(t), device, topic, payloads.owntracks_location(device, int(t), la, lo, a, b))
        for t, la, lo, a, b in phone_rows(world.frame, cols)
    ]


def run_simulation(world: World, config: SimConfig, with_truth: bool = True) -> SimRun:
    """Plan, sense and judge one run of `world` (start_t None means DEFAULT_EPOCH)."""
    cfg = replace(config, start_t=DEFAULT_EPOCH if config.start_t is None else config.start_t)
    assert cfg.start_t is not None
    t0 = float(cfg.start_t)
    t1 = t0 + cfg.duration_s
    seed = world.seed if cfg.seed is None else cfg.seed
    n = len(world.subjects)
    order = np.random.default_rng([seed, 2]).permutation(n)
    n_breach = round(cfg.breach_fraction * n)
    breachers = {int(i): rank for rank, i in enumerate(order[:n_breach].tolist())}
    plans: list[Plan] = []
    messages: list[Message] = []
    healths: list[TagHealth] = []
    for i, s in enumerate(world.subjects):
        k = int(s.id[1:])
        rank = breachers.get(i)
        plan = plan_subject(
            world,
            s,
            np.random.default_rng([seed, 3, k]),
            t0,
            t1,
            rank is not None,
            quick=rank is not None and rank < cfg.quick_start,
        )
        plans.append(plan)
        rng = np.random.default_rng([seed, 4, k])
        cols = sample_fixes(rng, plan.path, t0, t1, cfg.fix_interval_s, cfg.noise)
        if cfg.health is None:
            messages += _tag_messages(s.tag, world, cols)
        else:
            tag = TagSchedule(s.id, s.tag, plan.path, cols, t0, t1, cfg.fix_interval_s)
            h = tag_health(cfg.health, seed, k, tag)
            healths.append(h)
            messages += health_messages(h, world)
        if s.phone is not None and plan.phone_path is not None:
            cols = sample_fixes(
                rng,
                plan.phone_path,
                t0,
                t1,
                cfg.phone_interval_s,
                cfg.phone_noise,
                whole_seconds=True,
            )
            messages += phone_messages(s.phone.device, world, cols)
    messages.sort(key=lambda m: (m.t, m.device))
    truth = compute_truth(world, plans, t0, t1, cfg.fix_interval_s) if with_truth else []
    if with_truth and healths:
        truth = sorted([*truth, *health_truth(healths, t1)])
    return SimRun(world, cfg, tuple(plans), tuple(messages), tuple(truth), tuple(healths))


def simulate(
    world: World,
    duration_s: float = 3 * 3600.0,
    fix_interval_s: float = 60.0,
    start_t: float | None = None,
    **options: Any,
) -> SimRun:
    """Convenience: run_simulation with a SimConfig built from these arguments, e.g.
    `simulate(world, duration_s=86400, health=HealthConfig())` for a day with device health."""
    return run_simulation(world, SimConfig(duration_s, fix_interval_s, start_t, **options))


@dataclass(frozen=True, eq=False)
class Simulation:
    """A world and a config not yet run: live runs plan it when they start ("now")."""

    world: World
    config: SimConfig

    def run(self, start_t: float | None = None, with_truth: bool = True) -> SimRun:
        cfg = self.config if start_t is None else replace(self.config, start_t=start_t)
        return run_simulation(self.world, cfg, with_truth)
