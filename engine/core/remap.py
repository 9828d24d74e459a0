"""State keyed by ids: the ids a pipeline's slots, zones and proximity pairs stand for, and
the map from one configuration's indices onto another's (a snapshot taken before a
subject was added, a SIGHUP reload).

Per-device state lives in arrays indexed by slot, per-zone state by zone index, proximity
state by pair index; those numbers are positions in one configuration only. Exported state
says which ids they stood for (`Ids`); `Remap` carries it across to the indices of a new
configuration: a device, zone or pair that is still there keeps its state, a new one starts
empty, a removed one is dropped. What counts as "still there":

* a device: the same id, still a tag (or still a protected device);
* a zone: the same id, the same subject and kind (geometry and schedule may change: the
  episode goes on);
* a proximity pair: the same (subject, protected device);
* a subject: the same id.

Exported state is plain data: dicts with str keys, lists, str, int, float, bool, None and
numpy arrays (numeric or structured, never object dtype).

On an unchanged configuration (a restart, the common case) a decoded snapshot's arrays are
taken over as they are instead of copied (`Remap(..., take=True)`): at 500,000 subjects the
state is ~250 MB, and a copy held it twice at the peak of a restart."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any

import msgspec
import numpy as np

from engine.core.episodes import TrackerKey, TrackerKind

# What a tracker key's index is, by kind
_ZONE_KINDS = frozenset({TrackerKind.ZONE, TrackerKind.APPROACH, TrackerKind.CURFEW})
_PAIR_KINDS = frozenset(
    {TrackerKind.PROXIMITY, TrackerKind.PROXIMITY_APPROACH, TrackerKind.VICTIM_STALE}
)


@dataclass(frozen=True)
class Ids:
    """What a configuration's indices stand for."""

    devices: tuple[str, ...]  # by slot; [0, n_tags) are tags
    n_tags: int
    subjects: tuple[str, ...]  # by subject index
    zones: tuple[str, ...]  # by zone index
    zone_subject: tuple[str, ...]  # each zone's subject id
    zone_kind: tuple[int, ...]  # 0 exclusion, 1 inclusion
    pairs: tuple[tuple[str, str], ...]  # (subject id, protected device id) by pair index

    def data(self) -> dict[str, Any]:
        """Each id list packed into one JSON text: a snapshot header holds a few strings,
        not millions of them (500,000 subjects x 3 zones are 4 million ids)."""
        d: dict[str, Any] = {name: _pack(getattr(self, name)) for name in _LISTS}
        d["n_tags"] = self.n_tags
        return d

    def matches(self, d: Any) -> bool:
        """Whether `data` of some ids is these ids, found by comparing the packed texts
        (no tuples of every id built); False for the list form of earlier versions."""
        return (
            isinstance(d, dict)
            and type(d.get("n_tags")) is int
            and d["n_tags"] == self.n_tags
            and all(isinstance(d.get(k), str) and d[k] == _pack(getattr(self, k)) for k in _LISTS)
        )

    @classmethod
    def from_data(cls, d: dict[str, Any]) -> Ids:
        """ValueError on anything that is not the shape `data` writes (packed texts, or the
        plain lists earlier versions wrote)."""
        try:
            ids = cls(
                tuple(_strs(_unpack(d["devices"]))),
                int(d["n_tags"]),
                tuple(_strs(_unpack(d["subjects"]))),
                tuple(_strs(_unpack(d["zones"]))),
                tuple(_strs(_unpack(d["zone_subject"]))),
                tuple(int(k) for k in _unpack(d["zone_kind"])),
                tuple((str(p[0]), str(p[1])) for p in _unpack(d["pairs"])),
            )
        except (KeyError, TypeError, IndexError, msgspec.DecodeError) as e:
            raise ValueError(f"snapshot ids malformed: {e!r}") from None
        if not 0 <= ids.n_tags <= len(ids.devices) or len(ids.zone_subject) != len(ids.zones):
            raise ValueError("snapshot ids inconsistent")
        return ids

    # -- keys -------------------------------------------------------------------------
    def key_ref(self, key: TrackerKey) -> Any:
        """A tracker key as data: [kind name, zone id | [subject, device] | device id]."""
        k, i = key.kind, int(key.idx)
        if k in _ZONE_KINDS:
            return [k.name, self.zones[i]]
        if k in _PAIR_KINDS:
            return [k.name, list(self.pairs[i])]
        return [k.name, self.devices[i]]


_LISTS = tuple(f.name for f in fields(Ids) if f.name != "n_tags")


def _pack(xs: Sequence[Any]) -> str:
    return msgspec.json.encode(xs).decode()


def _unpack(x: Any) -> Any:
    if isinstance(x, str):
        x = msgspec.json.decode(x)
    if not isinstance(x, list):
        raise TypeError("ids are not a list")
    return x


def _strs(xs: list[Any]) -> list[str]:
    if not all(isinstance(x, str) for x in xs):
        raise TypeError("ids must be strings")
    return xs


# Arrays some pipeline has taken over from a decoded snapshot (by id; an entry goes when its
# array does): taking one again would share it between two pipelines, so it is copied
_TAKEN: weakref.WeakValueDictionary[int, np.ndarray] = weakref.WeakValueDictionary()


def _index_map(old: Sequence[Any], new: Sequence[Any]) -> np.ndarray:
    pos = {k: i for i, k in enumerate(new)}
    return np.fromiter((pos.get(k, -1) for k in old), dtype=np.int64, count=len(old))


class Remap:
    """Old configuration's indices -> new configuration's (-1: gone).

    `take`: the state being mapped was made for this one import (a decoded snapshot) and
    nothing else uses it: on an unchanged configuration its arrays become the new state as
    they are (`rows`), where they fit, instead of being copied."""

    def __init__(self, old: Ids, new: Ids, take: bool = False) -> None:
        self.old, self.new = old, new
        self.identity = old == new  # `is` per field first: cheap when old is new
        self.take = take
        if self.identity:  # every index stays where it is
            self.slot = np.arange(len(new.devices), dtype=np.int64)
            self.subject = np.arange(len(new.subjects), dtype=np.int64)
            self.zone = np.arange(len(new.zones), dtype=np.int64)
            self.pair = np.arange(len(new.pairs), dtype=np.int64)
            return
        kind_old = [i < old.n_tags for i in range(len(old.devices))]
        kind_new = {d: i < new.n_tags for i, d in enumerate(new.devices)}
        self.slot = _index_map(old.devices, new.devices)
        for i, d in enumerate(old.devices):  # a tag that became a protected device: new
            if self.slot[i] >= 0 and kind_new[d] != kind_old[i]:
                self.slot[i] = -1
        self.subject = _index_map(old.subjects, new.subjects)
        zkey = list(zip(old.zones, old.zone_subject, old.zone_kind, strict=True))
        self.zone = _index_map(
            zkey, list(zip(new.zones, new.zone_subject, new.zone_kind, strict=True))
        )
        self.pair = _index_map(old.pairs, new.pairs)

    @classmethod
    def same(cls, ids: Ids) -> Remap:
        return cls(ids, ids)

    @classmethod
    def of(cls, data: Any, new: Ids, take: bool = False) -> Remap:
        """From exported ids `data` onto `new`; data that packs to the same texts is taken
        for `new` itself, so no second set of id tuples is built. ValueError when `data`
        is not ids."""
        return cls(new if new.matches(data) else Ids.from_data(data), new, take)

    # Lookups by id, built when first asked (a restart with no episodes open needs none)
    @cached_property
    def _old_zone(self) -> dict[str, int]:
        return {z: i for i, z in enumerate(self.old.zones)}

    @cached_property
    def _slot_of(self) -> dict[str, int]:
        return {d: i for i, d in enumerate(self.new.devices)}

    @cached_property
    def _pair_of(self) -> dict[tuple[str, str], int]:
        return {p: i for i, p in enumerate(self.new.pairs)}

    # -- ids to new indices --------------------------------------------------------------
    def device(self, device_id: str, tag: bool | None = None) -> int:
        """New slot of a device id (-1: gone); with `tag`, only a slot of that kind."""
        s = self._slot_of.get(device_id, -1)
        if s >= 0 and tag is not None and (s < self.new.n_tags) != tag:
            return -1
        return s

    def tag(self, device_id: str) -> int:
        return self.device(device_id, tag=True)

    def key(self, ref: Any) -> TrackerKey | None:
        """A tracker key from `Ids.key_ref` data, in the new configuration (None: gone)."""
        name, what = ref[0], ref[1]
        kind = TrackerKind[str(name)]
        if kind in _ZONE_KINDS:
            z = self.zone_index(self._old_zone.get(str(what), -1))
            return TrackerKey(kind, z) if z >= 0 else None
        if kind in _PAIR_KINDS:
            p = self._pair_of.get((str(what[0]), str(what[1])), -1)
            return TrackerKey(kind, p) if p >= 0 else None
        s = self.tag(str(what))
        return TrackerKey(kind, s) if s >= 0 else None

    def zone_index(self, old_z: int) -> int:
        return int(self.zone[old_z]) if 0 <= old_z < self.zone.shape[0] else -1

    def subject_index(self, old_s: int) -> int:
        return int(self.subject[old_s]) if 0 <= old_s < self.subject.shape[0] else -1

    # -- arrays ------------------------------------------------------------------------
    def rows(self, old: np.ndarray, new: np.ndarray) -> np.ndarray:
        """`new` (the fresh state, right length and dtype) with each kept slot's row of
        `old` (indexed by old slot, over all slots or over tags only) copied in; or `old`
        itself when it can be taken over (`take`). Assign the result in place of `new`:
        that drops the fresh array as the old one is adopted."""
        return old if self._takes(old, new) else self._copy(old, new, self.slot)

    def zone_rows(self, old: np.ndarray, new: np.ndarray) -> np.ndarray:
        return old if self._takes(old, new) else self._copy(old, new, self.zone)

    def _takes(self, old: Any, new: np.ndarray) -> bool:
        """Whether `old` becomes the state as it is: the configuration is unchanged, the
        caller gave its state away, and `old` is exactly what `new` is (dtype, shape, C
        order) and a writable array of its own memory that no pipeline has taken yet."""
        if not (self.take and self.identity and type(old) is np.ndarray):
            return False
        f = old.flags
        if (
            old.dtype != new.dtype
            or old.shape != new.shape
            or not (f.c_contiguous and f.writeable and f.owndata and f.aligned)
            or not new.flags.c_contiguous
            or _TAKEN.get(id(old)) is old
        ):
            return False
        _TAKEN[id(old)] = old
        return True

    @staticmethod
    def _copy(old: np.ndarray, new: np.ndarray, m: np.ndarray) -> np.ndarray:
        old = np.asarray(old)
        if old.dtype != new.dtype or old.shape[1:] != new.shape[1:]:
            raise ValueError(
                f"state array {old.dtype}{old.shape} does not fit {new.dtype}{new.shape}"
            )
        m = m[: old.shape[0]]
        keep = np.flatnonzero((m >= 0) & (m < new.shape[0]))
        new[m[keep]] = old[keep]
        return new

    def slot_field(self, rows: np.ndarray) -> np.ndarray:
        """Structured rows (FIX_DTYPE-like) of kept slots, their `slot` field renumbered."""
        m = self.slot[np.asarray(rows["slot"], dtype=np.int64)]
        out = rows[m >= 0].copy()
        out["slot"] = m[m >= 0]
        return out

    def zone_id(self, zone_id: str) -> int:
        """New index of an old zone id (-1: gone)."""
        return self.zone_index(self._old_zone.get(zone_id, -1))
