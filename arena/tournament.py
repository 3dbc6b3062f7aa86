"""Tournaments: every attacker x defender x seed of a scenario, resumable.

A match already stored (same scenario digest, agent names and versions, seed
and rounds, status ok) is skipped, so a killed tournament resumes where it
stopped and a re-run with nothing new only reads the store. A match that
raises is stored with its error and the tournament goes on.

Order: attackers outermost and seeds next, so each non-adaptive trojan is
crafted once and then served from the cache to every defender. With
``workers > 1`` (or ``backend="ray"``, ``arena.ray_backend``) matches run in
worker processes, and two of them must not make the same artifact twice:

- benign models and control runs are made under the artifact cache's per-key
  file locks (``ArtifactCache.get_or_make``): a second worker waits for the
  first and then reads its file;
- trojans are not made under a lock (the referee looks the trojan up, crafts it
  in the attacker's process, then stores it), so the scheduler keeps the
  matches of one non-adaptive attacker and seed apart instead: ``JobQueue``
  starts the first of them and holds the rest back until one has finished ok,
  which leaves the trojan in the cache. Adaptive attackers craft per defender
  and are not held back.

Progress: one line per finished match on ``progress`` (the CLI: stderr),
``[i/n] attacker vs defender seed s: outcome (t s)`` followed by the counts of
matches done, running and failed and an ETA (``Tally``), for every backend.

Every match runs with the same number of CPU threads, ``match_threads()`` (1,
or ``ARENA_THREADS``), whatever ``workers`` is: the thread count changes a CPU
training's bytes (the tiny scenario's benign small-cnn differs at 1 and 2
threads), and the cache must hold the same model for a seed whether it was
made by ``--workers 1`` or ``--workers 4``. One thread is what each worker gets
anyway when workers fill the cores. A sequential tournament pays for it when
the cores are idle (the tiny scenario's benign training on the 2-core machine:
5.9 to 7.3 s at 1 thread, 5.0 to 5.6 s at 2, so 1.1x to 1.4x) and gains when
another process holds a core (2 threads then took 19 to 33 s, 1 thread still
7.3 s); ``--workers`` wins it back.

A worker process that dies (SIGKILL, the OOM killer, a segfault in an
extension) breaks the whole process pool. The matches then in flight are
played again, each alone in a fresh one-worker pool, so the one that killed its
worker is told from the bystanders; a match whose worker dies that second time
is recorded as an error and the tournament goes on with a new pool.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import signal
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import arena
from arena.errors import ArenaError
from arena.plugins import canonical_spec, discover
from arena.scenario import Scenario
from arena.store import MatchRecord, Store
from arena.execution import describe
from arena.training import Progress, match_threads, pin_threads, pinned_threads

if TYPE_CHECKING:
    from arena.ray_backend import RayOptions

BACKENDS = ("local", "ray")


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


@dataclass
class TournamentReport:
    played: int = 0
    skipped: int = 0
    failed: list[tuple[str, str, int, str]] = field(default_factory=list)


def plan(scenario: Scenario, attackers: list[str] | None, defenders: list[str] | None,
         seeds: list[int], rounds: int | None, device: str, store: Store,
         isolation: str = "process") -> tuple[list[Job], int]:
    """Jobs still to play, and how many are already stored."""
    # Canonical file specs: the store knows a file agent by its canonical name, so './x.py:A'
    # must find the matches stored for 'x.py:A' when a tournament resumes.
    attackers = [canonical_spec(a) for a in attackers] if attackers else list(discover("attacker"))
    defenders = [canonical_spec(d) for d in defenders] if defenders else list(discover("defender"))
    rounds = rounds or scenario.rounds
    versions: dict[tuple[str, str], str] = {}
    for role, names in (("attacker", attackers), ("defender", defenders)):
        for n in names:
            try:
                # Read in the agent's own process: plugin code never runs in the driver.
                versions[(role, n)] = describe(role, n, scenario.agent_params(role, n), isolation).version
            except ArenaError:
                versions[(role, n)] = "?"  # the job will fail and record the plugin error
    jobs, skipped = [], 0
    # Seed by seed: a tournament cut short leaves whole seeds behind, and the seed is the unit the
    # leaderboard's intervals resample (a seed's matches share its benign models, trojans and controls).
    for seed in seeds:
        for a in attackers:
            for d in defenders:
                if store.has_ok(scenario.digest, a, versions[("attacker", a)], d, versions[("defender", d)],
                                seed, rounds):
                    skipped += 1
                else:
                    jobs.append(Job(scenario, a, d, seed, rounds, device, isolation))
    return jobs, skipped


def _error_record(job: Job, scenario: Scenario, exc: BaseException) -> MatchRecord:
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


def _play(job: Job, progress: Progress | None = None) -> MatchRecord:
    """Play one job; never raises (errors become an error record)."""
    from arena.referee import Referee

    scenario = job.scenario
    try:
        key = (scenario.digest, job.device, job.isolation)
        if key not in _REFEREES:  # one referee per process: data and benign models stay loaded
            _REFEREES[key] = Referee(scenario, device=job.device, isolation=job.isolation)
        referee = _REFEREES[key]
        referee.progress = progress
        return referee.play(job.attacker, job.defender, seed=job.seed, rounds=job.rounds).record
    except Exception as exc:  # one broken match must not stop the tournament
        return _error_record(job, scenario, exc)


def _clock(seconds: float) -> str:
    """``1:05`` or ``2:03:09``: an ETA is read at a glance, not to the second."""
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class Tally:
    """Live counts of a tournament's matches and the line each finished match prints.

    Shared by every backend, so a tournament reads the same whether its matches run here, in a
    local pool or on a Ray cluster: ``[i/n] a vs d seed s: outcome (t s) | done D, running R,
    failed F, ETA m:ss``, where i = D + F. The ETA is the remaining matches at the rate matches
    have finished so far (wall-clock, so parallel workers count), and is left out until one has.
    """

    def __init__(self, total: int, say: Progress, clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.say, self.clock = total, say, clock
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
            parts += f", ETA {_clock((self.clock() - self._t0) / finished * left)}"
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


def _trojan_group(job: Job) -> tuple[str, int] | None:
    """The (attacker, seed) whose trojan this job's matches share, or None (adaptive or unknown).

    An adaptive attacker's trojan depends on the defender, so its matches share nothing to wait
    for. The card was read by ``plan`` in this process and is remembered (``describe``).
    """
    try:
        card = describe("attacker", job.attacker, job.scenario.agent_params("attacker", job.attacker),
                        job.isolation)
    except Exception:  # the match will fail on its own and record why
        return None
    return None if card.adaptive else (job.attacker, job.seed)


class JobQueue:
    """Jobs in plan order, handed out so that no two workers craft the same trojan at once.

    The referee crafts a missing trojan without a lock (it looks it up, crafts it, stores it), so
    two matches of one non-adaptive attacker and seed started together would both craft it. The
    queue starts one of them and holds the others back until a match of that attacker and seed
    has finished ok, leaving the trojan in the cache; meanwhile it hands out the next job of
    another attacker or seed, so workers stay busy. Benign models and control runs need no such
    care: the cache makes them under per-key file locks.
    """

    def __init__(self, jobs: list[Job], indices: list[int] | None = None) -> None:
        self.jobs = jobs
        self._todo: list[int] = list(range(len(jobs)) if indices is None else indices)
        self._group = {i: _trojan_group(jobs[i]) for i in self._todo}
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


def run(scenario: Scenario, *, attackers: list[str] | None = None, defenders: list[str] | None = None,
        seeds: list[int] | None = None, rounds: int | None = None, device: str = "auto", workers: int = 1,
        store: Store | None = None, progress: Progress | None = None,
        isolation: str = "process", backend: str = "local", ray_options: RayOptions | None = None,
        ) -> TournamentReport:
    """Play every job ``plan`` returns and store each match as soon as it ends.

    ``backend="local"`` plays here (``workers == 1``) or in a pool of ``workers`` processes;
    ``backend="ray"`` sends each match to a Ray cluster as a task (``arena.ray_backend``, options
    in ``ray_options``). Either way this process plans, and is the only one that writes ``store``.
    """
    if backend not in BACKENDS:
        raise ArenaError(f"unknown tournament backend '{backend}'", hint=f"use one of: {', '.join(BACKENDS)}")
    if backend == "ray":
        from arena.ray_backend import RayOptions, effective_device, import_ray

        ray_options = ray_options or RayOptions()
        ray_options.validate(effective_device(device, scenario))
        import_ray()  # without Ray: one clear error now, before planning starts agent processes
    store = store or Store()
    seeds = seeds if seeds is not None else list(scenario.seeds)
    jobs, skipped = plan(scenario, attackers, defenders, seeds, rounds, device, store, isolation)
    report = TournamentReport(skipped=skipped)
    say = progress or (lambda _msg: None)
    say(f"tournament {scenario.name}: {len(jobs)} match(es) to play, {skipped} already stored")
    tally = Tally(len(jobs), say)

    def done(rec: MatchRecord) -> None:
        store.save(rec)  # each match is committed as soon as it ends
        if rec.status == "ok":
            report.played += 1
        else:
            report.failed.append((rec.attacker, rec.defender, rec.seed, rec.error or ""))
        tally.finish(rec)

    threads = match_threads()
    if not jobs:
        return report  # nothing to play: no pool, no cluster
    if backend == "ray":
        from arena.ray_backend import run_on_ray

        assert ray_options is not None
        run_on_ray(jobs, threads, done, say, tally, ray_options)
    elif workers <= 1:
        with pinned_threads(threads):
            for job in jobs:
                tally.start()
                done(_play(job, progress))
    else:
        _run_pooled(jobs, workers, threads, done, say, tally)
    return report


# --- worker pools that survive a dead worker -----------------------------------------------------

def _init_worker(threads: int) -> None:
    pin_threads(threads)


def _death_cause(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}" if exitcode is not None else "cause unknown"


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate a pool's worker processes and drop its queued work (an interrupted tournament)."""
    for p in list((getattr(pool, "_processes", None) or {}).values()):  # private API, as in _pool_pass
        if p.is_alive():
            p.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def _pool_pass(jobs: list[Job], todo: JobQueue, workers: int, threads: int,
               done: Callable[[MatchRecord], None], tally: Tally) -> tuple[list[int], str]:
    """Play ``todo`` (indices into ``jobs``) in one pool, at most ``workers`` in flight.

    Returns the jobs a dead worker took down (empty if none died) and how the
    pool's processes ended. Submitting only ``workers`` jobs at a time keeps a
    death from failing jobs that were merely queued: those stay in ``todo``.
    """
    in_flight: dict[Future, int] = {}
    crashed: list[int] = []
    procs: dict[int, multiprocessing.process.BaseProcess] = {}

    def settle(fut: Future, i: int) -> None:
        try:
            rec = fut.result()
        except BrokenProcessPool:
            crashed.append(i)
            return
        except Exception as exc:  # e.g. a result that cannot be unpickled: only this match fails
            rec = _error_record(jobs[i], jobs[i].scenario, exc)
        todo.finish(i, rec.status == "ok")
        done(rec)

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(threads,)) as pool:
        try:
            while (todo or in_flight) and not crashed:
                while len(in_flight) < workers and not crashed:
                    i = todo.pop()  # None: the rest wait for a trojan being crafted (JobQueue)
                    if i is None:
                        break
                    tally.start()
                    try:
                        in_flight[pool.submit(_play, jobs[i])] = i
                    except BrokenProcessPool:  # a worker died between two results; i counts as in flight
                        crashed.append(i)
                    procs.update(getattr(pool, "_processes", None) or {})  # for exit codes (private API)
                if not in_flight:
                    break
                ready, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for fut in ready:
                    settle(fut, in_flight.pop(fut))
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM, an error here): only finished matches are stored, so the
            # ones in flight are lost either way. Stop their workers now rather than let the pool's
            # shutdown wait minutes for results it would throw away.
            _stop_workers(pool)
            raise
    # Shut down: every future is resolved (a broken pool fails those it held) and the
    # processes are joined, so their exit codes are known.
    for fut, i in in_flight.items():
        settle(fut, i)
    codes = sorted({_death_cause(p.exitcode) for p in procs.values() if p.exitcode not in (0, None)})
    return crashed, ", ".join(codes) or "cause unknown"


def _run_pooled(jobs: list[Job], workers: int, threads: int, done: Callable[[MatchRecord], None],
                say: Progress, tally: Tally) -> None:
    todo = JobQueue(jobs)
    suspects: deque[int] = deque()
    while todo or suspects:
        if suspects:
            # Alone in a one-worker pool: if the worker dies now, this match killed it.
            i = suspects.popleft()
            statuses: list[str] = []

            def done_one(rec: MatchRecord) -> None:
                statuses.append(rec.status)
                done(rec)

            crashed, cause = _pool_pass(jobs, JobQueue(jobs, [i]), 1, threads, done_one, tally)
            if crashed:
                job = jobs[i]
                done(_error_record(job, job.scenario, WorkerDied(
                    f"worker process died ({cause}) while playing this match, twice")))
            # The main queue still holds its trojan group busy: an ok replay opens it, else frees it.
            todo.finish(i, statuses == ["ok"])
        else:
            crashed, cause = _pool_pass(jobs, todo, workers, threads, done, tally)
            if crashed:
                tally.requeue(len(crashed))
                say(f"a worker process died ({cause}); replaying the {len(crashed)} match(es) then in "
                    "flight, one at a time, to find the one that killed it")
                suspects.extend(sorted(crashed))
