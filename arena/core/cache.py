"""Content-addressed artifact cache (benign models, trojans, defender controls).

An artifact's key is the hash of everything that determines it (scenario
digest, seed, agent name, version and parameters, code version of the
engine); its file is ``<home>/cache/<kind>/<key>.pt``. Files are written to a
temporary name, fsynced and renamed, so a killed run never leaves a
half-written artifact under its real name, and a per-key lock stops two
tournament workers from training the same model twice.

Every read is verified. A file is a one-line header, ``ARENA-HMAC:<64 hex>``
and a newline, followed by the ``torch.save`` bytes. The header is the
HMAC-SHA256 of those bytes under the home's secret key (``arena.core.keys``,
``<home>/referee.key``), not a plain hash: a plain hash in the file it protects
is rewritten along with the payload by whoever can write the file, while the
key is out of every agent's view (``arena.engine.sandbox``), so an agent that
reached the cache could still not make an entry the referee would serve. The
MAC travels in the same file, not in a sidecar, because one file is replaced
by one atomic rename: a reader can never pair a payload with the MAC of another
write, so the read path needs no lock. A cache file is therefore not a plain
``torch.load``-able file: read it with ``ArtifactCache.get``. An entry whose
header is missing (written before MACs, or not by the arena), whose MAC does
not match (another home's key, or forged), or whose payload ``torch.load``
cannot read is never served: it is moved aside to ``<key>.pt.corrupt`` (the
last one per key, kept for a post-mortem), reported through ``on_event`` (or
``warnings.warn`` when none is set), and ``get_or_make`` rebuilds it.

Temporary files of killed writes (``<key>.tmp<pid>``) are removed when a cache
is first opened in a process: those of a process that no longer exists, and
any older than an hour (a pid may have been reused, or belong to another host).
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import io
import json
import os
import re
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from arena.core.home import arena_home
from arena.core.keys import referee_key

__all__ = ["ArtifactCache", "CorruptEntry", "arena_home", "digest_tensors", "key_of", "pid_alive"]

# Bump when a change to the engine invalidates stored artifacts.
ENGINE_VERSION = "5"  # 2: matches on a fixed thread count, trojans keyed by agent cards;
# 3: agents' generators from the home's secret key, blinded queries (arena.core.keys);
# 4: entries carry a keyed MAC, benign models are keyed by the data's content (a new key space,
#    so entries of 3 are never looked at rather than each reported as corrupt);
# 5: benign models and the scenario's trigger drawn from the home's key, no longer from the seed alone

MAGIC = b"ARENA-HMAC:"
_HEADER_LEN = len(MAGIC) + 64 + 1  # magic, hex MAC, newline
_TMP_NAME = re.compile(r"\.tmp(\d+)$")
TMP_MAX_AGE_S = 3600.0
# A dead writer's temp file is only removed after this long: a writer in another pid namespace
# (a container sharing the folder) can look dead from here while it is still writing.
_TMP_DEAD_GRACE_S = 60.0
_swept: set[Path] = set()  # cache roots whose temp files this process has already cleaned


def key_of(fields: dict[str, Any]) -> str:
    blob = json.dumps({**fields, "engine": ENGINE_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def digest_tensors(tensors: Iterable[torch.Tensor]) -> str:
    """sha256 of the tensors' dtypes, shapes and bytes, in order: the identity of what a computation reads.

    For results keyed by content rather than by how their inputs were made (the referee's attack
    metrics): a trojan rebuilt under the same key, or one crafted again with other bytes, cannot be
    served a measurement of another model."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data if t.numel() else b"")
    return h.hexdigest()


class CorruptEntry(Exception):
    """A cache file that must not be served; the message says why."""


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` is running (a zombie, dead and not yet reaped, counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True  # no /proc: the signal test above is all there is


def sweep_temp_files(root: Path, now: float | None = None) -> list[Path]:
    """Remove leftovers of killed writes under ``root/<kind>/``; returns what was removed."""
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        kinds = [e for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return removed
    for kind in kinds:
        try:
            entries = list(os.scandir(kind.path))
        except FileNotFoundError:
            continue
        for e in entries:
            m = _TMP_NAME.search(e.name)
            if m is None or not e.is_file(follow_symlinks=False):
                continue
            try:
                age = now - e.stat(follow_symlinks=False).st_mtime
            except FileNotFoundError:  # its writer renamed it meanwhile
                continue
            pid = int(m.group(1))
            dead = pid != os.getpid() and not pid_alive(pid)
            if age > TMP_MAX_AGE_S or (dead and age > _TMP_DEAD_GRACE_S):
                try:
                    os.unlink(e.path)
                    removed.append(Path(e.path))
                except FileNotFoundError:
                    pass
    return removed


class ArtifactCache:
    """The cache of the arena home ``root`` (default ``arena_home()``), under ``<root>/cache``."""

    def __init__(self, root: Path | None = None, on_event: Callable[[str], None] | None = None) -> None:
        self.home = root or arena_home()
        self.root = self.home / "cache"
        self._key: bytes | None = None
        # Told about entries that were found corrupt and will be rebuilt (e.g. the referee's progress).
        self.on_event = on_event
        if self.root not in _swept:  # once per process and root: a scan of a few folders
            _swept.add(self.root)
            sweep_temp_files(self.root)

    def _mac(self, payload: memoryview | bytes) -> str:
        if self._key is None:
            self._key = referee_key(self.home)
        return hmac.new(self._key, payload, hashlib.sha256).hexdigest()

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

    def busy(self, kind: str, key: str) -> bool:
        """Whether another process is making this entry now (holds its lock): a caller with other
        entries to make can make those first instead of waiting (``Referee.free_member``). A hint, not
        a claim: the lock may be taken the moment after, and ``get_or_make`` then waits as ever."""
        try:
            f = open(self.root / kind / f"{key}.lock")
        except FileNotFoundError:
            return False
        with f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
            return False

    def _event(self, msg: str) -> None:
        if self.on_event is not None:
            self.on_event(msg)
        else:
            warnings.warn(msg, RuntimeWarning, stacklevel=3)

    def _load(self, kind: str, key: str) -> dict[str, Any] | None:
        """The verified entry, None when absent; raises ``CorruptEntry`` for a bad one."""
        try:
            blob = self.path(kind, key).read_bytes()
        except FileNotFoundError:
            return None
        if len(blob) < _HEADER_LEN or not blob.startswith(MAGIC) or blob[_HEADER_LEN - 1:_HEADER_LEN] != b"\n":
            raise CorruptEntry("no MAC header (truncated, or not written by this arena)")
        recorded = blob[len(MAGIC):_HEADER_LEN - 1].decode("ascii", "replace")
        payload = memoryview(blob)[_HEADER_LEN:]
        if not hmac.compare_digest(self._mac(payload), recorded):
            raise CorruptEntry(f"MAC mismatch ({len(payload)} payload bytes): altered, or made under another key")
        try:
            return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        except Exception as exc:  # hash fine but unreadable, e.g. an incompatible torch wrote it
            raise CorruptEntry(f"torch.load failed: {type(exc).__name__}: {exc}") from exc

    def _discard(self, kind: str, key: str, why: str) -> None:
        p = self.path(kind, key)
        try:
            os.replace(p, p.with_name(p.name + ".corrupt"))
        except FileNotFoundError:
            return  # someone else already moved it
        self._event(f"cache: {kind} entry {key} is corrupt ({why}); moved aside, it will be rebuilt")

    def _get(self, kind: str, key: str, locked: bool) -> dict[str, Any] | None:
        try:
            return self._load(kind, key)
        except CorruptEntry as bad:
            if locked:
                self._discard(kind, key, str(bad))
                return None
        # Unlocked: a writer may be replacing the entry right now; look again under its lock before
        # moving anything aside, so a good file that just landed is never discarded.
        with self._lock(kind, key):
            try:
                return self._load(kind, key)
            except CorruptEntry as bad:
                self._discard(kind, key, str(bad))
                return None

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        """The entry, or None when it is absent or fails verification (then it is moved aside)."""
        return self._get(kind, key, locked=False)

    def put(self, kind: str, key: str, value: dict[str, Any]) -> None:
        p = self.path(kind, key)
        p.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save(value, buf)
        payload = buf.getbuffer()
        tmp = p.with_suffix(f".tmp{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                f.write(MAGIC + self._mac(payload).encode("ascii") + b"\n")
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())  # the rename must not land before the bytes do
            os.replace(tmp, p)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def get_or_make(self, kind: str, key: str, make: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
        """The cached value, or ``make()`` stored; the flag says whether it was a hit."""
        hit = self.get(kind, key)
        if hit is not None:
            return hit, True
        with self._lock(kind, key):
            hit = self._get(kind, key, locked=True)  # another worker may have made it meanwhile
            if hit is not None:
                return hit, True
            value = make()
            self.put(kind, key, value)
            return value, False
