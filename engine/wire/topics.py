"""Every MQTT topic of the contract, in one place (DESIGN.md section 3, docs/formats.md).

Names a topic or a subscription filter; parsing an input topic into (kind, device) is
`engine.wire.decode`'s job, which reads these same prefixes."""

from __future__ import annotations

TAGS = "tagwatch/v1/tags"  # tagwatch/v1/tags/{tag}/fix | fixes | event | cmd
TAG_PREFIX = TAGS + "/"
TAG_KINDS = ("fix", "fixes", "event")  # what a tag publishes
OWNTRACKS = "owntracks"  # owntracks/{user}/{device}: a victim's phone, unchanged app
OWNTRACKS_PREFIX = OWNTRACKS + "/"
ALERTS = "tagwatch/v1/alerts"  # tagwatch/v1/alerts/{subject}
STATUS = "tagwatch/v1/engine/status"  # the engine's retained status, with an offline will

# What the engine subscribes to.
INPUT_FILTERS = (
    f"{TAGS}/+/fix",
    f"{TAGS}/+/fixes",
    f"{TAGS}/+/event",
    f"{OWNTRACKS}/+/+",
)
ALERTS_FILTER = f"{ALERTS}/+"  # every subject's alerts (one level: subject ids have no '/')
CMD_FILTER = f"{TAGS}/+/cmd"  # every tag's reporting-rate commands


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


def owntracks(device: str) -> str:
    """An OwnTracks device id is 'user/device'."""
    return f"{OWNTRACKS}/{device}"


def alerts(subject: str, prefix: str = ALERTS) -> str:
    return f"{prefix}/{subject}"
