"""Opt-in warnings to a protected device itself when its subject approaches or breaches.

Fed by the alert log like the webhooks (a second reader). A record warns when it is an
open `proximity`, `proximity_approach`, `zone_breach` or `zone_approach` record (not a
workflow action, not a close) of a subject whose protected devices opted in (subjects
TOML `warn_protected`, or `warn` on one `[[subjects.protected]]`; docs/notifications.md).
Proximity records warn the one device they are about (their `zone`); zone records warn
every opted-in device of the subject.

Each warning is recorded (`warnings`, engine/store/notify/feed.py, and a `warning` row of
the evidence ledger: engine/store/ledger.py) before it is sent and
marked when the broker confirms it (QoS 1 through the engine's session): a record warns a
device once (the row is unique per record and device, so a restart that reads the log
again sends nothing twice), an alert warns a device at most once per `repeat_s` however
often it escalates, and a warning not confirmed is retried until `expire_s` after it was
decided; then it is marked `expired` (a warning an hour late would mislead). A record read
more than `expire_s` after it was written warns no one, for the same reason."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from engine.errors import StoreError
from engine.notify.webhook import POLL_S, retrying, wait
from engine.store.notify.feed import LogRow, NotifyStore, Warning
from engine.wire.commands import WARNING_KINDS, encode_warning
from zones.model import Subject

log = logging.getLogger("tagwatch.notify")

REPEAT_S = 600.0  # an alert warns a device at most once per 10 minutes (escalations)
EXPIRE_S = 900.0  # a warning not out 15 minutes after its record is not sent at all
RETRY_S = 5.0  # pending warnings are published again this often
# The engine store's `note(kind, device, seq, t, body)`: a row of the evidence ledger
Ledger = Callable[[str, str, int | None, float, bytes], int]
CURSOR_EVERY_S = 30.0  # the read position is stored at least this often (when it moved)

# Publish QoS 1 and return the broker's PUBACK reason code (>= 0x80: refused); raises on
# no connection or no PUBACK (the engine's MqttSession.publish_confirmed).
Publish = Callable[[str, bytes], Awaitable[int]]


@dataclass
class WarningStats:
    decided: int = 0  # warnings recorded
    sent: int = 0  # ...confirmed by the broker
    failed: int = 0  # publish attempts that failed (retried)
    expired: int = 0  # given up: too old to send


def _decode(record: bytes) -> dict[str, Any] | None:
    try:
        obj = msgspec.json.decode(record)
    except msgspec.DecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def plan(row: LogRow, subjects: Mapping[str, Subject]) -> list[Warning]:
    """The warnings one alert_log row calls for (none for most)."""
    rec = _decode(row.record)
    if rec is None or rec.get("state") != "open" or "workflow" in rec or "actions" in rec:
        return []
    kind = rec.get("kind")
    subject = subjects.get(str(rec.get("subject")))
    if kind not in WARNING_KINDS or subject is None:
        return []
    devices = subject.warned_devices()
    if kind.startswith("proximity"):
        devices = tuple(d for d in devices if d == rec.get("zone"))
    detail = rec.get("detail")
    dist = detail.get("distance_m") if isinstance(detail, dict) else None
    if not kind.startswith("proximity"):
        dist = None  # a zone approach's distance is to the zone, not to this device
    out = []
    for device in devices:
        topic, payload = encode_warning(
            device, row.alert_id, str(kind), str(rec.get("severity")),
            float(rec.get("raised_t") or 0.0), dist if isinstance(dist, int | float) else None,
        )  # fmt: skip
        out.append(Warning(row.seq, row.alert_id, device, topic, payload))
    return out


def _plan(row: LogRow, subjects: Mapping[str, Subject]) -> list[Warning]:
    """plan(), and a record it cannot read warns no one (said) instead of stopping it."""
    try:
        return plan(row, subjects)
    except (TypeError, ValueError, AttributeError) as e:
        log.error("alert record %d cannot be read for warnings (%s); skipped", row.seq, e)
        return []


class ProtectedWarner:
    """Reads the alert log after its position and warns opted-in protected devices."""

    def __init__(
        self,
        store: NotifyStore,
        subjects: Callable[[], Mapping[str, Subject]],
        publish: Publish,
        *,
        start: int,
        repeat_s: float = REPEAT_S,
        expire_s: float = EXPIRE_S,
        ledger: Ledger | None = None,
    ) -> None:
        """`start`: the alert_log seq to read after (the stored position, or the log's
        end when the warner never ran: history warns no one). `ledger`: the engine
        store's `note`, so each warning decided is a row of the evidence ledger."""
        self.ledger = ledger
        self.store = store
        self.subjects = subjects
        self.publish = publish
        self.seq = start
        self.repeat_s = repeat_s
        self.expire_s = expire_s
        self.stats = WarningStats()
        self.wake = asyncio.Event()
        self._stored = (start, time.monotonic())
        self._retry_at = 0.0

    async def run(self) -> None:
        log.info("protected-device warnings: reading alert records after seq %d", self.seq)
        while True:
            if time.monotonic() >= self._retry_at:
                await self._send(await retrying(self.store.pending_warnings))
            page = await retrying(self.store.alert_log_after, self.seq)
            if not page:
                await self._keep_position(force=False)
                await wait(self.wake, POLL_S)
                continue
            now = time.time()
            subjects = self.subjects()
            fresh = [w for row in page if now - row.written_at <= self.expire_s
                     for w in _plan(row, subjects)]  # fmt: skip
            self.seq = page[-1].seq
            if fresh:
                added = await retrying(self.store.add_warnings, fresh, self.seq, self.repeat_s)
                self._stored = (self.seq, time.monotonic())
                await self._in_ledger(added)
                self.stats.decided += len(added)
                await self._send(added)
            else:
                await self._keep_position(force=False)

    async def _in_ledger(self, added: list[Warning]) -> None:
        """A `warning` row per warning decided (before it is sent), in the hash chain."""
        if self.ledger is None:
            return
        for w in added:
            body = json.dumps({"warning": w.id, "alert": w.alert_id, "topic": w.topic,
                               "sha256": hashlib.sha256(w.payload).hexdigest()},
                              separators=(",", ":")).encode()  # fmt: skip
            t = round(w.created_at or time.time(), 3)
            try:
                await asyncio.to_thread(self.ledger, "warning", w.device, w.alert_seq, t, body)
            except StoreError as e:  # the warning still goes out; the table has it
                log.error("warning %d to %s not in the evidence ledger: %s", w.id, w.device, e)

    async def _keep_position(self, force: bool) -> None:
        seq, at = self._stored
        if seq != self.seq and (force or time.monotonic() - at >= CURSOR_EVERY_S):
            await retrying(self.store.set_warning_cursor, self.seq)
            self._stored = (self.seq, time.monotonic())

    async def close(self) -> None:
        """Store the read position (on the engine's stop)."""
        await self._keep_position(force=True)

    async def _send(self, warnings: list[Warning]) -> None:
        failed = False
        for w in warnings:
            if time.time() - w.created_at > self.expire_s:
                log.error("warning to %s about alert %s (record %d) EXPIRED unsent: the broker"
                          " never confirmed it", w.device, w.alert_id, w.alert_seq)  # fmt: skip
                await retrying(self.store.mark_warning, w.id, "expired")
                self.stats.expired += 1
                continue
            try:
                rc = await self.publish(w.topic, w.payload)
            except Exception as e:
                failed = True
                self.stats.failed += 1
                log.warning("warning to %s not published (%s); retrying", w.device, e)
                continue
            if rc >= 0x80:
                failed = True
                self.stats.failed += 1
                log.error("broker refused the warning to %s on %s (reason 0x%02X): let the"
                          " engine publish there (its ACL)", w.device, w.topic, rc)  # fmt: skip
                continue
            await retrying(self.store.mark_warning, w.id, "sent")
            self.stats.sent += 1
            log.info("warned protected device %s of alert %s (record %d)",
                     w.device, w.alert_id, w.alert_seq)  # fmt: skip
        if failed:
            self._retry_at = time.monotonic() + RETRY_S
