"""Tournaments: every attacker x defender x seed of a scenario, resumable.

A match already stored (same scenario digest, agent names and versions, seed
and rounds, status ok) is skipped, so a killed tournament resumes where it
stopped and a re-run with nothing new only reads the store. A match that
raises is stored with its error and the tournament goes on.

Order: attackers outermost and seeds next, so each non-adaptive trojan is
crafted once and then served from the cache to every defender. With
``workers > 1`` matches run in worker processes; the artifact cache's per-key
locks keep two workers from training the same model.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

import arena
from arena.errors import ArenaError
from arena.plugins import discover, make_agent
from arena.scenario import Scenario
from arena.store import MatchRecord, Store
from arena.training import Progress


@dataclass(frozen=True)
class Job:
    scenario: Scenario  # the object itself (picklable), not its file: an edited file must not change a plan
    attacker: str
    defender: str
    seed: int
    rounds: int
    device: str


@dataclass
class TournamentReport:
    played: int = 0
    skipped: int = 0
    failed: list[tuple[str, str, int, str]] = field(default_factory=list)


def plan(scenario: Scenario, attackers: list[str] | None, defenders: list[str] | None,
         seeds: list[int], rounds: int | None, device: str, store: Store) -> tuple[list[Job], int]:
    """Jobs still to play, and how many are already stored."""
    attackers = attackers or list(discover("attacker"))
    defenders = defenders or list(discover("defender"))
    rounds = rounds or scenario.rounds
    versions: dict[tuple[str, str], str] = {}
    for role, names in (("attacker", attackers), ("defender", defenders)):
        for n in names:
            try:
                versions[(role, n)] = type(make_agent(role, n, scenario.agent_params(role, n))).version
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
                    jobs.append(Job(scenario, a, d, seed, rounds, device))
    return jobs, skipped


def _error_record(job: Job, scenario: Scenario, exc: BaseException) -> MatchRecord:
    def version(role: str, name: str) -> str:
        try:
            return type(make_agent(role, name, scenario.agent_params(role, name))).version
        except Exception:
            return "?"

    detail = str(exc) if isinstance(exc, ArenaError) else "".join(
        traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:])
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
        key = (scenario.digest, job.device)
        if key not in _REFEREES:  # one referee per process: data and benign models stay loaded
            _REFEREES[key] = Referee(scenario, device=job.device)
        referee = _REFEREES[key]
        referee.progress = progress
        return referee.play(job.attacker, job.defender, seed=job.seed, rounds=job.rounds).record
    except Exception as exc:  # one broken match must not stop the tournament
        return _error_record(job, scenario, exc)


def run(scenario: Scenario, *, attackers: list[str] | None = None, defenders: list[str] | None = None,
        seeds: list[int] | None = None, rounds: int | None = None, device: str = "auto", workers: int = 1,
        store: Store | None = None, progress: Progress | None = None) -> TournamentReport:
    store = store or Store()
    seeds = seeds if seeds is not None else list(scenario.seeds)
    jobs, skipped = plan(scenario, attackers, defenders, seeds, rounds, device, store)
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

    if workers <= 1:
        for i, job in enumerate(jobs, 1):
            done(i, _play(job, progress))
    else:
        # Each worker gets a share of the cores; torch would otherwise oversubscribe them.
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_play, job) for job in jobs]
            for i, fut in enumerate(as_completed(futures), 1):
                done(i, fut.result())
    return report
