"""The pipeline's intake of a usual batch (engine/core/pipeline.py `Pipeline._intake`):
every record a plain fix of a known device, or of another shard's, taken column by column
without a Python step per field; a batch with anything else goes the record path. A live
batch mixes decoded lines (a gateway's) with fix records (single-fix messages)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, cast

import numpy as np

from engine.wire.fastpath import FixColumns, FixLines, fix_fields
from engine.wire.fastpath import _FixLine as FixLine
from engine.wire.records import FixRecord, Record


def usual_columns(
    records: Sequence[Record], slot_of: dict[str, int], elsewhere: Collection[str]
) -> tuple[Sequence[int], tuple[Any, ...], Any, list[int]] | None:
    """`Pipeline._intake`'s rows, columns and boots when every record is a fix of a known device
    or of another shard's (a replay's batches, a gateway's), column by column, and the
    rows of other shards' devices; None when not."""
    if isinstance(records, FixColumns):  # a replay reader process's columns
        slots_a = records.table.slots(slot_of)[records.code]
        if not slots_a.shape[0] or slots_a.min() < 0:
            return None
        n = slots_a.shape[0]
        return list(range(n)), (
            slots_a, records.seq, records.t, records.lat, records.lon, records.acc,
            records.batt, records.src, np.zeros(n, dtype=np.uint8),
        ), records.boot, []  # fmt: skip
    items: list[Any]
    if isinstance(records, FixLines):  # decoded lines (no record objects) and fix records
        items = cast("list[Any]", records.items)
        if records.plain:
            devices = [s.tag for s in items]
        elif all(x.__class__ is FixRecord or x.__class__ is FixLine for x in items):
            devices = [x.tag if x.__class__ is FixLine else x.device for x in items]
        else:
            return None
    else:
        items = list(records)
        if not all(r.__class__ is FixRecord for r in items):
            return None
        devices = [r.device for r in items]
    if not items:
        return None
    get = slot_of.get
    slots: Any = [get(d, -1) for d in devices]
    rows: Any = range(len(slots))
    away: list[int] = []
    if min(slots) < 0:  # others' devices (a shard's share of a gateway batch), or unknown
        sa = np.array(slots, dtype=np.int32)
        mine = sa >= 0
        away = np.flatnonzero(~mine).tolist()
        if not elsewhere or not all(map(elsewhere.__contains__, map(devices.__getitem__, away))):
            return None  # an unknown device: a dead letter, made by the record path
        rows = np.flatnonzero(mine).tolist()
        items, slots = list(map(items.__getitem__, rows)), sa[mine]
    seq, t, lat, lon, acc, batt, src, boot = fix_fields(items)
    return rows, (slots, seq, t, lat, lon, acc, batt, src, 0), boot, away  # 0: no event
