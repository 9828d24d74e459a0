"""Embedded MQTT 3.1.1 broker (asyncio, stdlib only): the fallback when mosquitto is absent."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from engine.errors import BrokerError

log = logging.getLogger("tagwatch.minibroker")

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14

CONNACK_ACCEPTED = 0x00
CONNACK_BAD_PROTOCOL_VERSION = 0x01
CONNACK_IDENTIFIER_REJECTED = 0x02
SUBACK_FAILURE = 0x80

DEFAULT_MAX_PACKET = 1 << 20
_MAX_PID = 0xFFFF
_PINGRESP = b"\xd0\x00"


class PacketError(BrokerError):
    """A client sent a malformed, oversized or out-of-order packet; its connection is closed."""


def valid_topic(topic: str) -> bool:
    """True if `topic` may be published to: non-empty, no wildcards, no NUL."""
    return bool(topic) and not any(c in topic for c in "+#\x00")


def valid_filter(topic_filter: str) -> bool:
    """True if `topic_filter` is a valid subscription: `+` and `#` fill whole levels, `#` last."""
    if not topic_filter or "\x00" in topic_filter:
        return False
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def _matches(filter_levels: tuple[str, ...], topic_levels: list[str]) -> bool:
    # A filter starting with a wildcard never matches a $-topic (MQTT 3.1.1, 4.7.2).
    if topic_levels[0].startswith("$") and filter_levels[0] in ("+", "#"):
        return False
    n = len(topic_levels)
    for i, f in enumerate(filter_levels):
        if f == "#":
            return True  # also matches the parent level: "a/#" matches "a"
        if i >= n or (f != "+" and f != topic_levels[i]):
            return False
    return len(filter_levels) == n


def topic_matches(topic_filter: str, topic: str) -> bool:
    """True if a message on `topic` is delivered to a subscription on `topic_filter`."""
    return _matches(tuple(topic_filter.split("/")), topic.split("/"))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(first: int, body: bytes = b"") -> bytes:
    return bytes((first,)) + _varint(len(body)) + body


def _string(s: bytes) -> bytes:
    return struct.pack("!H", len(s)) + s


class _Body:
    """Cursor over a packet's variable header and payload; any overrun is a PacketError."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise PacketError("packet is shorter than its fields")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def binary(self) -> bytes:
        return self.take(self.u16())

    def string(self) -> str:
        raw = self.binary()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise PacketError("string is not valid UTF-8") from None
        if "\x00" in text:
            raise PacketError("string contains U+0000")
        return text

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk


@dataclass(frozen=True, slots=True)
class Message:
    """An application message as the broker routes it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass
class BrokerStats:
    """Counters a test or the demo can read; updated on the broker's loop only."""

    connections: int = 0
    refused: int = 0
    protocol_errors: int = 0
    received: int = 0
    delivered: int = 0
    dropped: int = 0


@dataclass(eq=False)
class _Client:
    client_id: str
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    keepalive: int
    will: Message | None
    subs: dict[str, tuple[tuple[str, ...], int]] = field(default_factory=dict)
    inflight: set[int] = field(default_factory=set)
    queued: deque[tuple[Message, bool]] = field(default_factory=deque)
    awaiting_rel: set[int] = field(default_factory=set)
    next_pid: int = 0

    def write(self, data: bytes) -> bool:
        if self.writer.is_closing():
            return False
        self.writer.write(data)
        return True

    def alloc_pid(self) -> int:
        while True:
            self.next_pid = self.next_pid % _MAX_PID + 1
            if self.next_pid not in self.inflight:
                return self.next_pid


class MiniBroker:
    """A small MQTT 3.1.1 broker for the demo when mosquitto cannot be had; not for production.

    Supported: CONNECT/CONNACK (protocol level 4 only: MQTT 3.1 and MQTT 5 clients get
    return code 0x01, "unacceptable protocol version"), SUBSCRIBE/UNSUBSCRIBE with `+`
    and `#` (filters starting with a wildcard do not match `$`-topics), PUBLISH at QoS 0
    and 1 delivered at min(publish QoS, granted QoS), retained messages (an empty retained
    payload clears), PINGREQ, DISCONNECT, keepalive (1.5x), will messages, client-id
    takeover. Incoming QoS 2 is accepted minimally (PUBREC/PUBREL/PUBCOMP, routed once
    per packet id); QoS 2 subscriptions are granted QoS 1.

    Limits: clean sessions only (a client asking for a persistent session gets a clean
    one and session-present 0); nothing is persisted; unacknowledged QoS 1 deliveries are
    not resent. Like mosquitto, each client has at most `max_inflight` unacknowledged QoS 1
    deliveries and `max_queued` more waiting; beyond that, and for QoS 0 when the client's
    send buffer passes `max_buffer` bytes, messages are dropped (counted in `stats`).
    Malformed or oversized (remaining length > `max_packet_size`) packets close that
    client's connection only. No authentication (anonymous), no TLS, no websockets.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_packet_size: int = DEFAULT_MAX_PACKET,
        max_inflight: int = 20,
        max_queued: int = 1000,
        max_buffer: int = 8 << 20,
        connect_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.max_packet_size = max_packet_size
        self.max_inflight = min(max_inflight, _MAX_PID) if max_inflight > 0 else _MAX_PID
        self.max_queued = max_queued
        self.max_buffer = max_buffer
        self.connect_timeout = connect_timeout
        self.stats = BrokerStats()
        self.retained: dict[str, Message] = {}
        self._clients: dict[str, _Client] = {}
        self._conns: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._server: asyncio.Server | None = None
        self._ids = itertools.count(1)
        self._stopping = False
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound port (the OS-chosen one if constructed with port 0)."""
        if self._port is None:
            raise BrokerError("the embedded broker is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> MiniBroker:
        """Bind and start accepting; raises BrokerError if the address cannot be bound."""
        try:
            self._server = await asyncio.start_server(
                self._accept, self.host, self._requested_port, limit=1 << 16
            )
        except OSError as e:
            raise BrokerError(
                f"embedded broker cannot listen on {self.host}:{self._requested_port}: {e}"
            ) from e
        self._port = int(self._server.sockets[0].getsockname()[1])
        log.info("embedded MQTT broker listening on %s", self.url)
        return self

    async def stop(self) -> None:
        """Stop accepting, drop every connection (no wills) and wait for the handlers."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        # Connections accepted just before close() reach _accept a few loop turns later;
        # it aborts them, and the extra turns let their transports finish closing.
        for _ in range(4):
            tasks = list(self._conns)
            for task, writer in list(self._conns.items()):
                writer.transport.abort()  # also for a handler cancelled before it ever ran
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0)
        if self._server is not None:
            await self._server.wait_closed()

    async def serve_forever(self) -> None:
        """Start if needed and serve until cancelled; then stop cleanly."""
        if self._server is None:
            await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def __aenter__(self) -> MiniBroker:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- connections ----------------------------------------------------------------------
    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback, so each handler task is registered before anything else runs.
        if self._stopping:
            writer.transport.abort()
            return
        task = asyncio.get_running_loop().create_task(self._on_connection(reader, writer))
        self._conns[task] = writer
        task.add_done_callback(self._conns.pop)

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        client: _Client | None = None
        clean_exit = False
        try:
            client = await self._handshake(reader, writer)
            if client is not None:
                clean_exit = await self._serve(client)
        except PacketError as e:
            self.stats.protocol_errors += 1
            log.info("closing %s: %s", _peer(writer), e)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError) as e:
            log.debug("connection %s ended: %r", _peer(writer), e)
        except asyncio.CancelledError:
            pass  # broker stopping
        finally:
            if client is not None:
                self._forget(client, publish_will=not clean_exit)
            if self._stopping:
                writer.transport.abort()
            else:
                writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()

    async def _read_packet(
        self, reader: asyncio.StreamReader, timeout: float | None
    ) -> tuple[int, int, bytes]:
        async with asyncio.timeout(timeout):
            first, byte = await reader.readexactly(2)  # most packets: one length byte
            length, shift = byte & 0x7F, 7
            while byte & 0x80:
                if shift == 28:
                    raise PacketError("remaining length is longer than 4 bytes")
                (byte,) = await reader.readexactly(1)
                length |= (byte & 0x7F) << shift
                shift += 7
            if length > self.max_packet_size:
                raise PacketError(f"packet of {length} bytes exceeds {self.max_packet_size}")
            body = await reader.readexactly(length) if length else b""
        return first >> 4, first & 0x0F, body

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> _Client | None:
        ptype, flags, body = await self._read_packet(reader, self.connect_timeout)
        if ptype != CONNECT or flags:
            raise PacketError("the first packet must be CONNECT")
        r = _Body(body)
        name, level = r.string(), r.u8()
        if name not in ("MQTT", "MQIsdp"):
            raise PacketError(f"unknown protocol name {name!r}")
        if (name, level) != ("MQTT", 4):
            await self._refuse(writer, CONNACK_BAD_PROTOCOL_VERSION, f"{name} level {level}")
            return None
        cflags, keepalive = r.u8(), r.u16()
        will_flag, will_qos, will_retain = cflags & 0x04, (cflags >> 3) & 3, bool(cflags & 0x20)
        if cflags & 0x01 or will_qos == 3 or (not will_flag and (will_qos or will_retain)):
            raise PacketError(f"invalid CONNECT flags 0x{cflags:02x}")
        if cflags & 0x40 and not cflags & 0x80:
            raise PacketError("password without user name")
        client_id = r.string()
        will = None
        if will_flag:
            topic, payload = r.string(), r.binary()
            if not valid_topic(topic):
                raise PacketError(f"invalid will topic {topic!r}")
            will = Message(topic, payload, will_qos, will_retain)
        if cflags & 0x80:
            r.string()  # user name: anonymous access, ignored
        if cflags & 0x40:
            r.binary()
        if not client_id:
            if not cflags & 0x02:
                await self._refuse(writer, CONNACK_IDENTIFIER_REJECTED, "empty id, not clean")
                return None
            client_id = f"minibroker-{next(self._ids)}"
        old = self._clients.get(client_id)
        if old is not None:  # takeover: the older connection goes, with its will
            old.writer.transport.abort()
            self._forget(old, publish_will=True)
        client = _Client(client_id, reader, writer, keepalive, will)
        self._clients[client_id] = client
        self.stats.connections += 1
        writer.write(_packet(CONNACK << 4, bytes((0, CONNACK_ACCEPTED))))
        return client

    async def _refuse(self, writer: asyncio.StreamWriter, code: int, why: str) -> None:
        self.stats.refused += 1
        log.info("refusing %s (%s): CONNACK 0x%02x", _peer(writer), why, code)
        writer.write(_packet(CONNACK << 4, bytes((0, code))))
        with contextlib.suppress(ConnectionError):
            await writer.drain()

    def _forget(self, client: _Client, *, publish_will: bool) -> None:
        if self._clients.get(client.client_id) is client:
            del self._clients[client.client_id]
        will, client.will = client.will, None
        if publish_will and will is not None and not self._stopping:
            self._route(will)

    async def _serve(self, client: _Client) -> bool:
        """Handle packets until DISCONNECT (returns True) or an error (raises)."""
        timeout = client.keepalive * 1.5 if client.keepalive else None
        while True:
            ptype, flags, body = await self._read_packet(client.reader, timeout)
            if ptype == PUBLISH:
                self._on_publish(client, flags, body)
            elif ptype == PUBACK and not flags and len(body) == 2:
                self._on_puback(client, int.from_bytes(body, "big"))
            elif ptype == PUBREL and flags == 2 and len(body) == 2:
                client.awaiting_rel.discard(int.from_bytes(body, "big"))
                client.write(_packet(PUBCOMP << 4, body))
            elif ptype in (PUBREC, PUBCOMP) and not flags and len(body) == 2:
                pass  # replies to QoS 2 deliveries, which this broker never sends
            elif ptype == SUBSCRIBE and flags == 2:
                self._on_subscribe(client, _Body(body))
            elif ptype == UNSUBSCRIBE and flags == 2:
                self._on_unsubscribe(client, _Body(body))
            elif ptype == PINGREQ and not flags and not body:
                client.write(_PINGRESP)
            elif ptype == DISCONNECT and not flags and not body:
                client.will = None
                return True
            else:
                raise PacketError(f"unexpected packet type {ptype} flags 0x{flags:x}")
            await client.writer.drain()

    # -- packets --------------------------------------------------------------------------
    def _on_publish(self, client: _Client, flags: int, body: bytes) -> None:
        qos, retain = (flags >> 1) & 3, bool(flags & 1)
        if qos == 3 or (qos == 0 and flags & 0x08):
            raise PacketError(f"invalid PUBLISH flags 0x{flags:x}")
        r = _Body(body)
        topic = r.string()
        if not valid_topic(topic):
            raise PacketError(f"invalid topic name {topic!r}")
        pid = r.u16() if qos else 0
        if qos and not pid:
            raise PacketError("packet id 0")
        msg = Message(topic, r.rest(), qos, retain)
        self.stats.received += 1
        if qos == 0:
            self._route(msg)
        elif qos == 1:
            self._route(msg)
            client.write(_packet(PUBACK << 4, struct.pack("!H", pid)))
        else:
            if pid not in client.awaiting_rel:  # a DUP resend must not be routed twice
                client.awaiting_rel.add(pid)
                self._route(msg)
            client.write(_packet(PUBREC << 4, struct.pack("!H", pid)))

    def _on_puback(self, client: _Client, pid: int) -> None:
        client.inflight.discard(pid)
        while client.queued and len(client.inflight) < self.max_inflight:
            msg, retain = client.queued.popleft()
            self._send_qos1(client, msg, retain=retain)

    def _on_subscribe(self, client: _Client, r: _Body) -> None:
        pid = r.u16()
        if r.at_end():
            raise PacketError("SUBSCRIBE without topic filters")
        codes = bytearray()
        granted: list[tuple[tuple[str, ...], int]] = []
        while not r.at_end():
            topic_filter, requested = r.string(), r.u8()
            if requested > 2:
                raise PacketError(f"invalid requested QoS byte 0x{requested:02x}")
            if not valid_filter(topic_filter):
                codes.append(SUBACK_FAILURE)
                continue
            entry = (tuple(topic_filter.split("/")), min(requested, 1))
            client.subs[topic_filter] = entry
            granted.append(entry)
            codes.append(entry[1])
        client.write(_packet(SUBACK << 4, struct.pack("!H", pid) + bytes(codes)))
        for levels, qos in granted:  # retained messages follow the SUBACK
            for msg in list(self.retained.values()):
                if _matches(levels, msg.topic.split("/")):
                    self._deliver(client, msg, min(msg.qos, qos), retain=True)

    def _on_unsubscribe(self, client: _Client, r: _Body) -> None:
        pid = r.u16()
        if r.at_end():
            raise PacketError("UNSUBSCRIBE without topic filters")
        while not r.at_end():
            client.subs.pop(r.string(), None)
        client.write(_packet(UNSUBACK << 4, struct.pack("!H", pid)))

    # -- routing --------------------------------------------------------------------------
    def _route(self, msg: Message) -> None:
        if msg.retain:
            if msg.payload:
                self.retained[msg.topic] = msg
            else:
                self.retained.pop(msg.topic, None)
        levels = msg.topic.split("/")
        for client in list(self._clients.values()):
            best = -1
            for filter_levels, qos in client.subs.values():
                if qos > best and _matches(filter_levels, levels):
                    best = qos
            if best >= 0:
                self._deliver(client, msg, min(msg.qos, best), retain=False)

    def _deliver(self, client: _Client, msg: Message, qos: int, *, retain: bool) -> None:
        if qos == 0:
            if client.writer.transport.get_write_buffer_size() > self.max_buffer:
                self.stats.dropped += 1
                return
            if client.write(_publish(msg.topic, msg.payload, 0, retain, 0)):
                self.stats.delivered += 1
        elif len(client.inflight) < self.max_inflight:
            self._send_qos1(client, msg, retain=retain)
        elif len(client.queued) < self.max_queued:
            client.queued.append((msg, retain))
        else:
            self.stats.dropped += 1

    def _send_qos1(self, client: _Client, msg: Message, *, retain: bool) -> None:
        pid = client.alloc_pid()
        if client.write(_publish(msg.topic, msg.payload, 1, retain, pid)):
            client.inflight.add(pid)
            self.stats.delivered += 1


def _publish(topic: str, payload: bytes, qos: int, retain: bool, pid: int) -> bytes:
    header = _string(topic.encode("utf-8")) + (struct.pack("!H", pid) if qos else b"")
    return _packet((PUBLISH << 4) | (qos << 1) | int(retain), header + payload)


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "client"


async def serve(host: str = "127.0.0.1", port: int = 1883, **options: Any) -> None:
    """Run a MiniBroker on host:port until cancelled; `options` as for MiniBroker."""
    await MiniBroker(host, port, **options).serve_forever()
