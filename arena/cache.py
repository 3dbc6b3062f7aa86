"""Content-addressed artifact cache (benign models, trojans, defender controls).

An artifact's key is the hash of everything that determines it (scenario
digest, seed, agent name, version and parameters, code version of the
engine); its file is ``<home>/cache/<kind>/<key>.pt``. Files are written to a
temporary name and renamed, so a killed run never leaves a half-written
artifact, and a per-key lock stops two tournament workers from training the
same model twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

# Bump when a change to the engine invalidates stored artifacts.
ENGINE_VERSION = "1"


def arena_home() -> Path:
    """Where the store and cache live: ``ARENA_HOME`` or ``./.arena``."""
    return Path(os.environ.get("ARENA_HOME", ".arena"))


def key_of(fields: dict[str, Any]) -> str:
    blob = json.dumps({**fields, "engine": ENGINE_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class ArtifactCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or arena_home()) / "cache"

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}.pt"

    @contextmanager
    def _lock(self, kind: str, key: str) -> Iterator[None]:
        lock = self.root / kind / f"{key}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        p = self.path(kind, key)
        if not p.is_file():
            return None
        return torch.load(p, map_location="cpu", weights_only=True)

    def put(self, kind: str, key: str, value: dict[str, Any]) -> None:
        p = self.path(kind, key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(f".tmp{os.getpid()}")
        torch.save(value, tmp)
        os.replace(tmp, p)

    def get_or_make(self, kind: str, key: str, make: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
        """The cached value, or ``make()`` stored; the flag says whether it was a hit."""
        hit = self.get(kind, key)
        if hit is not None:
            return hit, True
        with self._lock(kind, key):
            hit = self.get(kind, key)  # another worker may have made it meanwhile
            if hit is not None:
                return hit, True
            value = make()
            self.put(kind, key, value)
            return value, False
