"""The one exception tree: every error tagwatch raises on purpose is a TagwatchError."""

from __future__ import annotations


class TagwatchError(Exception):
    """Base of every error tagwatch raises deliberately; its message is for the user."""


class ConfigError(TagwatchError):
    """A settings file, command-line option or environment value is wrong."""


class ZoneError(TagwatchError):
    """Zones GeoJSON or subjects TOML is invalid; `problems` lists every finding."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = list(problems or [message])
        super().__init__(message)


class DecodeError(TagwatchError):
    """An input record (MQTT payload or replay line) cannot be accepted."""


class StoreError(TagwatchError):
    """The durable store cannot be opened or written."""


class BrokerError(TagwatchError):
    """No MQTT broker could be started or reached."""
