"""More benign models for the usability gate: defenders on control members past the scenario's population.

A defender is usable when it flags few benign models, judged on every benign
model it was run on, pooled over seeds (``arena.results.usability``). The
matches carry the scenario's population (``controls.population`` models a
seed, 5 on fmnist-cnn), and the test has little power at that size: 20 seeds
of 5 give 100 models and 55% power to fail a defender that flags at twice the
budget, where 80% takes 191. ``arena controls --population 10`` runs each
defender on members 0-9 of every seed (member 0 is the model attackers start
from; the matches already ran 0-4, which come from the cache), and stores each
run apart from the matches, so no match is re-keyed or played again and the
leaderboard's usability verdicts and detection ROCs count every benign model.

Extra members may be drawn in another arena home than the one that played the
seed's matches. A seed's matches must share one key (they share its benign
models and control runs); an extra member shares nothing with them: it is one
more independent draw of the scenario's benign training, and the pooled gate
asks only that its draws be independent and of that recipe. Under another key,
member 12 of seed 0 is another model than member 12 elsewhere, so a seed's
extra members are run in one home at a time (the store keeps one run per
defender, version, seed and member: the last it is given, imports included), and
each run records its key's ``key_id``.

Each run is exactly a match's control run (``Referee.control_member``): the
defender deployed in its own sandboxed process on that benign model, asked the
questions of a match, cached by model and defender. A defender that judges no
model (its deployment returns no verdict: a filter, a mitigation) is run once
a seed, on member 0, and left out after that: it has no model-level gate.
Whether a defender judges models is read from its stored matches (their
control population is empty when it does not); without any, one run tells.

The missing runs are grouped by seed and defender, at most ``CHUNK`` members a
group (``plan``), and this process writes the store as each group ends, so an
interrupted run loses at most the groups in flight (and their finished runs are
in the cache). With ``workers > 1`` the groups run in a pool of spawned
processes, one referee each, every run at the tournament's thread count, so a
run gives the bytes it gives alone. The workers' progress lines
come back on a queue, and while no group ends a line every ``Pulse.quiet_s`` names each running
group and the last line its worker sent (``arena.run.pulse``): a CIFAR benign model trains for
minutes. With one worker, the referee's lines go straight to ``progress``.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import arena
from arena.api.training import Progress, match_threads, pinned_threads
from arena.config.scenario import Scenario
from arena.config.splits import bind_data
from arena.core.keys import key_id
from arena.core.progress import Eta
from arena.engine.hosts import describe
from arena.plugins import canonical_spec, discover
from arena.results.record import ControlRecord
from arena.results.store import Store
from arena.run.backends.local import _stop_workers
from arena.run.jobs import process_referee
from arena.run.pulse import Pulse, drain, init_worker, reporting

_WAIT_S = 2.0  # how often the pool is looked at for progress lines and the pulse while no group ends
# A group's runs are stored when the group ends, so a group is at most this many members of one
# defender and seed: on cifar10-cnn five members take about half an hour, where a population
# grown from 10 to 39 would otherwise be stored only after hours, and an interrupted session
# would leave the store (and what `arena matches export --controls` can carry) without them.
CHUNK = 5


@dataclass
class ControlsReport:
    played: int = 0
    skipped: int = 0
    judged_no_model: list[str] = field(default_factory=list)
    faults: list[tuple[str, int, int, str]] = field(default_factory=list)


@dataclass
class _Count:
    """The planned runs' progress: an ETA once the groups are planned (the first runs that tell
    whether a defender judges models are not counted)."""

    eta: Eta | None = None
    done: int = 0


@dataclass(frozen=True)
class _Group:
    """Up to ``CHUNK`` of one defender's missing runs on one seed (``plan``)."""

    scenario: Scenario
    defender: str
    version: str
    seed: int
    members: tuple[int, ...]
    device: str
    isolation: str


    @property
    def label(self) -> str:
        """How progress lines name the group: ``abs seed 1, benign models 5-9``."""
        span = (f"{self.members[0]}-{self.members[-1]}" if len(self.members) > 1
                and self.members == tuple(range(self.members[0], self.members[-1] + 1))
                else ", ".join(map(str, self.members)))
        return f"{self.defender} seed {self.seed}, benign model{'s' if len(self.members) > 1 else ''} {span}"


def plan(seeds: list[int], defenders: list[str], missing: dict[tuple[str, int], list[int]],
         chunk: int = CHUNK) -> list[tuple[int, str, tuple[int, ...]]]:
    """(seed, defender, members) groups of at most ``chunk`` missing members each, seed by seed and,
    within a seed, the same members for every defender before the next ones: the defenders advance
    together over the benign models as they are trained (a model is trained once, for the first
    defender that reaches it, and read from the cache by the others), and an interrupted run leaves
    every defender with about as many new members as the others."""
    out = []
    for seed in seeds:
        parts = {d: [tuple(m[i:i + chunk]) for i in range(0, len(m), chunk)]
                 for d in defenders for m in [missing.get((d, seed), [])]}
        for k in range(max((len(p) for p in parts.values()), default=0)):
            out += [(seed, d, parts[d][k]) for d in defenders if k < len(parts[d])]
    return out


def _run_group(g: _Group, progress: Progress | None = None) -> list[ControlRecord]:
    """The group's runs, in this process's referee (its data and benign models stay loaded); the
    referee's progress lines (benign training, the defender's run) go to ``progress``."""
    referee = process_referee(g.scenario, g.device, g.isolation)
    referee.progress = progress
    out = []
    pending = list(g.members)
    while pending:
        # Another worker's group on the same seed needs the same new benign members: take first
        # those it is not making now, rather than wait on its locks one member after another.
        member = referee.free_member(g.defender, g.seed, pending)
        pending.remove(member)
        with pinned_threads(match_threads()):  # the bytes a tournament's worker would make
            result = referee.control_member(g.defender, g.seed, member)
        # Which home's key drew this benign model (a hash prefix, as match records carry it): members
        # past the matches' population may come from another home than the seed's matches (docstring).
        result = {**result, "key_id": key_id(referee.key)}
        out.append(ControlRecord(
            scenario=g.scenario.name, scenario_digest=g.scenario.digest, defender=g.defender,
            defender_version=g.version, seed=g.seed, member=member, result=result, code_version=arena.__version__,
            created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")))
        if not result.get("verdict") and not result.get("fault"):
            break  # judges no model: one run says so
    return out


def _run_group_reporting(g: _Group, key: int) -> list[ControlRecord]:
    """``_run_group`` in a pool's worker, its progress lines sent to the waiting process."""
    return _run_group(g, reporting(key))


def _judges_by_matches(store: Store, scenario: Scenario, names: list[str]) -> dict[str, bool]:
    """Whether each defender judges models, as its stored matches of this scenario show (absent: unknown)."""
    seen: dict[str, bool] = {}
    for r in store.matches(digest=scenario.digest, status="ok"):
        if r.defender in names and isinstance(r.metrics, dict) and "control" in r.metrics:
            seen[r.defender] = seen.get(r.defender, False) or bool(r.metrics["control"].get("population"))
    return seen


def extend(scenario: Scenario, population: int, *, defenders: list[str] | None = None,
           seeds: list[int] | None = None, device: str = "auto", store: Store | None = None,
           progress: Progress | None = None, isolation: str = "process", workers: int = 1) -> ControlsReport:
    """Run every defender that judges models on benign members ``0 .. population - 1`` of every seed, and
    store each run. Runs already stored (same scenario digest, defender and version, seed, member, no
    fault) are skipped, so an interrupted run resumes."""
    scenario = bind_data(scenario)
    store = store or Store()
    live = Pulse(progress or (lambda _msg: None))  # pooled groups: a line on them while none ends
    say = live.say
    names = [canonical_spec(d) for d in defenders] if defenders else list(discover("defender"))
    names = [d for d in names if d != "none"]  # deploys nothing: judges no model
    versions = {d: describe("defender", d, scenario.agent_params("defender", d), isolation).version for d in names}
    seeds = seeds if seeds is not None else list(scenario.seeds)
    report = ControlsReport()
    known = _judges_by_matches(store, scenario, names)

    ran: set[tuple[str, int, int]] = set()  # runs made by this call (not "skipped" when met again)
    count = _Count()

    def missing(d: str, seed: int) -> list[int]:
        out = []
        for member in range(population):
            stored = store.control_result(scenario.digest, d, versions[d], seed, member)
            if stored is None or stored.get("fault"):
                out.append(member)
            elif (d, seed, member) not in ran:
                report.skipped += 1
        return out

    def settle(records: list[ControlRecord]) -> None:
        for c in records:
            store.save_control(c)
            ran.add((c.defender, c.seed, c.member))
            report.played += 1
            if c.result.get("fault"):
                report.faults.append((c.defender, c.seed, c.member, str(c.result["fault"])))
            what = ("fault" if c.result.get("fault") else "judges no model" if not c.result.get("verdict")
                    else "flagged" if c.result.get("flagged") else "passed")
            if count.eta is not None:
                count.done += 1
                what += f" | {count.eta.status(count.done, 'runs')}"
            say(f"controls {scenario.name}: {c.defender} seed {c.seed} benign model {c.member}: {what}")

    # A defender no stored match speaks for is tried once first, so a filter costs one run, not one a seed.
    for d in names:
        if d in known or not seeds:
            continue
        first = store.control_result(scenario.digest, d, versions[d], seeds[0], 0)
        if first is None or first.get("fault"):
            settle(_run_group(_Group(scenario, d, versions[d], seeds[0], (0,), device, isolation), say))
            first = store.control_result(scenario.digest, d, versions[d], seeds[0], 0) or {}
        known[d] = bool(first.get("verdict") or first.get("fault"))  # a fault tells nothing: try the rest
        if not known[d]:
            report.skipped += (d, seeds[0], 0) not in ran
    for d in names:
        if known.get(d) is False:
            report.judged_no_model.append(d)
            say(f"controls {scenario.name}: {d} judges no model (no model-level gate): left out")
    judging = [d for d in names if known.get(d)]
    todo = [_Group(scenario, d, versions[d], seed, members, device, isolation)
            for seed, d, members in plan(seeds, judging, {(d, seed): missing(d, seed) for seed in seeds
                                                          for d in judging})]
    count.eta = Eta(sum(len(g.members) for g in todo))
    if workers <= 1 or len(todo) <= 1:
        for g in todo:
            settle(_run_group(g, say))
        return report
    # A CIFAR benign member trains for minutes in a worker: its lines come back on a queue, and
    # while no group ends, a line every Pulse.quiet_s names what each worker is doing.
    ctx = multiprocessing.get_context("spawn")
    lines = ctx.Queue()
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=init_worker,
                             initargs=(match_threads(), lines)) as pool:
        in_flight: dict[Future, int] = {}
        try:
            for n, g in enumerate(todo):
                while len(in_flight) >= workers:
                    _collect(in_flight, lines, live, settle)
                in_flight[pool.submit(_run_group_reporting, g, n)] = n
                live.began(n, g.label)
            while in_flight:
                _collect(in_flight, lines, live, settle)
        except BaseException:  # interrupted: the groups in flight are lost either way; stop their workers now
            _stop_workers(pool)
            raise
    lines.close()
    lines.cancel_join_thread()  # nothing this process put there waits to be flushed
    return report


def _collect(in_flight: dict[Future, int], lines: Any, live: Pulse,
             settle: Callable[[list[ControlRecord]], None]) -> None:
    """Wait up to ``_WAIT_S`` for a group to end: store the ended ones, pass on the workers' lines, pulse."""
    ready, _ = wait(in_flight, timeout=_WAIT_S, return_when=FIRST_COMPLETED)
    drain(lines, live)
    for fut in ready:
        live.ended(in_flight.pop(fut))
        settle(fut.result())
    live.pulse()
