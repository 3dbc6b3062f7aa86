"""Counts and ETAs for long steps (benign training, control populations, tournaments), on stderr.

A line per step rather than a redrawn bar: the referee's messages interleave
with agents' own output and with parallel workers, and a log that is read
later (CI, ``nohup``) should hold every line. The ETA is the time left at the
rate the steps have gone so far.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def clock(seconds: float) -> str:
    """``1:05`` or ``2:03:09``: an ETA is read at a glance, not to the second."""
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class Eta:
    """``Eta(total)``, then ``status(done)`` after each step: ``"2/5, 0:40, ETA 1:00"``."""

    def __init__(self, total: int, now: Callable[[], float] = time.monotonic) -> None:
        self.total, self.now, self.start = total, now, now()

    def status(self, done: int) -> str:
        elapsed = self.now() - self.start
        text = f"{done}/{self.total}, {clock(elapsed)}"
        if 0 < done < self.total:
            text += f", ETA {clock(elapsed / done * (self.total - done))}"
        return text
