"""One tournament seed, timed by stage: where a seed's wall time goes, and a JSON to compare commits.

Plays ``arena tournament --development --seeds 1`` (every installed attacker x
defender, or the ``-a``/``-d`` subsets) on the scenario's first development seed, in a fresh arena home, as a
subprocess, and times it wall-clock (exit included). With ``--cached`` it
plays the seed a second time in another fresh home holding only the first
run's benign models, which is what a seed costs once the population is
trained. Each match record carries its time per stage (``timing.stages_s``,
``arena.core.stages``); this script sums them over the seed:

- ``benign``: benign models trained (or loaded) for the match itself;
- ``craft``: the attacker crafting its trojan (or the cached trojan loaded);
- ``measure``: the trojan's attack metrics (once per trojan, then cached);
- ``deploy`` / ``scoring``: the defender deploying on the trojan, and the
  referee's questions to the deployment;
- ``control/...``: the same steps in control runs on the benign population
  (only for defenders whose deployment judges the model);
- ``rest``: the match's time outside every stage (process start-up, cards,
  storing).

Stage seconds are match-seconds: with two workers they add up to about twice
the wall time. Run with nothing else on the machine; ``--repeats`` gives
medians.

    .venv/bin/python benchmarks/bench_seed.py [--scenario fmnist-cnn] [--workers 2]
        [-a badnet,none -d strip,none] [--cached] [--repeats 1] [--out benchmarks/results/seed.json]

``--from-store DB`` plays nothing: it reads the matches a tournament stored
(the last one per pair, seed and rounds) and prints, per seed, the matches,
the span from the first match's start to the last one's end (a seed's wall
time when it was played in one uninterrupted run) and its match-minutes by
stage, with medians over the seeds. Many seeds of a real tournament give the
seed's cost a spread that one benchmark run cannot. ``--by defender`` (or
``attacker``) adds each agent's share:

    .venv/bin/python benchmarks/bench_seed.py --from-store ~/.local/share/backdoor-arena/arena.db [--by defender]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARENA = [sys.executable, "-m", "arena.cli"]


def play_seed(home: Path, args: argparse.Namespace) -> tuple[float, list[dict]]:
    """Wall seconds of one tournament seed in ``home``, and its stored match records."""
    cmd = ARENA + ["tournament", "--scenario", args.scenario, "--development", "--seeds", "1",
                   "--workers", str(args.workers)]
    if args.attackers:
        cmd += ["-a", args.attackers]
    if args.defenders:
        cmd += ["-d", args.defenders]
    env = {**os.environ, "ARENA_HOME": str(home)}
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    from arena.results.store import Store

    store = Store(home / "arena.db")
    try:
        records = [r.to_dict() for r in store.matches(scenario=args.scenario)]
    finally:
        store.close()
    return wall, records


def stage_sums(records: list[dict]) -> dict[str, float]:
    """Match-seconds per stage over a seed's matches (``rest``: outside every stage)."""
    sums: dict[str, float] = defaultdict(float)
    for r in records:
        stages = (r["metrics"].get("timing") or {}).get("stages_s") or {}
        for k, v in stages.items():
            sums[k] += v
        sums["rest"] += r["duration_s"] - sum(stages.values())
    return dict(sums)


def _span(records: list[dict]) -> float:
    """Seconds from the first match's start to the last one's end."""
    start = [dt.datetime.fromisoformat(r["started_at"]).timestamp() for r in records]
    return max(t + r["duration_s"] for t, r in zip(start, records)) - min(start)


def by_agent(seeds: dict[int, list[dict]], role: str) -> None:
    """Median match-minutes per seed of each attacker's or defender's matches, by stage, over full seeds."""
    from tabulate import tabulate

    full = max(len(rs) for rs in seeds.values())
    done = [rs for rs in seeds.values() if len(rs) == full]
    agents = sorted({r[role] for rs in done for r in rs})
    per = {a: [stage_sums([r for r in rs if r[role] == a]) for rs in done] for a in agents}
    stages = sorted({k for sums in per.values() for st in sums for k in st})
    rows = [[a, f"{statistics.median(sum(st.values()) for st in sums) / 60:.2f}",
             *(f"{statistics.median(st.get(k, 0.0) for st in sums) / 60:.2f}" for k in stages)]
            for a, sums in per.items()]
    rows.sort(key=lambda row: -float(row[1]))
    print(f"\nby {role}: median match-minutes per seed over the {len(done)} seed(s) with all {full} matches "
          "(a trojan's craft and measurement fall in the first match that needed them)")
    print(tabulate(rows, headers=[role, "match-min", *stages]))


def from_store(path: Path, scenario: str, by: str | None = None) -> None:
    """Per seed of a stored tournament: matches, span and match-minutes by stage (module docstring);
    with ``by`` ("attacker" or "defender") also per agent of that role."""
    from tabulate import tabulate

    from arena.results.leaderboard import latest_matches
    from arena.results.store import Store

    store = Store(path)
    try:
        kept, _ = latest_matches(store.matches(scenario=scenario, status="ok"))
        records = [r.to_dict() for r in kept]
    finally:
        store.close()
    if not records:
        sys.exit(f"{path} holds no finished match of {scenario}")
    seeds: dict[int, list[dict]] = defaultdict(list)
    for r in records:
        seeds[r["seed"]].append(r)
    stages = sorted({k for rs in seeds.values() for k in stage_sums(rs)})
    rows, sums = [], []
    for seed, rs in sorted(seeds.items()):
        st = stage_sums(rs)
        sums.append(st)
        rows.append([seed, len(rs), f"{_span(rs) / 60:.1f}", f"{sum(st.values()) / 60:.1f}",
                     *(f"{st.get(k, 0.0) / 60:.1f}" for k in stages)])
    full = max(len(rs) for rs in seeds.values())
    done = [i for i, rs in enumerate(seeds.values()) if len(rs) == full]
    rows.append(["median", f"{full} (seeds with all)", "", f"{statistics.median(sum(sums[i].values()) for i in done) / 60:.1f}",
                 *(f"{statistics.median(sums[i].get(k, 0.0) for i in done) / 60:.1f}" for k in stages)])
    print(f"{scenario} in {path}: the last stored match per pair, seed and rounds")
    print(tabulate(rows, headers=["seed", "matches", "span min", "match-min", *stages]))
    if by is not None:
        by_agent(seeds, by)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="fmnist-cnn")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("-a", "--attackers", default="")
    ap.add_argument("-d", "--defenders", default="")
    ap.add_argument("--cached", action="store_true", help="also time the seed with its benign models cached")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "seed.json"))
    ap.add_argument("--from-store", type=Path, default=None, help="read a tournament's store instead of playing")
    ap.add_argument("--by", choices=["attacker", "defender"], default=None,
                    help="with --from-store: also the match-minutes of each agent of this role")
    args = ap.parse_args()
    if args.from_store is not None:
        from_store(args.from_store, args.scenario, args.by)
        return

    load_before = os.getloadavg()
    runs: dict[str, list[tuple[float, dict[str, float], int]]] = defaultdict(list)
    work = Path(tempfile.mkdtemp(prefix="arena-bench-seed-"))
    try:
        for i in range(args.repeats):
            home = work / f"empty{i}"
            wall, records = play_seed(home, args)
            runs["empty home"].append((wall, stage_sums(records), len(records)))
            if args.cached:
                home_b = work / f"cached{i}"
                shutil.copytree(home / "cache" / "benign", home_b / "cache" / "benign")
                wall, records = play_seed(home_b, args)
                runs["benign cached"].append((wall, stage_sums(records), len(records)))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    from tabulate import tabulate

    import torch

    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
               f"load average {load_before[0]:.2f} before / {os.getloadavg()[0]:.2f} after")
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine,
              "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                       text=True).stdout.strip(),
              "scenario": args.scenario, "seed": "first development seed", "workers": args.workers,
              "attackers": args.attackers or "all", "defenders": args.defenders or "all", "runs": {}}
    print(f"{args.scenario}, its first development seed, {args.workers} worker(s); {machine}")
    for name, reps in runs.items():
        walls = [w for w, _, _ in reps]
        stages = sorted({k for _, s, _ in reps for k in s})
        med = {k: statistics.median(s.get(k, 0.0) for _, s, _ in reps) for k in stages}
        total = sum(med.values())
        print(f"\n{name}: {reps[0][2]} matches, wall {statistics.median(walls) / 60:.1f} min "
              f"(median of {len(walls)}: {', '.join(f'{w:.0f} s' for w in walls)})")
        print(tabulate([(k, f"{v / 60:.2f}", f"{v / total:.0%}") for k, v in sorted(med.items(), key=lambda kv: -kv[1])],
                       headers=["stage", "match-minutes", "share"]))
        result["runs"][name] = {"wall_s": walls, "matches": reps[0][2], "stages_s": med}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
