"""Agent specs as strings: an installed name (``strip``) or a file agent (``path/to/file.py:Class``).

Pure string and path functions, so a scenario can key its agent tables by spec
without importing any plugin code.
"""

from __future__ import annotations

import os
from pathlib import Path


def is_file_spec(spec: str) -> bool:
    """Whether ``spec`` names a class in a Python file (``file.py:Class``) rather than an installed agent."""
    return ":" in spec and spec.split(":", 1)[0].endswith(".py")


def canonical_spec(spec: str) -> str:
    """One name per file agent: the path relative to the working directory when inside it,
    else absolute, symlinks resolved, then ``:Class``. Installed names are returned as given."""
    if not is_file_spec(spec):
        return spec
    path_s, _, attr = spec.partition(":")
    path = Path(path_s).resolve()
    cwd = Path.cwd().resolve()
    shown = path.relative_to(cwd).as_posix() if path.is_relative_to(cwd) else path.as_posix()
    return f"{shown}:{attr}"


def absolute_spec(spec: str) -> str:
    """A ``file.py:Class`` spec with an absolute path (agent processes work in a scratch folder);
    installed names unchanged."""
    if not is_file_spec(spec):
        return spec
    path, _, attr = spec.partition(":")
    return f"{os.path.abspath(path)}:{attr}"
