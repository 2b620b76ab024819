"""Errors that end in one clear line for the user, never a traceback."""

from __future__ import annotations


class EdgedError(Exception):
    """A problem the user can fix; str() is the one line shown to them."""


class ConfigError(EdgedError):
    """The configuration is invalid; `lines` holds one `FILE:LINE: key: reason` per error."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class ModelError(EdgedError):
    """A model or labels file cannot be used."""


class SourceError(EdgedError):
    """A frame source cannot be opened or read."""
