"""Zones GeoJSON and subjects TOML loading: every problem named by file, item and fault."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from engine.errors import ZoneError
from zones.load import check, load, load_subjects, load_zones
from zones.model import Subject, Window

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SUBJECTS = '[[subjects]]\nid = "S1"\ntags = ["T1"]\n\n[[subjects]]\nid = "S2"\ntags = ["T2"]\n'
LON0, LAT0 = -0.12, 51.5


def square(lon: float = LON0, lat: float = LAT0, half: float = 0.001) -> list[list[float]]:
    """A closed counterclockwise square ring centred on (lon, lat), half-side in degrees."""
    return [
        [lon - half, lat - half],
        [lon + half, lat - half],
        [lon + half, lat + half],
        [lon - half, lat + half],
        [lon - half, lat - half],
    ]


# Named tricky rings (lon, lat)
BOWTIE = [[-0.13, 51.50], [-0.12, 51.51], [-0.12, 51.50], [-0.13, 51.51], [-0.13, 51.50]]
BOWTIE_CROSSING = "(-0.125, 51.505)"  # the diagonals of the 0.01-degree box meet in its middle
UNCLOSED = [*square()[:-1], [LON0 - 0.001, LAT0]]  # ends on the left edge, not the start
TRIANGLE_OPEN = square()[:3]  # 3 positions, first != last
COLLINEAR = [[-0.13, 51.5], [-0.12, 51.5], [-0.11, 51.5], [-0.13, 51.5]]


def polygon(*rings: list[list[float]]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": list(rings)}


def point(lon: float = LON0, lat: float = LAT0) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lon, lat]}


def feature(zid: Any = "Z1", geometry: Any = None, **props: Any) -> dict[str, Any]:
    """A Feature bound to S1 as an exclusion zone unless props say otherwise; pass a prop
    as None to leave it out."""
    base: dict[str, Any] = {"id": zid, "subject": "S1", "kind": "exclusion"}
    base.update(props)
    return {
        "type": "Feature",
        "properties": {k: v for k, v in base.items() if v is not None},
        "geometry": polygon(square()) if geometry is None else geometry,
    }


def write(tmp_path: Path, features: list[Any], subjects: str = SUBJECTS) -> tuple[Path, Path]:
    zones = tmp_path / "zones.geojson"
    zones.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    subj = tmp_path / "subjects.toml"
    subj.write_text(subjects)
    return zones, subj


def problems_of(tmp_path: Path, features: list[Any], subjects: str = SUBJECTS) -> list[str]:
    return check(*write(tmp_path, features, subjects))


def only(problems: list[str], *fragments: str) -> str:
    """The single problem, after checking it contains every fragment."""
    assert len(problems) == 1, problems
    for fragment in fragments:
        assert fragment in problems[0], (fragment, problems[0])
    return problems[0]


# -- valid input --------------------------------------------------------------------------


def test_examples_load_cleanly() -> None:
    zones_path, subjects_path = EXAMPLES / "zones.geojson", EXAMPLES / "subjects.toml"
    assert check(zones_path, subjects_path) == []
    zs = load(zones_path, subjects_path)
    by_id = {z.id: z for z in zs.zones}
    assert [s.id for s in zs.subjects] == ["S0001", "S0002", "S0003"]
    assert sorted(t for s in zs.subjects for t in s.tags) == ["T1", "T2", "T3"]
    phone = zs.subjects[0].protected[0]
    assert (phone.device, phone.radius_m, phone.warn_m) == ("alice/phone", 500.0, 1000.0)
    assert [z.index for z in zs.zones] == list(range(len(zs.zones)))
    assert len(by_id["S0002-hackney"].geometry.interiors) == 1  # the permitted corridor
    assert (
        by_id["S0002-hackney"].geometry.contains(
            by_id["S0002-hackney"].geometry.interiors[0].centroid
        )
        is False
    )
    assert by_id["S0001-victim-work"].geometry.geom_type == "MultiPolygon"
    school = by_id["S0001-school"]
    assert school.is_circle and school.geometry is None and school.radius_m == 250.0
    curfew = by_id["S0002-curfew"]
    assert curfew.kind == "inclusion"
    assert curfew.schedule == (Window(frozenset(range(7)), 19 * 60, 7 * 60, "Europe/London"),)
    assert zs.sources == (str(zones_path), str(subjects_path))


def test_valid_features_become_zones_in_file_order(tmp_path: Path) -> None:
    hole = square(half=0.0003)[::-1]
    features = [
        feature("B", polygon(square(half=0.002), hole), warn_m=50, name="with hole"),
        feature("A", point(), radius_m=120.5, subject="S2", kind="inclusion"),
        feature(
            "C",
            {"type": "MultiPolygon", "coordinates": [[square()], [square(lon=-0.10)]]},
            schedule=[{"days": "Sat,Sun", "start": "22:00", "end": "06:30", "tz": "UTC"}],
        ),
    ]
    zones = load(*write(tmp_path, features)).zones
    assert [(z.id, z.index) for z in zones] == [("B", 0), ("A", 1), ("C", 2)]
    b, a, c = zones
    assert (b.warn_m, b.name, len(b.geometry.interiors)) == (50.0, "with hole", 1)
    assert (a.center, a.radius_m, a.kind, a.subject, a.geometry) == (
        (LON0, LAT0),
        120.5,
        "inclusion",
        "S2",
        None,
    )
    assert c.schedule == (Window(frozenset({5, 6}), 22 * 60, 6 * 60 + 30, "UTC"),)
    assert a.warn_m == 0.0 and a.schedule == ()


def test_altitude_and_null_optional_properties_are_accepted(tmp_path: Path) -> None:
    ring = [[*p, 12.0] for p in square()]  # RFC 7946 allows an altitude third value
    features = [feature("Z1", polygon(ring), name=None, warn_m=None, schedule=None)]
    features[0]["properties"].update({"name": None, "warn_m": None})
    assert problems_of(tmp_path, features) == []


# -- whole-file problems ------------------------------------------------------------------


def test_missing_zones_file(tmp_path: Path) -> None:
    subjects = tmp_path / "subjects.toml"
    subjects.write_text(SUBJECTS)
    only(check(tmp_path / "nope.geojson", subjects), "nope.geojson: file not found")


def test_zones_not_json_names_line_and_column(tmp_path: Path) -> None:
    zones, subjects = write(tmp_path, [])
    zones.write_text('{"type": "FeatureCollection",\n "features": [,]}')
    only(check(zones, subjects), "zones.geojson: not valid JSON", "line 2 column 15")


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"type": "Feature", "properties": {}}, "FeatureCollection, got 'Feature'"),
        ([1, 2], "FeatureCollection, got 'a JSON list'"),
        ({"type": "FeatureCollection"}, "'features' must be a list"),
    ],
)
def test_zones_not_a_feature_collection(tmp_path: Path, doc: Any, fragment: str) -> None:
    zones, subjects = write(tmp_path, [])
    zones.write_text(json.dumps(doc))
    only(check(zones, subjects), "zones.geojson: ", fragment)


def test_not_a_feature(tmp_path: Path) -> None:
    only(
        problems_of(tmp_path, [feature(), {"type": "Point", "coordinates": [0, 0]}]),
        "feature 1 (no id): is not a GeoJSON Feature (type 'Point')",
    )


# -- properties ---------------------------------------------------------------------------


def test_missing_id(tmp_path: Path) -> None:
    only(problems_of(tmp_path, [feature(None)]), "feature 0 (no id): missing property 'id'")


def test_feature_level_id_gets_a_hint(tmp_path: Path) -> None:
    f = feature(None)
    f["id"] = "Z1"
    only(problems_of(tmp_path, [f]), "feature 0 (no id)", "Feature's own 'id' member is not read")


@pytest.mark.parametrize("bad", [7, "", "  ", ["Z"]])
def test_non_string_id(tmp_path: Path, bad: Any) -> None:
    only(problems_of(tmp_path, [feature(bad)]), "feature 0 (no id)", "must be a non-empty string")


def test_duplicate_id_names_both_features(tmp_path: Path) -> None:
    features = [feature("home-A"), feature("other"), feature("home-A")]
    only(
        problems_of(tmp_path, features),
        "zones.geojson feature 2 (id 'home-A'): duplicate zone id (also feature 0)",
    )


def test_unknown_subject_lists_known_ones(tmp_path: Path) -> None:
    only(
        problems_of(tmp_path, [feature("Z1", subject="S9")]),
        "feature 0 (id 'Z1'): subject 'S9' is not in ",
        "subjects.toml (known: S1, S2)",
    )


def test_missing_subject(tmp_path: Path) -> None:
    only(problems_of(tmp_path, [feature(subject=None)]), "(id 'Z1'): missing property 'subject'")


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [(None, "missing property 'kind'"), ("exclude", "kind 'exclude' is not 'exclusion'")],
)
def test_missing_or_invalid_kind(tmp_path: Path, kind: Any, fragment: str) -> None:
    only(problems_of(tmp_path, [feature(kind=kind)]), "feature 0 (id 'Z1'): " + fragment)


def test_name_must_be_a_string(tmp_path: Path) -> None:
    only(problems_of(tmp_path, [feature(name=3)]), "(id 'Z1'): property 'name' must be a string")


# -- geometry -----------------------------------------------------------------------------


@pytest.mark.parametrize("gtype", ["LineString", "GeometryCollection", "MultiPoint", None])
def test_unsupported_geometry_type(tmp_path: Path, gtype: str | None) -> None:
    geom = {"type": gtype, "coordinates": [[LON0, LAT0], [LON0 + 0.01, LAT0]]}
    only(
        problems_of(tmp_path, [feature("Z1", geom)]),
        f"feature 0 (id 'Z1'): geometry type {gtype!r} is not supported",
        "Polygon, MultiPolygon, or Point with radius_m",
    )


def test_null_geometry(tmp_path: Path) -> None:
    f = feature()
    f["geometry"] = None
    only(problems_of(tmp_path, [f]), "feature 0 (id 'Z1'): has no geometry")


def test_unclosed_ring_is_caught_before_shapely_closes_it(tmp_path: Path) -> None:
    only(
        problems_of(tmp_path, [feature("home-A", polygon(UNCLOSED))]),
        "feature 0 (id 'home-A'): ring 0 (outer) is not closed",
        "first position [-0.121, 51.499] != last [-0.121, 51.5]",
    )


def test_ring_with_too_few_positions(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, [feature("Z2", polygon(TRIANGLE_OPEN))])
    assert len(problems) == 2, problems
    assert "(id 'Z2'): ring 0 (outer) has 3 positions; a ring needs at least 4" in problems[0]
    assert "(id 'Z2'): ring 0 (outer) is not closed" in problems[1]


def test_too_short_closed_ring(tmp_path: Path) -> None:
    ring = [[LON0, LAT0], [LON0 + 0.001, LAT0], [LON0, LAT0]]
    only(
        problems_of(tmp_path, [feature("Z1", polygon(ring))]),
        "feature 0 (id 'Z1'): ring 0 (outer) has 3 positions; a ring needs at least 4",
    )


def test_self_intersecting_ring_names_the_crossing(tmp_path: Path) -> None:
    only(
        problems_of(tmp_path, [feature("Z0"), feature("home-A", polygon(BOWTIE))]),
        "zones.geojson feature 1 (id 'home-A'): ring 0 (outer) is self-intersecting at "
        + BOWTIE_CROSSING,
    )


def test_zero_area_ring(tmp_path: Path) -> None:
    only(problems_of(tmp_path, [feature("Z1", polygon(COLLINEAR))]), "(outer) has zero area")


def test_hole_outside_shell(tmp_path: Path) -> None:
    hole = square(lon=LON0 + 0.01, half=0.0002)[::-1]
    only(
        problems_of(tmp_path, [feature("Z1", polygon(square(), hole))]),
        "feature 0 (id 'Z1'): a hole is not inside the outer ring at (",
    )


def test_hole_crossing_shell(tmp_path: Path) -> None:
    # a hole sticking out of the right edge (lon0 + 0.001) crosses it at lat0 +- 0.0002
    hole = [
        [LON0, LAT0 - 0.0002],
        [LON0, LAT0 + 0.0002],
        [LON0 + 0.002, LAT0 + 0.0002],
        [LON0 + 0.002, LAT0 - 0.0002],
        [LON0, LAT0 - 0.0002],
    ]
    p = only(problems_of(tmp_path, [feature("Z1", polygon(square(), hole))]), "rings cross")
    assert "-0.119" in p  # the crossing lies on the shell's right edge


def test_multipolygon_overlapping_parts(tmp_path: Path) -> None:
    geom = {"type": "MultiPolygon", "coordinates": [[square()], [square(lon=LON0 + 0.001)]]}
    only(problems_of(tmp_path, [feature("Z1", geom)]), "(id 'Z1'): polygons overlap or cross")


def test_multipolygon_part_problem_names_the_part(tmp_path: Path) -> None:
    geom = {"type": "MultiPolygon", "coordinates": [[square(lon=-0.2)], [BOWTIE]]}
    only(
        problems_of(tmp_path, [feature("Z1", geom)]),
        "(id 'Z1'): polygon 1 ring 0 (outer) is self-intersecting at " + BOWTIE_CROSSING,
    )


def test_malformed_positions(tmp_path: Path) -> None:
    ring = square()
    ring[2] = ["-0.1", 51.5]
    only(
        problems_of(tmp_path, [feature("Z1", polygon(ring))]),
        "(id 'Z1'): ring 0 (outer) position 2 is not a [lon, lat] position",
    )


def test_out_of_range_without_swap_hint(tmp_path: Path) -> None:
    p = only(
        problems_of(tmp_path, [feature("Z1", point(200.0, 10.0), radius_m=100)]),
        "(id 'Z1'): point [200.0, 10.0] is out of range",
    )
    assert "look like [lat, lon]" not in p


def test_swapped_lat_lon_out_of_range(tmp_path: Path) -> None:
    # Sydney written [lat, lon]: 151.2 cannot be a latitude, -33.9 can be a longitude
    ring = [[lat, lon] for lon, lat in square(lon=151.2, lat=-33.9)]
    only(
        problems_of(tmp_path, [feature("Z1", polygon(ring))]),
        "(id 'Z1'): ring 0 (outer) position 0 [-33.901, 151.199] is out of range",
        "(and 4 more bad positions in this ring)",
        "values look like [lat, lon]; GeoJSON is [lon, lat]",
    )


def test_swapped_lat_lon_in_range_found_from_other_features(tmp_path: Path) -> None:
    # London written [lat, lon] is in range (Indian Ocean); the other zones give it away
    swapped = [[lat, lon] for lon, lat in square(lon=-0.09, lat=51.52)]
    features = [
        feature("Z0"),
        feature("Z1", point(-0.15, 51.45), radius_m=100),
        feature("swapped", polygon(swapped)),
        feature("Z3", polygon(square(lon=-0.05, lat=51.56))),
    ]
    only(
        problems_of(tmp_path, features),
        "feature 2 (id 'swapped'): first position [51.519, -0.091] is far from",
        "values look like [lat, lon]; GeoJSON is [lon, lat]",
    )


def test_far_away_zone_is_not_mistaken_for_swapped(tmp_path: Path) -> None:
    features = [
        feature("Z0"),
        feature("Z1", point(-0.15, 51.45), radius_m=100),
        feature("madrid", polygon(square(lon=-3.70, lat=40.42))),
        feature("sydney", point(151.2, -33.9), radius_m=100),
    ]
    assert problems_of(tmp_path, features) == []


def test_non_finite_coordinates(tmp_path: Path) -> None:
    zones, subjects = write(tmp_path, [])
    ring = json.dumps(square()).replace(str(LAT0 + 0.001), "NaN", 1)
    zones.write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": '
        '{"id": "Z1", "subject": "S1", "kind": "exclusion"}, "geometry": '
        f'{{"type": "Polygon", "coordinates": [{ring}]}}}}]}}'
    )
    only(check(zones, subjects), "(id 'Z1'): ring 0 (outer) position 2 ", "non-finite")


def test_huge_number_is_non_finite(tmp_path: Path) -> None:
    zones, subjects = write(tmp_path, [feature("Z1", point(), radius_m=1)])
    zones.write_text(zones.read_text().replace('"radius_m": 1', '"radius_m": 1e400'))
    only(check(zones, subjects), "(id 'Z1'): radius_m must be a finite number")


# -- circles and distances ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["exclusion", "inclusion"])
def test_point_without_radius(tmp_path: Path, kind: str) -> None:
    only(
        problems_of(tmp_path, [feature("Z1", point(), kind=kind)]),
        "feature 0 (id 'Z1'): Point geometry needs radius_m > 0",
    )


@pytest.mark.parametrize(
    ("radius", "fragment"),
    [
        (0, "radius_m must be > 0, got 0"),
        (-5.5, "radius_m must be > 0, got -5.5"),
        ("500", "radius_m must be a number"),
        (True, "radius_m must be a number"),
    ],
)
def test_point_with_bad_radius(tmp_path: Path, radius: Any, fragment: str) -> None:
    only(problems_of(tmp_path, [feature("Z1", point(), radius_m=radius)]), "(id 'Z1'): " + fragment)


def test_radius_on_polygon_is_a_mistake(tmp_path: Path) -> None:
    only(
        problems_of(tmp_path, [feature("Z1", radius_m=100)]),
        "(id 'Z1'): radius_m applies only to Point geometry",
    )


@pytest.mark.parametrize(
    ("warn", "fragment"),
    [(-1, "warn_m must be >= 0, got -1"), ("far", "warn_m must be a number")],
)
def test_bad_warn_m(tmp_path: Path, warn: Any, fragment: str) -> None:
    only(problems_of(tmp_path, [feature("Z1", warn_m=warn)]), "feature 0 (id 'Z1'): " + fragment)


def test_zero_warn_m_is_fine(tmp_path: Path) -> None:
    assert problems_of(tmp_path, [feature("Z1", warn_m=0)]) == []


# -- schedules ----------------------------------------------------------------------------

GOOD_WINDOW = {"days": "Mon-Fri", "start": "19:00", "end": "07:00", "tz": "Europe/London"}


@pytest.mark.parametrize(
    ("schedule", "fragment"),
    [
        ("Mon-Fri 19:00-07:00", "schedule must be a list of windows"),
        ({"days": "Mon"}, "schedule must be a list of windows"),
        ([], "schedule is an empty list"),
        (["Mon"], "schedule[0] is str, expected an object"),
        ([{**GOOD_WINDOW, "days": "Mon-Thur"}], "schedule[0] days: unknown day 'Thur'"),
        ([{**GOOD_WINDOW, "days": ""}], "schedule[0] days: days is empty"),
        ([{**GOOD_WINDOW, "start": "7pm"}], "schedule[0] start: '7pm' is not a time of day"),
        ([{**GOOD_WINDOW, "end": "25:00"}], "schedule[0] end: '25:00' is not a time of day"),
        ([{**GOOD_WINDOW, "start": "24:00"}], "schedule[0] start: '24:00' is not a time"),
        ([{**GOOD_WINDOW, "start": "12:60"}], "schedule[0] start: '12:60' is not a time"),
        ([{**GOOD_WINDOW, "tz": "BST"}], "schedule[0] tz: unknown time zone 'BST'"),
        (
            [{**GOOD_WINDOW, "tz": "../etc/passwd"}],
            "schedule[0] tz: unknown time zone '../etc/passwd'",
        ),
        ([{**GOOD_WINDOW, "start": 1900}], "schedule[0] 'start' must be a string"),
        ([GOOD_WINDOW, {"days": "Sat", "start": "19:00"}], "schedule[1] missing 'end', 'tz'"),
    ],
)
def test_bad_schedule(tmp_path: Path, schedule: Any, fragment: str) -> None:
    only(
        problems_of(tmp_path, [feature("curfew", kind="inclusion", schedule=schedule)]),
        "feature 0 (id 'curfew'): " + fragment,
    )


def test_schedule_window_with_several_faults_lists_each(tmp_path: Path) -> None:
    bad = {"days": "Mon-Fri", "start": "7pm", "end": "07:00", "tz": "Mars/Olympus"}
    problems = problems_of(tmp_path, [feature("curfew", schedule=[bad])])
    assert len(problems) == 2, problems
    assert "start: '7pm'" in problems[0] and "unknown time zone 'Mars/Olympus'" in problems[1]


def test_end_2400_means_midnight(tmp_path: Path) -> None:
    window = {**GOOD_WINDOW, "days": "Fri-Mon", "start": "20:00", "end": "24:00"}
    zones = load(*write(tmp_path, [feature("Z1", schedule=[window])])).zones
    assert zones[0].schedule == (Window(frozenset({4, 5, 6, 0}), 20 * 60, 0, "Europe/London"),)


# -- subjects TOML ------------------------------------------------------------------------


def subject_problems(tmp_path: Path, subjects: str) -> list[str]:
    """Problems with a zones file whose one zone binds S1 (so only subject faults show)."""
    return problems_of(tmp_path, [feature()], subjects)


def test_subjects_not_toml_names_line_and_column(tmp_path: Path) -> None:
    problems = subject_problems(tmp_path, '[[subjects]]\nid = "S1\ntags = ["T1"]\n')
    # the zones file's subject check is skipped: the ids are unknown, not wrong
    only(problems, "subjects.toml: not valid TOML", "line 2, column")


def test_missing_subjects_file(tmp_path: Path) -> None:
    zones, _ = write(tmp_path, [feature()])
    only(check(zones, tmp_path / "absent.toml"), "absent.toml: file not found")


def test_no_subjects_tables(tmp_path: Path) -> None:
    only(
        subject_problems(tmp_path, '[[subject]]\nid = "S1"\ntags = ["T1"]\n'),
        "subjects.toml: no [[subjects]] tables (found 'subject')",
    )


@pytest.mark.parametrize(
    ("toml", "fragments"),
    [
        ('[[subjects]]\ntags = ["T1"]', ("subject 0 (no id): missing 'id'",)),
        ('[[subjects]]\nid = 5\ntags = ["T1"]', ("subject 0 (no id): id must be a non-empty",)),
        ('[[subjects]]\nid = "S1"', ("subject 0 (id 'S1'): missing 'tags'",)),
        ('[[subjects]]\nid = "S1"\ntags = "T1"', ("(id 'S1'): tags must be a list of non-empty",)),
        ('[[subjects]]\nid = "S1"\ntags = ["T1", 2]', ("(id 'S1'): tags must be a list",)),
        ('[[subjects]]\nid = "S1"\ntags = []', ("(id 'S1'): tags is empty",)),
        ('[[subjects]]\nid = "S1"\ntags = [1979-05-27]', ('got ["1979-05-27"]',)),
        ('[[subjects]]\nid = "S1"\ntags = ["T1", "T1"]', ("tag 'T1' is listed more than once",)),
        ('[[subjects]]\nid = "S1"\ntags = ["a/b"]', ("tag 'a/b' contains '/'",)),
        ('[[subjects]]\nid = "S+1"\ntags = ["T1"]', ("(id 'S+1'): id contains '+'",)),
        ('[[subjects]]\nid = "S1"\ntags = ["T1"]\nrisk = 0', ("risk must be a whole number >= 1",)),
        ('[[subjects]]\nid = "S1"\ntags = ["T1"]\nrisk = 2.5', ("risk must be a whole number",)),
        ('[[subjects]]\nid = "S1"\ntags = ["T1"]\nteam = ""', ("team must be a name of 1-64",)),
        ('[[subjects]]\nid = "S1"\ntags = ["T1"]\nteam = 3', ("team must be a name",)),
        ('[[subjects]]\nid = "S1"\ntags = ["T1"]\nteam = " n"', ("team must be a name",)),
        ('[[subjects]]\nid = "S1"\ntags = ["T1"]\nteam = "a\\tb"', ("team must be a name",)),
    ],
)
def test_bad_subject(tmp_path: Path, toml: str, fragments: tuple[str, ...]) -> None:
    problems = subject_problems(tmp_path, toml + "\n")
    # a subject without a usable id also leaves zone Z1's subject 'S1' unknown
    problems = [p for p in problems if "zones.geojson" not in p]
    only(problems, "subjects.toml subject 0 ", *fragments)


def test_subject_team_is_read(tmp_path: Path) -> None:
    """A subject may name the team of monitors whose caseload it is (the console's)."""
    subj = tmp_path / "subjects.toml"
    subj.write_text(SUBJECTS.replace('id = "S2"', 'id = "S2"\nteam = "north"'))
    by_id = {s.id: s for s in load_subjects(subj)}
    assert by_id["S1"].team is None and by_id["S2"].team == "north"


def test_duplicate_subject_id(tmp_path: Path) -> None:
    toml = SUBJECTS + '\n[[subjects]]\nid = "S1"\ntags = ["T9"]\n'
    only(
        subject_problems(tmp_path, toml),
        "subjects.toml subject 2 (id 'S1'): duplicate subject id (also subject 0)",
    )


def test_tag_worn_by_two_subjects(tmp_path: Path) -> None:
    toml = SUBJECTS + '\n[[subjects]]\nid = "S3"\ntags = ["T3", "T2"]\n'
    only(
        subject_problems(tmp_path, toml),
        "subjects.toml subject 2 (id 'S3'): tag 'T2' is also worn by subject 1 (id 'S2')",
    )


PROTECTED = '[[subjects]]\nid = "S1"\ntags = ["T1"]\n[[subjects.protected]]\n'


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("radius_m = 500", "protected 0 (no device): missing 'device'"),
        ('device = ""\nradius_m = 500', "protected 0 (no device): device must be a non-empty"),
        ('device = "alice/phone"', "protected 0 (device 'alice/phone'): missing 'radius_m'"),
        ('device = "P1"\nradius_m = 0', "protected 0 (device 'P1'): radius_m must be > 0, got 0"),
        ('device = "P1"\nradius_m = -3', "protected 0 (device 'P1'): radius_m must be > 0"),
        ('device = "P1"\nradius_m = "500"', "protected 0 (device 'P1'): radius_m must be a number"),
        (
            'device = "P1"\nradius_m = nan',
            "protected 0 (device 'P1'): radius_m must be a finite number",
        ),
        (
            'device = "P1"\nradius_m = 500\nwarn_m = -1',
            "protected 0 (device 'P1'): warn_m must be >= 0",
        ),
        ('device = "P#1"\nradius_m = 500', "protected 0 (device 'P#1'): device id contains '#'"),
    ],
)
def test_bad_protected_device(tmp_path: Path, body: str, fragment: str) -> None:
    only(
        subject_problems(tmp_path, PROTECTED + body + "\n"),
        "subjects.toml subject 0 (id 'S1') " + fragment,
    )


def test_protected_device_listed_twice(tmp_path: Path) -> None:
    toml = (
        PROTECTED
        + 'device = "P1"\nradius_m = 5\n[[subjects.protected]]\ndevice = "P1"\nradius_m = 9\n'
    )
    only(
        subject_problems(tmp_path, toml),
        "(id 'S1'): protected device 'P1' is listed more than once",
    )


def test_protected_device_that_is_a_tag(tmp_path: Path) -> None:
    toml = SUBJECTS + '[[subjects.protected]]\ndevice = "T1"\nradius_m = 500\n'
    only(
        subject_problems(tmp_path, toml),
        "subjects.toml subject 1 (id 'S2') protected 0 (device 'T1'): device id is also a tag "
        "worn by subject 0 (id 'S1')",
    )


def test_valid_subjects(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        '[[subjects]]\nid = "S1"\ntags = ["T1", "T1b"]\nrisk = 3\n'
        '[[subjects.protected]]\ndevice = "alice/phone"\nradius_m = 500\nwarn_m = 1000\n'
        '[[subjects]]\nid = "S2"\ntags = ["T2"]\n'
    )
    s1, s2 = load_subjects(path)
    assert (s1.id, s1.tags, s1.risk) == ("S1", ("T1", "T1b"), 3)
    assert [(p.device, p.radius_m, p.warn_m) for p in s1.protected] == [
        ("alice/phone", 500.0, 1000.0)
    ]
    assert (s2.risk, s2.protected) == (1, ())


# -- collecting and raising ---------------------------------------------------------------


def test_every_problem_is_collected(tmp_path: Path) -> None:
    features = [
        feature("ok"),
        feature("home-A", polygon(BOWTIE), subject="S9"),
        feature(None, point()),
        feature("ok", kind="curfew", schedule=[{**GOOD_WINDOW, "tz": "Europe/Londn"}]),
    ]
    subjects = SUBJECTS + '\n[[subjects]]\nid = "S3"\ntags = []\n'
    zones_path, subjects_path = write(tmp_path, features, subjects)
    problems = check(zones_path, subjects_path)
    expected = [
        "subjects.toml subject 2 (id 'S3'): tags is empty",
        "feature 1 (id 'home-A'): subject 'S9' is not in",
        "feature 1 (id 'home-A'): ring 0 (outer) is self-intersecting at " + BOWTIE_CROSSING,
        "feature 2 (no id): missing property 'id'",
        "feature 2 (no id): Point geometry needs radius_m",
        "feature 3 (id 'ok'): kind 'curfew' is not",
        "feature 3 (id 'ok'): schedule[0] tz: unknown time zone 'Europe/Londn'",
        "feature 3 (id 'ok'): duplicate zone id (also feature 0)",
    ]
    assert len(problems) == len(expected), problems
    for fragment, problem in zip(expected, problems, strict=True):
        assert fragment in problem
    assert all(p.startswith((str(zones_path), str(subjects_path))) for p in problems)
    with pytest.raises(ZoneError) as info:
        load(zones_path, subjects_path)
    assert info.value.problems == problems
    message = str(info.value)
    assert message.startswith(f"8 problems in {zones_path} and {subjects_path}:\n")
    assert all(p in message for p in problems)


def test_long_problem_lists_are_cut_in_the_message_only(tmp_path: Path) -> None:
    features = [feature(f"Z{i}", kind="bad") for i in range(60)]
    with pytest.raises(ZoneError) as info:
        load(*write(tmp_path, features))
    assert len(info.value.problems) == 60
    assert str(info.value).startswith("60 problems in ")
    assert str(info.value).endswith("  ... and 10 more")


def test_load_zones_and_load_subjects_raise_zone_error(tmp_path: Path) -> None:
    zones_path, subjects_path = write(tmp_path, [feature("Z1", subject="S3")], "x = [")
    with pytest.raises(ZoneError, match=r"^1 problem in .*subjects\.toml:\n.*not valid TOML"):
        load_subjects(subjects_path)
    with pytest.raises(ZoneError) as info:
        load_zones(zones_path, [Subject("S1", ("T1",))], "subjects.toml")
    only(info.value.problems, "feature 0 (id 'Z1'): subject 'S3' is not in subjects.toml")
    zones = load_zones(zones_path, [Subject("S3", ("T3",))])
    assert [z.id for z in zones] == ["Z1"]


def test_check_on_valid_files_is_empty(tmp_path: Path) -> None:
    assert problems_of(tmp_path, [feature("Z1"), feature("Z2", point(), radius_m=math.pi)]) == []
