"""The local backend: matches here, one after another, or in a pool of worker processes.

A worker process that dies (SIGKILL, the OOM killer, a segfault in an
extension) breaks the whole process pool. The matches then in flight are
played again, each alone in a fresh one-worker pool, so the one that killed its
worker is told from the bystanders; a match whose worker dies that second time
is recorded as an error and the tournament goes on with a new pool.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from arena.api.training import Progress, pinned_threads
from arena.results.record import MatchRecord
from arena.run.jobs import Job, JobQueue, Player, Tally, WorkerDied, error_record, play_job
from arena.run.pulse import drain, init_worker, reporting

_WAIT_S = 2.0  # how often the pool is looked at for progress lines and the pulse while no match ends


@dataclass
class LocalBackend:
    """``workers == 1``: every match in this process, in plan order; more: a pool of that many
    spawned worker processes, each playing one match at a time with ``player``."""

    workers: int = 1
    player: Player = play_job

    def run(self, jobs: list[Job], threads: int, done: Callable[[MatchRecord], None], say: Progress,
            tally: Tally) -> None:
        if self.workers <= 1:
            with pinned_threads(threads):
                for job in jobs:
                    tally.start()
                    done(self.player(job, say))
        else:
            _run_pooled(jobs, self.workers, threads, done, say, tally, self.player)


def _play_reporting(player: Player, job: Job, key: int) -> MatchRecord:
    """``player(job)`` in a worker, its progress lines sent to the tournament's process as ``(key, line)``."""
    return player(job, reporting(key))


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
               done: Callable[[MatchRecord], None], tally: Tally, player: Player) -> tuple[list[int], str]:
    """Play ``todo`` (indices into ``jobs``) in one pool, at most ``workers`` in flight.

    Returns the jobs a dead worker took down (empty if none died) and how the
    pool's processes ended. Submitting only ``workers`` jobs at a time keeps a
    death from failing jobs that were merely queued: those stay in ``todo``.
    """
    in_flight: dict[Future, int] = {}
    crashed: list[int] = []
    procs: dict[int, multiprocessing.process.BaseProcess] = {}

    def settle(fut: Future, i: int) -> None:
        tally.ended(i)
        try:
            rec = fut.result()
        except BrokenProcessPool:
            crashed.append(i)
            return
        except Exception as exc:  # e.g. a result that cannot be unpickled: only this match fails
            rec = error_record(jobs[i], jobs[i].scenario, exc)
        todo.finish(i, rec.status == "ok")
        done(rec)

    ctx = multiprocessing.get_context("spawn")
    lines = ctx.Queue()
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                             initializer=init_worker, initargs=(threads, lines)) as pool:
        try:
            while (todo or in_flight) and not crashed:
                while len(in_flight) < workers and not crashed:
                    i = todo.pop()  # None: the rest wait for a trojan being crafted (JobQueue)
                    if i is None:
                        break
                    tally.start()
                    tally.began(i, jobs[i].label)
                    try:
                        in_flight[pool.submit(_play_reporting, player, jobs[i], i)] = i
                    except BrokenProcessPool:  # a worker died between two results; i counts as in flight
                        crashed.append(i)
                    procs.update(getattr(pool, "_processes", None) or {})  # for exit codes (private API)
                if not in_flight:
                    break
                ready, _ = wait(in_flight, timeout=_WAIT_S, return_when=FIRST_COMPLETED)
                drain(lines, tally)
                for fut in ready:
                    settle(fut, in_flight.pop(fut))
                tally.pulse()
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
    lines.close()
    lines.cancel_join_thread()  # nothing this process put there waits to be flushed
    codes = sorted({_death_cause(p.exitcode) for p in procs.values() if p.exitcode not in (0, None)})
    return crashed, ", ".join(codes) or "cause unknown"


def _run_pooled(jobs: list[Job], workers: int, threads: int, done: Callable[[MatchRecord], None],
                say: Progress, tally: Tally, player: Player) -> None:
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

            crashed, cause = _pool_pass(jobs, JobQueue(jobs, [i]), 1, threads, done_one, tally, player)
            if crashed:
                job = jobs[i]
                done(error_record(job, job.scenario, WorkerDied(
                    f"worker process died ({cause}) while playing this match, twice")))
            # The main queue still holds its trojan group busy: an ok replay opens it, else frees it.
            todo.finish(i, statuses == ["ok"])
        else:
            crashed, cause = _pool_pass(jobs, todo, workers, threads, done, tally, player)
            if crashed:
                tally.requeue(len(crashed))
                say(f"a worker process died ({cause}); replaying the {len(crashed)} match(es) then in "
                    "flight, one at a time, to find the one that killed it")
                suspects.extend(sorted(crashed))
