"""A tournament's unit of work: the job, playing it, and the queue and tally every backend shares."""

from __future__ import annotations

import datetime as dt
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import arena
from arena.api.training import Progress
from arena.config.scenario import Scenario
from arena.core.cache import arena_home
from arena.core.errors import ArenaError
from arena.core.progress import clock as mmss  # "1:05"
from arena.engine.hosts import describe
from arena.results.record import MatchRecord
from arena.run.pulse import Pulse

if TYPE_CHECKING:
    from arena.engine.referee import Referee


class WorkerDied(ArenaError):
    """The worker process playing a match died (twice): the match is recorded as an error."""


@dataclass(frozen=True)
class Job:
    scenario: Scenario  # the object itself (picklable), not its file: an edited file must not change a plan
    attacker: str
    defender: str
    seed: int
    rounds: int
    device: str
    isolation: str = "process"

    @property
    def label(self) -> str:
        """How progress lines name the match: ``badnet vs strip seed 0``."""
        return f"{self.attacker} vs {self.defender} seed {self.seed}"


class Player(Protocol):
    """Plays one job and never raises: ``play_job``, or a test's stand-in handed to ``tournament.run``.
    A pool or cluster backend pickles it to its workers, so it must be a module-level function."""

    def __call__(self, job: Job, progress: Progress | None = None) -> MatchRecord: ...


def error_record(job: Job, scenario: Scenario, exc: BaseException) -> MatchRecord:
    def version(role: str, name: str) -> str:
        try:
            return describe(role, name, scenario.agent_params(role, name), job.isolation).version
        except Exception:
            return "?"

    # The message first (what `matches list --errors` and the summary show), the traceback after it.
    detail = str(exc) if isinstance(exc, ArenaError) else (
        (str(exc).strip() or "(no message)") + "\n" +
        "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:]))
    return MatchRecord(
        scenario=scenario.name, scenario_digest=scenario.digest, attacker=job.attacker,
        attacker_version=version("attacker", job.attacker), defender=job.defender,
        defender_version=version("defender", job.defender), seed=job.seed, rounds=job.rounds,
        status="error", error=f"{type(exc).__name__}: {detail}", code_version=arena.__version__,
        started_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )


_REFEREES: dict = {}


def process_referee(scenario: Scenario, device: str, isolation: str) -> Referee:
    """This process's referee for a scenario setting.

    One per process and arena home: data and benign models stay loaded, and a process that moves
    to another home (ARENA_HOME changed) never reads the old home's cache."""
    from arena.engine.referee import Referee

    key = (scenario.digest, device, isolation, str(arena_home()), os.environ.get("ARENA_DATA_DIR"))
    if key not in _REFEREES:
        _REFEREES[key] = Referee(scenario, device=device, isolation=isolation)
    return _REFEREES[key]


def play_job(job: Job, progress: Progress | None = None) -> MatchRecord:
    """Play one job; never raises (errors become an error record). The default ``Player``."""
    scenario = job.scenario
    try:
        referee = process_referee(scenario, job.device, job.isolation)
        referee.progress = progress
        return referee.play(job.attacker, job.defender, seed=job.seed, rounds=job.rounds).record
    except Exception as exc:  # one broken match must not stop the tournament
        return error_record(job, scenario, exc)


class Tally(Pulse):
    """Live counts of a tournament's matches, the line each finished match prints, and the pulse.

    Shared by every backend, so a tournament reads the same whether its matches run here, in a
    local pool or on a Ray cluster: ``[i/n] a vs d seed s: outcome (t s) | done D, running R,
    failed F, ETA m:ss``, where i = D + F. The ETA is the remaining matches at the rate matches
    have finished so far (wall-clock, so parallel workers count), and is left out until one has.
    A backend that plays matches out of this process names each running match to the pulse
    (``began(key, job.label)``, ``heard``, ``ended``, ``arena.run.pulse``), so a tournament is
    never silent for long.
    """

    def __init__(self, total: int, say: Progress, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(say, clock)
        self.total = total
        self.done = self.failed = self.running = 0
        self._t0 = clock()

    def start(self, n: int = 1) -> None:
        """``n`` matches began playing."""
        self.running += n

    def requeue(self, n: int = 1) -> None:
        """``n`` matches in flight went back to the queue (their worker died); they will start again."""
        self.running = max(0, self.running - n)

    def counts(self) -> str:
        finished = self.done + self.failed
        parts = f"done {self.done}, running {self.running}, failed {self.failed}"
        left = self.total - finished
        if finished and left > 0:
            parts += f", ETA {mmss((self.clock() - self._t0) / finished * left)}"
        return parts

    def finish(self, rec: MatchRecord) -> None:
        """Count a finished match (ok or error) and print its line."""
        self.running = max(0, self.running - 1)
        if rec.status == "ok":
            self.done += 1
            what = f"{rec.outcome:.3f} ({rec.duration_s:.1f} s)"
        else:
            self.failed += 1
            what = f"FAILED {(rec.error or '').splitlines()[0] if rec.error else ''}"
        self.say(f"[{self.done + self.failed}/{self.total}] {rec.attacker} vs {rec.defender} seed {rec.seed}: "
                 f"{what} | {self.counts()}")


def trojan_group(job: Job) -> tuple[str, int] | None:
    """The (attacker, seed) whose trojan this job's matches share, or None (adaptive or unknown).

    An adaptive attacker's trojan depends on the defender, so its matches share nothing to wait
    for, unless it names its crafts (``Attacker.craft_key``): then the matches where it does not
    adapt share one named craft, and waiting for the first of them saves making it twice at once.
    The card was read by ``plan`` in this process and is remembered (``describe``).
    """
    try:
        card = describe("attacker", job.attacker, job.scenario.agent_params("attacker", job.attacker),
                        job.isolation)
    except Exception:  # the match will fail on its own and record why
        return None
    return (job.attacker, job.seed) if not card.adaptive or card.names_crafts else None


class JobQueue:
    """Jobs in plan order, handed out so that no two workers craft the same trojan at once.

    The referee crafts a missing trojan without a lock (it looks it up, crafts it, stores it), so
    two matches of one non-adaptive attacker and seed started together would both craft it. The
    queue starts one of them and holds the others back until a match of that attacker and seed
    has finished ok, leaving the trojan in the cache; meanwhile it hands out the next job of
    another attacker or seed, so workers stay busy. Benign models and control runs need no such
    care: the cache makes them under per-key file locks.
    """

    def __init__(self, jobs: list[Job], indices: list[int] | None = None,
                 group: Callable[[Job], tuple[str, int] | None] = trojan_group) -> None:
        self.jobs = jobs
        self._todo: list[int] = list(range(len(jobs)) if indices is None else indices)
        self._group = {i: group(jobs[i]) for i in self._todo}
        self._busy: set[tuple[str, int]] = set()  # groups with a match in flight and no ok match yet
        self._open: set[tuple[str, int]] = set()  # groups with an ok match: their trojan is cached

    def __len__(self) -> int:
        return len(self._todo)

    def pop(self) -> int | None:
        """The first job that may start now (marked as started), or None if all are held back."""
        for k, i in enumerate(self._todo):
            g = self._group.get(i)
            if g is None or g in self._open:
                return self._todo.pop(k)
            if g not in self._busy:
                self._busy.add(g)
                return self._todo.pop(k)
        return None

    def finish(self, i: int, ok: bool) -> None:
        """Job ``i`` ended; an ok match opens its group to every remaining job."""
        g = self._group.get(i)
        if g is not None:
            self._busy.discard(g)
            if ok:
                self._open.add(g)
