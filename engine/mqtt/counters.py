"""The serve loop's live counters (engine/mqtt/serve.py), logged every --stats-every
seconds and read by the console's /metrics and by tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.core.pipeline import BatchResult


@dataclass
class Counters:
    """Live counters of the serve loop, logged periodically and readable by tests."""

    received: int = 0
    processed: int = 0
    fixes: int = 0
    events: int = 0
    duplicates: int = 0
    elsewhere: int = 0  # another shard's devices' records (a gateway's batch), dropped
    dead: int = 0
    alerts: int = 0
    batches: int = 0
    commands: int = 0
    acked: int = 0
    connects: int = 0
    store_errors: int = 0
    lag_s: float = 0.0
    extra: dict[str, int] = field(default_factory=dict)

    def decided(self, res: BatchResult, dead: int) -> None:
        """Count a decided batch: what the pipeline took, and its dead letters."""
        self.fixes += res.fixes
        self.events += res.events
        self.duplicates += res.duplicates
        self.elsewhere += res.elsewhere
        self.dead += dead
