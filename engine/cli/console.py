"""Terminal rendering of alerts for monitors: one readable row per lifecycle change."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TextIO

from engine.wire.alerts import Alert

_COLOURS = {"critical": "\033[1;31m", "high": "\033[31m", "medium": "\033[33m", "low": "\033[36m"}
_RESET = "\033[0m"
HEADER = (
    f"{'event time (UTC)':<19}  {'state':<6}  {'severity':<8}  {'kind':<18}  "
    f"{'subject':<8}  {'tag':<12}  {'zone':<18}  {'conf':>4}  {'fixes':>5}  id"
)


def fmt_t(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def alert_row(a: Alert, colour: bool = False) -> str:
    t = a.closed_t if a.state == "closed" else a.raised_t
    sev: str = a.severity
    if colour:
        sev = f"{_COLOURS.get(a.severity, '')}{a.severity:<8}{_RESET}"
    else:
        sev = f"{sev:<8}"
    dur = ""
    if a.state == "closed" and a.closed_t is not None:
        dur = f"  after {int(a.closed_t - a.opened_t)} s"
    note = detail_text(a)
    if note:
        dur += f"  {note}"
    return (
        f"{fmt_t(t):<19}  {a.state:<6}  {sev}  {a.kind:<18}  {a.subject:<8}  "
        f"{(a.tag or '-'):<12}  {(a.zone or '-'):<18}  {a.confidence:>4.2f}  "
        f"{len(a.evidence):>5}  {a.id}{dur}"
    )


class AlertPrinter:
    """Prints a header once, then a row per alert record; colour on terminals only."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.colour = self.stream.isatty()
        self.rows = 0

    def print(self, a: Alert) -> None:
        if self.rows % 40 == 0:
            self.stream.write(HEADER + "\n")
        self.stream.write(alert_row(a, self.colour) + "\n")
        self.stream.flush()
        self.rows += 1


# Kinds whose detail says where the deciding fix was (docs/formats.md)
_WHERE_KINDS = frozenset(
    {"zone_breach", "zone_approach", "curfew_breach", "proximity", "proximity_approach"}
)


def detail_text(a: Alert) -> str:
    """What a monitor needs from an alert's detail, in a few words: where a breach was
    decided, a tag clock known to be off, a health alert's figures."""
    d = a.detail or {}
    parts: list[str] = []
    if a.kind == "tamper" and d.get("events"):
        parts.append("+".join(d["events"]))
    if a.kind == "tag_silent":
        if "distance_m" in d:
            where = "inside" if d["distance_m"] <= 0 else f"{d['distance_m']:.0f} m from"
            parts.append(f"last seen {where} {d.get('zone')}")
        if "curfew" in d:
            parts.append(f"curfew {d['curfew']} on")
        if d.get("filled"):
            parts.append(f"gap held {d['filled']} records")
        if d.get("alerts"):
            parts.append(f"{len(d['alerts'])} breach alert(s) from the gap")
    if a.kind in _WHERE_KINDS and "lat" in d:
        if "depth_m" in d:
            how = "outside" if a.kind == "curfew_breach" else "inside"
            parts.append(f"{d['depth_m']:.0f} m {how}")
        elif "distance_m" in d:
            away = "from the protected device" if a.kind.startswith("proximity") else "away"
            parts.append(f"{d['distance_m']:.0f} m {away}")
        parts.append(f"at {d['lat']:.5f},{d['lon']:.5f} ±{d.get('acc', 0):.0f} m")
    if "clock_offset_s" in d:
        parts.append(f"tag clock off {d['clock_offset_s']:+.0f} s")
    if a.kind in ("battery_low", "battery_critical") and "batt" in d:
        parts.append(f"{d['batt']} %")
        if "empty_t" in d:
            parts.append(f"empty ~{fmt_t(d['empty_t'])[11:16]} UTC")
        if d.get("charging"):
            parts.append("charging")
    return ", ".join(parts)
