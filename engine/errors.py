"""The one exception tree: every error tagwatch raises on purpose is a TagwatchError.

The root and `ZoneError` live in `zones.errors` (the lowest layer); the rest are here."""

from __future__ import annotations

from zones.errors import TagwatchError, ZoneError

__all__ = [
    "BrokerError",
    "ConfigError",
    "DecodeError",
    "StoreError",
    "TagwatchError",
    "ZoneError",
]


class ConfigError(TagwatchError):
    """A settings file, command-line option or environment value is wrong."""


class DecodeError(TagwatchError):
    """An input record (MQTT payload or replay line) cannot be accepted."""


class StoreError(TagwatchError):
    """The durable store cannot be opened or written."""


class LockLost(StoreError):
    """The engine's lock on its store is gone (engine/store/sql/enginelock.py): it must
    write nothing more."""


class BrokerError(TagwatchError):
    """No MQTT broker could be started or reached."""
