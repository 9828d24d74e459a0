"""The pack's GeoJSON: the zone's feature as the zones file has it (a circle stays a Point
with `radius_m`), the track as a LineString, and one Point per fix with its ledger row
and hash, the evidence fixes marked `"evidence": true`. RFC 7946 order: [lon, lat]."""

from __future__ import annotations

import json
from typing import Any

from engine.evidence.pack import Evidence, Fix, utc


def _point(f: Fix) -> dict[str, Any]:
    props: dict[str, Any] = {
        "role": "evidence" if f.evidence else "fix",
        "evidence": f.evidence,
        "tag": f.tag,
        "seq": f.seq,
        "t": f.t,
        "time": utc(f.t),
        "acc": f.acc,
        "ledger_n": f.row.n,
        "ledger_hash": f.row.hash.hex(),
    }
    if f.row.i >= 0:  # line i of that records row
        props["ledger_i"] = f.row.i
    if f.boot is not None:
        props["boot"] = f.boot
    return {
        "type": "Feature",
        "properties": props,
        "geometry": {"type": "Point", "coordinates": [f.lon, f.lat]},
    }


def fixes(ev: Evidence) -> list[Fix]:
    """The track's fixes and the evidence fixes outside its window, in time order."""
    on = {f.row.n for f in ev.track}
    extra = [c.fix for c in ev.cited if c.fix is not None and c.row is not None]
    out = list(ev.track) + [f for f in extra if f.row.n not in on]
    return sorted(out, key=lambda f: (f.t, f.row.n))


def geojson(ev: Evidence) -> bytes:
    rec = ev.latest
    feats: list[dict[str, Any]] = []
    if ev.zone is not None:
        z = dict(ev.zone)
        z["properties"] = {**(z.get("properties") or {}), "role": "zone", "source": ev.zone_source}
        feats.append(z)
    pts = fixes(ev)
    track = [f for f in pts if f.tag == rec.get("tag")]
    if len(track) >= 2:
        feats.append(
            {
                "type": "Feature",
                "properties": {
                    "role": "track",
                    "tag": rec.get("tag"),
                    "from": ev.window[0],
                    "to": ev.window[1],
                    "fixes": len(track),
                },
                "geometry": {"type": "LineString", "coordinates": [[f.lon, f.lat] for f in track]},
            }
        )
    feats.extend(_point(f) for f in pts)
    doc = {
        "type": "FeatureCollection",
        "properties": {
            "alert": ev.alert_id,
            "kind": rec.get("kind"),
            "subject": rec.get("subject"),
            "zone": rec.get("zone"),
            "detail": rec.get("detail"),
        },
        "features": feats,
    }
    return json.dumps(doc, indent=1, ensure_ascii=False).encode() + b"\n"
