"""One command for a GPU lease: every attacker plays every defender once on a CIFAR-10 subset, timed.

    # once, here: a 56 MB subset that fits the lease's 64 MiB working-tree limit (.gpu-data/ is git-ignored)
    python benchmarks/gpu_check.py --make-subset /work/shared/data/cifar10 .gpu-data/cifar10
    # on the GPU machine (carry .gpu-data; agents are found through the package's entry points, so
    # install the checkout first; the machine is offline, hence no build isolation and no dependencies):
    python3 -m pip install -q --no-deps --no-build-isolation -e . && \
        python3 benchmarks/gpu_check.py --data .gpu-data --device cuda --out $OUT/results.json
    # here, on the CPU, in about a minute: the same script, everything shrunk
    python benchmarks/gpu_check.py --data /work/shared/data --device cpu --out /tmp/micro.json --micro

The scenario is the shipped ``cifar10-resnet18`` (ResNet-18, 3x3 opaque trigger,
its benign training settings) on the first 18,000 training and 2,500 test
images, built in code (``dataclasses.replace``), so no scenario file changes.
For the lease's ~8 minutes of work the attacker's re-training is cut to 2
epochs, each defender's control to 2 benign models (``CHECK_POPULATION``) and
the costliest agents' loops to about a fifth (``CHECK_ATTACKERS``,
``CHECK_DEFENDERS``): the check is whether every pair runs on the device, and
how fast, not how strong the agents are (``--agent-defaults`` keeps the
shipped settings). Matches are played coverage first (every attacker against
``none``, then ``badnet`` against every defender, then the rest), so when the
time budget (``--budget-s``) runs out every agent has already played; the
pairs left are reported as ``not-played``.

``--micro`` runs the same code on the CPU: ``cifar10-cnn`` (a small residual
network) shrunk by ``arena.config.micro.shrink`` (2,000/300 images, one epoch, one
benign model per control, cut-down agent loops), and only the coverage pairs
(``--all-pairs`` for all).

Prints and writes (``--out``) a JSON summary: per match its status (ok,
forfeit, error, not-played), outcome, seconds and where they went (the
attacker's craft, the defender's deploy, the rest: scoring, the defender's
control runs in its first match, the control population's benign models in
the first match, process start-up); the benign model's training time and accuracy; training
and inference throughput of the benign architecture (``arena.api.training.fit``
and ``predict_proba``, and ``fit`` with ``torch.compile`` on CUDA); peak GPU
memory; and matches per minute of ``arena tournament --workers N`` sharing the
device for N = 1, 4, 8 (``--workers-sweep``) with each process's peak memory. Exit status: 0 every match played
and ok, 1 a match failed (error or forfeit), 2 none failed but the time
budget left some unplayed (or no benign model: 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout, installed or not

SUBSET_TRAIN, SUBSET_TEST = 18_000, 2_500
CHECK_POPULATION = 2  # benign models per defender control: 2 exercises the population at the least cost
THROUGHPUT_STEPS = 20  # training steps timed for images/s (after a warm-up step)
# ResNet-18 on 32x32 inputs: ~0.56 GFLOP forward, ~1.7 GFLOP per trained image (forward and backward);
# an H100/H200 does ~790 TFLOP/s dense bf16, so at most ~460,000 training images/s.
RESNET18_TRAIN_LIMIT = 460_000

# Cut-down settings of the costliest agents for the GPU check (about a fifth of their loops).
CHECK_ATTACKERS: dict[str, dict[str, Any]] = {
    "imc-adaptive": {"ar_iters": 1},  # crafted once per defender: 15 crafts
    "latent": {"preprocess_iters": 20, "samples_per_class": 200},
    "reflection": {"candidates": 10, "selected": 4, "selection_iters": 2, "inner_epochs": 1},
    "trojannet": {"steps": 100},
}
CHECK_DEFENDERS: dict[str, dict[str, Any]] = {
    "neural-cleanse": {"epochs": 2},
    "tabor": {"epochs": 2},
    "deep-inspect": {"epochs": 4},
    "abs": {"seeds_per_class": 2, "iterations": 60},
    "adversarial-retraining": {"epochs": 1},
    "fine-pruning": {"epochs": 2},
}
def make_subset(src: Path, dst: Path, n_train: int = SUBSET_TRAIN, n_test: int = SUBSET_TEST) -> dict[str, int]:
    """The first ``n_train``/``n_test`` images of ``src/{train,test}.npz``, written compressed to ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for split, n in (("train", n_train), ("test", n_test)):
        with np.load(src / f"{split}.npz") as d:
            x, y = d["x"][:n], d["y"][:n]
        np.savez_compressed(dst / f"{split}.npz", x=x, y=y)
        sizes[split] = len(y)
    return sizes


def check_scenario(micro: bool, agent_defaults: bool):
    """``cifar10-resnet18`` on the subset (``--micro``: ``cifar10-cnn`` shrunk to run on a CPU in about a minute)."""
    from arena.config.micro import overlay, shrink
    from arena.config.scenario import load_scenario

    if micro:  # the CPU-sized CIFAR-10 scenario at micro size (arena.config.micro)
        return shrink(load_scenario("cifar10-cnn"), name="gpu-check-micro")
    base = load_scenario("cifar10-resnet18")
    return dataclasses.replace(
        base, name="gpu-check", seeds=(0,),
        training=base.training if agent_defaults else dataclasses.replace(base.training, retrain_epochs=2),
        data=dataclasses.replace(base.data, train_limit=SUBSET_TRAIN, test_limit=SUBSET_TEST),
        attackers=base.attackers if agent_defaults else overlay(base.attackers, CHECK_ATTACKERS),
        defenders=base.defenders if agent_defaults else overlay(base.defenders, CHECK_DEFENDERS),
        # Fewer benign models in each control than the scenario's: each is a training and a deployment.
        controls=dataclasses.replace(base.controls, population=CHECK_POPULATION),
    )


def coverage_order(attackers: list[str], defenders: list[str]) -> list[tuple[str, str]]:
    """Every attacker against the first defender (``none``), the first real attacker (``badnet``)
    against every defender, then the other pairs: a cut-short run has still exercised every agent."""
    d0 = "none" if "none" in defenders else defenders[0]
    a0 = "badnet" if "badnet" in attackers else attackers[0]
    first = [(a, d0) for a in attackers] + [(a0, d) for d in defenders if d != d0]
    rest = [(a, d) for a in attackers for d in defenders if (a, d) not in first]
    return first + rest


class MemoryWatch:
    """Peak device-wide GPU memory in use (every process: agents run in their own), sampled every 0.2 s."""

    def __init__(self, device) -> None:
        self.device, self.peak, self._stop = device, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import torch

        while not self._stop.is_set():
            free, total = torch.cuda.mem_get_info(self.device)
            self.peak = max(self.peak, total - free)
            self._stop.wait(0.2)

    def __enter__(self) -> "MemoryWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(referee, seed: int) -> dict[str, Any]:
    """Images/s of ``fit`` (a fresh model of the benign architecture) and of ``predict_proba``."""
    import torch

    from arena.api.models import ArchSpec, build_model
    from arena.api.training import fit, predict_proba

    s, sp, dev = referee.scenario, referee.splits(seed), referee.device
    info, bs = sp.info, s.training.batch_size
    torch.manual_seed(seed)
    model = build_model(ArchSpec(s.architecture, info.channels, info.size, info.num_classes,
                                 info.mean, info.std)).to(dev)
    n = min(len(sp.attacker), bs * THROUGHPUT_STEPS)
    x, y = sp.attacker.x[:n], sp.attacker.y[:n]
    kw = dict(batch_size=bs, lr=s.training.lr, optimizer=s.training.optimizer, augment=s.training.augment)

    def timed_fit() -> float:
        fit(model, x[:bs], y[:bs], epochs=1, **kw)  # warm-up: kernels chosen, memory pools filled (and compiled)
        _sync(dev)
        t0 = time.perf_counter()
        fit(model, x, y, epochs=1, **kw)
        _sync(dev)
        return time.perf_counter() - t0

    train_s = timed_fit()
    compiled_s = None
    if dev.type == "cuda":  # the opt-in torch.compile path of fit, measured beside the default
        os.environ["ARENA_COMPILE"] = "1"
        try:
            compiled_s = timed_fit()
        except Exception as exc:  # a compiler failure is a finding, not a reason to stop the check
            print(f"torch.compile in fit failed: {type(exc).__name__}: {exc}", flush=True)
        finally:
            os.environ.pop("ARENA_COMPILE", None)
    test = sp.test.x
    predict_proba(model, test[:1024])
    _sync(dev)
    t0 = time.perf_counter()
    predict_proba(model, test)
    _sync(dev)
    infer_s = time.perf_counter() - t0
    out = {"train_images": n, "train_batch_size": bs, "train_s": round(train_s, 3),
           "train_images_per_s": round(n / train_s, 1),
           "train_images_per_s_compiled": round(n / compiled_s, 1) if compiled_s else None,
           "inference_images": len(test),
           "inference_s": round(infer_s, 3), "inference_images_per_s": round(len(test) / infer_s, 1)}
    if s.architecture == "resnet18":  # how far from the hardware's limit (see RESNET18_TRAIN_LIMIT)
        best = max(v for v in (out["train_images_per_s"], out["train_images_per_s_compiled"]) if v)
        out["ratio_to_limit"] = round(best / RESNET18_TRAIN_LIMIT, 3)
    return out


def workers_sweep(sc, device: str, seed: int, attackers: list[str], defenders: list[str],
                  workers: list[int], folder: Path) -> list[dict[str, Any]]:
    """Matches per minute of ``arena tournament --workers N`` for each N, on one device.

    Each N plays the same grid into its own fresh store, so every N plays every match; the
    artifact cache is shared, so the benign model, the non-adaptive trojans and the controls made
    by the first N are read by the later ones. The first N therefore also pays for those: run the
    sweep after the coverage matches (which made most of them) and read the later rows as the
    steady state of a tournament that keeps the device full.
    """
    from arena.run import tournament
    from arena.results.store import Store

    rows = []
    for n in workers:
        store = Store(folder / f"sweep-{n}.db")
        t0 = time.perf_counter()
        report = tournament.run(sc, attackers=attackers, defenders=defenders, seeds=[seed], device=device,
                                workers=n, store=store)
        wall = time.perf_counter() - t0
        records = store.matches(scenario=sc.name)
        peaks = [r.metrics.get("timing", {}).get(k) for r in records
                 for k in ("referee_gpu_peak_mb", "craft_gpu_peak_mb", "deploy_gpu_peak_mb")]
        peaks = [p for p in peaks if p is not None]
        rows.append({"workers": n, "matches": len(records), "failed": len(report.failed), "wall_s": round(wall, 2),
                     "matches_per_min": round(60 * len(records) / wall, 2) if wall > 0 else None,
                     "peak_gpu_mb_per_process": max(peaks) if peaks else None})
        print(f"workers {n}: {len(records)} matches in {wall:.1f} s, {rows[-1]['matches_per_min']} per minute, "
              f"{len(report.failed)} failed, peak GPU memory per process {rows[-1]['peak_gpu_mb_per_process']} MiB",
              flush=True)
    return rows


def match_row(record) -> dict[str, Any]:
    m = record.metrics
    timing = m.get("timing", {})
    craft, deploy = float(timing.get("craft_s") or 0.0), float(timing.get("deploy_s") or 0.0)
    row = {"attacker": record.attacker, "defender": record.defender,
           "status": "forfeit" if "forfeit" in m else record.status,
           "outcome": record.outcome, "reason": record.reason, "seconds": round(record.duration_s, 2),
           "craft_s": round(craft, 2), "deploy_s": round(deploy, 2),
           "other_s": round(max(0.0, record.duration_s - craft - deploy), 2),
           "trojan_cached": timing.get("trojan_cached")}
    if "forfeit" in m:
        row["forfeit"] = m["forfeit"]
    return row


def run_check(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    import arena
    from arena.plugins import discover
    from arena.engine.referee import Referee
    from arena.api.training import accuracy, pinned_threads, match_threads

    sc = check_scenario(args.micro, args.agent_defaults)
    referee = Referee(sc, device=args.device, progress=(lambda msg: print(msg, file=sys.stderr, flush=True))
                      if args.verbose else None)
    dev = referee.device
    attackers = args.attackers.split(",") if args.attackers else sorted(discover("attacker"))
    defenders = args.defenders.split(",") if args.defenders else sorted(discover("defender"))
    if not attackers or not defenders:
        raise SystemExit("no agents installed (they are found through the package's entry points): "
                         "run `pip install --no-deps --no-build-isolation -e .` in the checkout first")
    pairs = coverage_order(attackers, defenders)
    if args.micro and not args.all_pairs and not (args.attackers or args.defenders):
        pairs = pairs[: len(attackers) + len(defenders) - 1]
    summary: dict[str, Any] = {
        "scenario": {"name": sc.name, "digest": sc.digest, "dataset": sc.dataset, "architecture": sc.architecture,
                     "train_limit": sc.data.train_limit, "test_limit": sc.data.test_limit,
                     "training": dataclasses.asdict(sc.training), "attackers": sc.attackers,
                     "defenders": sc.defenders},
        "device": str(dev), "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch": torch.__version__, "arena": arena.__version__, "micro": args.micro, "seed": args.seed,
        "data": str(args.data), "budget_s": args.budget_s,
    }
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    watch = MemoryWatch(dev) if dev.type == "cuda" else None
    if watch:
        watch.__enter__()
    t_all = time.perf_counter()
    rows: list[dict[str, Any]] = []
    try:
        try:
            with pinned_threads(match_threads()):  # as the referee trains it, and as every match runs
                t0 = time.perf_counter()
                model, _ = referee.benign(args.seed)
                benign_s = time.perf_counter() - t0
                test = referee.splits(args.seed).test
                summary["benign"] = {"seconds": round(benign_s, 2),
                                     "clean_accuracy": round(accuracy(model, test.x, test.y), 4)}
                print(f"benign {sc.architecture}: {benign_s:.1f} s, clean accuracy "
                      f"{summary['benign']['clean_accuracy']:.4f}", flush=True)
                summary["throughput"] = throughput(referee, args.seed)
                print(f"throughput: {json.dumps(summary['throughput'])}", flush=True)
        except Exception as exc:  # no benign model, no matches: say why in the summary, not only on stderr
            summary["fatal"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-8:])
            summary.setdefault("benign", {"seconds": None, "clean_accuracy": None})
            print(f"FATAL before the matches: {type(exc).__name__}: {exc}", flush=True)
            pairs_left = pairs
        else:
            pairs_left = []
        t_matches = time.perf_counter()
        for i, (a, d) in enumerate(pairs, 1):
            if pairs_left or time.perf_counter() - t_matches > args.budget_s:
                why = "no benign model" if pairs_left else f"time budget of {args.budget_s:.0f} s spent"
                rows.append({"attacker": a, "defender": d, "status": "not-played", "reason": why})
                continue
            t0 = time.perf_counter()
            try:
                row = match_row(referee.play(a, d, seed=args.seed).record)
            except Exception as exc:  # one broken match must not stop the check
                row = {"attacker": a, "defender": d, "status": "error", "seconds": round(time.perf_counter() - t0, 2),
                       "error": f"{type(exc).__name__}: {exc}",
                       "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:])}
            rows.append(row)
            out = f"{row['outcome']:.3f}" if row.get("outcome") is not None else "-"
            print(f"[{i}/{len(pairs)}] {a} vs {d}: {row['status']} {out} {row['seconds']:.1f} s "
                  f"(craft {row.get('craft_s', 0):.1f}, deploy {row.get('deploy_s', 0):.1f}, "
                  f"other {row.get('other_s', 0):.1f}) {row.get('error', '')}", flush=True)
    finally:
        if watch:
            watch.__exit__()
    played = [r for r in rows if r["status"] != "not-played"]
    summary["matches"] = rows
    summary["totals"] = {
        "pairs": len(pairs), "played": len(played), "ok": sum(r["status"] == "ok" for r in rows),
        "forfeits": sum(r["status"] == "forfeit" for r in rows), "errors": sum(r["status"] == "error" for r in rows),
        "not_played": len(rows) - len(played), "benign_s": summary["benign"]["seconds"],
        "matches_s": round(sum(r["seconds"] for r in played), 2),
        "craft_s": round(sum(r.get("craft_s", 0.0) for r in played), 2),
        "deploy_s": round(sum(r.get("deploy_s", 0.0) for r in played), 2),
        "other_s": round(sum(r.get("other_s", 0.0) for r in played), 2),
        "wall_s": round(time.perf_counter() - t_all, 2),
    }
    summary["slowest"] = [f"{r['attacker']} vs {r['defender']}: {r['seconds']:.1f} s"
                          for r in sorted(played, key=lambda r: -r["seconds"])[:10]]
    summary["memory"] = ({"peak_allocated_bytes_referee": torch.cuda.max_memory_allocated(dev),
                          "peak_device_used_bytes_sampled": watch.peak} if watch else None)
    summary["workers_sweep"] = None
    if args.workers_sweep and "fatal" not in summary:
        ns = [int(n) for n in args.workers_sweep.split(",")]
        grid_a, grid_d = args.sweep_attackers.split(","), args.sweep_defenders.split(",")
        summary["workers_sweep"] = {"attackers": grid_a, "defenders": grid_d, "rows": workers_sweep(
            sc, args.device, args.seed, grid_a, grid_d, ns, Path(os.environ["ARENA_HOME"]))}
    t = summary["totals"]
    swept_failed = any(r["failed"] for r in (summary["workers_sweep"] or {}).get("rows", []))
    summary["exit_code"] = (1 if t["forfeits"] or t["errors"] or swept_failed or "fatal" in summary
                            else 2 if t["not_played"] else 0)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--make-subset", nargs=2, metavar=("SRC", "DST"), type=Path,
                    help=f"write the first {SUBSET_TRAIN} train and {SUBSET_TEST} test images of SRC/{{train,test}}.npz "
                         "to DST/ and exit (e.g. /work/shared/data/cifar10 .gpu-data/cifar10)")
    ap.add_argument("--data", type=Path, help="folder holding cifar10/{train,test}.npz (ARENA_DATA_DIR)")
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--out", type=Path, help="where to write the JSON summary")
    ap.add_argument("--micro", action="store_true", help="shrink everything to run on a CPU in about a minute")
    ap.add_argument("--all-pairs", action="store_true", help="with --micro: every pair, not just the coverage pairs")
    ap.add_argument("--agent-defaults", action="store_true", help="the agents' shipped settings, not the check's cuts")
    ap.add_argument("--attackers", help="comma-separated attackers (default: every installed one)")
    ap.add_argument("--defenders", help="comma-separated defenders (default: every installed one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget-s", type=float, default=480.0,
                    help="seconds for the matches; pairs not started by then are reported not-played (default 480)")
    ap.add_argument("--home", type=Path, help="arena home (cache); default: a fresh temporary folder, so "
                                              "everything is trained and timed")
    ap.add_argument("--verbose", action="store_true", help="the referee's progress messages on stderr")
    ap.add_argument("--workers-sweep", default="1,4,8",
                    help="after the matches, time `arena tournament --workers N` on one device for each N "
                         "(comma-separated; '' to skip; default 1,4,8)")
    ap.add_argument("--sweep-attackers", default="badnet,trojannn", help="the sweep's attackers (default badnet,trojannn)")
    ap.add_argument("--sweep-defenders", default="none,strip,fine-pruning,neural-cleanse",
                    help="the sweep's defenders (default none,strip,fine-pruning,neural-cleanse)")
    args = ap.parse_args(argv)

    if args.make_subset:
        src, dst = args.make_subset
        sizes = make_subset(src, dst)
        mb = sum(f.stat().st_size for f in dst.glob("*.npz")) / 1e6
        print(f"wrote {dst}/train.npz ({sizes['train']}) and test.npz ({sizes['test']}), {mb:.0f} MB")
        return 0
    if args.data is None or args.out is None:
        ap.error("--data and --out are needed (or --make-subset SRC DST)")
    # Before arena is imported: it reads these when it first looks for data and its cache.
    os.environ["ARENA_DATA_DIR"] = str(args.data.resolve())
    home = args.home or Path(tempfile.mkdtemp(prefix="arena-gpu-check-"))
    os.environ["ARENA_HOME"] = str(home.resolve())
    summary = run_check(args)
    summary["home"] = str(home)
    text = json.dumps(summary, indent=1, default=str)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    t = summary["totals"]
    print(f"\n{t['ok']} ok, {t['forfeits']} forfeits, {t['errors']} errors, {t['not_played']} not played of "
          f"{t['pairs']} pairs in {t['wall_s']:.0f} s (benign {t['benign_s']:.0f} s, matches {t['matches_s']:.0f} s: "
          f"craft {t['craft_s']:.0f}, deploy {t['deploy_s']:.0f}, other {t['other_s']:.0f})")
    if summary["memory"]:
        print(f"peak GPU memory: {summary['memory']['peak_allocated_bytes_referee'] / 2**30:.2f} GiB allocated "
              f"by the referee, {summary['memory']['peak_device_used_bytes_sampled'] / 2**30:.2f} GiB in use on the device")
    for r in summary["matches"]:
        if r["status"] in ("error", "forfeit"):
            print(f"FAILED {r['attacker']} vs {r['defender']}: {r.get('error') or r.get('forfeit')}")
    for r in (summary["workers_sweep"] or {}).get("rows", []):
        print(f"--workers {r['workers']}: {r['matches_per_min']} matches/min ({r['matches']} matches, "
              f"{r['failed']} failed), peak GPU memory per process {r['peak_gpu_mb_per_process']} MiB")
    print(f"summary written to {args.out}")
    return summary["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
