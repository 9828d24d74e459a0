"""paho's MQTT 5 property tables are shared between `Properties` instances
(engine/mqtt/session.py `share_property_tables`: 27% of the engine's CPU under a flood):
every instance still packs, unpacks and validates as paho does, and keeps its own values."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import MQTTException, Properties

from engine.mqtt.session import share_property_tables

_utf8 = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20
)


def test_the_tables_are_shared() -> None:
    assert share_property_tables()
    a, b = Properties(PacketTypes.PUBLISH), Properties(PacketTypes.CONNACK)
    assert a.names is b.names and a.properties is b.properties
    assert a.packetType == PacketTypes.PUBLISH and b.packetType == PacketTypes.CONNACK


@settings(max_examples=200, deadline=None)
@given(
    fmt=st.sampled_from([0, 1]),
    expiry=st.integers(0, 2**32 - 1),
    ctype=_utf8,
    corr=st.binary(max_size=20),
    user=st.lists(st.tuples(_utf8, _utf8), max_size=3),
)
def test_publish_properties_round_trip_and_stay_apart(
    fmt: int, expiry: int, ctype: str, corr: bytes, user: list[tuple[str, str]]
) -> None:
    share_property_tables()
    p = Properties(PacketTypes.PUBLISH)
    p.PayloadFormatIndicator = fmt
    p.MessageExpiryInterval = expiry
    p.ContentType = ctype
    p.CorrelationData = corr
    if user:
        p.UserProperty = user
    other = Properties(PacketTypes.PUBLISH)
    assert other.isEmpty()  # one instance's values never show in another
    back = Properties(PacketTypes.PUBLISH)
    back.unpack(p.pack())
    assert back.PayloadFormatIndicator == fmt
    assert back.MessageExpiryInterval == expiry
    assert back.ContentType == ctype
    assert back.CorrelationData == corr
    assert getattr(back, "UserProperty", []) == user


def test_validation_still_applies() -> None:
    share_property_tables()
    with pytest.raises(MQTTException):
        Properties(PacketTypes.PUBLISH).ReceiveMaximum = 10  # a CONNECT/CONNACK property
    with pytest.raises(MQTTException):
        Properties(PacketTypes.CONNECT).ReceiveMaximum = 0  # out of range
