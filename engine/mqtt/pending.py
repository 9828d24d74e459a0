"""What the serve loop (engine/mqtt/serve.py) has decided and not yet committed, and the
one commit that may be in flight while the next batch is decided.

A commit spends much of its time without the GIL (SQLite's write and fsync, the records
row's Merkle kernel), and the fsync is a wait: deciding the next batch meanwhile uses
it (two shards on a gateway backlog spent about 15 % of their time waiting there). So
under a backlog (a batch ended at a limit, `Lanes.full`) the processor decides batch k+1
while batch k's commit is in flight, and:
- batch k is acknowledged only after its commit, as before; batch k+1 after its own;
- at most one batch is decided ahead of the ledger: k+1 waits for k's commit to land
  before its own starts, and a failing commit holds everything (nothing more decided);
- a commit that fails keeps its steps ahead of what was decided meanwhile (`then`), so
  the ledger still gets every step in the order it was decided;
- the pending steps are touched on the event loop's thread only, and a snapshot is
  taken only with nothing decided ahead and no decision running."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from engine.store.ledger import Step
from engine.wire.alerts import Alert
from engine.wire.records import DeadLetter


@dataclass
class Pending:
    """Decided but not yet committed: kept across failed commits, never decided twice."""

    steps: list[Step] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.steps or self.alerts or self.dead)

    def then(self, later: Pending) -> Pending:
        """These, then `later`'s (decided after them)."""
        return Pending(
            [*self.steps, *later.steps], [*self.alerts, *later.alerts], [*self.dead, *later.dead]
        )


class InFlight:
    """The one settle (commit, then acknowledge) that may run while the next batch is
    decided."""

    def __init__(self) -> None:
        self._task: asyncio.Task[bool] | None = None
        self.started = 0  # commits that ran while the next batch was decided ("ahead")

    def start(self, settle: Coroutine[Any, Any, bool]) -> None:
        if self._task is not None:  # a bug in the caller: never two commits at once
            settle.close()
            raise RuntimeError("a commit is already in flight")
        self._task = asyncio.create_task(settle, name="settle")
        self.started += 1

    async def landed(self) -> bool:
        """Wait for the commit in flight, if any; False when it could not be made (the
        engine is stopping: nothing more may be decided)."""
        task, self._task = self._task, None
        return True if task is None else await task
