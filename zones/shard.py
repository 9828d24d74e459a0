"""Shards: several engine processes share one subjects file, each owning the subjects whose
stable hash falls in its part (`tagwatch serve --shard i/N`, docs/deployment.md).

The hash is the first 8 bytes of SHA-256 of the subject id's UTF-8, big-endian, modulo N:
the same on every machine and Python, so an integrator can compute which process owns a
subject. A subject's devices, zones and protected devices go with it; gateways stay whole
(each shard takes a gateway batch's elements for its own tags). The devices of other
shards' subjects are kept as `ZoneSet.elsewhere`: their messages are not this engine's
to decide, nor bad input to dead-letter."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass

from zones.model import Subject, ZoneSet
from zones.rows import zone_rows

_SPEC = re.compile(r"(\d{1,4})(?:/|-of-)(\d{1,4})")  # 0/2, or 0-of-2 (a systemd instance)


def subject_hash(subject: str) -> int:
    """The stable 64-bit hash a subject's shard is chosen by."""
    return int.from_bytes(hashlib.sha256(subject.encode("utf-8")).digest()[:8], "big")


@dataclass(frozen=True)
class Shard:
    """Part `index` (from 0) of `count`."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not (self.count >= 1 and 0 <= self.index < self.count):
            raise ValueError(
                f"shard {self.index}/{self.count}: want i/N with N >= 1 and 0 <= i < N"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'i/N' (e.g. '0/2') or its label 'i-of-N'; ValueError saying what is wanted."""
        m = _SPEC.fullmatch(text.strip())
        if m is None:
            raise ValueError(f"shard {text!r}: want i/N, e.g. 0/2 (the first of two)")
        return cls(int(m[1]), int(m[2]))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def label(self) -> str:
        """For names without '/': topics, client ids, schemas ('0-of-2')."""
        return f"{self.index}-of-{self.count}"

    def owns(self, subject: str) -> bool:
        return subject_hash(subject) % self.count == self.index

    def split(self, zs: ZoneSet) -> ZoneSet:
        """This shard's part of `zs`: its subjects and their zones, every gateway, and
        in `elsewhere` the devices of the subjects it does not own."""
        mine: list[Subject] = []
        ids: set[str] = set()
        kept: set[str] = set()
        others: set[str] = set()
        for s in zs.subjects:  # one pass, one hash a subject
            devs = (*s.tags, *(p.device for p in s.protected))
            if self.owns(s.id):
                mine.append(s)
                ids.add(s.id)
                kept.update(devs)
            else:
                others.update(devs)
        return dataclasses.replace(
            zs,
            zones=zone_rows(zs.zones).only(ids),  # as columns: no Zone object made per zone
            subjects=tuple(mine),
            elsewhere=frozenset(others - kept),  # a device two subjects share stays ours
        )


def devices(zs: ZoneSet) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(tags, protected devices) of the subjects in `zs`, each once, in file order: what a
    shard subscribes to."""
    tags = dict.fromkeys(t for s in zs.subjects for t in s.tags)
    prot = dict.fromkeys(p.device for s in zs.subjects for p in s.protected)
    return tuple(tags), tuple(d for d in prot if d not in tags)
