"""The environment agent processes inherit: what Python, torch and the math libraries read, nothing else.

Imported first by the agents' forkserver (``arena.engine.hosts``), before it forks any agent. The
forkserver starts with the referee's environment, which is the user's: cloud credentials, tokens,
the arena home's path. A plugin cannot send them anywhere (no sockets, no files outside its scratch
folder), but it can hide them in what it returns (its trojan's weights, its notes), and those are
stored and published with the match. So the forkserver keeps only the variables named here and
erases the others from every place a forked agent could read them:

- ``os.environ`` and the C library's environment (``unsetenv``);
- the process's initial environment block, which ``/proc/self/environ`` shows whatever ``os.environ``
  now holds (the kernel reads it from the process's own memory, where ``execve`` put it);
- the bytes objects that held the erased values, overwritten before they are freed.

What stays is configuration, not secrets: locale, paths, threading and CUDA settings.
"""

from __future__ import annotations

import ctypes
import os
import sys

KEPT_NAMES = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR",
                        "NO_COLOR", "PYTHONHASHSEED", "PYTHONUNBUFFERED", "PYTHONIOENCODING", "LD_LIBRARY_PATH"})
KEPT_PREFIXES = ("LC_", "CUDA_", "NVIDIA_", "PYTORCH_", "TORCH_", "OMP_", "MKL_", "KMP_", "OPENBLAS_", "GOMP_",
                 "CUBLAS_", "CUDNN_", "NCCL_", "TORCHINDUCTOR_", "TRITON_")


def kept(name: str) -> bool:
    """Whether an agent process may see the environment variable ``name``."""
    return name in KEPT_NAMES or name.startswith(KEPT_PREFIXES)


_BYTES_DATA = sys.getsizeof(b"") - 1  # offset of a bytes object's buffer (CPython layout)


def _erase(value: bytes) -> None:
    # A freed object's bytes stay in the heap until something reuses them, and the forkserver's heap
    # is every agent's. Overwritten here rather than trusting reuse. CPython shares the empty and one-byte bytes objects; anything longer is this environment's own.
    if sys.implementation.name == "cpython" and len(value) > 1:
        ctypes.memset(id(value) + _BYTES_DATA, 0, len(value))


def _initial_block() -> tuple[int, int] | None:
    """Start and end of the environment block ``execve`` left in this process (/proc/PID/stat fields
    50-51, Linux 3.5+), or None where that cannot be read."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[47]), int(fields[48])  # fields[0] is field 3 (state)
    except (OSError, IndexError, ValueError):
        return None
    return (start, end) if 0 < start < end else None


def restrict() -> list[str]:
    """Leave this process only the kept variables; return the names erased."""
    environ = getattr(os, "environb", None)  # POSIX: the bytes mapping behind os.environ
    keep = {k: v for k, v in os.environ.items() if kept(k)}
    erased = sorted(k for k in os.environ if not kept(k))
    for name in erased:
        value = environ.get(os.fsencode(name)) if environ is not None else None
        del os.environ[name]  # unsetenv too
        if value is not None:
            _erase(value)
    block = _initial_block()
    if block is not None and sys.platform == "linux":
        # The C library's environ still points into this block for the variables kept: give them
        # heap copies first (setenv allocates its own "NAME=value" strings), then clear the block.
        for k, v in keep.items():
            os.environ[k] = v
        ctypes.memset(block[0], 0, block[1] - block[0])
    return erased


ERASED = restrict()
