"""Tournaments: every attacker x defender x seed of a scenario, resumable.

A match already stored (same scenario digest, agent names and versions, seed
and rounds, status ok) is skipped, so a killed tournament resumes where it
stopped and a re-run with nothing new only reads the store. A match that
raises is stored with its error and the tournament goes on.

Order: attackers outermost and seeds next, so each non-adaptive trojan is
crafted once and then served from the cache to every defender. With
``workers > 1`` matches run in worker processes; the artifact cache's per-key
locks keep two workers from training the same model.

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
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import arena
from arena.errors import ArenaError
from arena.plugins import canonical_spec, discover
from arena.scenario import Scenario
from arena.store import MatchRecord, Store
from arena.execution import describe
from arena.training import Progress, match_threads, pin_threads, pinned_threads

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
    for a in attackers:
        for seed in seeds:
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


def run(scenario: Scenario, *, attackers: list[str] | None = None, defenders: list[str] | None = None,
        seeds: list[int] | None = None, rounds: int | None = None, device: str = "auto", workers: int = 1,
        store: Store | None = None, progress: Progress | None = None,
        isolation: str = "process") -> TournamentReport:
    store = store or Store()
    seeds = seeds if seeds is not None else list(scenario.seeds)
    jobs, skipped = plan(scenario, attackers, defenders, seeds, rounds, device, store, isolation)
    report = TournamentReport(skipped=skipped)
    say = progress or (lambda _msg: None)
    say(f"tournament {scenario.name}: {len(jobs)} match(es) to play, {skipped} already stored")

    def done(i: int, rec: MatchRecord) -> None:
        store.save(rec)  # each match is committed as soon as it ends
        if rec.status == "ok":
            report.played += 1
            say(f"[{i}/{len(jobs)}] {rec.attacker} vs {rec.defender} seed {rec.seed}: "
                f"{rec.outcome:.3f} ({rec.duration_s:.1f} s)")
        else:
            report.failed.append((rec.attacker, rec.defender, rec.seed, rec.error or ""))
            say(f"[{i}/{len(jobs)}] {rec.attacker} vs {rec.defender} seed {rec.seed}: FAILED "
                f"{(rec.error or '').splitlines()[0]}")

    threads = match_threads()
    if workers <= 1:
        with pinned_threads(threads):
            for i, job in enumerate(jobs, 1):
                done(i, _play(job, progress))
    else:
        finished = iter(range(1, len(jobs) + 1))
        _run_pooled(jobs, workers, threads, lambda rec: done(next(finished), rec), say)
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


def _pool_pass(jobs: list[Job], todo: deque[int], workers: int, threads: int,
               done: Callable[[MatchRecord], None]) -> tuple[list[int], str]:
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
        done(rec)

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(threads,)) as pool:
        while (todo or in_flight) and not crashed:
            while todo and len(in_flight) < workers and not crashed:
                i = todo.popleft()
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
    # Shut down: every future is resolved (a broken pool fails those it held) and the
    # processes are joined, so their exit codes are known.
    for fut, i in in_flight.items():
        settle(fut, i)
    codes = sorted({_death_cause(p.exitcode) for p in procs.values() if p.exitcode not in (0, None)})
    return crashed, ", ".join(codes) or "cause unknown"


def _run_pooled(jobs: list[Job], workers: int, threads: int, done: Callable[[MatchRecord], None],
                say: Progress) -> None:
    todo: deque[int] = deque(range(len(jobs)))
    suspects: deque[int] = deque()
    while todo or suspects:
        if suspects:
            # Alone in a one-worker pool: if the worker dies now, this match killed it.
            i = suspects.popleft()
            crashed, cause = _pool_pass(jobs, deque([i]), 1, threads, done)
            if crashed:
                job = jobs[i]
                done(_error_record(job, job.scenario, WorkerDied(
                    f"worker process died ({cause}) while playing this match, twice")))
        else:
            crashed, cause = _pool_pass(jobs, todo, workers, threads, done)
            if crashed:
                say(f"a worker process died ({cause}); replaying the {len(crashed)} match(es) then in "
                    "flight, one at a time, to find the one that killed it")
                suspects.extend(sorted(crashed))
