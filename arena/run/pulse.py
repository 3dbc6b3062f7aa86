"""Never silent for long: a line on the work running in other processes, and their progress lines.

A CIFAR match or a benign model of a control population runs for minutes in a
worker process, and a finished unit prints its own line only at its end. The
process that waits on the pool keeps a ``Pulse``: it is told which units run
(``began``, ``ended``) and what each last said (``heard``), and calls
``pulse()`` while it waits; after ``quiet_s`` without a line, one line names
each running unit, how long it has run and the last progress line it sent
(``  running: badnet vs strip seed 0 1:12: train: epoch 2/4, ...``).

The workers' lines travel on a queue of the pool's context: the pool's
initializer hands it to ``init_worker``, a unit in the worker reports through
``reporting(key)``, and the waiting process ``drain``s it.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Any

from arena.api.training import Progress, pin_threads
from arena.core.progress import clock as mmss  # "1:05"

LINE_MAX = 1000  # bytes: a pipe writes up to PIPE_BUF (4096) at once, so a killed worker never
# leaves half a line in the queue for the waiting process to block on


class Pulse:
    """Which units of work are running out of this process, and one line on them after a quiet spell."""

    quiet_s = 10.0

    def __init__(self, say: Progress, clock: Callable[[], float] = time.monotonic) -> None:
        self._say, self.clock = say, clock
        self._said = clock()
        self._live: dict[object, list] = {}  # key -> [label, started, last progress line]

    def say(self, msg: str) -> None:
        """Print a line (it resets the quiet spell)."""
        self._said = self.clock()
        self._say(msg)

    def began(self, key: object, label: str) -> None:
        """The unit ``label`` (known by ``key`` to the caller) is running out of this process."""
        self._live[key] = [label, self.clock(), ""]

    def heard(self, key: object, line: str) -> None:
        """The running unit ``key`` sent a progress line."""
        if key in self._live:
            self._live[key][2] = " ".join(line.split())  # the agents' indentation and newlines, flattened

    def ended(self, key: object) -> None:
        self._live.pop(key, None)

    def pulse(self) -> None:
        """One line on the running units, if nothing was said for ``quiet_s``."""
        now = self.clock()
        if not self._live or now - self._said < self.quiet_s:
            return
        self.say("  running: " + " | ".join(
            f"{label} {mmss(now - started)}" + (f": {last}" if last else "")
            for label, started, last in self._live.values()))


_LINES: Any = None  # in a worker: the queue its units' progress lines go to


def init_worker(threads: int, lines: Any = None) -> None:
    """A pool's initializer: the worker's thread count, and the queue for its progress lines."""
    global _LINES
    pin_threads(threads)
    _LINES = lines


def reporting(key: object) -> Progress:
    """In a worker: a progress callback that sends each line to the waiting process as ``(key, line)``."""
    def progress(line: str) -> None:
        if _LINES is not None:
            try:
                _LINES.put_nowait((key, line[:LINE_MAX]))
            except Exception:  # a progress line must never cost the work
                pass

    return progress


def drain(lines: Any, pulse: Pulse) -> None:
    """Hand the workers' progress lines received so far to ``pulse`` (the latest per unit counts)."""
    while True:
        try:
            key, line = lines.get_nowait()
        except queue.Empty:
            return
        except Exception:  # a queue broken by a dead worker: the pulse shows running times only
            return
        pulse.heard(key, line)
