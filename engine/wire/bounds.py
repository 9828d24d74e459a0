"""The contract's field bounds and the decoder's input limits: what is a position, a time,
a seq, and how large one message may be."""

from __future__ import annotations

from dataclasses import dataclass

# Accuracy assumed for an OwnTracks location without `acc`: a deliberately pessimistic
# figure (roughly a coarse wifi/cell fix), so a phone that omits it never looks precise.
OWNTRACKS_DEFAULT_ACC_M = 65.0
ACC_MAX_M = 100_000.0  # a fix vaguer than 100 km is not a position
T_MIN = 946_684_800.0  # 2000-01-01T00:00:00Z, inclusive
T_MAX = 4_102_444_800.0  # 2100-01-01T00:00:00Z, exclusive
SEQ_MAX = 2**63 - 1  # seq is stored as int64


@dataclass(frozen=True)
class Limits:
    """Input bounds; anything beyond them is dead-lettered, not processed."""

    max_payload_bytes: int = 262_144
    max_batch: int = 2000
    max_id_len: int = 128


DEFAULT_LIMITS = Limits()
