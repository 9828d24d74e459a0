"""Restart recovery: pipeline snapshots, and rebuilding state from the evidence ledger.

The live engine commits every pipeline step (a batch of records, a tick of time, a resume
after a restart) to the ledger before it acknowledges the messages it held. The pipeline is
deterministic in its steps, so the newest snapshot plus the steps after it rebuild exactly
the state the engine had after its last commit: the same episodes, the same seq frontiers
(a redelivered message is a duplicate), the same silence clocks. Whatever the rebuild
decides was decided, committed and published before the crash; only alert records that
are not in the store byte for byte are new.

A snapshot pickles the pipeline's *state*; its configuration (settings, zones, registry,
compiled arrays) is referenced by name and comes from the restarted engine's own files, so
changed thresholds apply at once. When the zones or subjects changed shape (devices,
subjects or zones added, removed or reordered) the snapshot no longer fits: the state is
rebuilt by replaying every retained step through the new configuration instead."""

from __future__ import annotations

import hashlib
import io
import logging
import pickle
import time
from dataclasses import dataclass, field
from typing import Any

from engine.core.pipeline import BatchResult, Pipeline
from engine.store.base import Store
from engine.store.ledger import Step
from engine.wire.alerts import Alert

log = logging.getLogger("tagwatch.recovery")

# Configuration objects a pipeline's state refers to: pickled as references, not values.
_STATIC = ("settings", "zoneset", "table", "registry", "schedules")


def fingerprint(p: Pipeline) -> str:
    """What the state's arrays are shaped by: devices, subjects and zones, in slot order."""
    reg = p.registry
    parts = [
        "\x1e".join(reg.device_ids),
        "\x1e".join(reg.subject_ids),
        "\x1e".join(p.table.zone_ids),
        str(reg.n_tags),
        "\x1e".join(f"{a.subject}:{a.device}" for a in reg.pairs),
    ]
    return hashlib.sha256("\x1d".join(parts).encode()).hexdigest()[:32]


class _Pickler(pickle.Pickler):
    def __init__(self, buf: io.BytesIO, p: Pipeline) -> None:
        super().__init__(buf, protocol=5)
        self._refs = {id(getattr(p, name)): name for name in _STATIC}

    def persistent_id(self, obj: Any) -> str | None:
        return self._refs.get(id(obj))


class _Unpickler(pickle.Unpickler):
    def __init__(self, buf: io.BytesIO, p: Pipeline) -> None:
        super().__init__(buf)
        self._p = p

    def persistent_load(self, pid: Any) -> Any:
        if pid not in _STATIC:
            raise pickle.UnpicklingError(f"unknown reference {pid!r} in snapshot")
        return getattr(self._p, pid)


def snapshot(p: Pipeline) -> bytes:
    buf = io.BytesIO()
    state = {k: v for k, v in vars(p).items() if k not in _STATIC}
    _Pickler(buf, p).dump(state)
    return buf.getvalue()


def restore(p: Pipeline, data: bytes) -> None:
    """Load snapshot state into `p`, a pipeline freshly built from the same-shaped config."""
    state = _Unpickler(io.BytesIO(data), p).load()
    vars(p).update(state)


def apply(p: Pipeline, step: Step) -> BatchResult:
    """One step, exactly as the live engine ran it."""
    if step.kind == "batch":
        return p.process(step.records, origin="mqtt", arrival=step.now, wall=step.now)
    if step.kind == "tick":
        return p.tick(step.now, wall=step.now)
    if step.kind == "resume":
        credit(p, step.credit)
        return BatchResult()
    raise ValueError(f"unknown step kind {step.kind!r} in the ledger")


def credit(p: Pipeline, seconds: float) -> None:
    """The engine was down `seconds`: the broker queued what devices sent meanwhile, so
    that time is not the devices' silence, nor a seq gap's wait."""
    if seconds > 0:
        p.health.credit(seconds)
        p.reorder.credit(seconds)


@dataclass
class Recovered:
    steps: int = 0
    records: int = 0
    from_snapshot: bool = False
    rebuilt: bool = False  # config changed shape: replayed from the oldest retained step
    last_now: float | None = None
    alerts: list[Alert] = field(default_factory=list)  # decided again but not in the store
    seconds: float = 0.0

    def line(self) -> str:
        src = "snapshot + " if self.from_snapshot else ("full rebuild, " if self.rebuilt else "")
        return (
            f"recovered state: {src}{self.steps} steps, {self.records} records replayed "
            f"in {self.seconds:.2f} s; {len(self.alerts)} alert records not in the store"
        )


def recover(p: Pipeline, store: Store) -> Recovered:
    """Bring a fresh pipeline to the state after the store's last committed step.
    StoreError when the store cannot be read."""
    t0 = time.perf_counter()
    out = Recovered()
    fp = fingerprint(p)
    after = 0
    snap = store.latest_snapshot()
    if snap is not None:
        n, now, snap_fp, data = snap
        if snap_fp == fp:
            try:
                restore(p, data)
                after, out.from_snapshot, out.last_now = n, True, now
            except Exception as e:  # a snapshot from another tagwatch version
                log.warning(
                    "snapshot at ledger row %d unusable (%s); rebuilding from the ledger", n, e
                )
        else:
            out.rebuilt = True
            log.warning(
                "zones or subjects changed shape since the last snapshot: rebuilding state by "
                "replaying the retained evidence ledger through the new configuration"
            )
    decided: list[Alert] = []
    for step in store.steps_after(after):
        res = apply(p, step)
        decided.extend(res.alerts)
        out.steps += 1
        out.records += len(step.records)
        out.last_now = step.now
    out.alerts = store.missing(decided) if decided else []
    out.seconds = time.perf_counter() - t0
    return out
