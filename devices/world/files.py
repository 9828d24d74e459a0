"""Writes a World as the contract's zones GeoJSON FeatureCollection and subjects TOML."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shapely.geometry import mapping

if TYPE_CHECKING:
    from devices.world.city import SubjectSpec, World, ZoneSpec


def _num(v: float) -> int | float:
    """Whole metres as ints (as court orders state them), otherwise one decimal."""
    return int(v) if float(v).is_integer() else round(float(v), 1)


def _coords(obj: Any) -> Any:
    if isinstance(obj, tuple | list):
        if obj and isinstance(obj[0], float | int):
            return [float(c) for c in obj]
        return [_coords(c) for c in obj]
    return obj


def zone_feature(z: ZoneSpec) -> dict[str, Any]:
    """One GeoJSON Feature for a zone; properties appear only when they apply."""
    if z.center_ll is not None:
        geometry: dict[str, Any] = {"type": "Point", "coordinates": list(z.center_ll)}
    else:
        g = mapping(z.geometry_ll)
        geometry = {"type": g["type"], "coordinates": _coords(g["coordinates"])}
    props: dict[str, Any] = {"id": z.id, "subject": z.subject, "kind": z.kind, "name": z.name}
    if z.radius_m is not None:
        props["radius_m"] = _num(z.radius_m)
    if z.warn_m is not None:
        props["warn_m"] = _num(z.warn_m)
    if z.schedule:
        props["schedule"] = [dict(w) for w in z.schedule]
    return {"type": "Feature", "id": z.id, "properties": props, "geometry": geometry}


def zones_geojson(world: World) -> dict[str, Any]:
    """The FeatureCollection for every subject's zones, in subject then zone order."""
    return {"type": "FeatureCollection", "features": [zone_feature(z) for z in world.zones]}


def _toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string for our ids


def subject_toml(s: SubjectSpec) -> str:
    """One `[[subjects]]` table (with its protected device, if any)."""
    lines = [
        "[[subjects]]",
        f"id = {_toml_str(s.id)}",
        f"tags = [{_toml_str(s.tag)}]",
        f"risk = {s.risk}",
    ]
    if s.phone is not None:
        lines += [
            "[[subjects.protected]]",
            f"device = {_toml_str(s.phone.device)}",
            f"radius_m = {_num(s.phone.radius_m)}",
        ]
        if s.phone.warn_m is not None:
            lines.append(f"warn_m = {_num(s.phone.warn_m)}")
    return "\n".join(lines) + "\n"


def subjects_toml(world: World) -> str:
    head = f"# tagwatch simulated subjects: seed {world.seed}, {len(world.subjects)} subjects\n\n"
    return head + "\n".join(subject_toml(s) for s in world.subjects)


def write_world(world: World, directory: Path) -> tuple[Path, Path]:
    """Write zones.geojson and subjects.toml (compact, stable, newline-terminated)."""
    directory.mkdir(parents=True, exist_ok=True)
    zones_path = directory / "zones.geojson"
    subjects_path = directory / "subjects.toml"
    features = [json.dumps(f, separators=(",", ":")) for f in zones_geojson(world)["features"]]
    # one feature per line: diffable, and still one JSON document
    zones_path.write_text(
        '{"type":"FeatureCollection","features":[\n' + ",\n".join(features) + "\n]}\n"
    )
    subjects_path.write_text(subjects_toml(world))
    return zones_path, subjects_path
