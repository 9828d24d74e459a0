"""Webhooks: every alert_log row (alert records, and workflow actions, which are alert
records too) POSTed to a receiver in seq order, signed, retried until it says 2xx.

Request: body = the record's bytes exactly as stored and published; headers
`Content-Type: application/json`, `X-Tagwatch-Timestamp: <Unix seconds>`,
`X-Tagwatch-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>` and
`X-Tagwatch-Delivery: <alert_log seq>` (the same on every retry: receivers dedupe on it).

Delivery is at least once: the position (`webhook_cursor`) is stored after each 2xx, so a
restart resumes after the last acknowledged record; a crash between a 2xx and that write
sends one record again. Nothing is ever dropped: a failure (no connection, timeout, 5xx,
408, 429) is retried with exponential backoff (1 s doubling to 5 min, with jitter;
429/503's Retry-After is honoured up to 5 min); any other 4xx is logged as an ERROR and
retried no faster than every minute (the receiver's configuration is wrong, the records
must still reach it). One record at a time per webhook, so order holds."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from engine import __version__
from engine.errors import ConfigError, StoreError
from engine.store.notify.feed import LogRow, NotifyStore

log = logging.getLogger("tagwatch.notify")

POLL_S = 0.25  # how often the alert log is read when nothing is waiting (or poke())
BACKOFF_S = (1.0, 300.0)  # first and longest wait between attempts
CLIENT_ERROR_MIN_S = 60.0  # a 4xx (not 408/429) is retried no faster than this
TIMEOUT_S = 10.0  # one attempt: connect, send, answer


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The X-Tagwatch-Signature value: sha256=<hex HMAC-SHA256(secret, ts "." body)>."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@dataclass(frozen=True)
class Webhook:
    """One receiver: `name` keys its stored position (keep it when the URL moves)."""

    name: str
    url: str
    secret: bytes = field(repr=False)


def read_secret(path: str) -> bytes:
    """The shared secret: the file's content without surrounding whitespace, non-empty."""
    try:
        data = Path(path).read_bytes().strip()
    except OSError as e:
        raise ConfigError(f"--webhook-secret-file {path}: {e.strerror or e}") from None
    if not data:
        raise ConfigError(f"--webhook-secret-file {path} is empty: put the shared secret in it")
    return data


def parse_webhooks(values: list[str] | None, secret_file: str | None) -> list[Webhook]:
    """`--webhook URL` or `--webhook NAME=URL` (repeatable) with `--webhook-secret-file`."""
    if not values:
        if secret_file:
            raise ConfigError("--webhook-secret-file needs --webhook URL")
        return []
    if not secret_file:
        raise ConfigError("--webhook needs --webhook-secret-file FILE (the signing secret)")
    secret = read_secret(secret_file)
    out: list[Webhook] = []
    for value in values:
        name, sep, url = value.partition("=")
        if not sep or "://" in name:
            name, url = value, value
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--webhook {value!r}: not an http(s) URL (NAME=URL or URL)")
        if not name.strip():
            raise ConfigError(f"--webhook {value!r}: empty name before '='")
        if any(w.name == name for w in out):
            raise ConfigError(f"--webhook name {name!r} is given twice")
        out.append(Webhook(name, url, secret))
    return out


@dataclass
class WebhookStats:
    delivered: int = 0  # records a receiver acknowledged (2xx)
    failed: int = 0  # attempts that failed (each retried)
    waiting_since: float | None = None  # written_at of the record being delivered


class WebhookSender:
    """Delivers one webhook's records in seq order, forever (a task beside the engine)."""

    def __init__(self, hook: Webhook, store: NotifyStore) -> None:
        self.hook = hook
        self.store = store
        self.wake = asyncio.Event()  # set: read the alert log now (Notifier.poke)
        self.stats = WebhookStats()
        self.seq = 0  # the last seq acknowledged

    def lag_s(self, now: float | None = None) -> float:
        """How long the oldest record not yet acknowledged has been waiting (0: none)."""
        since = self.stats.waiting_since
        return 0.0 if since is None else max(0.0, (now or time.time()) - since)

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False) as client:
            self.seq = await retrying(self.store.webhook_cursor, self.hook.name) or 0
            log.info("webhook %s: delivering alert records after seq %d to %s",
                     self.hook.name, self.seq, self.hook.url)  # fmt: skip
            while True:
                page = await retrying(self.store.alert_log_after, self.seq)
                if not page:
                    await wait(self.wake, POLL_S)
                    continue
                for row in page:
                    self.stats.waiting_since = row.written_at
                    await self._deliver(client, row)
                    await retrying(
                        self.store.set_webhook_cursor, self.hook.name, self.hook.url, row.seq
                    )
                    self.seq = row.seq
                    self.stats.delivered += 1
                self.stats.waiting_since = None

    async def _deliver(self, client: httpx.AsyncClient, row: LogRow) -> None:
        """POST until a 2xx."""
        delay = BACKOFF_S[0]
        failures = 0
        while True:
            wait, why = await self._attempt(client, row)
            if wait is None:
                if failures:
                    log.warning("webhook %s: record %d delivered after %d failed attempts",
                                self.hook.name, row.seq, failures)  # fmt: skip
                return
            failures += 1
            self.stats.failed += 1
            pause = max(wait, delay * random.uniform(0.5, 1.0))
            level = logging.ERROR if wait >= CLIENT_ERROR_MIN_S else logging.WARNING
            log.log(level, "webhook %s: record %d not delivered (%s); retrying in %.1f s",
                    self.hook.name, row.seq, why, pause)  # fmt: skip
            await asyncio.sleep(pause)
            delay = min(delay * 2, BACKOFF_S[1])

    async def _attempt(self, client: httpx.AsyncClient, row: LogRow) -> tuple[float | None, str]:
        """(None, "") when acknowledged, else (the least wait before the next try, why)."""
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"tagwatch/{__version__}",
            "X-Tagwatch-Timestamp": ts,
            "X-Tagwatch-Signature": sign(self.hook.secret, ts, row.record),
            "X-Tagwatch-Delivery": str(row.seq),
        }
        try:
            r = await client.post(self.hook.url, content=row.record, headers=headers)
        except httpx.HTTPError as e:
            return 0.0, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        if 200 <= r.status_code < 300:
            return None, ""
        why = f"HTTP {r.status_code}"
        if r.status_code in (429, 503):
            return _retry_after(r.headers.get("Retry-After")), why
        if 400 <= r.status_code < 500 and r.status_code != 408:
            return CLIENT_ERROR_MIN_S, why + " (check the receiver's configuration)"
        return 0.0, why


def _retry_after(value: str | None) -> float:
    try:
        return min(max(float(value or 0), 0.0), BACKOFF_S[1])
    except ValueError:
        return 0.0  # an HTTP date: the backoff decides


async def wait(wake: asyncio.Event, timeout: float) -> None:
    """Sleep `timeout` seconds or until poked."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), timeout)
    wake.clear()


async def retrying(fn, *args):  # type: ignore[no-untyped-def]
    """fn(*args) on the store's thread, retried while the store fails (said each time)."""
    delay = 0.5
    while True:
        try:
            return await asyncio.to_thread(fn, *args)
        except StoreError as e:
            log.warning("%s; retrying in %.1f s", e, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
