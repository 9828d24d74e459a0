"""The gateway topic (tagwatch/v1/gateway/{gw}/fixes): many tags' fixes in one message, as a
JSON or a msgpack array, and a gateway speaks only for the tags the subjects file assigns it
([[gateways]]). Decoding, the subjects file, and `tagwatch serve` through a real mosquitto."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.store.sqlite import SqliteStore
from engine.wire.decode import decode_message
from engine.wire.records import EventRecord, FixRecord
from tests.helpers import AlertCollector, EngineProcess, fix, publish, wait_online, write_world
from zones.subjects import read_subjects_file

TOPIC = "tagwatch/v1/gateway/GW1/fixes"
ALLOWED = {"GW1": frozenset({"T1", "T2"})}
SUBJECTS = """
[[subjects]]
id = "S1"
tags = ["T1"]

[[subjects]]
id = "S2"
tags = ["T2", "T3"]

[[gateways]]
id = "GW1"
tags = ["T1", "T2"]
"""


def el(tag: str, seq: int, t: float = 1.7e9, dx: float = 0.0, **extra: Any) -> dict[str, Any]:
    return {"tag": tag, **fix(seq, t, dx, 0.0), **extra}


# -- decoding ------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["json", "msgpack"])
def test_a_batch_gives_every_tags_records_in_order(form: str) -> None:
    batch = [el("T1", 1), el("T2", 1), {"tag": "T1", "type": "event", "seq": 2, "t": 1.7e9 + 1,
                                          "event": "strap_open"}, el("T2", 2)]  # fmt: skip
    body = json.dumps(batch).encode() if form == "json" else msgspec.msgpack.encode(batch)
    recs, dead = decode_message(TOPIC, body, gateways=ALLOWED)
    assert dead == []
    assert [(r.device, r.seq, type(r)) for r in recs] == [
        ("T1", 1, FixRecord), ("T2", 1, FixRecord), ("T1", 2, EventRecord), ("T2", 2, FixRecord)
    ]  # fmt: skip


@pytest.mark.parametrize("form", ["json", "msgpack"])
def test_an_element_for_a_tag_not_assigned_is_a_dead_letter_and_the_rest_go_on(form: str) -> None:
    batch = [el("T1", 1), el("T3", 1), el("T2", 1), {"tag": "T2", "seq": 2}]
    body = json.dumps(batch).encode() if form == "json" else msgspec.msgpack.encode(batch)
    recs, dead = decode_message(TOPIC, body, gateways=ALLOWED)
    assert [(r.device, r.seq) for r in recs] == [("T1", 1), ("T2", 1)]
    assert [d.reason.split(":")[0] for d in dead] == ["gateway[1]", "gateway[3]"]
    assert "gateway 'GW1' may not speak for tag 'T3'" in dead[0].reason
    assert "missing field 't'" in dead[1].reason
    assert all(d.device == "GW1" and d.origin == TOPIC for d in dead)


@pytest.mark.parametrize(
    ("topic", "body", "gateways", "says"),
    [
        (TOPIC, b'[{"tag": "T1"}]', None, "not in the subjects file's [[gateways]]"),
        ("tagwatch/v1/gateway/GW9/fixes", b"[]", ALLOWED, "'GW9' is not in the subjects file"),
        (TOPIC, b'{"tag": "T1"}', ALLOWED, "must be a JSON array or a msgpack array"),
        (TOPIC, b"[1, 2", ALLOWED, "not valid JSON"),
        (TOPIC, b"\x92\xc1", ALLOWED, "not valid msgpack"),
        ("tagwatch/v1/gateway/GW1/fix", b"[]", ALLOWED, "unknown topic"),
        (TOPIC, b"[" + b'{"tag": "T1"},' * 30_000 + b"{}]", ALLOWED, "exceeds the 262144-byte"),
    ],
)
def test_a_bad_batch_is_one_dead_letter_saying_why(
    topic: str, body: bytes, gateways: Any, says: str
) -> None:
    recs, dead = decode_message(topic, body, gateways=gateways)
    assert recs == [] and len(dead) == 1 and says in dead[0].reason, dead


# -- the subjects file ----------------------------------------------------------------------


def test_gateways_are_read_from_the_subjects_file(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    p.write_text(SUBJECTS)
    _, _, gateways, problems = read_subjects_file(p)
    assert problems == [] and [(g.id, g.tags) for g in gateways] == [("GW1", ("T1", "T2"))]


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ('[[gateways]]\nid = "G"\ntags = ["T9"]\n', "tag 'T9' is no subject's tag"),
        ('[[gateways]]\ntags = ["T1"]\n', "missing 'id'"),
        ('[[gateways]]\nid = "G/1"\ntags = ["T1"]\n', "id contains '/'"),
        ('[[gateways]]\nid = "G"\ntags = []\n', "tags must be a non-empty list"),
        ('[[gateways]]\nid = "G"\ntags = ["T1"]\nsite = "x"\n', "unknown key 'site'"),
        ('[[gateways]]\nid = "G"\ntags = ["T1"]\n[[gateways]]\nid = "G"\ntags = ["T2"]\n',
         "duplicate gateway id"),
        ('gateways = "G"\n', "'gateways' must be an array of tables"),
    ],
)  # fmt: skip
def test_a_wrong_gateway_table_is_a_problem_naming_it(
    tmp_path: Path, table: str, says: str
) -> None:
    p = tmp_path / "s.toml"
    head = SUBJECTS.split("[[gateways]]")[0]
    # a bare key must come before the first [[subjects]] table, or it would be that table's
    p.write_text(table + head if table.startswith("gateways =") else head + table)
    problems = read_subjects_file(p)[3]
    assert any(says in q for q in problems), problems


# -- live, through a real broker --------------------------------------------------------------


@pytest.mark.mqtt
@pytest.mark.timeout(120)
def test_serve_takes_gateway_batches_and_refuses_foreign_tags(mosquitto, tmp_path: Path) -> None:
    zones, subjects = write_world(tmp_path, subjects_toml=SUBJECTS)
    db = tmp_path / "tw.db"
    t0 = float(int(time.time()) - 3600)
    walk = [(-400, 0), (-250, 0), (-40, 10), (20, -5)]  # T1 walks into Z1 (S1's)
    json_batch = [el("T1", i, t0 + 60 * i, dx) for i, (dx, _) in enumerate(walk[:2])]
    json_batch.append(el("T3", 1, t0, 5000.0))  # not GW1's to speak for
    mp_batch = [el("T1", i + 2, t0 + 60 * (i + 2), dx) for i, (dx, _) in enumerate(walk[2:])]
    msgs = [(TOPIC, json.dumps(json_batch).encode()), (TOPIC, msgspec.msgpack.encode(mp_batch))]

    async def scenario() -> list:  # type: ignore[type-arg]
        async with AlertCollector(mosquitto.host, mosquitto.port) as col:
            await wait_online(mosquitto.host, mosquitto.port)
            await publish(mosquitto.host, mosquitto.port, msgs)
            return await col.wait_for(lambda got: any(a.kind == "zone_breach" for a in got))

    with EngineProcess(mosquitto.host, mosquitto.port, zones, subjects, db) as eng:
        alerts = asyncio.run(scenario())
        assert eng.stop() == 0, eng.log_text()
    breach = next(a for a in alerts if a.kind == "zone_breach")
    assert breach.tag == "T1" and breach.subject == "S1" and breach.zone == "Z1"
    with SqliteStore(db) as st:
        dead = st.dead_letters()
    assert [d.reason for d in dead] == ["gateway[2]: gateway 'GW1' may not speak for tag 'T3'"], (
        dead
    )


# -- properties ------------------------------------------------------------------------------

_elements = st.lists(
    st.fixed_dictionaries({
        "tag": st.sampled_from(["T1", "T2", "T3"]),
        "seq": st.integers(0, 2**40),
        "t": st.floats(1.0e9, 4.0e9),
        "lat": st.floats(-90, 90),
        "lon": st.floats(-180, 180),
        "acc": st.one_of(st.floats(0.5, 5000), st.just(0.0), st.just(-1.0)),
    }),
    max_size=30,
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(_elements)
def test_json_and_msgpack_batches_decode_alike(batch: list[dict[str, Any]]) -> None:
    a = decode_message(TOPIC, json.dumps(batch).encode(), gateways=ALLOWED)
    b = decode_message(TOPIC, msgspec.msgpack.encode(batch), gateways=ALLOWED)
    assert a[0] == b[0] and [d.reason for d in a[1]] == [d.reason for d in b[1]]
    # every element is accounted for: a record or a dead letter, in order
    assert len(a[0]) + len(a[1]) == len(batch)
    assert all(r.device in ALLOWED["GW1"] for r in a[0])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_records_or_dead_letters_never_an_error(body: bytes) -> None:
    recs, dead = decode_message(TOPIC, body, gateways=ALLOWED)
    assert all("internal decode error" not in d.reason for d in dead)
    assert recs or dead or body.strip() in (b"[]", b"\x90")


@pytest.mark.mqtt
@pytest.mark.timeout(180)
def test_two_shards_each_keep_their_own_tags_of_a_msgpack_batch(mosquitto, tmp_path: Path) -> None:
    """Twelve subjects a tag on one gateway, their fixes in msgpack batches (read by the
    columnar kernel) through `serve --shard 0/2` and `1/2`: each shard's ledger holds
    every fix of its own tags and none of the other's, each walk-in is breached once by
    the shard that owns it, and neither dead-letters the other's elements."""
    import sqlite3

    from engine.store.sql.open import shard_target
    from tests.helpers import ledger_records, square
    from zones.shard import Shard

    tags = [f"T{k}" for k in range(12)]
    feats = [{
        "type": "Feature",
        "properties": {"id": f"Z{t}", "subject": f"S{t}", "kind": "exclusion"},
        "geometry": {"type": "Polygon", "coordinates": [square(100.0, cx=3000.0 * k)]},
    } for k, t in enumerate(tags)]  # fmt: skip
    subjects = "".join(f'[[subjects]]\nid = "S{t}"\ntags = ["{t}"]\n\n' for t in tags)
    subjects += f'[[gateways]]\nid = "GW1"\ntags = {json.dumps(tags)}\n'
    zones, subj = write_world(tmp_path, feats, subjects)
    t0 = float(int(time.time()) - 3600)
    walk = [-400.0, -250.0, -40.0, 20.0]  # every tag walks into its own zone
    batches = [
        [el(t, i, t0 + 60 * i, 3000.0 * k + dx, batt=90 - i) if k % 3 else el(t, i, t0 + 60 * i,
         3000.0 * k + dx) for k, t in enumerate(tags)]
        for i, dx in enumerate(walk)
    ]  # fmt: skip
    msgs = [(TOPIC, msgspec.msgpack.encode(b)) for b in batches]
    db = tmp_path / "tw.db"
    owner = {t: next(i for i in range(2) if Shard(i, 2).owns(f"S{t}")) for t in tags}
    assert set(owner.values()) == {0, 1}

    async def scenario() -> list:  # type: ignore[type-arg]
        async with AlertCollector(mosquitto.host, mosquitto.port) as col:
            for i in range(2):
                await wait_online(mosquitto.host, mosquitto.port,
                                  topic=f"tagwatch/v1/engine/status/{i}-of-2")  # fmt: skip
            await publish(mosquitto.host, mosquitto.port, msgs)
            return await col.wait_for(
                lambda got: len({a.tag for a in got if a.kind == "zone_breach"}) == len(tags)
            )

    engines = [
        EngineProcess(
            mosquitto.host, mosquitto.port, zones, subj, db, extra_args=["--shard", f"{i}/2"]
        )
        for i in range(2)
    ]
    for eng in engines:
        eng.start()
    try:
        alerts = asyncio.run(scenario())
    finally:
        rcs = [eng.stop() for eng in engines]
    assert rcs == [0, 0], [e.log_text()[-2000:] for e in engines]
    breaches = [a for a in alerts if a.kind == "zone_breach" and a.state == "open"]
    assert sorted(a.tag for a in breaches) == sorted(tags)  # each once
    for i in range(2):
        con = sqlite3.connect(shard_target(str(db), i, 2))
        try:
            got = sorted((d, s) for d, s, k, _ in ledger_records(con) if k == "fix")
            dead = con.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]
        finally:
            con.close()
        mine = sorted((t, s) for t in tags if owner[t] == i for s in range(len(walk)))
        assert got == mine, f"shard {i}"
        assert dead == 0
