"""Tournaments: every attacker x defender x seed of a scenario, resumable.

A match already stored (same scenario digest, agent names and versions, seed
and rounds, status ok) is skipped, so a killed tournament resumes where it
stopped and a re-run with nothing new only reads the store. A match that
raises is stored with its error and the tournament goes on.

Order: attackers outermost and seeds next, so each non-adaptive trojan is
crafted once and then served from the cache to every defender. With
``workers > 1`` (or ``backend="ray"``, ``arena.run.backends.ray``) matches run in
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
anyway when workers fill the cores. A sequential tournament pays a little for
it when the cores are idle and gains when another process holds a core (the
timings are in docs/measurements.md); ``--workers`` wins it back.

Where matches run is a ``Backend`` (``arena.run.backends``): here or in a local
process pool (``LocalBackend``), or on a Ray cluster (``RayBackend``); each is
handed the jobs, plays them with a ``Player`` (``arena.run.jobs.play_job``) and
reports every finished match to this process, the only one that writes the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from arena.api.training import Progress, match_threads
from arena.config.scenario import Scenario
from arena.config.splits import bind_data
from arena.core.errors import ArenaError
from arena.engine.hosts import describe
from arena.plugins import canonical_spec, discover
from arena.results.store import MatchRecord, Store
from arena.run.backends import Backend, make_backend
from arena.run.jobs import Job, Tally


@dataclass
class TournamentReport:
    played: int = 0
    skipped: int = 0
    failed: list[tuple[str, str, int, str]] = field(default_factory=list)


def plan(scenario: Scenario, attackers: list[str] | None, defenders: list[str] | None,
         seeds: list[int], rounds: int | None, device: str, store: Store,
         isolation: str = "process") -> tuple[list[Job], int]:
    """Jobs still to play, and how many are already stored."""
    scenario = bind_data(scenario)  # stored matches on other data under the dataset's name are not these
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


def run(scenario: Scenario, *, attackers: list[str] | None = None, defenders: list[str] | None = None,
        seeds: list[int] | None = None, rounds: int | None = None, device: str = "auto", workers: int = 1,
        store: Store | None = None, progress: Progress | None = None,
        isolation: str = "process", backend: str | Backend = "local", ray_options: object | None = None,
        ) -> TournamentReport:
    """Play every job ``plan`` returns and store each match as soon as it ends.

    ``backend`` is a name (``"local"``: here when ``workers == 1``, else a pool of ``workers``
    processes; ``"ray"``: each match a task on a Ray cluster, options in ``ray_options``) or a
    ``Backend`` object (a test's, or one built with another ``Player``). Either way this process
    plans, and is the only one that writes ``store``.
    """
    if isinstance(backend, str):
        # Built before planning, so a missing Ray is one clear error before any agent process starts.
        backend = make_backend(backend, scenario, device=device, workers=workers, ray_options=ray_options)
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

    if jobs:  # nothing to play: no pool, no cluster
        backend.run(jobs, match_threads(), done, say, tally)
    return report
