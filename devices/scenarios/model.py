"""A checked scenario, ready to run: `Scenario` and its parts (subjects with their
timelines and battery, victim phones, device events, `[[expect]]` promises)."""

from __future__ import annotations

from dataclasses import dataclass, field

from devices.health.truth import HEALTH_KINDS
from devices.motion.scripted import Move
from devices.scenarios.parse import XY, LatLon
from devices.sensing.sensor import NoiseModel
from devices.world.city import ZoneSpec
from devices.world.geo import LocalFrame

TRUTH_KINDS = ("zone_breach", "curfew_breach", "proximity", *HEALTH_KINDS)


@dataclass(frozen=True)
class DeviceEvent:
    """A scripted device event (tamper, coverage_gap, indoor, backgrounded) of a timeline.
    Times are seconds after the run's start; `at` None: when the previous move ended."""

    index: int
    do: str
    at: float | None
    seconds: float | None  # `for`; else until - at
    until: float | None
    kind: str = ""  # tamper
    toggles: int = 0
    body: bool = False
    cell_share: float = 0.5  # indoor
    cell_acc_m: float = 600.0


Step = Move | DeviceEvent


@dataclass(frozen=True)
class Battery:
    """A tag's battery script (times in seconds after the run's start)."""

    start_pct: float = 90.0
    drain_pct_h: float = 1.5
    charge_pct_h: float = 30.0
    charging: tuple[tuple[float, float], ...] = ()
    recharge: tuple[float, float] | None = None  # after running flat: (delay, duration)


@dataclass(frozen=True, eq=False)
class ScriptedPhone:
    """A victim's phone publishing OwnTracks, with its own timeline."""

    device: str
    radius_m: float
    warn_m: float | None
    start: XY
    steps: tuple[Step, ...]
    where: str


@dataclass(frozen=True, eq=False)
class ScriptedSubject:
    """A subject with one tag, its zones, a timeline and possibly a victim phone."""

    id: str
    tag: str
    risk: int
    start: XY
    zones: tuple[ZoneSpec, ...]
    steps: tuple[Step, ...]
    battery: Battery
    noise: NoiseModel
    phone: ScriptedPhone | None
    where: str


@dataclass(frozen=True)
class Expectation:
    """A promised truth episode (`absent`: promised not to happen); seconds after start."""

    index: int
    kind: str
    subject: str
    zone: str | None
    start: float | None
    end: float | None
    material: bool | None
    within: float | None
    absent: bool


@dataclass(frozen=True, eq=False)
class Scenario:
    """A checked scenario file, ready to run."""

    path: str
    seed: int
    start_t: float
    duration_s: float
    fix_interval_s: float
    phone_interval_s: float
    center: LatLon
    frame: LocalFrame
    half_size_m: float  # the street grid: [-h, h]^2 around the centre
    noise: NoiseModel
    phone_noise: NoiseModel
    zones: tuple[ZoneSpec, ...]
    subjects: tuple[ScriptedSubject, ...]
    expect: tuple[Expectation, ...] = field(default=())
