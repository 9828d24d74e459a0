"""The ledger checkpoint as a message and a file: `Checkpoint`, its JSON, and reading it
back from what `tagwatch audit verify` printed or what the engine published, retained, on
`tagwatch/v1/engine/checkpoint` (docs/formats.md, "Ledger checkpoint").

The engine signs it (engine/store/signing.py) and keeps the newest in its store; it is
published so that a copy lives somewhere the store's writer cannot reach: `audit verify
--checkpoint FILE` against it shows a cut end or a roll-back the store alone hides."""

from __future__ import annotations

import msgspec

from engine.errors import DecodeError

PREFIX = b"checkpoint:"  # what `audit verify` prints before it; optional when read back


class Checkpoint(msgspec.Struct, forbid_unknown_fields=False):
    """Where the chain stood: row `n` has hash `hash`; rows up to `anchor_n` were pruned."""

    n: int
    step: int
    hash: str
    anchor_n: int = 0
    anchor_hash: str = ""
    alert_seq: int = 0
    now: float | None = None
    key: str = ""  # the signer's Ed25519 public key, hex
    sig: str = ""  # Ed25519 over this JSON with sig ""

    def encode(self) -> bytes:
        return msgspec.json.encode(self)


def decode_checkpoint(data: bytes | str) -> Checkpoint:
    """A checkpoint from a retained message's payload, a line `audit verify` printed (with
    or without `checkpoint: `), surrounding whitespace allowed. DecodeError if it is not."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    raw = raw.strip().removeprefix(PREFIX).strip()
    try:
        return msgspec.json.decode(raw, type=Checkpoint)
    except msgspec.DecodeError as e:
        raise DecodeError(f"not a ledger checkpoint ({e})") from None
