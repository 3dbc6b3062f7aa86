"""Speed and quality targets of the arena on a scenario (default ``fmnist-cnn``).

Measures, each in a fresh arena home unless it says "cached":

1. benign model: training time and clean test accuracy (target >= 89%);
2. ``badnet`` vs ``none``: ASR (target >= 95%) and CAD (target <= 3 points);
3. ``arena match badnet strip`` with the benign model cached (target <= 45 s);
4. ``arena match imc-adaptive strip`` from an empty cache (target <= 3 min);
5. tournament of the given attackers x defenders, one seed, from an empty
   cache (target <= 15 min), and its re-run (target <= 15 s).

Steps 3-5 run the real CLI as a subprocess and time it wall-clock. Run with
nothing else on the machine:

    .venv/bin/python benchmarks/bench_match.py [--scenario fmnist-cnn] [--skip-tournament]

Results are printed as a table and written to benchmarks/results/SCENARIO.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
ARENA = [sys.executable, "-m", "arena.cli"]


def timed(cmd: list[str], home: Path) -> tuple[float, str]:
    env = {**os.environ, "ARENA_HOME": str(home)}
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if out.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return dt, out.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="fmnist-cnn")
    ap.add_argument("--attackers", default="none,badnet,imc,imc-adaptive")
    ap.add_argument("--defenders", default="none,strip,fine-pruning,neural-cleanse")
    ap.add_argument("--skip-tournament", action="store_true")
    args = ap.parse_args()

    rows: list[tuple[str, str, str]] = []
    work = Path(tempfile.mkdtemp(prefix="arena-bench-"))
    try:
        # 1-3: one home; the first match trains the benign model, the second is timed with it cached.
        home = work / "a"
        t_first, out = timed(ARENA + ["match", "badnet", "none", "--scenario", args.scenario, "--json"], home)
        rec = json.loads(out)
        a = rec["metrics"]["attack"]
        rows += [
            ("benign clean accuracy", f"{a['benign_acc']:.4f}", ">= 0.89"),
            ("badnet ASR", f"{a['asr']:.4f}", ">= 0.95"),
            ("badnet CAD (points)", f"{100 * a['cad']:.2f}", "<= 3"),
            ("badnet vs none, empty cache (s)", f"{t_first:.1f}", "-"),
        ]
        t_bs, _ = timed(ARENA + ["match", "badnet", "strip", "--scenario", args.scenario, "--json"], home)
        rows.append(("match badnet strip, trojan cached too (s)", f"{t_bs:.1f}", "<= 45"))
        home_b = work / "b"
        shutil.copytree(home / "cache" / "benign", home_b / "cache" / "benign")
        t_bs2, _ = timed(ARENA + ["match", "badnet", "strip", "--scenario", args.scenario, "--json"], home_b)
        rows.append(("match badnet strip, benign cached (s)", f"{t_bs2:.1f}", "<= 45"))
        # 4: imc-adaptive vs strip from nothing.
        t_ia, out = timed(ARENA + ["match", "imc-adaptive", "strip", "--scenario", args.scenario, "--json"],
                          work / "c")
        m = json.loads(out)["metrics"]
        rows.append(("match imc-adaptive strip, empty cache (s)", f"{t_ia:.1f}", "<= 180"))
        rows.append(("  imc-adaptive ASR / STRIP TPR", f"{m['attack']['asr']:.3f} / {m['defense']['tpr']:.3f}", "-"))
        # 5: tournament from nothing, then again.
        if not args.skip_tournament:
            tour = ARENA + ["tournament", "--scenario", args.scenario, "--seeds", "1",
                            "-a", args.attackers, "-d", args.defenders]
            t_t, _ = timed(tour, work / "d")
            t_r, _ = timed(tour, work / "d")
            n = len(args.attackers.split(",")) * len(args.defenders.split(","))
            rows.append((f"tournament {n} matches, empty cache (s)", f"{t_t:.1f}", "<= 900"))
            rows.append(("tournament re-run (s)", f"{t_r:.1f}", "<= 15"))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    from tabulate import tabulate

    header = (f"{args.scenario} on {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(header)
    print(tabulate(rows, headers=["measure", "value", "target"]))
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"{args.scenario}.json").write_text(json.dumps({"machine": header, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
