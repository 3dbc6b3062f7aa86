"""Choose input reformers' settings for a scenario on the defender's clean set of development seeds only.

    python benchmarks/tune_reformers.py --scenario cifar10-cnn            # all its development seeds
    python benchmarks/tune_reformers.py --scenario cifar10-cnn --seeds 1000

A reformer's cost is the clean accuracy it takes away; a defender may spend at
most the scenario's ``budgets.defense_cad`` of it. This script trains (or loads
from the cache) the benign model of each development seed and, for each
candidate setting of each reformer, measures the accuracy on the *defender's
own clean split* with and without the reformer: what a defender could measure
itself before deploying. The test split, the attacks and the published seeds
play no part, so choosing the mildest setting that stays inside the budget is
not tuning on the evaluation. The seeds are the scenario's
``development_seeds`` (all of them by default); a seed outside that list is
refused, so a scenario must declare a seed as a development seed, disjoint
from its test ``seeds``, before anything is tuned on it.

It prints one row per (reformer, setting): clean accuracy, reformed accuracy,
the drop, and the seconds ``prepare`` took. The chosen settings go into the
scenario file's ``[defenders.NAME]`` tables with a comment naming this script
and the seeds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CANDIDATES: dict[str, list[dict]] = {
    "down-upsampling": [{"ratio": r, "mode": m} for m in ("bilinear", "bicubic") for r in (0.95, 0.9)],
    "magnet": [{}, {"width": 32, "steps": 1200}, {"pool": False}, {"pool": False, "width": 16}],
}


def main(argv: list[str] | None = None) -> int:
    import torch

    from arena.plugins import make_agent
    from arena.api.protocol import DefenseContext
    from arena.engine.referee import Referee
    from arena.api.views import defender_scenario
    from arena.config.scenario import load_scenario
    from arena.api.training import accuracy, pinned_threads, match_threads

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", default="cifar10-cnn")
    ap.add_argument("--seeds", default=None,
                    help="comma-separated seeds, all among the scenario's development_seeds (default: all of them)")
    ap.add_argument("--only", help="comma-separated reformers (default: all candidates)")
    args = ap.parse_args(argv)
    sc = load_scenario(args.scenario)
    dev = list(sc.development_seeds)
    if args.seeds is None:
        if not dev:
            ap.error(f"scenario '{sc.name}' declares no development_seeds: add e.g. development_seeds = [1000] "
                     f"to {sc.source} (disjoint from its test seeds {list(sc.seeds)}) and tune on those")
        seeds = dev
    else:
        try:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            ap.error(f"--seeds {args.seeds!r} is not a comma-separated list of integers")
        tested = [s for s in seeds if s in sc.seeds]
        if tested:
            ap.error(f"seeds {tested} are test seeds of scenario '{sc.name}' (seeds {list(sc.seeds)}): nothing "
                     f"may be tuned on them; its development_seeds are {dev}")
        outside = [s for s in seeds if s not in dev]
        if outside:
            ap.error(f"seeds {outside} are not development seeds of scenario '{sc.name}' (development_seeds "
                     f"{dev}): declare them in {sc.source} first, disjoint from its test seeds")
    referee = Referee(sc, device="cpu", progress=lambda m: print(m, file=sys.stderr, flush=True))
    names = args.only.split(",") if args.only else list(CANDIDATES)
    print(f"{'seed':>5} {'reformer':<16} {'setting':<28} {'clean':>7} {'reformed':>8} {'drop':>6} {'prep s':>7}")
    with pinned_threads(match_threads()):
        for seed in seeds:
            model, _ = referee.benign(seed)
            clean = referee.splits(seed).defender
            base = accuracy(model, clean.x, clean.y)
            for name in names:
                for setting in CANDIDATES[name]:
                    params = {**sc.agent_params("defender", name), **setting}
                    agent = make_agent("defender", name, params)
                    ctx = DefenseContext(scenario=defender_scenario(sc), clean=clean,
                                         info=referee.splits(seed).info, device=referee.device,
                                         generator=torch.Generator().manual_seed(seed))
                    t0 = time.perf_counter()
                    agent.prepare(model, ctx)
                    prep = time.perf_counter() - t0
                    with torch.no_grad():
                        reformed = agent.reform(clean.x)
                    acc = accuracy(model, reformed, clean.y)
                    print(f"{seed:>5} {name:<16} {str(setting):<28} {base:7.4f} {acc:8.4f} {base - acc:6.4f} "
                          f"{prep:7.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
