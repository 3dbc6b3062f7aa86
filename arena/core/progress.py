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

    def status(self, done: int, unit: str = "") -> str:
        elapsed = self.now() - self.start
        text = f"{done}/{self.total}{' ' + unit if unit else ''}, {clock(elapsed)}"
        if 0 < done < self.total:
            text += f", ETA {clock(elapsed / done * (self.total - done))}"
        return text


class Ticker:
    """A line about every ``every_s`` seconds of a long loop, so no step is silent for long:
    ``Ticker(total, say, "  strip: filter scores for")``, then ``tick(done, "inputs")`` each pass
    (``"  strip: filter scores for 512/4000 inputs, 0:10, ETA 1:08"``). Silent when ``say`` is None
    and for loops that end before the first ``every_s``."""

    every_s = 10.0

    def __init__(self, total: int, say: Callable[[str], None] | None, what: str,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.eta, self.say, self.what, self.now = Eta(total, now), say, what, now
        self.last = now()

    def tick(self, done: int, unit: str = "") -> None:
        if self.say is None or self.now() - self.last < self.every_s:
            return
        self.last = self.now()
        self.say(f"{self.what} {self.eta.status(done, unit)}")
