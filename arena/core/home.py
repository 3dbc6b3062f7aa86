"""Where the arena keeps its store, cache and secret key."""

from __future__ import annotations

import os
from pathlib import Path


def arena_home() -> Path:
    """Where the store and cache live, whatever the current folder.

    ``$ARENA_HOME`` if set, else ``$XDG_DATA_HOME/backdoor-arena``, else
    ``~/.local/share/backdoor-arena``: one place for every result, so a command
    run from another folder still finds the matches stored before. Nothing is
    created here; commands that write create it (``arena.results.store.require_writable_home``).
    """
    env = os.environ.get("ARENA_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME", "")
    # The XDG spec says a relative XDG_DATA_HOME is invalid and must be ignored.
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "backdoor-arena"
