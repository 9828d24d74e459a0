"""What `serve --shard i/N` changes on the broker: the shard subscribes to its own
devices' topics only (per-tag order holds because each tag's messages reach one engine),
announces its status and checkpoint on topics of its own, and connects under a client id of
its own; and a store written by one shard is never continued by another."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.errors import TagwatchError
from engine.store.base import Store
from engine.wire import topics
from zones.model import ZoneSet
from zones.shard import Shard, devices


@dataclass(frozen=True)
class Routing:
    """One engine's topics and client id."""

    filters: tuple[str, ...] = topics.INPUT_FILTERS
    shard: Shard | None = None
    own: frozenset[str] = frozenset()  # a shard's devices
    elsewhere: frozenset[str] = frozenset()  # the other shards' devices

    @property
    def _label(self) -> str | None:
        return None if self.shard is None else self.shard.label

    @property
    def status(self) -> str:
        return topics.status(self._label)

    @property
    def checkpoint(self) -> str:
        return topics.checkpoint(self._label)

    @property
    def suffix(self) -> str:
        """Appended to the client id (and the priority lane's), and to the username."""
        return "" if self.shard is None else f"-{self.shard.label}"

    def login(self, client_kwargs: dict[str, Any] | None) -> dict[str, Any]:
        """The connection's keyword arguments: a shard logs in as `<username>-<i>-of-<N>`
        (brokers taking client ids from usernames hold one connection per username;
        `tagwatch broker-config --shards N` makes those users)."""
        kwargs = dict(client_kwargs or {})
        if self.suffix and kwargs.get("username"):
            kwargs["username"] = f"{kwargs['username']}{self.suffix}"
        return kwargs

    def speaks_for(self, topic: str) -> bool:
        """Whether this engine dead-letters what is wrong with a message on `topic`: every
        shard receives every gateway's batches, and the one that owns the gateway's id (by
        the subjects' hash) keeps their problems; a tag's own topics reach one shard."""
        if self.shard is None or not topic.startswith(topics.GATEWAY_PREFIX):
            return True
        return self.shard.owns(topic[len(topics.GATEWAY_PREFIX) :].split("/", 1)[0])

    def lane_event(self, tag: str) -> bool | None:
        """What a shard's priority lane, which hears every tag's events (`tags/+/event`:
        one filter, not one a tag), does with an event of `tag`: None for one of its own
        tags (the lane's usual rule, engine/mqtt/lanes.py); False for another shard's
        (dropped: that shard's lane has it); True for a tag no shard has, which only the
        lanes hear: taken by the one shard that owns the tag's id by the subjects' hash,
        to be dead-lettered as an unknown device (every other shard drops it)."""
        if self.shard is None or tag in self.own:
            return None
        return tag not in self.elsewhere and self.shard.owns(tag)

    @classmethod
    def of(cls, shard: Shard | None, zs: ZoneSet) -> Routing:
        if shard is None:
            return cls()
        tags, protected = devices(zs)
        return cls(
            filters=topics.device_filters(tags, protected),
            shard=shard,
            own=frozenset((*tags, *protected)),
            elsewhere=frozenset(zs.elsewhere),
        )


def check_store(store: Store, shard: Shard | None, where: str) -> None:
    """Refuse to continue a store another shard (or an unsharded engine) wrote: its ledger
    and state are that engine's subjects. A fresh store takes any shard."""
    steps = store.config_steps()
    if not steps:
        return
    had = steps[0][1].get("shard")
    want = None if shard is None else str(shard)
    if had != want:
        was = f"shard {had}" if had is not None else "an engine without --shard"
        now = f"as shard {want}" if want is not None else "without --shard"
        raise TagwatchError(
            f"the store {where} was written by {was}; this engine was started {now}. Give"
            " each shard a store of its own (moving subjects between shards is not supported"
            " yet: start the new layout on fresh stores)"
        )
