"""The ledger's records rows (a batch step's records in one row, `ledger_rows = "step"`)
and their device index (engine/store/records/index.py) against the row per record
(`ledger_rows = "record"`), which they replace: the same steps give the same recovery,
the same device reads, the same export, and a proof of any one record."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.cli.main import main
from engine.store import ledger
from engine.store.ledger import Step, replay_steps
from engine.store.reading import LedgerReader
from engine.store.records.index import device_records, index_n
from engine.store.sqlite import SqliteStore
from engine.wire.records import EventRecord, FixRecord

DEVICES = ["T1", "T2", "T3", 'we"ird', "T10"]


def _records(draw_ids: list[tuple[int, int, bool]], t0: float) -> list[FixRecord | EventRecord]:
    out: list[FixRecord | EventRecord] = []
    for k, (d, seq, event) in enumerate(draw_ids):
        dev, t = DEVICES[d], t0 + k * 0.5
        if event:
            out.append(EventRecord(dev, seq, t, "strap_open", batt=50))
        else:
            out.append(FixRecord(dev, seq, t, 51.5 + k * 1e-4, -0.1, 8.0, 80, "gps", boot=1))
    return out


batches = st.lists(
    st.lists(
        st.tuples(st.integers(0, len(DEVICES) - 1), st.integers(0, 40), st.booleans()),
        max_size=12,
    ),
    min_size=1,
    max_size=8,
)


def _write(path: Path, rows: str, steps: list[Step], per_commit: int, **kw: object) -> None:
    s = SqliteStore(path, ledger_rows=rows, **kw)  # type: ignore[arg-type]
    try:
        for k in range(0, len(steps), per_commit):
            s.commit([], [], steps=steps[k : k + per_commit])
    finally:
        s.close()


def _steps(spec: list[list[tuple[int, int, bool]]]) -> list[Step]:
    out = []
    for k, b in enumerate(spec):
        t0 = 1_700_000_000.0 + 100 * k
        out.append(Step("batch", t0 + 60, _records(b, t0)))
        if k % 3 == 2:
            out.append(Step("tick", t0 + 90))
    return out


def _reads(db: Path) -> dict[str, object]:
    con = sqlite3.connect(db)
    try:
        got: dict[str, object] = {}
        for d in DEVICES:
            base = 1_700_000_000.0
            got[d] = [
                [(f.kind, f.seq, f.t, f.body) for f in device_records(con, d, **q)]  # type: ignore[arg-type]
                for q in (
                    {},
                    {"fixes_only": True},
                    {"seq": 3},
                    {"t0": base + 101, "t1": base + 403},
                    {"newest": 4},
                    {"newest": 1, "fixes_only": True},
                )
            ]
        got["steps"] = [
            (s.kind, s.now, list(s.records), s.refused) for s in replay_steps(con, 0, page=7)
        ]
        return got
    finally:
        con.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches, st.integers(1, 3), st.integers(1, 30))
def test_records_rows_read_as_rows_per_record(tmp_path: Path, spec, per_commit, most) -> None:
    """Whatever the flushes left filed or in the tail, every read is the same."""
    steps = _steps(spec)
    d = Path(tempfile.mkdtemp(dir=tmp_path))
    _write(d / "rec.db", "record", steps, per_commit)
    _write(d / "step.db", "step", steps, per_commit, ledger_index_s=3600.0, ledger_index_max=most)
    assert _reads(d / "step.db") == _reads(d / "rec.db")


def _export(db: Path, out: Path, *extra: str) -> bytes:
    assert main(["audit", "export", "--db", str(db), "--out", str(out), *extra]) == 0
    return out.read_bytes()


def test_export_verify_and_a_proof_of_one_record(tmp_path: Path, capsys) -> None:
    spec = [[(k % 5, k // 5, k % 7 == 3) for k in range(40)] for _ in range(6)]
    steps = _steps(spec)
    _write(tmp_path / "rec.db", "record", steps, 2)
    _write(tmp_path / "step.db", "step", steps, 2, ledger_index_max=50)
    for extra in ((), ("--device", "T2"), ("--since", "1700000150", "--until", "1700000320")):
        a = _export(tmp_path / "rec.db", tmp_path / "a.jsonl", *extra)
        b = _export(tmp_path / "step.db", tmp_path / "b.jsonl", *extra)
        assert a == b and a, extra
    assert main(["audit", "verify", "--db", str(tmp_path / "step.db")]) == 0
    said = capsys.readouterr().out
    assert "event 36" in said and "fix 204" in said and "records 6" in said, said

    with LedgerReader(str(tmp_path / "step.db")) as rd:
        row = rd.evidence("T2", 3, None)
        assert row is not None and row.i >= 0 and row.of == 40 and row.device == "T2"
        got = ledger.shown_hash(row.prev, row.n, row.step, row.body, row.i, row.of, row.path)
        assert got == row.hash
        # another body, or another line number, proves nothing
        assert (
            ledger.shown_hash(row.prev, row.n, row.step, row.body + b" ", row.i, row.of, row.path)
            != row.hash
        )
        assert (
            ledger.shown_hash(row.prev, row.n, row.step, row.body, row.i ^ 1, row.of, row.path)
            != row.hash
        )
        track = rd.fixes("T2", 1_700_000_000.0, 1_700_000_250.0)
        assert [r.seq for r in track] == [r.seq for r in track if r.kind == "fix"] and len(
            track
        ) == 21


def test_a_changed_line_in_a_records_row_breaks_the_chain(tmp_path: Path, capsys) -> None:
    steps = _steps([[(k % 3, k, False) for k in range(10)] for _ in range(3)])
    _write(tmp_path / "s.db", "step", steps, 1)
    con = sqlite3.connect(tmp_path / "s.db")
    (n, body) = con.execute(
        "SELECT n, body FROM ledger WHERE kind = 'records' ORDER BY n LIMIT 1 OFFSET 1"
    ).fetchone()
    con.execute(
        "UPDATE ledger SET body = ? WHERE n = ?", (bytes(body).replace(b'"seq":4', b'"seq":5'), n)
    )
    con.commit()
    con.close()
    assert main(["audit", "verify", "--db", str(tmp_path / "s.db")]) != 0
    assert f"row {n} (records) does not match its hash" in capsys.readouterr().err


def test_an_engine_killed_before_filing_loses_no_place(tmp_path: Path) -> None:
    """The places held in memory die with the engine; readers scan the tail meanwhile,
    and the next engine files it again from the ledger."""
    db = tmp_path / "s.db"
    first = _steps([[(k % 5, k, False) for k in range(10)] for _ in range(4)])
    _write(db, "step", first[:2], 1, ledger_index_max=15)  # files after the 2nd commit
    _write(db, "step", first[2:], 1, ledger_index_s=3600.0, ledger_index_max=10**6)
    con = sqlite3.connect(db)
    filed = index_n(con)
    assert 0 < filed < con.execute("SELECT MAX(n) FROM ledger").fetchone()[0]
    before = [f.seq for f in device_records(con, "T1")]
    assert len(before) == 4 * 2
    con.close()
    later = _steps([[(1, 100 + k, False) for k in range(3)]])
    later = [Step(s.kind, s.now + 1000, s.records) for s in later]
    _write(db, "step", later, 1, ledger_index_max=1)  # loads the tail, files it all
    con = sqlite3.connect(db)
    assert index_n(con) == con.execute("SELECT MAX(n) FROM ledger").fetchone()[0]
    assert [f.seq for f in device_records(con, "T2")][-3:] == [100, 101, 102]
    assert [f.seq for f in device_records(con, "T1")] == before
    placed = con.execute("SELECT COUNT(*) FROM ledger_index").fetchone()[0]
    listed = sum(len(bytes(b)) // 29 for (b,) in con.execute("SELECT at FROM ledger_index"))
    assert listed == 4 * 10 + 3 and placed > 0  # every record filed once
    con.close()


@pytest.mark.parametrize("rows", ["step", "record"])
def test_the_setting_chooses_the_rows(tmp_path: Path, rows: str) -> None:
    _write(tmp_path / "s.db", rows, _steps([[(0, 1, False), (1, 1, True)]]), 1)
    con = sqlite3.connect(tmp_path / "s.db")
    kinds = sorted(k for (k,) in con.execute("SELECT kind FROM ledger"))
    con.close()
    assert kinds == (["records", "step"] if rows == "step" else ["event", "fix", "step"])


def test_both_databases_file_and_find_every_record(store_target: str) -> None:
    """SQLite and PostgreSQL (the index rows by COPY): every device's records read back
    as the steps held them, filed or in the tail, and export in arrival order."""
    from engine.store.sql.open import connect, open_store

    spec = [[((k * 7 + j) % 5, j, j % 9 == 4) for k in range(30)] for j in range(7)]
    steps = _steps(spec)
    with open_store(store_target, ledger_index_max=70) as s:
        for k in range(0, len(steps), 2):
            s.commit([], [], steps=steps[k : k + 2])
    want = [r for st_ in steps for r in st_.records]
    con = connect(store_target)
    try:
        assert 0 < index_n(con) < con.execute("SELECT MAX(n) FROM ledger").fetchone()[0]
        for d in DEVICES:
            got = [(f.kind, f.seq, f.t) for f in device_records(con, d)]
            mine = [r for r in want if r.device == d]
            kinds = ["event" if isinstance(r, EventRecord) else "fix" for r in mine]
            assert got == [(k, r.seq, r.t) for k, r in zip(kinds, mine, strict=True)], d
        back = [(x.kind, x.now, list(x.records)) for x in replay_steps(con, 0)]
        assert back == [(x.kind, x.now, list(x.records)) for x in steps]
    finally:
        con.close()


def test_a_store_written_both_ways_reads_as_one(tmp_path: Path) -> None:
    """A store kept a row per record until an upgrade, records rows after it: its
    devices' records read as if one layout had written them all."""
    steps = _steps([[((k + j) % 5, k, k % 4 == 1) for k in range(12)] for j in range(6)])
    _write(tmp_path / "rec.db", "record", steps, 1)
    _write(tmp_path / "mixed.db", "record", steps[:4], 1)
    _write(tmp_path / "mixed.db", "step", steps[4:], 1, ledger_index_max=10)
    assert _reads(tmp_path / "mixed.db") == _reads(tmp_path / "rec.db")
    con = sqlite3.connect(tmp_path / "mixed.db")
    kinds = {k for (k,) in con.execute("SELECT DISTINCT kind FROM ledger")}
    con.close()
    assert {"fix", "event", "records"} <= kinds
    a = _export(tmp_path / "rec.db", tmp_path / "a.jsonl")
    assert a == _export(tmp_path / "mixed.db", tmp_path / "b.jsonl")


class _LateFailure:
    """A connection whose COMMITs go in and then report a failure (a network cut after
    PostgreSQL committed, an I/O error reported late) while `fail` is set."""

    fail = False

    def __init__(self, raw: sqlite3.Connection) -> None:
        self._raw = raw

    def execute(self, sql: str, *args: object) -> object:
        got = self._raw.execute(sql, *args)
        if sql == "COMMIT" and _LateFailure.fail:
            raise sqlite3.OperationalError("disk I/O error (after the commit)")
        return got

    def __getattr__(self, name: str) -> object:
        return getattr(self._raw, name)


class _LateStore(SqliteStore):
    def _connect(self):  # type: ignore[no-untyped-def]
        return _LateFailure(super()._connect())


@pytest.mark.parametrize("most", [1, 25, 10**6])
def test_a_commit_reported_failed_after_it_went_in_files_its_places_once(
    tmp_path: Path, most: int
) -> None:
    """The store finds such a commit in the database and takes it as done: its records'
    places stay pending (or filed), neither lost nor filed twice."""
    steps = _steps([[(k % 5, 10 * j + k, False) for k in range(10)] for j in range(6)])
    s = _LateStore(tmp_path / "s.db", ledger_index_max=most)
    try:
        for k, st_ in enumerate(steps):
            _LateFailure.fail = k in (1, 4)
            assert s.commit([], [], steps=[st_]) == []
        _LateFailure.fail = False
        s.commit([], [], steps=[Step("tick", steps[-1].now + 1)])
    finally:
        _LateFailure.fail = False
        s.close()
    _write(tmp_path / "s.db", "step", [], 1)  # a restart files what was pending
    con = sqlite3.connect(tmp_path / "s.db")
    try:
        want = [r.seq for st_ in steps for r in st_.records if r.device == "T2"]
        assert [f.seq for f in device_records(con, "T2")] == want
        listed = sum(len(bytes(b)) // 29 for (b,) in con.execute("SELECT at FROM ledger_index"))
        tail = index_n(con) < con.execute("SELECT MAX(n) FROM ledger").fetchone()[0]
        assert listed <= 60 and (listed == 60 or tail), listed  # never a place twice
    finally:
        con.close()


def test_a_line_that_is_no_record_breaks_no_reader(tmp_path: Path, capsys) -> None:
    """A records row whose line was overwritten with garbage: the next engine still
    starts, readers read round it, export still filters by time, and verify names it."""
    steps = _steps([[(k % 3, 10 * j + k, False) for k in range(6)] for j in range(3)])
    db = tmp_path / "s.db"
    _write(db, "step", steps, 1, ledger_index_s=3600.0, ledger_index_max=10**6)
    con = sqlite3.connect(db)
    (n, body) = con.execute("SELECT n, body FROM ledger WHERE kind = 'records' LIMIT 1").fetchone()
    lines = bytes(body).split(b"\n")
    lines[2] = b"garbage"
    con.execute("UPDATE ledger SET body = ? WHERE n = ?", (b"\n".join(lines), n))
    con.commit()
    con.close()
    _write(db, "step", [], 1)  # an engine starts and files the tail (leaving that row out)
    con = sqlite3.connect(db)
    try:
        for dev in ("T2", "T3"):  # the garbage was T3's seq 2
            want = [r.seq for s in steps for r in s.records if r.device == dev and r.seq != 2]
            assert [f.seq for f in device_records(con, dev)] == want, dev
    finally:
        con.close()
    out = _export(db, tmp_path / "e.jsonl", "--since", "1700000000")
    assert b"garbage" not in out and out.count(b"\n") == 18 - 1  # all but the garbage
    capsys.readouterr()
    assert main(["audit", "verify", "--db", str(db)]) != 0
    assert f"row {n} (records) does not match" in capsys.readouterr().err
