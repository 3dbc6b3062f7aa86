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

Each run is exactly a match's control run (``Referee.control_member``): the
defender deployed in its own sandboxed process on that benign model, asked the
questions of a match, cached by model and defender. A defender that judges no
model (its deployment returns no verdict: a filter, a mitigation) is run once
a seed, on member 0, and left out after that: it has no model-level gate.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import arena
from arena.api.training import Progress, match_threads, pinned_threads
from arena.config.scenario import Scenario
from arena.config.splits import bind_data
from arena.engine.hosts import describe
from arena.plugins import canonical_spec, discover
from arena.results.record import ControlRecord
from arena.results.store import Store


@dataclass
class ControlsReport:
    played: int = 0
    skipped: int = 0
    judged_no_model: list[str] = field(default_factory=list)
    faults: list[tuple[str, int, int, str]] = field(default_factory=list)


def extend(scenario: Scenario, population: int, *, defenders: list[str] | None = None,
           seeds: list[int] | None = None, device: str = "auto", store: Store | None = None,
           progress: Progress | None = None, isolation: str = "process") -> ControlsReport:
    """Run every defender on benign members ``0 .. population - 1`` of every seed; store each run.

    Runs already stored (same scenario digest, defender and version, seed, member) are skipped, so
    an interrupted run resumes. Seed by seed, as a tournament: a run cut short leaves whole seeds."""
    from arena.engine.referee import Referee

    scenario = bind_data(scenario)
    store = store or Store()
    say = progress or (lambda _msg: None)
    names = [canonical_spec(d) for d in defenders] if defenders else list(discover("defender"))
    names = [d for d in names if d != "none"]  # deploys nothing: judges no model
    versions = {d: describe("defender", d, scenario.agent_params("defender", d), isolation).version for d in names}
    seeds = seeds if seeds is not None else list(scenario.seeds)
    report = ControlsReport()
    referee = Referee(scenario, device=device, isolation=isolation)
    referee.progress = progress
    judges = set(names)
    for seed in seeds:
        for d in names:
            for member in range(population):
                if d not in judges:
                    break
                result = store.control_result(scenario.digest, d, versions[d], seed, member)
                if result is not None and not result.get("fault"):
                    report.skipped += 1
                else:
                    with pinned_threads(match_threads()):  # the bytes a tournament's worker would make
                        result = referee.control_member(d, seed, member)
                    store.save_control(ControlRecord(
                        scenario=scenario.name, scenario_digest=scenario.digest, defender=d,
                        defender_version=versions[d], seed=seed, member=member, result=result,
                        code_version=arena.__version__,
                        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")))
                    report.played += 1
                    if result.get("fault"):
                        report.faults.append((d, seed, member, str(result["fault"])))
                        continue
                    say(f"controls {scenario.name}: {d} seed {seed} benign model {member}: "
                        f"{'flagged' if result.get('flagged') else 'passed'}")
                if not result.get("verdict"):
                    judges.discard(d)
                    report.judged_no_model.append(d)
                    say(f"controls {scenario.name}: {d} judges no model (no model-level gate): left out")
    return report
