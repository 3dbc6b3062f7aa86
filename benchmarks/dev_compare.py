"""Two settings of one defender, match for match, on a development seed: does a change alter verdicts?

A change to a defender that saves time (randomized smoothing's sequential
scoring, fewer epochs of an inspector) must leave its matches' numbers
within their noise. This plays every (non-adaptive) attacker against the
defender built with parameters A and with parameters B, on the same seed,
benign model and trojans, in the referee's process (both settings are
objects handed in, so neither reads the other's cache; the trojans are crafted
beforehand, out of the timing), and prints per
attacker the outcome, ARD, defense CAD, TPR/FPR where the defender filters,
and the defender's deploy and scoring seconds. Development seeds only (the
scenario's ``development_seeds``): a verdict is never tuned on test seeds.

    .venv/bin/python benchmarks/dev_compare.py randomized-smoothing --a first=0 --b first=16 [--seed 0]
        [--scenario fmnist-cnn] [--out benchmarks/results/dev-compare-rs.json]

``--nchw A`` (or ``B``) plays that setting with model inspectors searching the model as it comes
(NCHW), as they did before they searched a channels-last copy on the CPU (``ModelInspector.deploy``):

    .venv/bin/python benchmarks/dev_compare.py neural-cleanse --nchw A
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def _params(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; a VALUE that is JSON (a number, true, a list) is read as such, else as a string."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("defender")
    ap.add_argument("--a", nargs="*", default=[], help="KEY=VALUE parameters of setting A")
    ap.add_argument("--b", nargs="*", default=[], help="KEY=VALUE parameters of setting B")
    ap.add_argument("--scenario", default="fmnist-cnn")
    ap.add_argument("--seed", type=int, default=None, help="a development seed (default: the first)")
    ap.add_argument("--attackers", default=None, help="comma-separated (default: every non-adaptive attacker)")
    ap.add_argument("--nchw", choices=["A", "B"], default=None,
                    help="the setting whose model inspectors search the model as it comes, not a channels-last copy")
    ap.add_argument("--out", default=None, help="JSON file to write")
    args = ap.parse_args()

    import arena.api.defenses as defenses
    from arena.config.scenario import load_scenario
    from arena.engine.referee import Referee
    from arena.plugins import discover, make_agent

    sc = load_scenario(args.scenario)
    seed = sc.development_seeds[0] if args.seed is None else args.seed
    if seed not in sc.development_seeds:
        sys.exit(f"seed {seed} is not a development seed of {sc.name} ({list(sc.development_seeds)})")
    attackers = (args.attackers.split(",") if args.attackers else
                 [a for a in sorted(discover("attacker")) if not a.endswith("-adaptive")])
    settings = {"A": _params(args.a), "B": _params(args.b)}
    base = dict(sc.agent_params("defender", args.defender))
    ref = Referee(sc, device="cpu")
    layout_copy = defenses.inference_copy
    rows = []
    for attacker in attackers:
        row: dict[str, Any] = {"attacker": attacker}
        ref.play(attacker, "none", seed=seed)  # the benign model and the trojan, crafted once, out of the timing
        for label, params in settings.items():
            # In-process agents (objects handed to the referee) look inference_copy up at each deployment.
            defenses.inference_copy = (lambda model, device: model) if label == args.nchw else layout_copy
            defender = make_agent("defender", args.defender, {**base, **params})
            start = time.perf_counter()
            rec = ref.play(attacker, defender, seed=seed).record
            d = (rec.metrics or {}).get("defense") or {}
            row[label] = {"outcome": rec.outcome, "reason": rec.reason, "ard": d.get("ard"), "cad": d.get("cad"),
                          "tpr": d.get("tpr"), "fpr": d.get("fpr"), "clean_acc": d.get("clean_acc"),
                          "flagged": d.get("flagged"), "suspected_target": d.get("suspected_target"),
                          "deploy_s": ((rec.metrics or {}).get("timing") or {}).get("deploy_s"),
                          "wall_s": time.perf_counter() - start}
        rows.append(row)
        a, b = row["A"], row["B"]
        print(f"{attacker:12s} outcome {a['outcome']:.3f} -> {b['outcome']:.3f}  ARD {a['ard']} -> {b['ard']}  "
              f"CAD {a['cad']} -> {b['cad']}  wall {a['wall_s']:.1f} -> {b['wall_s']:.1f} s", flush=True)
    walls = {k: statistics.median(r[k]["wall_s"] for r in rows) for k in settings}
    print(f"median wall per match: A {walls['A']:.1f} s, B {walls['B']:.1f} s; largest outcome change "
          f"{max(abs(r['A']['outcome'] - r['B']['outcome']) for r in rows):.4f}")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average "
                       f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} after",
            "scenario": sc.name, "seed": seed, "defender": args.defender, "settings": settings, "nchw": args.nchw,
            "matches": rows,
        }, indent=1) + "\n")


if __name__ == "__main__":
    main()
