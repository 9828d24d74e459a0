"""The plain TOML reader and the plain-subject check of zones/subjects.py against tomllib
and the full check: the same document, the same subjects, the same problems."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zones import subjects as subjects_mod
from zones.subjects import plain_toml, read_subjects_file

HEADERS = ["[[subjects]]", "[[subjects.protected]]", "[[gateways]]", "  [[subjects]]\t",
           "[subjects]", "[[ subjects ]]", "[[subjects]] # x"]  # fmt: skip
KEYS = ["id", "tags", "risk", "team", "device", "radius_m", "warn_m", "warn", "protected",
        "warn_protected", "valid_from", "x-y", "a.b", '"id"']  # fmt: skip
SCALARS = ["0", "-0", "1", "01", "+1", "1_000", "123456789012345678", "1234567890123456789",
           "1.5", "-0.0", "1.", ".5", "1e5", "inf", "nan", "true", "false", "True",
           "2026-01-01T00:00:00Z", "'lit'", '""', '"a\\"b"', '"S1"', '"T/1"', '"x" # c',
           "{a = 1}"]  # fmt: skip
string = st.text(max_size=6).map(lambda s: f'"{s}"')
scalar = st.sampled_from(SCALARS) | string
array = st.lists(scalar, max_size=3).flatmap(
    lambda xs: st.sampled_from([", ", ",", " , "]).flatmap(
        lambda sep: st.sampled_from(["[{}]", "[ {} ]", "[{},]", "[\n{}]"]).map(
            lambda f: f.format(sep.join(xs))
        )
    )
)
key_value = st.builds(
    lambda k, sep, v: f"{k}{sep}{v}",
    st.sampled_from(KEYS),
    st.sampled_from([" = ", "=", " =\t", "\t= "]),
    scalar | array,
)
good_string = st.text(
    st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters='"\\'), max_size=5
).map(lambda s: f'"{s}"')
good_scalar = good_string | st.sampled_from(["0", "7", "-3", "1.5", "-0.0", "true", "false"])
good_line = st.one_of(
    st.sampled_from(HEADERS[:3]),
    st.builds(
        lambda k, v: f"{k} = {v}",
        st.sampled_from(KEYS[:11]),
        good_scalar | st.lists(good_scalar, max_size=3).map(lambda xs: f"[{', '.join(xs)}]"),
    ),
)
line = st.one_of(
    st.sampled_from(HEADERS), key_value, key_value, key_value,
    st.sampled_from(["", "  ", "# note", "#\x01", "\x0c", "\r"]), st.text(max_size=4),
)  # fmt: skip


@st.composite
def document(draw: st.DrawFn) -> str:
    lines = draw(st.lists(good_line, max_size=12))
    for _ in range(draw(st.integers(0, 2))):  # sometimes something off the plain way
        lines.insert(draw(st.integers(0, len(lines))), draw(line))
    if draw(st.booleans()):
        lines.insert(0, "[[subjects]]")
    return draw(st.sampled_from(["\n", "\r\n"])).join(lines) + draw(st.sampled_from(["", "\n"]))


def _plain_subjects(n: int) -> str:
    out = []
    for i in range(n):
        out += ["[[subjects]]", f'id = "S{i}"', f'tags = ["T{i}", "U{i}"]', f"risk = {1 + i % 3}"]
        if i % 4 == 1:
            out += ["[[subjects.protected]]", f'device = "P{i}"', "radius_m = 500.5"]
    return "\n".join(out) + "\n"


FUZZ = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(text=document())
def test_plain_toml_reads_what_tomllib_reads(text: str) -> None:
    try:
        expected: Any = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError):
        expected = None
    got = plain_toml(text)
    assert got is None or got == expected


def test_a_plain_file_takes_the_plain_reader() -> None:
    text = _plain_subjects(50) + '[[gateways]]\nid = "G1"\ntags = ["T1", "T2"]\n'
    assert plain_toml(text) == tomllib.loads(text)


def _read_both(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    fast = read_subjects_file(path)
    with monkeypatch.context() as m:
        m.setattr(subjects_mod, "plain_toml", lambda text: None)
        m.setattr(subjects_mod, "_plain_subject", lambda raw: None)
        m.setattr(subjects_mod, "_nothing_to_cross", lambda raw: False)
        slow = read_subjects_file(path)
    return fast, slow


@FUZZ
@given(text=document())
def test_subjects_read_the_same_either_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    path = tmp_path / "subjects.toml"
    path.write_text(text, encoding="utf-8")
    fast, slow = _read_both(path, monkeypatch)
    assert fast == slow


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ('id = "S1"\ntags = ["T9"]', "subject 2 (id 'S1'): duplicate subject id (also subject 1)"),
        ('id = "S9"\ntags = ["T1"]', "tag 'T1' is also worn by subject 1 (id 'S1')"),
        (
            'id = "S9"\ntags = ["T9", "T9"]',
            "subject 2 (id 'S9'): tag 'T9' is listed more than once",
        ),
        ('id = "S/9"\ntags = ["T9"]', "subject 2 (id 'S/9'): id contains '/'"),
        ('id = "S9"\ntags = ["T9"]\nrisk = 0', "subject 2 (id 'S9'): risk must be a whole number"),
        ('id = "S9"\ntags = []', "subject 2 (id 'S9'): tags is empty"),
    ],
)
def test_problems_keep_their_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str, words: str
) -> None:
    path = tmp_path / "subjects.toml"
    path.write_text(_plain_subjects(2) + "[[subjects]]\n" + extra + "\n", encoding="utf-8")
    fast, slow = _read_both(path, monkeypatch)
    assert fast == slow
    assert any(words in p for p in fast[3]), fast[3]


ids = st.sampled_from(["S1", "T1", "", " ", "a/b", "a+b", "x#", "n\x00", "é"]) | st.integers()


@FUZZ
@given(
    raw=st.fixed_dictionaries(
        {},
        optional={
            "id": ids,
            "tags": st.lists(ids, max_size=3) | ids,
            "risk": st.sampled_from([0, 1, 2, True, 1.0, -1, "1"]),
            "team": st.just("north"),
        },
    )
)
def test_a_plain_subject_is_one_the_full_check_passes(
    monkeypatch: pytest.MonkeyPatch, raw: dict[str, Any]
) -> None:
    plain = subjects_mod._plain_subject(raw)
    out: list[str] = []
    with monkeypatch.context() as m:
        m.setattr(subjects_mod, "_plain_subject", lambda raw: None)
        full = subjects_mod._subject("s.toml", 0, raw, out)
    if plain is not None:
        assert out == [] and full == (plain, plain.id)


table = st.fixed_dictionaries(
    {},
    optional={
        "id": st.sampled_from(["S1", "S2", "S3"]) | st.integers(0, 1),
        "tags": st.lists(st.sampled_from(["T1", "T2", "T3", "P1"]) | st.just(1), max_size=2),
        "protected": st.lists(
            st.fixed_dictionaries({}, optional={"device": st.sampled_from(["P1", "T1", 2])})
            | st.just(3),
            max_size=2,
        )
        | st.just("P1"),
    },
)


@FUZZ
@given(raw=st.lists(table | st.just([]), max_size=4))
def test_nothing_to_cross_means_the_cross_check_finds_nothing(raw: list[Any]) -> None:
    out: list[str] = []
    if subjects_mod._nothing_to_cross(raw):
        subjects_mod._cross_check_all("s.toml", raw, out)
        assert out == []
