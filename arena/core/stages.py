"""Where a match's time goes: wall seconds per stage, each second charged to exactly one stage.

Stages nest (a control run trains a benign model; scoring a deployment asks
it questions), and a breakdown that counted the nested time twice would not
add up to the match's duration. ``Stages`` charges every second to the
innermost stage open at the time, so the stages plus ``rest`` (whatever ran
outside any stage) sum to the wall time. ``benchmarks/bench_seed.py`` sums
them over a tournament seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Stages:
    """``with stages("deploy"): ...``; ``stages.seconds`` maps stage path to exclusive wall seconds."""

    def __init__(self, now: Callable[[], float] = time.perf_counter) -> None:
        self.now = now
        self.seconds: dict[str, float] = {}
        self._open: list[str] = []
        self._since = now()

    def _charge(self) -> None:
        t = self.now()
        if self._open:
            top = "/".join(self._open)
            self.seconds[top] = self.seconds.get(top, 0.0) + (t - self._since)
        self._since = t

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self._charge()
        self._open.append(name)
        try:
            yield
        finally:
            self._charge()
            self._open.pop()

    def since(self, before: dict[str, float]) -> dict[str, float]:
        """The seconds spent per stage after the snapshot ``before`` (a copy of ``seconds``)."""
        return {k: round(v - before.get(k, 0.0), 4) for k, v in self.seconds.items() if v - before.get(k, 0.0) > 0}
