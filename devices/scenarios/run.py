"""Running a loaded scenario: `run_scenario` plans, senses and judges it into the same
`SimRun` the fleet simulator makes (scripted device health through health/script.py),
and `check_expectations` holds that run to the file's `[[expect]]` promises."""

from __future__ import annotations

import itertools

import numpy as np

from devices.health.records import TagSchedule
from devices.health.script import ScriptedHealth, ScriptedSpan, ScriptedTamper, scripted_health
from devices.health.truth import health_truth
from devices.motion.scripted import Move, ScriptedPath, ScriptError, offset_text, scripted_plan
from devices.scenarios.model import DeviceEvent, Scenario, ScriptedSubject, Step
from devices.scenarios.parse import ScenarioError
from devices.sensing.sensor import FixColumns, sample_fixes
from devices.sim.fleet import SimConfig, SimRun, health_messages, phone_messages
from devices.sim.truth import compute_truth
from devices.world.city import PhoneSpec, SubjectSpec, World
from devices.world.streets import build_streets


def _script_error(where: str, steps: tuple[Step, ...], src: str, e: ScriptError) -> ScenarioError:
    do = next((s.do for s in steps if s.index == e.index), "?")
    return ScenarioError(f"{src}: {where}, timeline entry {e.index} ({do}), field '{e.field}': {e}")


def _follow(
    where: str, steps: tuple[Step, ...], sp: ScriptedPath, src: str
) -> list[tuple[DeviceEvent, float, float]]:
    """Run a timeline's moves on `sp`; its events with their (start, end) in Unix time."""
    out = []
    try:
        for s in steps:
            if isinstance(s, Move):
                sp.do(s)
                continue
            a = sp.now if s.at is None else sp.t0 + s.at
            if a >= sp.t1:
                raise ScriptError(
                    s.index,
                    "at",
                    f"starts at {sp.rel(a)}, not before the run ends ({sp.rel(sp.t1)})",
                )
            b = a + s.seconds if s.seconds is not None else sp.t0 + (s.until or 0.0)
            if b <= a:
                raise ScriptError(
                    s.index, "until", f"{sp.rel(b)} is not after it starts ({sp.rel(a)})"
                )
            out.append((s, a, b))
    except ScriptError as e:
        raise _script_error(where, steps, src, e) from None
    return out


def _health_script(
    s: ScriptedSubject, events: list[tuple[DeviceEvent, float, float]], t0: float
) -> ScriptedHealth:
    tamper, gaps, indoor = [], [], []
    for ev, a, b in events:
        if ev.do == "tamper":
            tamper.append(ScriptedTamper(ev.index, ev.kind, a, b - a, ev.toggles, ev.body))
        elif ev.do == "coverage_gap":
            gaps.append(ScriptedSpan(ev.index, a, b))
        else:
            indoor.append(ScriptedSpan(ev.index, a, b, ev.cell_share, ev.cell_acc_m))
    gaps.sort(key=lambda g: g.start_t)
    for g, later in itertools.pairwise(gaps):
        if later.start_t < g.end_t:
            raise ScriptError(later.index, "at", f"overlaps coverage gap entry {g.index}")
    bat = s.battery
    return ScriptedHealth(
        tuple(tamper), tuple(gaps), tuple(indoor), bat.start_pct, bat.drain_pct_h,
        bat.charge_pct_h, tuple((t0 + a, t0 + b) for a, b in bat.charging), bat.recharge,
    )  # fmt: skip


def _without(cols: FixColumns, spans: list[tuple[float, float]]) -> FixColumns:
    keep = np.ones(len(cols), dtype=bool)
    for a, b in spans:
        keep &= ~((cols.t >= a) & (cols.t < b))
    return FixColumns(
        cols.t[keep], cols.x[keep], cols.y[keep], cols.acc[keep], cols.batt[keep], cols.src[keep]
    )


def run_scenario(
    scenario: Scenario, *, seed: int | None = None, start_t: float | None = None
) -> SimRun:
    """Plan, sense and judge a scenario: the SimRun `write_run` and `run_live` take. `seed`
    and `start_t` override the file's (a later start moves every scripted time with it)."""
    sc = scenario
    seed = sc.seed if seed is None else seed
    t0 = sc.start_t if start_t is None else float(start_t)
    t1 = t0 + sc.duration_s
    streets = build_streets(np.random.default_rng([seed, 0]), sc.half_size_m)
    specs = tuple(
        SubjectSpec(s.id, s.tag, s.risk, s.start, s.zones, None if s.phone is None else
                    PhoneSpec(s.phone.device, s.phone.radius_m, s.phone.warn_m, s.phone.start,
                              0.0, 0.0))
        for s in sc.subjects
    )  # fmt: skip
    world = World(seed, sc.center, sc.frame, streets, specs)
    plans, messages, healths = [], [], []
    for k, (s, spec) in enumerate(zip(sc.subjects, specs, strict=True), 1):
        sp = ScriptedPath(world, spec, np.random.default_rng([seed, 3, k]), t0, t1, s.start)
        events = _follow(s.where, s.steps, sp, sc.path)
        phone_sp = None
        quiet: list[tuple[float, float]] = []  # the phone's app backgrounded: no reports
        if s.phone is not None:
            phone_rng = np.random.default_rng([seed, 5, k])
            phone_sp = ScriptedPath(world, None, phone_rng, t0, t1, s.phone.start)
            quiet = [(a, b) for _, a, b in _follow(s.phone.where, s.phone.steps, phone_sp, sc.path)]
        plan = scripted_plan(spec, sp, phone_sp)
        plans.append(plan)
        rng = np.random.default_rng([seed, 4, k])
        cols = sample_fixes(rng, plan.path, t0, t1, sc.fix_interval_s, s.noise)
        try:
            script = _health_script(s, events, t0)
            tag = TagSchedule(s.id, s.tag, plan.path, cols, t0, t1, sc.fix_interval_s)
            h = scripted_health(script, np.random.default_rng([seed, 8, k]), tag)
        except ScriptError as e:
            raise _script_error(s.where, s.steps, sc.path, e) from None
        healths.append(h)
        messages += health_messages(h, world)
        if s.phone is not None and plan.phone_path is not None:
            pcols = sample_fixes(
                rng, plan.phone_path, t0, t1, sc.phone_interval_s, sc.phone_noise,
                whole_seconds=True,
            )  # fmt: skip
            messages += phone_messages(s.phone.device, world, _without(pcols, quiet))
    messages.sort(key=lambda m: (m.t, m.device))
    truth = compute_truth(world, plans, t0, t1, sc.fix_interval_s)
    truth = sorted([*truth, *health_truth(healths, t1)])
    config = SimConfig(
        duration_s=sc.duration_s, fix_interval_s=sc.fix_interval_s, start_t=t0,
        breach_fraction=0.0, phone_interval_s=sc.phone_interval_s, seed=seed, noise=sc.noise,
        phone_noise=sc.phone_noise,
    )  # fmt: skip
    return SimRun(world, config, tuple(plans), tuple(messages), tuple(truth), tuple(healths))


def check_expectations(scenario: Scenario, run: SimRun) -> list[str]:
    """What the run's truth does not keep of the file's `[[expect]]` promises (empty: all)."""
    t0 = run.start_t
    problems = []
    for x in scenario.expect:
        cands = [
            e
            for e in run.truth
            if e.kind == x.kind and e.subject == x.subject and x.zone in (None, e.zone)
        ]
        what = f"{x.kind} of {x.subject}" + (f" in {x.zone}" if x.zone else "")
        seen = "; truth has " + (
            ", ".join(
                f"{offset_text(e.start_t - t0)}-{offset_text(e.end_t - t0)}"
                f"{'' if e.material else ' (ambiguous)'}"
                for e in cands
            )
            or "none"
        )
        if x.absent:
            if cands:
                problems.append(f"expect {x.index}: no {what} promised{seen}")
            continue
        tol = x.within if x.within is not None else run.config.fix_interval_s
        assert x.start is not None
        ok = [
            e
            for e in cands
            if abs(e.start_t - t0 - x.start) <= tol
            and (x.end is None or abs(e.end_t - t0 - x.end) <= tol)
            and (x.material is None or e.material == x.material)
        ]
        if not ok:
            span = offset_text(x.start) + (f"-{offset_text(x.end)}" if x.end is not None else "")
            problems.append(f"expect {x.index}: {what} at {span} (±{tol:g} s){seen}")
    return problems
