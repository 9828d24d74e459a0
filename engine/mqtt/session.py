"""The engine's MQTT session: one persistent broker session, reconnected with backoff,
whose QoS 1 messages are acknowledged only when the engine says they are durable.

- MQTT v5 with a fixed client id, no clean start and a session expiry, so the broker
  queues for the engine while it is down; a broker that refuses v5 gets 3.1.1 with clean
  session off (the broker's own limits then stand for expiry and messages in flight).
- aiomqtt 2.x has paho acknowledge a QoS 1 message as soon as it is read off the socket.
  The session turns that off (paho's `manual_ack_set(True)` on the client aiomqtt wraps,
  before connecting) and sends a PUBACK only from `ack()`. That private access to the
  wrapped paho client lives in this class and nowhere else.
- aiomqtt's `publish()` returns when the broker's PUBACK arrives whatever its reason code:
  an MQTT 5 broker that refuses a message (0x87 "not authorized" from an ACL, 0x97 quota
  exceeded, ...) answers with a PUBACK too. `publish_confirmed()` returns the reason code
  (read from paho's on_publish, chained before aiomqtt's), so the outbox can keep a refused
  alert record instead of marking it published.
- On every (re)connect: subscribe to the input filters, announce the retained status
  (online, or degraded with the reason), then hand over to the engine. The will says
  "offline" when the connection dies.
- Messages go from paho's on_message straight to the engine's sink, not through aiomqtt's
  message queue and iterator (an asyncio task and a wait per message: it halved the live
  rate, bench/backlog.py). What arrives before the engine is ready (a resumed session's
  queue follows the CONNACK) is held until it is. When the sink says it is full the
  session stops reading its socket (TCP back-pressure: the broker keeps the rest) until
  `resume()`; mosquitto 2.0 does not always hold to the engine's Receive Maximum
  (eclipse-mosquitto/mosquitto#2301), so the engine's memory may not rely on it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from engine.errors import ConfigError
from engine.mqtt.subscriptions import Granted, subscribe, unsubscribe
from engine.settings import Settings
from engine.wire import topics
from engine.wire.commands import OFFLINE_STATUS, encode_status

log = logging.getLogger("tagwatch.serve")


def share_property_tables() -> bool:
    """paho 2.x builds a list and two dicts of property names and types in every
    `Properties()`, and it makes one for every MQTT 5 PUBLISH it decodes: under a flood
    that was 27% of the engine's CPU (py-spy, bench/flood.py). paho never changes them after
    construction, so every instance may share one copy. Applied once, and only when paho's
    Properties is what this was written against (else left alone). True when in force."""
    init = Properties.__init__
    if getattr(init, "_tagwatch_shared", False):
        return True
    proto = Properties(PacketTypes.PUBLISH)
    tables = (proto.__dict__.get("types"), proto.__dict__.get("names"),
              proto.__dict__.get("properties"))  # fmt: skip
    if set(proto.__dict__) != {"packetType", "types", "names", "properties"} or not (
        isinstance(tables[0], list) and isinstance(tables[1], dict) and isinstance(tables[2], dict)
    ):
        return False

    def shared_init(self: Properties, packetType: int) -> None:
        d = self.__dict__
        d["packetType"] = packetType
        d["types"], d["names"], d["properties"] = tables

    shared_init._tagwatch_shared = True  # type: ignore[attr-defined]
    Properties.__init__ = shared_init  # type: ignore[method-assign]
    return True


share_property_tables()


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> BrokerAddress:
        """HOST:PORT, [IPv6]:PORT or HOST (port 1883); ConfigError on anything else."""
        host, _, port = text.rpartition(":")
        if not host or (host.count(":") and not host.startswith("[")):
            host, port = text, "1883"  # no port, or a bare IPv6 address
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise ConfigError(
                f"broker address {text!r}: expected HOST:PORT with a port 1-65535,"
                " e.g. 127.0.0.1:1883"
            )
        return cls(host, int(port))


@dataclass(slots=True)
class Incoming:
    """One received message: where it came from and how to acknowledge it. (Made once per
    message in paho's callback: a frozen dataclass cost 0.8 µs to build, this 0.16.)"""

    topic: str
    payload: bytes
    received: float  # monotonic
    gen: int  # connection it arrived on: a PUBACK only makes sense on that one
    mid: int
    qos: int
    lane: int = 0  # the session it came on (engine/mqtt/lanes.py)


# Where a session hands each message; True when it is full (stop reading until resume())
Sink = Callable[[Incoming], bool]


class MqttSession:
    """The connection of one engine process: `run()` keeps it up, `ack()` acknowledges,
    `set_status()` says how the engine is; `client` is the live client (None while down)."""

    def __init__(
        self,
        broker: BrokerAddress,
        settings: Settings,
        *,
        client_id: str = "tagwatch-engine",
        client_kwargs: dict[str, Any] | None = None,
        filters: tuple[str, ...] = topics.INPUT_FILTERS,
        speaks: bool = True,
        lane: int = 0,
        name: str = "broker",
        status_topic: str = topics.STATUS,
    ) -> None:
        self.broker = broker
        self.filters = filters  # what it subscribes to
        self.status_topic = status_topic  # a shard's is its own (topics.status)
        self.speaks = speaks  # it sets the engine's will and status (one session does)
        self.lane = lane
        self.name = name
        self.settings = settings
        self.client_id = client_id
        self.client_kwargs = dict(client_kwargs or {})
        self.client: aiomqtt.Client | None = None
        self.gen = 0  # connections made so far; the current one's number
        self.connected = asyncio.Event()
        self.mqtt5 = True  # until a broker says it does not speak it
        self._problems: dict[str, str] = {}  # why the engine is degraded, by cause
        self._pubacks: dict[int, asyncio.Future[int]] = {}  # mid -> PUBACK reason code
        self._sink: Sink | None = None
        self._held: list[Incoming] | None = None  # received before the engine was ready
        self._sock: Any = None  # the connection's socket (to pause reading it)
        self._paused = False
        self.config_status: dict[str, str] | None = None  # the last reload's outcome
        # The filters this process subscribed on the broker's session, all of them
        # acknowledged (None: not known to be whole), and whether the broker said, on
        # this connection, that it kept the session (CONNACK's session present)
        self._subscribed: tuple[str, ...] | None = None
        self._present = False
        self._granted = Granted()  # the filters subscribed otherwise, or refused

    # -- connecting ----------------------------------------------------------------------
    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = int(self.settings.session_expiry_s)
        props.ReceiveMaximum = max(1, min(65535, int(self.settings.receive_max)))
        return props

    def _new_client(self) -> aiomqtt.Client:
        will = aiomqtt.Will(self.status_topic, OFFLINE_STATUS, qos=1, retain=True)
        common: dict[str, Any] = dict(
            identifier=self.client_id, will=will if self.speaks else None, keepalive=15,
            # paho holds back QoS 1 publishes beyond 20 unconfirmed (its default): under a
            # backlog the PUBACKs come late, and alert records queued behind checkpoints
            timeout=10, max_inflight_messages=1000, **self.client_kwargs,
        )  # fmt: skip
        if self.mqtt5:
            client = aiomqtt.Client(
                self.broker.host, self.broker.port, protocol=aiomqtt.ProtocolVersion.V5,
                clean_start=False, properties=self._connect_properties(), **common,
            )  # fmt: skip
        else:
            client = aiomqtt.Client(
                self.broker.host, self.broker.port, protocol=aiomqtt.ProtocolVersion.V311,
                clean_session=False, **common,
            )  # fmt: skip
        # aiomqtt does not expose manual acknowledgement; the paho client it wraps does.
        # Before connecting: a resumed session's queued messages arrive with the CONNACK,
        # and paho would acknowledge them before any of our code ran. From here on a PUBACK
        # goes out only from ack(), after the commit.
        client._client.manual_ack_set(True)
        self._pubacks.clear()  # mids of an earlier connection never get their PUBACK here
        aiomqtt_on_publish: Callable[..., None] = client._client.on_publish  # type: ignore[assignment]

        def on_publish(c: Any, userdata: Any, mid: int, rc: Any, props: Any = None) -> None:
            waiting = self._pubacks.pop(mid, None)
            if waiting is not None and not waiting.done():
                waiting.set_result(int(getattr(rc, "value", rc) or 0))
            aiomqtt_on_publish(c, userdata, mid, rc, props)

        client._client.on_publish = on_publish
        self._present = False
        aiomqtt_on_connect: Callable[..., None] = client._client.on_connect  # type: ignore[assignment]

        def on_connect(c: Any, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
            self._present = bool(getattr(flags, "session_present", False))
            aiomqtt_on_connect(c, userdata, flags, rc, props)

        client._client.on_connect = on_connect
        self._receive_directly(client)
        return client

    def _receive_directly(self, client: aiomqtt.Client) -> None:
        """paho hands each message to the sink (held until the engine is ready), not to
        aiomqtt's queue; and the socket is remembered, to pause reading it."""
        paho, gen, lane = client._client, self.gen + 1, self.lane
        self._held, self._sock, self._paused = [], None, False

        def on_message(c: Any, userdata: Any, m: mqtt.MQTTMessage) -> None:
            body = m.payload
            if body.__class__ is not bytes:
                body = bytes(body)
            item = Incoming(m.topic, body, time.monotonic(), gen, m.mid, m.qos, lane)  # type: ignore[arg-type]
            if self._held is not None:
                self._held.append(item)
            elif self._sink is not None and self._sink(item):
                self._pause()

        aiomqtt_open: Callable[..., None] = paho.on_socket_open  # type: ignore[assignment]

        def on_socket_open(c: Any, userdata: Any, sock: Any) -> None:
            self._sock = sock  # (paho calls this from the thread it connects in)
            _no_delay(sock)
            aiomqtt_open(c, userdata, sock)

        paho.on_message = on_message
        paho.on_socket_open = on_socket_open

    def _pause(self) -> None:
        """Stop reading the socket: the sink is full. The broker holds what follows."""
        if self._paused or self._sock is None:
            return
        self._paused = True
        asyncio.get_running_loop().remove_reader(self._sock.fileno())
        log.info("%s: engine queue full, reading paused (the broker holds the rest)", self.name)

    def resume(self) -> None:
        """Read the socket again (the sink has room), as aiomqtt's reader does."""
        client, sock = self.client, self._sock
        if not self._paused or client is None or sock is None:
            return
        self._paused = False
        paho, gone = client._client, client._disconnected

        def read() -> None:
            try:
                while True:
                    paho.loop_read()
                    pending = getattr(paho._sock, "pending", None)
                    if pending is not None and pending() > 0:
                        continue  # TLS: decrypted bytes the selector cannot see
                    break
            except Exception as exc:  # the connection broke: aiomqtt reconnects
                if not gone.done():
                    gone.set_exception(exc)

        loop = asyncio.get_running_loop()
        loop.add_reader(sock.fileno(), read)
        loop.call_soon(read)

    async def run(self, on_connect: Callable[[], Awaitable[None]], sink: Sink) -> None:
        """Stay connected until cancelled: on each connection subscribe, announce the
        status, await `on_connect()`, then hand every message to `sink`."""
        self._sink = sink
        backoff = 0.25
        longest = 10.0 if self.speaks else 60.0  # the priority lane is not worth a log flood
        while True:
            try:
                async with self._new_client() as client:
                    client.pending_calls_threshold = 10_000
                    await self._resubscribe(client)
                    self.gen += 1  # the number _receive_directly gave this connection
                    self.client = client
                    self.connected.set()
                    backoff = 0.25
                    log.info(
                        "%s: connected to %s:%d", self.name, self.broker.host, self.broker.port
                    )
                    await self._announce()
                    await on_connect()
                    held, self._held = self._held or [], None
                    for item in held:
                        if sink(item):
                            self._pause()
                    async for _ in client.messages:  # never yields (see above): it raises
                        pass  # MqttError when the connection is lost
            except aiomqtt.MqttError as e:
                self.connected.clear()
                self.client = None
                if self.mqtt5 and _unsupported_protocol(e):
                    self.mqtt5 = False
                    log.warning(
                        "broker %s:%d does not speak MQTT 5: using 3.1.1 with a persistent"
                        " session (clean session off); the broker's own limits then stand"
                        " for session expiry and messages in flight",
                        self.broker.host, self.broker.port,
                    )  # fmt: skip
                    continue
                log.warning(
                    "%s %s:%d: %s; reconnecting in %.1fs%s",
                    self.name, self.broker.host, self.broker.port, e, backoff,
                    "" if self.speaks else " (events still arrive on the main session)",
                )  # fmt: skip
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, longest)

    async def _resubscribe(self, client: aiomqtt.Client) -> None:
        """Subscribe to the filters, unless the broker kept this session and this process
        subscribed every one of them on it already (a broker restarted with its store, a
        connection dropped). The broker keeps a session's subscriptions with it (MQTT
        3.1.1 3.1.2.4, 5.0 4.1): a session lost is not present, and is subscribed anew.
        A shard subscribes to each of its tags' topics, and every SUBSCRIBE costs: at
        250,000 tags, 250,000 filters, about 10 s of this process's time a reconnect. A
        session with a filter the broker refused is subscribed again (its ACL may have
        changed)."""
        if self._present and self._subscribed == self.filters and not self._granted.refused:
            log.info(
                "%s: the broker kept this session and its %d subscriptions",
                self.name, len(self.filters),
            )  # fmt: skip
            return
        self._subscribed, self._granted = None, Granted()
        done: tuple[str, ...] = ()
        while done != self.filters:  # a reload meanwhile (refilter saw no client) adds more
            want, have = self.filters, set(done)
            self._granted.merge(
                await subscribe(client, (f for f in want if f not in have), self.mqtt5)
            )
            done = want
        self._subscribed = done
        self._refused()

    def _refused(self) -> None:
        """The status says which input the broker refused (the main session's; a lane's
        refusal is logged: its events still come on the main session)."""
        problem = self._granted.problem()
        if problem is None:
            self._problems.pop("subscribe", None)
        elif self.speaks:
            self._problems["subscribe"] = problem

    async def refilter(self, filters: tuple[str, ...]) -> None:
        """Subscribe to `filters` instead (a shard's subjects changed on reload): the new
        ones now, the old ones dropped; while disconnected the next connection does it.
        A filter left behind (a failed unsubscribe) only brings messages the pipeline
        drops as another shard's or dead-letters as an unknown device."""
        old, self.filters = set(self.filters), filters
        had, self._subscribed = self._subscribed, None  # whole again once this is done
        before = self.degraded
        client = self.client
        if client is None:
            return
        new = set(filters)
        try:
            self._granted.merge(
                await subscribe(client, (f for f in filters if f not in old), self.mqtt5)
            )
            if had is not None:  # (the old filters, all subscribed on this session)
                self._subscribed = filters
            await unsubscribe(client, old - new, self._granted)
        except aiomqtt.MqttError as e:
            log.warning("%s: subscriptions not yet changed (%s): on reconnect", self.name, e)
        self._refused()
        if self.degraded != before:
            await self._announce()

    # -- acknowledging -------------------------------------------------------------------
    def ack(self, items: Iterable[Incoming]) -> int:
        """PUBACK what is now durable, in the order received, on the connection it came on
        (after a reconnect the broker redelivers the rest; the pipeline drops duplicates).
        How many were acknowledged."""
        client = self.client
        if client is None:
            return 0
        paho = client._client
        n = 0
        for it in items:
            if it.qos > 0 and it.gen == self.gen:
                paho.ack(it.mid, it.qos)
                n += 1
        return n

    # -- publishing ----------------------------------------------------------------------
    async def publish_confirmed(self, topic: str, payload: bytes, timeout: float = 10.0) -> int:
        """Publish QoS 1 and wait for the broker's PUBACK: its reason code (0 success, 0x10
        accepted with no subscriber; 0x80 and above the broker refused the message; always
        0 from an MQTT 3.1.1 broker, which cannot refuse but by disconnecting).
        aiomqtt.MqttError when not connected, on a disconnect or after `timeout` s."""
        client = self.client
        if client is None:
            raise aiomqtt.MqttError("not connected")
        info = client._client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "could not publish")
        # paho reads the PUBACK on this event loop (aiomqtt's socket callbacks): it cannot
        # have arrived before the future is registered.
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pubacks[info.mid] = done
        try:
            return await asyncio.wait_for(done, timeout)
        except TimeoutError:
            raise aiomqtt.MqttError(f"no PUBACK within {timeout:.0f} s") from None
        finally:
            if self._pubacks.get(info.mid) is done:
                del self._pubacks[info.mid]

    # -- status --------------------------------------------------------------------------
    @property
    def degraded(self) -> str | None:
        """Why the engine is degraded (every cause, "; "-joined), or None when online."""
        return "; ".join(self._problems[k] for k in sorted(self._problems)) or None

    async def set_status(self, degraded: str | None, cause: str = "store") -> None:
        """Online (None) or degraded with the reason, per cause (the store, refused alert
        publishes): kept, and announced now and on every reconnect."""
        if degraded is None:
            self._problems.pop(cause, None)
        else:
            self._problems[cause] = degraded
        await self._announce()

    def problem(self, cause: str) -> str | None:
        """The reason given for `cause`, while it stands."""
        return self._problems.get(cause)

    async def set_config_status(self, config: dict[str, str]) -> None:
        """The last configuration reload's outcome: kept, and announced with the status."""
        self.config_status = config
        await self._announce()

    async def _announce(self) -> None:
        """The retained status: online, or degraded with the reason."""
        if self.speaks:
            self.send(
                self.status_topic, encode_status(self.degraded, self.config_status), retain=True
            )

    def send(self, topic: str, payload: bytes, retain: bool = False) -> bool:
        """Publish QoS 1 without waiting for the PUBACK (statuses, rate commands: the next
        one supersedes a lost one). Never waits on the broker, so the processor never
        does either: with reading paused for a full queue a PUBACK could only be read once
        the processor has drained it. False when not connected or paho refused it."""
        client = self.client
        if client is None:
            return False
        info = client._client.publish(topic, payload, qos=1, retain=retain)
        return info.rc == mqtt.MQTT_ERR_SUCCESS


def _no_delay(sock: Any) -> None:
    """TCP_NODELAY (paho leaves Nagle on): an alert record published right after the
    batch's PUBACKs would otherwise wait for the broker's delayed ACK of them (measured:
    a breach alert p50 71 ms after its fix on an idle engine, 27 ms with it: bench.latency)."""
    with contextlib.suppress(OSError, AttributeError):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _unsupported_protocol(e: aiomqtt.MqttError) -> bool:
    """CONNACK "unsupported protocol version" (MQTT 5 reason 0x84, 3.1.1 return code 1)."""
    rc = getattr(e, "rc", None)
    value = getattr(rc, "value", rc)
    return value in (0x84, 1) and isinstance(e, aiomqtt.MqttCodeError)
