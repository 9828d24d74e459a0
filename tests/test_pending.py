"""engine/mqtt/pending.py: the steps decided and not committed keep their order across a
failed commit, and one commit at most is in flight (the serve loop's pipelining; the
faults suite drives it through a locked database and a full disk)."""

from __future__ import annotations

import asyncio

import pytest

from engine.mqtt.pending import InFlight, Pending
from engine.store.ledger import Step


def test_a_failed_commits_steps_stay_ahead_of_those_decided_meanwhile() -> None:
    first = Pending([Step("batch", 1.0), Step("tick", 2.0)])
    later = Pending([Step("batch", 3.0)])
    both = first.then(later)
    assert [s.now for s in both.steps] == [1.0, 2.0, 3.0]
    assert [s.now for s in first.steps] == [1.0, 2.0]  # neither is changed
    assert not Pending() and both


def test_one_commit_in_flight_and_its_outcome() -> None:
    async def run() -> list[bool]:
        inflight = InFlight()
        order: list[str] = []

        async def settle(ok: bool) -> bool:
            await asyncio.sleep(0.01)
            order.append("committed")
            return ok

        assert await inflight.landed()  # nothing in flight
        inflight.start(settle(True))
        with pytest.raises(RuntimeError):
            inflight.start(settle(True))
        order.append("decided meanwhile")
        got = [await inflight.landed()]
        assert order[:2] == ["decided meanwhile", "committed"]
        inflight.start(settle(False))
        got.append(await inflight.landed())
        got.append(await inflight.landed())  # landed: nothing in flight any more
        return got

    assert asyncio.run(run()) == [True, False, True]
