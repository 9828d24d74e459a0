"""The pipeline's intake of a usual batch (engine/core/pipeline.py `Pipeline._intake`):
every record a plain fix of a known device, or of another shard's, taken column by column
without a Python step per field; a batch with anything else goes the record path. A live
batch mixes decoded lines (a gateway's) with fix records (single-fix messages)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, cast

import numpy as np

from engine.wire.fastpath import FixColumns, FixLines, fix_fields
from engine.wire.fastpath import _FixLine as FixLine
from engine.wire.records import FixRecord, Record

ELSEWHERE = -2  # `routes`: a device of another shard's subject


def routes(slot_of: dict[str, int], elsewhere: Collection[str]) -> Mapping[str, int]:
    """Each device's slot, and ELSEWHERE for another shard's: one lookup routes a record
    (`slot_of` itself when there is no other shard)."""
    return {**dict.fromkeys(elsewhere, ELSEWHERE), **slot_of} if elsewhere else slot_of


def usual_columns(
    records: Sequence[Record], route: Mapping[str, int]
) -> tuple[Sequence[int], tuple[Any, ...], Any, list[int]] | None:
    """`Pipeline._intake`'s rows, columns and boots when every record is a fix of a known device
    or of another shard's (a replay's batches, a gateway's), column by column, and the
    rows of other shards' devices; None when not. `route`: each device's slot, or
    ELSEWHERE for another shard's (`routes`)."""
    if isinstance(records, FixLines):
        records = records.batch()
    if isinstance(records, FixColumns):  # a replay reader process's, a gateway's msgpack
        # (a shard's gateway columns hold its own devices only: columnar.py skipped the
        # others'; a replay reader's of another shard's devices go the record path)
        slots_a = records.table.slots(route)[records.code]
        if not slots_a.shape[0] or slots_a.min() < 0:
            return None
        n = slots_a.shape[0]
        return (
            range(n),
            (slots_a, *records.columns()[1:-1], np.zeros(n, dtype=np.uint8)),
            records.boot,
            [],
        )
    items: list[Any]
    get = route.get
    if isinstance(records, FixLines):  # decoded lines (no record objects) and fix records
        items = cast("list[Any]", records.items)
        if records.plain:
            slots: Any = [get(s.tag, -1) for s in items]
        elif all(x.__class__ is FixRecord or x.__class__ is FixLine for x in items):
            slots = [get(x.tag if x.__class__ is FixLine else x.device, -1) for x in items]
        else:
            return None
    else:
        items = list(records)
        if not all(r.__class__ is FixRecord for r in items):
            return None
        slots = [get(r.device, -1) for r in items]
    if not items:
        return None
    rows: Any = range(len(slots))
    away: list[int] = []
    if min(slots) < 0:  # others' devices (a shard's share of a gateway batch), or unknown
        if -1 in slots:
            return None  # an unknown device: a dead letter, made by the record path
        sa = np.array(slots, dtype=np.int32)
        mine = sa >= 0
        away = np.flatnonzero(~mine).tolist()
        rows = np.flatnonzero(mine).tolist()
        items, slots = list(map(items.__getitem__, rows)), sa[mine]
    seq, t, lat, lon, acc, batt, src, boot = fix_fields(items)
    return rows, (slots, seq, t, lat, lon, acc, batt, src, [0] * len(slots)), boot, away
