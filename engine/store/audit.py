"""`tagwatch audit`: check and read the evidence ledger of an alert store.

    tagwatch audit verify --db tagwatch.db [--checkpoint F]   recompute the hash chain
    tagwatch audit alert  --db tagwatch.db ID       an alert's records and its evidence
    tagwatch audit export --db tagwatch.db --out F  the evidence as a replay file
    tagwatch audit export --db tagwatch.db --alert ID --out DIR   an alert's evidence pack
                          (PDF, GeoJSON, manifest of the ledger rows: engine/evidence/)

Every command opens the store read-only: auditing never changes what it audits."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import msgspec

from engine.errors import DecodeError, StoreError, TagwatchError
from engine.store.reading import evidence_row, open_ro
from engine.store.records.index import all_records, device_records
from engine.store.schema import advice
from engine.store.signing import Checkpoint, key_candidates, load_public_key
from engine.store.sql.conn import DB_ERRORS, describe
from engine.store.verify import verify
from engine.wire.checkpoint import decode_checkpoint


def _reading(cmd: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A storage error while reading becomes a StoreError that names the store."""

    @functools.wraps(cmd)
    def run(args: argparse.Namespace) -> int:
        try:
            return cmd(args)
        except DB_ERRORS as e:
            raise StoreError(
                f"{describe(args.db)}: cannot read the alert store: {e}{advice(e)}"
            ) from e

    return run


def _read_checkpoint(path: str) -> Checkpoint:
    try:
        text = Path(path).read_bytes()
    except OSError as e:
        raise TagwatchError(f"cannot read checkpoint {path}: {e.strerror}") from None
    try:
        return decode_checkpoint(text)
    except DecodeError as e:
        raise TagwatchError(
            f"{path}: not a checkpoint `audit verify` printed or the engine published ({e})"
        ) from None


@_reading
def cmd_verify(args: argparse.Namespace) -> int:
    pin = _read_checkpoint(args.checkpoint) if args.checkpoint else None
    key = args.key or next((str(p) for p in key_candidates(args.db) if p.is_file()), None)
    trusted = load_public_key(key) if key else None
    db = open_ro(args.db)
    rep = verify(db, pin=pin, trusted=trusted)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(rep.counts.items())) or "empty"
    if not rep.ok:
        print(f"BROKEN: {describe(args.db)}: {rep.problem}", file=sys.stderr)
        print(f"  {rep.rows} rows verified before it ({counts})", file=sys.stderr)
        if pin is not None:
            print(f"  against checkpoint: {pin.encode().decode()}", file=sys.stderr)
        return 1
    older = rep.alert_log_before_retention
    print(
        f"ok: {rep.rows} ledger rows chain from row {rep.first_n} to {rep.last_n} ({counts}); "
        f"{rep.alert_log_checked} alert records match"
        + (f" ({older} older than the retained ledger)" if older else "")
        + f"; head {rep.head.hex()[:16]}"
    )
    if rep.signed:
        by = f"the trusted key {key}" if key else "the key it names (no --key to trust)"
        print(f"the store's checkpoint is the chain's end, signed by {by}")
    else:
        print("unsigned: no signed checkpoint vouches for the chain's end")
    if pin is not None:
        print(f"matches the checkpoint at row {pin.n} ({args.checkpoint})")
    assert rep.checkpoint is not None
    # In full: kept elsewhere, `--checkpoint FILE` later shows a cut or rewritten end.
    print(f"checkpoint: {rep.checkpoint.encode().decode()}")
    return 0


@_reading
def cmd_alert(args: argparse.Namespace) -> int:
    db = open_ro(args.db)
    recs = db.execute(
        "SELECT n, body FROM ledger WHERE kind = 'alert' AND device = ? ORDER BY n", (args.id,)
    ).fetchall()
    if not recs:
        raise TagwatchError(f"no alert {args.id} in the ledger of {describe(args.db)}")
    seen: set[tuple[object, ...]] = set()
    spaces: dict[str, dict[tuple[int, int, int], int]] = {}
    for n, body in recs:
        print(f"ledger row {n}: alert {bytes(body).decode()}")
        for ev in msgspec.json.decode(bytes(body)).get("evidence", []):
            if tuple(ev) in seen:
                continue
            seen.add(tuple(ev))
            tag, seq = ev[0], ev[1]
            boot = ev[2] if len(ev) > 2 else None
            row = evidence_row(db, tag, seq, boot, spaces)
            at = "" if row is None or row.i < 0 else f" line {row.i}"
            where = f"row {row.n}{at}: {row.body.decode()}" if row else "not in the ledger"
            name = f"{tag} #{seq}" if boot is None else f"{tag} #{seq} boot {boot}"
            print(f"  evidence {name}: {where}")
    return 0


def _export_pack(args: argparse.Namespace) -> int:
    from engine.evidence import build_pack, write_pack

    if args.device or args.since is not None or args.until is not None:
        raise TagwatchError("--device, --since and --until choose a replay file, not a pack")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise TagwatchError(f"--out {args.out}: with --alert, a folder for the pack's files")
    for p in write_pack(build_pack(args.db, args.alert, args.zones), args.out):
        print(f"wrote {p}")
    return 0


@_reading
def cmd_export(args: argparse.Namespace) -> int:
    if args.alert is not None:
        return _export_pack(args)
    if args.zones is not None:
        raise TagwatchError("--zones goes with --alert (the zone drawn in an evidence pack)")
    db = open_ro(args.db)
    lines: Iterable[bytes]
    if args.device:  # [since, until): device_records' window is closed at both ends
        found = device_records(db, args.device, t0=args.since, t1=args.until)
        lines = [f.body for f in found if args.until is None or f.t < args.until]
    else:
        lines = all_records(db, args.since, args.until)
    n = 0
    out = Path(args.out)
    try:
        with out.open("wb") as fh:
            for body in lines:
                fh.write(body)
                fh.write(b"\n")
                n += 1
    except OSError as e:
        raise TagwatchError(f"cannot write {out}: {e.strerror}") from None
    print(f"{n} records written to {out} (arrival order; `tagwatch replay` reads it)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sp = sub.add_parser("audit", help="verify and read the evidence ledger")
    asub = sp.add_subparsers(dest="audit_cmd", required=True, metavar="command")
    v = asub.add_parser("verify", help="recompute the ledger's hash chain; exit 1 if broken")
    v.add_argument("--db", default="tagwatch.db", help="alert store (default %(default)s)")
    v.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="a checkpoint kept elsewhere (a line an earlier verify printed, or the one the"
        " engine retains on tagwatch/v1/engine/checkpoint: `tagwatch checkpoint --out FILE`):"
        " the store must still contain it (a deleted or rewritten end shows)",
    )
    v.add_argument(
        "--key",
        metavar="PEM",
        help="the engine's public key (or its key) to trust for signed checkpoints"
        " (default DB.key.pub or DB.key beside the store, or beside the --db a shard's file was"
        " made from: tagwatch.db.key for tagwatch.shard0.db; if there)",
    )
    v.set_defaults(func=cmd_verify)
    a = asub.add_parser("alert", help="an alert's lifecycle records and the evidence they cite")
    a.add_argument("id")
    a.add_argument("--db", default="tagwatch.db")
    a.set_defaults(func=cmd_alert)
    e = asub.add_parser(
        "export",
        help="accepted fixes and events as a replay file, or (--alert) an alert's evidence pack",
    )
    e.add_argument("--db", default="tagwatch.db")
    e.add_argument(
        "--out",
        required=True,
        help="JSON Lines file to write; with --alert, the folder for alert-ID.pdf,"
        " alert-ID.geojson and alert-ID.json (made if missing)",
    )
    e.add_argument("--alert", metavar="ID", help="write this alert's evidence pack")
    e.add_argument(
        "--zones",
        metavar="FILE",
        help="with --alert: take the zone from this zones GeoJSON, not the ledger's config step",
    )
    e.add_argument("--device", help="only this tag or phone")
    e.add_argument("--since", type=float, help="event time from (Unix seconds)")
    e.add_argument("--until", type=float, help="event time before (Unix seconds)")
    e.set_defaults(func=cmd_export)
