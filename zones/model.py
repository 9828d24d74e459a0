"""Validated, immutable descriptions of zones, schedules and subjects (before compilation)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from shapely.geometry.base import BaseGeometry

ZoneKind = Literal["exclusion", "inclusion"]
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True, slots=True)
class Window:
    """One schedule window: starts on `days` (0=Mon..6=Sun) at `start_min` local minutes
    after midnight and ends at `end_min`; end <= start means it runs past midnight."""

    days: frozenset[int]
    start_min: int
    end_min: int
    tz: str


@dataclass(frozen=True, slots=True)
class Zone:
    """One zone feature. Polygons keep their lon/lat shapely geometry; circles keep
    `center` (lon, lat) and `radius_m` and have `geometry` None."""

    id: str
    subject: str
    kind: ZoneKind
    index: int  # feature index in the GeoJSON file, for messages
    geometry: BaseGeometry | None = None  # Polygon | MultiPolygon, lon/lat
    center: tuple[float, float] | None = None  # (lon, lat) for circles
    radius_m: float | None = None
    warn_m: float = 0.0
    name: str | None = None
    schedule: tuple[Window, ...] = ()  # empty: always active
    # The licence condition holds in [valid_from, valid_until) (Unix seconds; ±inf: open)
    valid_from: float = -math.inf
    valid_until: float = math.inf

    @property
    def is_circle(self) -> bool:
        return self.center is not None


@dataclass(frozen=True, slots=True)
class Protected:
    """A protected device (victim phone or unit) with a mobile exclusion radius. `warn`:
    whether the device itself is warned of the subject's approaches and breaches (None:
    as the subject's `warn_protected` says; docs/notifications.md)."""

    device: str
    radius_m: float
    warn_m: float = 0.0
    warn: bool | None = None


@dataclass(frozen=True, slots=True)
class Subject:
    """A monitored person: the tags they wear, a risk weight, protected devices, the
    tagging period [valid_from, valid_until) in which they are monitored, and the team of
    monitors whose caseload they are (None: no team named; the console's business only)."""

    id: str
    tags: tuple[str, ...]
    risk: int = 1
    protected: tuple[Protected, ...] = ()
    valid_from: float = -math.inf
    valid_until: float = math.inf
    team: str | None = None
    warn_protected: bool = False  # opt-in: warn the protected devices (not the decisions')

    def warned_devices(self) -> tuple[str, ...]:
        """The protected devices that opted in to warnings, in file order."""
        on = self.warn_protected
        return tuple(p.device for p in self.protected if (on if p.warn is None else p.warn))


@dataclass(frozen=True, slots=True)
class Gateway:
    """A gateway publishing many tags' fixes in one message (tagwatch/v1/gateway/{id}/fixes),
    allowed to speak for `tags` only (the subjects file's [[gateways]] tables)."""

    id: str
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ZoneSet:
    """Everything loaded from one zones file and one subjects file. Loaded from files,
    `zones` is a `zones.rows.ZoneRows` (columns; a Zone is made when one is read)."""

    zones: Sequence[Zone]
    subjects: tuple[Subject, ...]
    sources: tuple[str, ...] = field(default=())
    gateways: tuple[Gateway, ...] = field(default=())
    # Devices of subjects another shard owns (zones/shard.py): their input is not ours
    elsewhere: frozenset[str] = field(default=frozenset())
