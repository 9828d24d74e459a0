"""Collecting one alert's evidence from the store and making the pack of it.

    build_pack(db, alert_id, zones=None) -> Pack   pdf, geojson, manifest bytes; .zip()
    write_pack(pack, out_dir) -> [paths]           DIR/alert-ID.pdf, .geojson, .json

What is collected (engine/store/reading.py, read-only): the alert's lifecycle records
(its ledger alert rows), the rows its evidence cites (the lookup `tagwatch audit alert`
prints), the fixes of its tag from 30 minutes before it opened to 30 minutes after it
closed (or its last record), the zone's feature from the zones file of the ledger's
config step in force when it was first recorded (or `zones`, a file given), the store's
signed checkpoint and the chain's head. The same store and alert give the same bytes:
nothing depends on the time of the export."""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from engine.errors import TagwatchError
from engine.store.config import section_text
from engine.store.ledger import Head
from engine.store.reading import LedgerReader, LedgerRow
from engine.store.records import merkle
from engine.store.signing import Checkpoint, signature_problem
from engine.store.sql.conn import describe, is_url

TRACK_MARGIN_S = 1800.0  # the track shown around the episode, each side
_enc = msgspec.json.Encoder()


@dataclass(frozen=True)
class Fix:
    """A fix the pack shows: its ledger row and the position it recorded."""

    row: LedgerRow
    tag: str
    seq: int
    t: float
    lat: float
    lon: float
    acc: float
    boot: int | None = None
    evidence: bool = False


@dataclass(frozen=True)
class Cited:
    """One piece of evidence as the alert cites it, and what the ledger holds for it."""

    ref: tuple[Any, ...]  # (tag, seq[, boot])
    row: LedgerRow | None
    fix: Fix | None  # None: not a fix, not in the ledger, or a protected device's
    withheld: bool = False  # a protected device's position: not in the pack


@dataclass
class Evidence:
    """Everything the documents are made of."""

    alert_id: str
    store: str  # the store's file name
    records: list[tuple[LedgerRow, dict[str, Any]]]
    cited: list[Cited]
    track: list[Fix]
    window: tuple[float, float]
    zone: dict[str, Any] | None
    zone_source: str
    config_row: LedgerRow | None
    checkpoint: Checkpoint
    signed: bool
    signature: str  # in words: whose signature, valid or what is wrong
    head: Head
    notes: list[str] = field(default_factory=list)

    @property
    def latest(self) -> dict[str, Any]:
        return self.records[-1][1]

    @property
    def when(self) -> float:
        """The alert's last time: the pack's fixed creation date."""
        rec = self.latest
        return float(rec.get("closed_t") or rec["raised_t"])


@dataclass(frozen=True)
class Pack:
    """An alert's evidence pack: the files, by name (`alert-ID`), as bytes."""

    name: str
    pdf: bytes
    geojson: bytes
    manifest: bytes
    when: float = 0.0  # the alert's last time (the zip entries' date)

    def files(self) -> dict[str, bytes]:
        return {
            f"{self.name}.pdf": self.pdf,
            f"{self.name}.geojson": self.geojson,
            f"{self.name}.json": self.manifest,
        }

    def zip(self) -> bytes:
        """The three files in one zip, deterministic: entries dated the alert's time."""
        dt = datetime.fromtimestamp(max(self.when, 315532800.0), UTC).timetuple()[:6]
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in self.files().items():
                info = zipfile.ZipInfo(f"{self.name}/{name}", date_time=dt)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                z.writestr(info, data)
        return buf.getvalue()


def utc(t: float | None) -> str:
    if t is None:
        return "-"
    d = datetime.fromtimestamp(t, UTC)
    frac = f"{t % 1:.3f}"[1:] if t % 1 else ""
    return d.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"


def _fix(row: LedgerRow, evidence: bool) -> Fix | None:
    try:
        b = msgspec.json.decode(row.body)
        return Fix(
            row, str(b["tag"]), int(b["seq"]), float(b["t"]), float(b["lat"]),
            float(b["lon"]), float(b.get("acc") or 0.0), b.get("boot"), evidence,
        )  # fmt: skip
    except (msgspec.DecodeError, KeyError, TypeError, ValueError):
        return None


def _zone_feature(text: str, zone_id: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    feats = doc.get("features", []) if isinstance(doc, dict) else []
    for f in feats if isinstance(feats, list) else []:
        if isinstance(f, dict) and (f.get("properties") or {}).get("id") == zone_id:
            return f
    return None


def _zone(
    rd: LedgerReader, rec: dict[str, Any], first_n: int, zones: str | None
) -> tuple[dict[str, Any] | None, str, LedgerRow | None]:
    zone_id = rec.get("zone")
    if zones is not None:
        try:
            text = Path(zones).read_bytes().decode("utf-8")
        except OSError as e:
            raise TagwatchError(f"cannot read zones file {zones}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise TagwatchError(f"zones file {zones} is not UTF-8 text") from None
        sha = hashlib.sha256(text.encode()).hexdigest()
        src = f"zones file {zones} given at export (sha256 {sha}), not the ledger's"
        if zone_id is None:
            return None, "no zone: the alert names none", None
        feat = _zone_feature(text, zone_id)
        if feat is None:
            raise TagwatchError(f"{zones} has no zone {zone_id!r} (the alert's zone)")
        if not drawable(feat):
            raise TagwatchError(f"{zones}: zone {zone_id!r} has no geometry the map can draw")
        return feat, src, None
    got = rd.config_before(first_n)
    row = rd.row(got[0]) if got else None
    if zone_id is None:
        return None, "no zone: the alert names none", row
    if got is None:
        return None, "no config step in the ledger: give --zones FILE for the zone", None
    n, cfg = got
    z = cfg.get("zones") or {}
    try:
        text = section_text(z)
    except (KeyError, ValueError, zlib.error):
        text = ""
    feat = _zone_feature(text, zone_id)
    src = f"ledger row {n} (config step): zones file {z.get('file')} sha256 {z.get('sha256')}"
    if feat is None or not drawable(feat):
        return None, f"zone {zone_id} is not in the zones file of ledger row {n}", row
    return feat, src, row


def drawable(feat: dict[str, Any]) -> bool:
    """The feature's geometry is what the map draws: Polygon or MultiPolygon rings of
    finite [lon, lat] numbers, or a Point with a positive radius_m."""
    g, props = feat.get("geometry"), feat.get("properties")
    if not isinstance(g, dict) or not isinstance(props, dict):
        return False
    c = g.get("coordinates")
    try:
        if g.get("type") == "Point":
            r = props.get("radius_m")
            return _pos(c) and isinstance(r, int | float) and 0 < r < math.inf
        polys: Any = {"Polygon": [c], "MultiPolygon": c}.get(str(g.get("type")))
        return isinstance(polys, list) and bool(polys) and all(
            isinstance(p, list) and p and all(
                isinstance(ring, list) and len(ring) >= 3 and all(_pos(q) for q in ring)
                for ring in p
            )
            for p in polys
        )  # fmt: skip
    except TypeError:
        return False


def _pos(q: Any) -> bool:
    return (
        isinstance(q, list)
        and len(q) >= 2
        and all(isinstance(v, int | float) and math.isfinite(v) for v in q[:2])
    )


def _checkpoint(rd: LedgerReader) -> tuple[Checkpoint, bool, str]:
    cp = rd.signed_checkpoint()
    if cp is None:
        return rd.mark(), False, "unsigned: this store keeps no signed checkpoint"
    problem = signature_problem(cp, None)
    if problem is None:
        return cp, True, f"Ed25519 signature valid for the key it names ({cp.key})"
    return cp, False, f"NOT VALID: {problem}"


def collect(db_path: str, alert_id: str, zones: str | None = None) -> Evidence:
    """The evidence of `alert_id` in the store at `db_path` (TagwatchError: no such alert,
    no store, an unreadable zones file)."""
    with LedgerReader(db_path) as rd:
        records = []
        for r in rd.alert_rows(alert_id):
            try:
                records.append((r, msgspec.json.decode(r.body)))
            except msgspec.DecodeError:
                continue
        records = [(r, d) for r, d in records if isinstance(d, dict) and "raised_t" in d]
        if not records:
            raise TagwatchError(f"no alert {alert_id} in the ledger of {describe(db_path)}")
        latest = records[-1][1]
        tag = latest.get("tag")
        cited: list[Cited] = []
        seen: set[tuple[Any, ...]] = set()
        for _, rec in records:
            for ev in rec.get("evidence") or []:
                ref = tuple(ev)
                if ref in seen or len(ref) < 2:
                    continue
                seen.add(ref)
                boot = ref[2] if len(ref) > 2 else None
                row = rd.evidence(str(ref[0]), int(ref[1]), boot)
                withheld = tag is not None and ref[0] != tag
                fix = None if row is None or withheld or row.kind != "fix" else _fix(row, True)
                cited.append(Cited(ref, row, fix, withheld and row is not None))
        opened = float(latest["opened_t"])
        end = latest.get("closed_t") or max(float(d["raised_t"]) for _, d in records)
        window = (opened - TRACK_MARGIN_S, float(end) + TRACK_MARGIN_S)
        ev_rows = {c.row.key for c in cited if c.row is not None}
        track = []
        for r in rd.fixes(tag, *window) if tag else []:
            f = _fix(r, r.key in ev_rows)
            if f is not None:
                track.append(f)
        zone, zone_source, config_row = _zone(rd, latest, records[0][0].n, zones)
        cp, signed, signature = _checkpoint(rd)
        head = rd.head()
    notes = []
    missing = [c for c in cited if c.row is None]
    if missing:
        notes.append(
            f"{len(missing)} piece(s) of evidence are not in the ledger (cut by retention, or"
            " a store written by `tagwatch replay --db`, which keeps alerts only)"
        )
    if not track:
        notes.append("no fixes of the tag in the ledger over the window")
    return Evidence(
        alert_id, describe(db_path) if is_url(db_path) else Path(db_path).name, records, cited, track, window, zone, zone_source,
        config_row, cp, signed, signature, head, notes,
    )  # fmt: skip


def _row_json(r: LedgerRow, cited: str, body: bool = True) -> dict[str, Any]:
    d: dict[str, Any] = {
        "n": r.n, "kind": r.kind, "step": r.step, "device": r.device, "seq": r.seq, "t": r.t,
        "cited": cited, "hash": r.hash.hex(), "prev": r.prev.hex(),
    }  # fmt: skip
    if r.i >= 0:  # a record of a records row: the row's hash covers its Merkle root
        d["records_row"] = {"i": r.i, "of": r.of, "path": [h.hex() for h in r.path]}
        if not body:
            d["leaf"] = merkle.leaf(r.body).hex()
    if body:
        d["body"] = r.body.decode("utf-8", "replace")
    elif r.i < 0:
        d["body_sha256"] = hashlib.sha256(r.body).hexdigest()
    return d


def manifest(ev: Evidence, files: dict[str, bytes]) -> bytes:
    """The ledger rows cited (number, hash, the hash they chain onto, the body), the
    checkpoint and the head, and the sha256 of the pack's other files."""
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    for r, _ in ev.records:
        rows[r.key] = _row_json(r, "alert")
    for c in ev.cited:
        if c.row is not None and c.row.key not in rows:
            rows[c.row.key] = _row_json(c.row, "evidence", body=not c.withheld)
    for f in ev.track:
        rows.setdefault(f.row.key, _row_json(f.row, "track"))
    if ev.config_row is not None:  # its body holds every subject's files: only its hash
        rows.setdefault(ev.config_row.key, _row_json(ev.config_row, "config", body=False))
    doc = {
        "alert": ev.alert_id,
        "store": ev.store,
        "window": {"from": ev.window[0], "to": ev.window[1]},
        "rows": [rows[n] for n in sorted(rows)],
        "evidence": [
            {
                "ref": list(c.ref),
                "n": None if c.row is None else c.row.n,
                "i": None if c.row is None or c.row.i < 0 else c.row.i,
                "withheld": c.withheld,
            }
            for c in ev.cited
        ],
        "zone_source": ev.zone_source,
        "checkpoint": msgspec.to_builtins(ev.checkpoint),
        "checkpoint_signed": ev.signed,
        "signature": ev.signature,
        "head": {"n": ev.head.n, "hash": ev.head.hash.hex()},
        "files": {k: hashlib.sha256(v).hexdigest() for k, v in files.items()},
        "notes": ev.notes,
        "check": "every row's hash is sha256 over prev and the row (engine/store/ledger.py"
        " row_hash); a record shown from a records row (records_row: line i of `of`) proves"
        " it with its Merkle path (RFC 6962) to the root that row's hash covers (ledger.py"
        " shown_hash); `tagwatch audit verify --db STORE` recomputes the chain they sit in",
    }
    return json.dumps(doc, indent=1, ensure_ascii=False).encode() + b"\n"


def build_pack(db_path: str, alert_id: str, zones: str | None = None) -> Pack:
    """The evidence pack of `alert_id` from the store at `db_path` (read-only)."""
    from engine.evidence.geojson import geojson
    from engine.evidence.pdf import render

    ev = collect(db_path, alert_id, zones)
    name = f"alert-{alert_id}"
    gj = geojson(ev)
    pdf = render(ev)
    man = manifest(ev, {f"{name}.pdf": pdf, f"{name}.geojson": gj})
    return Pack(name, pdf, gj, man, ev.when)


def write_pack(pack: Pack, out_dir: str | Path) -> list[Path]:
    """Write the pack's three files into `out_dir` (made if missing); TagwatchError when
    it cannot be."""
    d = Path(out_dir)
    written = []
    try:
        d.mkdir(parents=True, exist_ok=True)
        for name, data in pack.files().items():
            p = d / name
            tmp = p.with_name(p.name + ".partial")
            tmp.write_bytes(data)
            tmp.replace(p)
            written.append(p)
    except OSError as e:
        raise TagwatchError(f"cannot write the evidence pack into {d}: {e.strerror or e}") from None
    return written
