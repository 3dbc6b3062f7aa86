"""What running agents apart costs: seconds per match, process isolation against in-process.

Plays the same matches twice per round of measurement, once with every agent
in its own process (the default) and once in the referee's process, after a
warm-up that fills the cache (benign model, trojans, control runs), so the
difference is the isolation's own cost: starting agent processes, entering
the sandbox (Landlock, seccomp), handing views over as wire frames, and
serving the deployment's blinded queries across the pipe. It also times the
sandbox's entry alone (a fork that enters it and exits: ``sandbox.probe``). Quotes
medians over ``--repeats`` alternating runs. Run it with nothing else on the
machine:

    .venv/bin/python benchmarks/bench_isolation.py [--scenario fmnist-cnn] [--repeats 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time

PAIRS = [("badnet", "none"), ("badnet", "strip"), ("badnet", "fine-pruning")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="fmnist-cnn")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--home", default=None, help="arena home to use (default: a fresh temporary one)")
    args = ap.parse_args()
    os.environ["ARENA_HOME"] = args.home or tempfile.mkdtemp(prefix="arena-bench-")

    from arena.engine.referee import Referee
    from arena.config.scenario import load_scenario

    # One benign model per control: the population multiplies control runs in both modes alike, and
    # the cost measured here is the isolation's, per match.
    sc = load_scenario(args.scenario)
    sc = dataclasses.replace(sc, controls=dataclasses.replace(sc.controls, population=1))
    referees = {mode: Referee(sc, device="cpu", isolation=mode) for mode in ("process", "inprocess")}
    for a, d in PAIRS:  # warm-up: fill the cache once, start the forkserver
        referees["process"].play(a, d, seed=sc.seeds[0])
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for mode, ref in referees.items():
            for a, d in PAIRS:
                t0 = time.perf_counter()
                ref.play(a, d, seed=sc.seeds[0])
                times.setdefault((mode, f"{a} vs {d}"), []).append(time.perf_counter() - t0)
    from arena.engine import sandbox

    probes = []
    for _ in range(20):
        t0 = time.perf_counter()
        level = sandbox.probe()
        probes.append(time.perf_counter() - t0)
    print(f"sandbox level {level}; fork + enter + exit: median {1000 * statistics.median(probes):.1f} ms of 20")
    print(f"scenario {sc.name}, cached artifacts, median of {args.repeats} runs (seconds per match)")
    print(f"{'match':28s} {'in-process':>11s} {'process':>9s} {'overhead':>9s}")
    for a, d in PAIRS:
        name = f"{a} vs {d}"
        ip, pr = (statistics.median(times[(m, name)]) for m in ("inprocess", "process"))
        print(f"{name:28s} {ip:11.2f} {pr:9.2f} {pr - ip:9.2f}")


if __name__ == "__main__":
    main()
