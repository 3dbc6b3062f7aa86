"""Agent specs as strings: an installed name (``strip``), a file agent (``path/to/file.py:Class``), or a
model file played as an attacker (``model:path/to/weights.pt``, ``agents/attackers/given_model.py``).

Pure string and path functions, so a scenario can key its agent tables by spec
without importing any plugin code.
"""

from __future__ import annotations

import os
from pathlib import Path


def is_file_spec(spec: str) -> bool:
    """Whether ``spec`` names a class in a Python file (``file.py:Class``) rather than an installed agent."""
    return ":" in spec and spec.split(":", 1)[0].endswith(".py")


MODEL_PREFIX = "model:"


def is_model_spec(spec: str) -> bool:
    """Whether ``spec`` names a model file to play as the attacker (``model:PATH``)."""
    return spec.startswith(MODEL_PREFIX) and len(spec) > len(MODEL_PREFIX)


def own_file(spec: str) -> str | None:
    """The file a spec brings with it (a plugin's source, a model's weights), or None."""
    if is_model_spec(spec):
        return spec[len(MODEL_PREFIX):]
    if is_file_spec(spec):
        return spec.partition(":")[0]
    return None


def _shown(path_s: str) -> str:
    path = Path(path_s).resolve()
    cwd = Path.cwd().resolve()
    return path.relative_to(cwd).as_posix() if path.is_relative_to(cwd) else path.as_posix()


def canonical_spec(spec: str) -> str:
    """One name per file agent: the path relative to the working directory when inside it,
    else absolute, symlinks resolved, then ``:Class`` (for a model, ``model:`` then the path).
    Installed names are returned as given."""
    if is_model_spec(spec):
        return MODEL_PREFIX + _shown(spec[len(MODEL_PREFIX):])
    if not is_file_spec(spec):
        return spec
    path_s, _, attr = spec.partition(":")
    return f"{_shown(path_s)}:{attr}"


def absolute_spec(spec: str) -> str:
    """A ``file.py:Class`` or ``model:PATH`` spec with an absolute path (agent processes work in a
    scratch folder); installed names unchanged."""
    if is_model_spec(spec):
        return MODEL_PREFIX + os.path.abspath(spec[len(MODEL_PREFIX):])
    if not is_file_spec(spec):
        return spec
    path, _, attr = spec.partition(":")
    return f"{os.path.abspath(path)}:{attr}"
