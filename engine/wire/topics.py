"""Every MQTT topic of the contract, in one place (DESIGN.md section 3, docs/formats.md).

Names a topic or a subscription filter, and parses an input topic into (kind, device) for
`engine.wire.decode` (`parse_input`), from these same prefixes."""

from __future__ import annotations

from collections.abc import Iterable

from engine.wire.reasons import SURROGATE, show, show_topic

TAGS = "tagwatch/v1/tags"  # tagwatch/v1/tags/{tag}/fix | fixes | event | cmd
TAG_PREFIX = TAGS + "/"
TAG_KINDS = ("fix", "fixes", "event")  # what a tag publishes
GATEWAY = "tagwatch/v1/gateway"  # tagwatch/v1/gateway/{gw}/fixes: many tags' fixes at once
GATEWAY_PREFIX = GATEWAY + "/"
OWNTRACKS = "owntracks"  # owntracks/{user}/{device}: a victim's phone, unchanged app
OWNTRACKS_PREFIX = OWNTRACKS + "/"
ALERTS = "tagwatch/v1/alerts"  # tagwatch/v1/alerts/{subject}
STATUS = "tagwatch/v1/engine/status"  # the engine's retained status, with an offline will
CHECKPOINT = "tagwatch/v1/engine/checkpoint"  # the newest signed ledger checkpoint, retained
PROTECTED = "tagwatch/v1/protected"  # tagwatch/v1/protected/{device}/warning (opt-in)

# What the engine subscribes to.
INPUT_FILTERS = (
    f"{TAGS}/+/fix",
    f"{TAGS}/+/fixes",
    f"{TAGS}/+/event",
    f"{OWNTRACKS}/+/+",
    f"{GATEWAY}/+/fixes",
)
ALERTS_FILTER = f"{ALERTS}/+"  # every subject's alerts (one level: subject ids have no '/')
CMD_FILTER = f"{TAGS}/+/cmd"  # every tag's reporting-rate commands
WARNING_FILTER = f"{PROTECTED}/+/warning"  # warnings to protected units (docs/notifications.md)
OWNTRACKS_CMD_FILTER = f"{OWNTRACKS}/+/+/cmd"  # OwnTracks cmd messages (warnings to phones)


# The one engine's status / checkpoint, and each shard's below it
STATUS_FILTERS = (STATUS, f"{STATUS}/+")
CHECKPOINT_FILTERS = (CHECKPOINT, f"{CHECKPOINT}/+")
_STATUS_BELOW = STATUS + "/"


def status_source(topic: str) -> str | None:
    """Whose status a topic carries: "" the one engine's, a shard's label ("0-of-2") for
    a shard's, None for a topic that is no engine status."""
    if topic == STATUS:
        return ""
    if topic.startswith(_STATUS_BELOW) and "/" not in topic[len(_STATUS_BELOW) :]:
        return topic[len(_STATUS_BELOW) :]
    return None


def status(shard: str | None = None) -> str:
    """The engine's retained status; a shard's (`serve --shard`) below it:
    tagwatch/v1/engine/status/{i}-of-{N}, so `tagwatch/v1/engine/status/#` sees them all."""
    return STATUS if shard is None else f"{STATUS}/{shard}"


def checkpoint(shard: str | None = None) -> str:
    """The retained signed ledger checkpoint; a shard's below it, like status()."""
    return CHECKPOINT if shard is None else f"{CHECKPOINT}/{shard}"


def device_filters(tags: Iterable[str], protected: Iterable[str]) -> tuple[str, ...]:
    """A shard's subscriptions: one filter for each of its own tags' topics
    (`tags/{tag}/+`, not the wildcards of every tag), its protected devices' (OwnTracks
    phones, and units publishing on the tag topics), and every gateway's batches (a shard
    takes the elements for its own tags). One filter a tag, not three: a broker's cost
    grows with a session's filters (engine/mqtt/subscriptions.py); a broker that refuses
    it gets the tag's topics one by one (`narrower`)."""
    out = [f"{TAGS}/{t}/+" for t in tags]
    for d in protected:
        out.append(owntracks(d) if "/" in d else f"{TAGS}/{d}/+")
    out.append(f"{GATEWAY}/+/fixes")
    return tuple(out)


def narrower(filter_: str) -> tuple[str, ...]:
    """What subscribes to the same input as `filter_` without its wildcard, if the broker
    refuses it: a device's `tags/{tag}/+` is its fix, fixes and event topics. () if none."""
    if filter_.startswith(TAG_PREFIX) and filter_.endswith("/+"):
        tag = filter_[len(TAG_PREFIX) : -2]
        if tag and "/" not in tag and "+" not in tag and "#" not in tag:
            return tuple(f"{TAGS}/{tag}/{kind}" for kind in TAG_KINDS)
    return ()


def fix(tag: str) -> str:
    return f"{TAGS}/{tag}/fix"


def fixes(tag: str) -> str:
    """A store-and-forward upload: a JSON array of fixes."""
    return f"{TAGS}/{tag}/fixes"


def event(tag: str) -> str:
    return f"{TAGS}/{tag}/event"


def cmd(tag: str) -> str:
    """Commands to one tag (reporting rate), QoS 1, from the engine."""
    return f"{TAGS}/{tag}/cmd"


def gateway(gw: str) -> str:
    """A gateway's batches: a JSON or msgpack array of fixes and events, each with its tag."""
    return f"{GATEWAY}/{gw}/fixes"


def owntracks(device: str) -> str:
    """An OwnTracks device id is 'user/device'."""
    return f"{OWNTRACKS}/{device}"


def owntracks_cmd(device: str) -> str:
    """Where an OwnTracks app with remote commands on listens: owntracks/{user}/{device}/cmd."""
    return f"{OWNTRACKS}/{device}/cmd"


def warning(device: str) -> str:
    """A warning to a protected unit (not a phone: device ids without '/')."""
    return f"{PROTECTED}/{device}/warning"


def alerts(subject: str, prefix: str = ALERTS) -> str:
    return f"{prefix}/{subject}"


def parse_input(topic: str) -> tuple[str, str] | str:
    """(kind, device id) for an input topic, kind one of fix/fixes/event/owntracks/gateway/ignore;
    or the dead-letter reason. Length limits are checked by the caller (they vary)."""
    if topic.startswith(TAG_PREFIX):
        parts = topic[len(TAG_PREFIX) :].split("/")
        if len(parts) == 2 and parts[1] == "cmd":  # the engine's own rate commands, back
            return "ignore", ""  # on a tag's filter over MQTT 3.1.1 (no No Local there)
        if len(parts) != 2 or parts[1] not in TAG_KINDS:
            return f"unknown topic {show_topic(topic)}"
        tag, kind = parts
        if not tag:
            return f"topic {show_topic(topic)} has an empty tag id"
        for c in "+#":
            if c in tag:
                return f"topic {show_topic(topic)}: tag id {show(tag)} contains {c!r}"
        if SURROGATE.search(tag):
            return f"topic {show_topic(topic)}: tag id {show(tag)} contains a lone surrogate"
        return kind, tag
    if topic.startswith(GATEWAY_PREFIX):
        parts = topic[len(GATEWAY_PREFIX) :].split("/")
        if len(parts) != 2 or parts[1] != "fixes":
            return f"unknown topic {show_topic(topic)}"
        gw = parts[0]
        if not gw or "+" in gw or "#" in gw or SURROGATE.search(gw):
            return f"topic {show_topic(topic)}: bad gateway id {show(gw)}"
        return "gateway", gw
    if topic.startswith(OWNTRACKS_PREFIX):
        parts = topic[len(OWNTRACKS_PREFIX) :].split("/")
        if len(parts) > 2:  # owntracks/u/d/event, /cmd, /info, /waypoints, /dump, ...
            return "ignore", ""
        if len(parts) < 2:
            return f"unknown topic {show_topic(topic)}"
        user, dev = parts
        if not user or not dev:
            return f"topic {show_topic(topic)} has an empty user or device"
        device = f"{user}/{dev}"
        for c in "+#":
            if c in device:
                return f"topic {show_topic(topic)}: device id {show(device)} contains {c!r}"
        if SURROGATE.search(device):
            return f"topic {show_topic(topic)}: device id {show(device)} contains a lone surrogate"
        return "owntracks", device
    return f"unknown topic {show_topic(topic)}"
