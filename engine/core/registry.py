"""Device registry: every tag and protected device gets an integer slot; per-slot facts
live in numpy arrays so per-device state scales to hundreds of thousands of devices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zones.model import ZoneSet


@dataclass(frozen=True)
class ProximityPair:
    """A subject and a protected device they must keep away from."""

    subject: int  # subject slot
    device: int  # device slot of the protected device
    device_id: str
    radius_m: float
    warn_m: float


class Registry:
    """Maps device ids to slots. Slots [0, n_tags) are tags; the rest protected devices."""

    def __init__(self, zoneset: ZoneSet, subject_ids: tuple[str, ...]) -> None:
        subj_slot = {s: i for i, s in enumerate(subject_ids)}
        self.subject_ids = subject_ids
        self.subject_risk = np.ones(len(subject_ids), dtype=np.int32)
        # The tagging period [from, until) of each subject slot: outside it nothing of
        # theirs raises an alert (-inf / +inf: open)
        self.subject_from = np.full(len(subject_ids), -np.inf)
        self.subject_until = np.full(len(subject_ids), np.inf)
        subjects = zoneset.subjects
        # Per-subject facts as whole arrays (500k subjects: no numpy scalar writes)
        slots = np.fromiter((subj_slot[s.id] for s in subjects), np.int64, len(subjects))
        self.subject_risk[slots] = np.fromiter((s.risk for s in subjects), np.int32, len(slots))
        self.subject_from[slots] = np.fromiter((s.valid_from for s in subjects), np.float64)
        self.subject_until[slots] = np.fromiter((s.valid_until for s in subjects), np.float64)
        self.device_ids: list[str] = [tag for s in subjects for tag in s.tags]
        self.slot_of: dict[str, int] = {tag: k for k, tag in enumerate(self.device_ids)}
        subject_of_slot = np.repeat(
            slots, np.fromiter((len(s.tags) for s in subjects), np.int64, len(slots))
        ).tolist()
        self.n_tags = len(self.device_ids)
        pairs: list[ProximityPair] = []
        for s in zoneset.subjects:
            for p in s.protected:
                if p.device not in self.slot_of:
                    self.slot_of[p.device] = len(self.device_ids)
                    self.device_ids.append(p.device)
                    subject_of_slot.append(-1)
                pairs.append(
                    ProximityPair(
                        subj_slot[s.id], self.slot_of[p.device], p.device, p.radius_m, p.warn_m
                    )
                )
        self.pairs = tuple(pairs)
        self.subject_of_slot = np.asarray(subject_of_slot, dtype=np.int32)
        by_subject: dict[int, list[int]] = {}
        for k, pr in enumerate(pairs):
            by_subject.setdefault(pr.subject, []).append(k)
        self.pairs_of_subject = {s: tuple(v) for s, v in by_subject.items()}

    @property
    def n_slots(self) -> int:
        return len(self.device_ids)

    def who(self, slot: int) -> tuple[str, str]:
        """(subject id, device id) of a tag slot."""
        return self.subject_ids[int(self.subject_of_slot[slot])], self.device_ids[slot]

    def monitored(self, slot: int, t: float) -> bool:
        """Whether tag `slot`'s subject is in their tagging period at Unix time t."""
        s = int(self.subject_of_slot[slot])
        return bool(self.subject_from[s] <= t < self.subject_until[s])

    def period_start(self, slot: int) -> float:
        """When tag `slot`'s tagging period starts (-inf: always monitored)."""
        return float(self.subject_from[int(self.subject_of_slot[slot])])

    def slot(self, device: str) -> int:
        """Slot of a device id, or -1 when it is not in the subjects file."""
        return self.slot_of.get(device, -1)
