"""The root of the one exception tree, at the lowest layer so zones/ needs nothing above it.

Every error tagwatch raises on purpose is a `TagwatchError`; its message is for the user.
`engine.errors` re-exports these and adds the engine's own kinds."""

from __future__ import annotations


class TagwatchError(Exception):
    """Base of every error tagwatch raises deliberately; its message is for the user."""


class ZoneError(TagwatchError):
    """Zones GeoJSON or subjects TOML is invalid; `problems` lists every finding."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = list(problems or [message])
        super().__init__(message)
