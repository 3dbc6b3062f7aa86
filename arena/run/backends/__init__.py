"""Where a tournament's matches run: one ``Backend`` interface, a local and a Ray implementation.

A backend is handed the planned jobs and reports each finished match through
``done`` (in the planning process, the only one that writes the store); the
tally prints the progress line. ``LocalBackend`` plays here or in a process
pool; ``RayBackend`` sends each match to a Ray cluster as a task. A test or a
new executor passes its own object to ``arena.run.tournament.run(backend=...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from arena.api.training import Progress
from arena.config.scenario import Scenario
from arena.core.errors import ArenaError
from arena.results.record import MatchRecord
from arena.run.jobs import Job, Tally

BACKENDS = ("local", "ray")


class Backend(Protocol):
    def run(self, jobs: list[Job], threads: int, done: Callable[[MatchRecord], None], say: Progress,
            tally: Tally) -> None:
        """Play every job, calling ``tally.start()`` as each begins and ``done(record)`` as each ends."""
        ...


def make_backend(name: str, scenario: Scenario, *, device: str = "auto", workers: int = 1,
                 ray_options: object | None = None) -> Backend:
    """The backend called ``name``; for Ray, its options are checked and Ray imported now, so a
    missing package or a bad option is one clear error before anything is planned."""
    if name == "local":
        from arena.run.backends.local import LocalBackend

        return LocalBackend(workers)
    if name == "ray":
        from arena.run.backends.ray import RayBackend, RayOptions, effective_device, import_ray

        options = ray_options if isinstance(ray_options, RayOptions) else RayOptions()
        options.validate(effective_device(device, scenario))
        import_ray()
        return RayBackend(options)
    raise ArenaError(f"unknown tournament backend '{name}'", hint=f"use one of: {', '.join(BACKENDS)}")
