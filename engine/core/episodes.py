"""Episode bookkeeping: one alert per (subject, zone, kind) episode, opened and closed
as lifecycle records with a stable id, confidence and (tag, seq) evidence, and where the
fix that decided it was (`Where`: the record's `detail`)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any, NamedTuple

from engine.wire.alerts import Alert, Evidence, Severity, alert_id

if TYPE_CHECKING:
    from engine.core.remap import Ids, Remap

# A phone's "accuracy" is the 68% radius of a 2-D normal error: r68 = sigma * sqrt(-2 ln 0.32)
R68_PER_SIGMA = math.sqrt(-2.0 * math.log(0.32))


def sigma_of(acc: float) -> float:
    """Per-axis standard deviation (m) of a fix whose 68% radius is `acc` metres."""
    return max(float(acc), 0.5) / R68_PER_SIGMA


def prob_below(margin_m: float, sigma: float) -> float:
    """P(true value < threshold) when the measured value is `margin_m` below it."""
    return 0.5 * (1.0 + math.erf(margin_m / (sigma * _SQRT2)))


_SQRT2 = math.sqrt(2.0)


# Where an observed fix was and what it measured there, should it decide an episode:
# (fix row with lat, lon, acc; key; metres; age). `key` is `depth_m` (how far into the
# breach: metres inside an exclusion zone, outside a curfew zone) or `distance_m` (metres
# outside a zone, for its approach ring; from the protected device, for proximity); `age`
# how old the protected device's position was (proximity; NaN otherwise). A plain tuple
# made for every observed fix and never kept: the row is read only when the fix decides.
Where = tuple[Any, str, float, float]


def where_of(at: Where | None) -> dict[str, Any] | None:
    """The record's `detail` keys for `at`, rounded so replay output stays byte-for-byte
    stable: lat, lon (6 decimals), acc and metres (1 decimal), and the fix's own time `t`
    (raised_t is later when the decision waited: a jump confirmed, late evidence)."""
    if at is None:
        return None
    row, key, metres, age = at
    d: dict[str, Any] = {
        "t": float(row["t"]), "lat": round(float(row["lat"]), 6),
        "lon": round(float(row["lon"]), 6), "acc": round(float(row["acc"]), 1),
        key: round(metres, 1),
    }  # fmt: skip
    if not math.isnan(age):
        d["protected_age_s"] = round(age, 1)
    return d


# Every `detail` key a deciding fix sets (where_of, engine/core/transit.py's routes):
# replaced as a whole when a later fix escalates the episode; other keys stay
WHERE_KEYS = frozenset({
    "t", "lat", "lon", "acc", "depth_m", "distance_m", "protected_age_s",
    "route", "from_lat", "from_lon", "from_acc", "from_t", "turn_lat", "turn_lon",
})  # fmt: skip


class TrackerKind(IntEnum):
    """What a decision follows: the first half of every episode key."""

    ZONE = 0  # exclusion-zone breach; idx: zone
    APPROACH = 1  # exclusion zone's warn ring; idx: zone
    CURFEW = 2  # curfew (scheduled inclusion zone); idx: zone
    PROXIMITY = 3  # subject near a protected device; idx: proximity pair
    PROXIMITY_APPROACH = 4  # the pair's warn ring; idx: proximity pair
    VICTIM_STALE = 5  # the protected device's position is too old; idx: proximity pair
    IMPLAUSIBLE = 6  # a fix refuted by the next one; idx: tag slot
    TAMPER = 7  # idx: tag slot
    SILENT = 8  # idx: tag slot
    NO_LOCATION = 9  # idx: tag slot
    BATTERY = 10  # idx: tag slot
    RESTART = 11  # the tag restarted (a new seq space); idx: tag slot
    CLOCK = 12  # the tag's clock is off its records' arrival time; idx: tag slot


class TrackerKey(NamedTuple):
    """An episode's owner: what kind of decision, about which zone, pair or tag slot."""

    kind: TrackerKind
    idx: int


@dataclass
class Episode:
    """An open alert episode and the evidence gathered so far."""

    id: str
    kind: str
    subject: str
    tag: str | None
    zone: str | None
    severity: Severity
    confidence: float
    opened_t: float
    raised_t: float
    evidence: list[Evidence] = field(default_factory=list)
    detail: dict[str, Any] | None = None

    def record(self, state: str = "open", closed_t: float | None = None) -> Alert:
        """The lifecycle record as it stands. An episode never closes before it opened:
        a close decided on a record dated before the opening (a device clock that stepped
        back, a battery reading from a late batch, a wild first record in replay) is dated
        at `opened_t`, the earliest the engine can say it was over."""
        if closed_t is not None and not closed_t >= self.opened_t:
            closed_t = self.opened_t
        return Alert(
            id=self.id,
            kind=self.kind,
            state=state,  # type: ignore[arg-type]
            subject=self.subject,
            tag=self.tag,
            zone=self.zone,
            severity=self.severity,
            confidence=round(self.confidence, 3),
            opened_t=self.opened_t,
            raised_t=self.raised_t,
            closed_t=closed_t,
            evidence=list(self.evidence),
            # deep: the episode keeps appending to lists in its detail after this record
            detail=None if self.detail is None else _deep(self.detail),
        )


_ATOMIC = frozenset({str, int, float, bool, type(None)})


def _deep(x: Any) -> Any:
    """copy.deepcopy of a detail (dicts, lists and scalars, as a rule) without its memo
    bookkeeping for every object: scalars are kept, dicts and lists copied, anything
    else deep-copied."""
    kind = type(x)
    if kind in _ATOMIC:
        return x
    if kind is dict:
        return {k: _deep(v) for k, v in x.items()}
    if kind is list:
        return [_deep(v) for v in x]
    return copy.deepcopy(x)


class EpisodeBook:
    """Open episodes keyed by (TrackerKey, alert kind); emits lifecycle records in decision
    order."""

    def __init__(self, evidence_max: int, watch: frozenset[str] = frozenset()) -> None:
        self.evidence_max = evidence_max
        self.open: dict[tuple[TrackerKey, str], Episode] = {}
        # Per tag, how many episodes of the `watch` kinds are open; tags whose count went
        # from or to zero since `take_changed` (the pipeline's reporting-rate commands)
        self.watch = watch
        self.watched: dict[str, int] = {}
        self.changed: set[str] = set()
        self.out: list[Alert] = []
        # Set while held evidence is applied late: raised_t is when the engine decided
        self.decided_at: float | None = None
        # (tag, seq) -> what evidence cites (the pipeline's seq spaces: boot, restarts)
        self.cite: Callable[[str, int], Evidence] = _plain_cite
        # Tags with an open clock_fault -> its offset (s): every alert they open says so
        self.clock_note: dict[str, float] = {}

    def get(self, key: TrackerKey, kind: str) -> Episode | None:
        return self.open.get((key, kind))

    def open_episode(
        self,
        key: TrackerKey,
        kind: str,
        *,
        subject: str,
        tag: str,
        zone: str | None,
        severity: Severity,
        confidence: float,
        t: float,
        seq: int,
        raised_t: float | None = None,
        detail: dict[str, Any] | None = None,
        first: Evidence | None = None,
    ) -> Episode:
        """`first`: the evidence to cite instead of (tag, seq) through `cite`."""
        if first is None:
            first = self.cite(tag, seq)
        note = self.clock_note.get(tag) if self.clock_note else None
        if note is not None and kind != "clock_fault":
            detail = {**(detail or {}), "clock_offset_s": note}
        ep = Episode(
            id=alert_id(subject, zone, kind, first),
            kind=kind,
            subject=subject,
            tag=tag,
            zone=zone,
            severity=severity,
            confidence=confidence,
            opened_t=t,
            raised_t=max(
                t if raised_t is None else raised_t,
                -math.inf if self.decided_at is None else self.decided_at,
            ),
            evidence=[first],
            detail=detail,
        )
        self.open[(key, kind)] = ep
        if kind in self.watch:
            n = self.watched.get(tag, 0)
            self.watched[tag] = n + 1
            if n == 0:
                self.changed.add(tag)
        self.out.append(ep.record())
        return ep

    def add_evidence(self, ep: Episode, tag: str, seq: int, confidence: float) -> None:
        if len(ep.evidence) < self.evidence_max:
            ep.evidence.append(self.cite(tag, seq))
        ep.confidence = max(ep.confidence, confidence)

    def republish(self, ep: Episode, raised_t: float, where: dict[str, Any] | None = None) -> None:
        """Publish the open record again (same id) after its confidence escalated; `where`:
        the escalating fix's position keys, which replace the previous deciding fix's."""
        ep.raised_t = raised_t
        if where is not None:
            rest = {k: v for k, v in (ep.detail or {}).items() if k not in WHERE_KEYS}
            ep.detail = {**where, **rest}
        self.out.append(ep.record())

    def close(self, key: TrackerKey, kind: str, t: float) -> None:
        ep = self.open.pop((key, kind), None)
        if ep is not None and kind in self.watch and ep.tag is not None:
            n = self.watched.pop(ep.tag) - 1
            if n:
                self.watched[ep.tag] = n
            else:
                self.changed.add(ep.tag)
        if ep is not None:
            self.out.append(ep.record("closed", closed_t=t))

    def take_changed(self) -> list[str]:
        """Tags whose watched-episode count went from or to zero, sorted; then forgets them."""
        out = sorted(self.changed)
        self.changed.clear()
        return out

    def drain(self) -> list[Alert]:
        out, self.out = self.out, []
        return out


def _plain_cite(tag: str, seq: int) -> Evidence:
    return (tag, seq)


# -- state as data (snapshots, configuration reloads: engine/core/remap.py) --------------
def episode_data(ep: Episode) -> dict[str, Any]:
    return {
        "id": ep.id, "kind": ep.kind, "subject": ep.subject, "tag": ep.tag, "zone": ep.zone,
        "severity": ep.severity, "confidence": ep.confidence, "opened_t": ep.opened_t,
        "raised_t": ep.raised_t, "evidence": [list(e) for e in ep.evidence],
        "detail": ep.detail,
    }  # fmt: skip


def episode_from(d: dict[str, Any]) -> Episode:
    return Episode(
        id=str(d["id"]), kind=str(d["kind"]), subject=str(d["subject"]),
        tag=None if d["tag"] is None else str(d["tag"]),
        zone=None if d["zone"] is None else str(d["zone"]), severity=d["severity"],
        confidence=float(d["confidence"]), opened_t=float(d["opened_t"]),
        raised_t=float(d["raised_t"]), evidence=[tuple(e) for e in d["evidence"]],
        detail=None if d["detail"] is None else dict(d["detail"]),
    )  # fmt: skip


def book_state(book: EpisodeBook, ids: Ids) -> dict[str, Any]:
    """The open episodes (in the order they opened) and the watched-episode counts; what a
    step leaves behind in `out` and `changed` is taken before a snapshot."""
    return {
        "open": [[ids.key_ref(k), kind, episode_data(ep)] for (k, kind), ep in book.open.items()],
        "watched": dict(book.watched),
    }


def load_book(book: EpisodeBook, d: dict[str, Any], m: Remap) -> None:
    book.open.clear()
    book.watched.clear()
    for ref, kind, ep in d["open"]:
        key = m.key(ref)
        if key is not None:
            book.open[(key, str(kind))] = episode_from(ep)
    for ep in book.open.values():  # counted again: episodes of a dropped key are gone
        if ep.kind in book.watch and ep.tag is not None:
            book.watched[ep.tag] = book.watched.get(ep.tag, 0) + 1
    if m.identity and book.watched != d["watched"]:
        raise ValueError("snapshot watched-episode counts do not match its open episodes")
