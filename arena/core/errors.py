"""Errors a user can act on.

Every error the CLI shows without a traceback is an ``ArenaError``: its
message says what went wrong and its ``hint`` says what to type instead.
"""

from __future__ import annotations


class ArenaError(Exception):
    """An error caused by input the user controls (names, files, settings)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}\n  hint: {self.hint}" if self.hint else base


class ScenarioError(ArenaError):
    """Unknown scenario, or a scenario file that does not validate."""


class DatasetNotFound(ArenaError):
    """A dataset is in none of the places the loader looks."""


class PluginError(ArenaError):
    """An agent cannot be found, imported or used."""


class DeviceError(ArenaError):
    """A device was asked for that this machine does not have."""
