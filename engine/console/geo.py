"""Zones as the console's map draws them: GeoJSON features (RFC 7946, lon/lat).

A polygon zone is its geometry with holes; a circle zone is a Point with
`properties.radius_m` (the map draws the exact circle, not a polygon approximating it).
Schedules are given as words a monitor reads (`Mon-Fri 21:00-07:00 Europe/London`)."""

from __future__ import annotations

import math
from typing import Any

from shapely.geometry import mapping

from zones.model import DAY_NAMES, Window, Zone


def window_text(w: Window) -> str:
    days = ",".join(DAY_NAMES[d] for d in sorted(w.days))

    def hhmm(m: int) -> str:
        return f"{m // 60:02d}:{m % 60:02d}"

    return f"{days} {hhmm(w.start_min)}-{hhmm(w.end_min)} {w.tz}"


def _time(t: float) -> float | None:
    return None if math.isinf(t) else t


def feature(z: Zone) -> dict[str, Any]:
    props: dict[str, Any] = {
        "id": z.id, "subject": z.subject, "kind": z.kind, "name": z.name,
        "warn_m": z.warn_m, "schedule": [window_text(w) for w in z.schedule],
        "valid_from": _time(z.valid_from), "valid_until": _time(z.valid_until),
    }  # fmt: skip
    if z.is_circle and z.center is not None:
        geometry: dict[str, Any] = {"type": "Point", "coordinates": list(z.center)}
        props["radius_m"] = z.radius_m
    else:
        geometry = dict(mapping(z.geometry)) if z.geometry is not None else {}
    return {"type": "Feature", "id": z.id, "geometry": geometry, "properties": props}


def collection(zones: list[Zone]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": [feature(z) for z in zones]}
