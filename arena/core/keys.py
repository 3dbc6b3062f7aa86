"""The referee's secret: a random key kept in the arena home, out of every agent's reach.

Generators handed to agents and the order of the referee's questions are drawn
from HMAC-SHA256 of this key over (seed, role, agent, label): an agent that
reads ``ctx.generator.initial_seed()`` learns nothing it could invert (the
seed, its role label, whether it plays a match or a control) without the key,
and agent processes cannot read the arena home (``arena.engine.sandbox``).
Matches replay bit for bit in the home that played them; in another home
(another key) a replay draws other generators, and ``arena matches replay``
reports the drift. Records store ``key_id`` (a hash prefix), never the key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

import torch

from arena.core.home import arena_home

KEY_FILE = "referee.key"


def referee_key(home: Path | None = None) -> bytes:
    """The home's 32-byte key, made on first use (mode 0600, written once: concurrent first uses agree)."""
    home = home or arena_home()
    path = home / KEY_FILE
    try:
        key = path.read_bytes()
        if len(key) == 32:
            return key
    except FileNotFoundError:
        pass
    home.mkdir(parents=True, exist_ok=True)
    tmp = home / f"{KEY_FILE}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(32))
    try:
        os.link(tmp, path)  # fails if another process made it first: theirs wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    key = path.read_bytes()
    if len(key) != 32:
        from arena.core.errors import ArenaError

        raise ArenaError(f"{path} is not a 32-byte key", hint="delete it; the next match makes a new one")
    return key


def key_id(key: bytes) -> str:
    """A public name of ``key`` (8 hex of its sha256), stored with each match."""
    return hashlib.sha256(key).hexdigest()[:8]


def secret_seed(key: bytes, *labels: Any) -> int:
    """A 64-bit seed nobody without ``key`` can tell from random, or invert to ``labels``."""
    msg = json.dumps(list(labels), default=str, separators=(",", ":")).encode()
    return int.from_bytes(hmac.new(key, msg, hashlib.sha256).digest()[:8], "big")


def secret_generator(key: bytes, *labels: Any) -> torch.Generator:
    return torch.Generator().manual_seed(secret_seed(key, *labels))
