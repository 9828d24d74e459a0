"""Restart recovery: pipeline snapshots, and rebuilding state from the evidence ledger.

The live engine commits every pipeline step (a batch of records, a tick of time, a resume
after a restart, a configuration change) to the ledger before it acknowledges the messages
it held. The pipeline is deterministic in its steps, so the newest snapshot plus the steps
after it rebuild exactly the state the engine had after its last commit: the same
episodes, the same seq frontiers (a redelivered message is a duplicate), the same silence
clocks. Whatever the rebuild decides was decided, committed and published before the
crash; only alert records that are not in the store byte for byte are new.

A snapshot is data, not code (engine/store/snapshot.py): the state `Pipeline.export_state`
gives, keyed by device, subject, zone and pair ids, plus the hashes of the zones and
subjects files it was taken under. Its sha256 is in the ledger (a `snapshot` row); a
snapshot whose bytes do not match, or that does not decode, is refused and the state is
rebuilt from the ledger instead. Nothing in a snapshot is ever executed.

Because state is keyed by ids, a snapshot taken under other zones or subjects still
loads: devices, zones and proximity pairs that are still there keep their state, new ones
start empty, removed ones are dropped (engine/core/remap.py). A `config` step in the
ledger (a SIGHUP reload, or a start with changed files) holds the files' full texts, so
replaying across it builds exactly the configuration the live engine switched to."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field

from engine.core.pipeline import BatchResult, Pipeline
from engine.store import snapshot as snapfmt
from engine.store.base import Store
from engine.store.config import ConfigError, ConfigFiles
from engine.store.ledger import Step
from engine.wire.alerts import Alert
from zones.model import ZoneSet

log = logging.getLogger("tagwatch.recovery")

Hashes = tuple[str, str]  # (zones sha256, subjects sha256)


def fingerprint(p: Pipeline) -> str:
    """What the state's arrays are shaped by: devices, subjects and zones, in slot order
    (kept beside each snapshot for the operator; loading does not depend on it)."""
    reg = p.registry
    parts = [
        "\x1e".join(reg.device_ids),
        "\x1e".join(reg.subject_ids),
        "\x1e".join(p.table.zone_ids),
        str(reg.n_tags),
        "\x1e".join(f"{a.subject}:{a.device}" for a in reg.pairs),
    ]
    return hashlib.sha256("\x1d".join(parts).encode()).hexdigest()[:32]


def snapshot(p: Pipeline, config: Hashes | None = None) -> bytes:
    """The pipeline's state as data, with the hashes of the files it runs on."""
    meta = {"config": None if config is None else list(config), "fingerprint": fingerprint(p)}
    return snapfmt.encode(p.export_state(), meta)


def restore(p: Pipeline, data: bytes) -> bool:
    """Load snapshot bytes into `p`, a freshly built pipeline (of any configuration: state
    is mapped by ids). True when the configuration was the snapshot's own. SnapshotError
    (a ValueError), KeyError or TypeError when `data` is not a snapshot's state."""
    state, _ = snapfmt.decode(data)
    return p.import_state(state, take=True).identity  # the decoded arrays are p's alone


def reconfigure(p: Pipeline, zoneset: ZoneSet) -> Pipeline:
    """A pipeline on new zones and subjects carrying `p`'s state across by ids."""
    new = Pipeline(zoneset, p.settings)
    new.import_state(p.export_state())
    return new


def apply(p: Pipeline, step: Step) -> BatchResult:
    """One step, exactly as the live engine ran it (a config step: `apply_config`)."""
    if step.kind == "batch":
        return p.process(step.records, origin="mqtt", arrival=step.now, wall=step.now)
    if step.kind == "tick":
        return p.tick(step.now, wall=step.now)
    if step.kind == "resume":
        credit(p, step.credit)
        return BatchResult()
    raise ValueError(f"unknown step kind {step.kind!r} in the ledger")


def apply_config(p: Pipeline, step: Step) -> tuple[Pipeline, ConfigFiles]:
    """A config step: the pipeline on the files it recorded. ConfigError if they do not
    load (the caller keeps `p`)."""
    if step.config is None:
        raise ConfigError("config step without a configuration")
    files = ConfigFiles.from_data(step.config)
    return reconfigure(p, files.zoneset()), files


def credit(p: Pipeline, seconds: float) -> None:
    """The engine was down `seconds`: the broker queued what devices sent meanwhile, so
    that time is not the devices' silence, nor a seq gap's wait."""
    if seconds > 0:
        p.health.credit(seconds)
        p.reorder.credit(seconds)


@dataclass
class Recovered:
    pipeline: Pipeline | None = None  # the pipeline in force after the last step
    config: Hashes | None = None  # its files' hashes, when the ledger or snapshot says
    steps: int = 0
    records: int = 0
    from_snapshot: bool = False
    remapped: bool = False  # the snapshot's state was mapped onto other zones/subjects
    refused: str | None = None  # why the newest snapshot was not used
    rebuilt: bool = False  # replayed from the oldest retained step
    last_now: float | None = None
    alerts: list[Alert] = field(default_factory=list)  # decided again but not in the store
    seconds: float = 0.0

    def line(self) -> str:
        src = "full rebuild, " if self.rebuilt else ""
        if self.from_snapshot:
            src = (
                "snapshot (mapped onto the new configuration by ids) + "
                if self.remapped
                else "snapshot + "
            )
        return (
            f"recovered state: {src}{self.steps} steps, {self.records} records replayed "
            f"in {self.seconds:.2f} s; {len(self.alerts)} alert records not in the store"
        )


def _recorded(store: Store, hashes: Hashes) -> ConfigFiles | None:
    """The files of the newest retained config step with these hashes."""
    for _, cfg in store.config_steps():
        try:
            files = ConfigFiles.from_data(cfg)
        except ConfigError:
            continue
        if files.hashes == hashes:
            return files
    return None


def _from_snapshot(p: Pipeline, store: Store, files: ConfigFiles | None, out: Recovered) -> int:
    """Load the newest snapshot whose hash the ledger confirms; the ledger row it was taken
    after (0: none usable). Sets out.pipeline (the snapshot's own configuration when the
    ledger still has it, else `p` with the state mapped by ids)."""
    snap = store.latest_snapshot()
    if snap is None:
        return 0
    n, now, _, data = snap
    want, got = store.snapshot_hash(n), hashlib.sha256(data).hexdigest()
    if want != got:
        out.refused = (
            "its hash is recorded nowhere in the evidence ledger"
            if want is None
            else f"its sha256 {got[:16]}... is not the {want[:16]}... the ledger records"
        )
        log.error(
            "snapshot after ledger row %d refused: %s; rebuilding state from the ledger",
            n, out.refused,
        )  # fmt: skip
        return 0
    try:
        state, meta = snapfmt.decode(data)
        cfg = meta.get("config")
        snap_cfg = (str(cfg[0]), str(cfg[1])) if isinstance(cfg, list) and len(cfg) == 2 else None
        base, out.config = p, snap_cfg
        if snap_cfg is not None and (files is None or snap_cfg != files.hashes):
            own = _recorded(store, snap_cfg)
            if own is not None:  # replay the steps after it on the files they ran on
                base = Pipeline(own.zoneset(), p.settings)
            else:
                out.config = None
        # The decoded arrays are the pipeline's alone: taken over, not copied
        out.remapped = not base.import_state(state, take=True).identity
        out.pipeline = base
    except (ValueError, KeyError, TypeError, IndexError) as e:
        out.refused = f"unusable ({e})"
        out.config = None
        log.warning("snapshot after ledger row %d unusable (%s); rebuilding from the ledger", n, e)
        return 0
    out.from_snapshot, out.last_now = True, now
    if out.remapped:
        log.warning(
            "zones or subjects changed since the snapshot: its state was mapped onto the new"
            " configuration by device, subject and zone ids (no rebuild)"
        )
    return n


def recover(p: Pipeline, store: Store, files: ConfigFiles | None = None) -> Recovered:
    """Bring a fresh pipeline (built from `files`, the files on disk) to the state after
    the store's last committed step; `Recovered.pipeline` is the pipeline in force then
    (another object when a config step was replayed). StoreError when the store cannot be
    read."""
    t0 = time.perf_counter()
    out = Recovered(pipeline=p)
    after = _from_snapshot(p, store, files, out)
    if not out.from_snapshot:
        out.pipeline = p if out.refused is None else Pipeline(p.zoneset, p.settings)
        out.config = None  # known only from a config step replayed below
        out.rebuilt = out.refused is not None
    cur = out.pipeline
    assert cur is not None
    decided: list[Alert] = []
    for step in store.steps_after(after):
        if step.kind == "config":
            try:
                cur, taken = apply_config(cur, step)
                out.config = taken.hashes
            except ConfigError as e:  # never stop a restart: say it, go on as before
                log.error("ledger: config step could not be replayed (%s); keeping the last", e)
        else:
            res = apply(cur, step)
            decided.extend(res.alerts)
            out.records += len(step.records)
        out.steps += 1
        out.last_now = step.now
    out.pipeline = cur
    out.alerts = store.missing(decided) if decided else []
    out.seconds = time.perf_counter() - t0
    return out
