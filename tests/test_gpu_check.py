"""benchmarks/gpu_check.py works end to end before a GPU lease is spent on it: ``--micro`` on the CPU."""

from __future__ import annotations

import pytest

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from conftest import cifar10_dir, requires_cifar10

pytestmark = pytest.mark.slow  # trains models: not in the fast lane (README)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


@requires_cifar10
def test_micro_check_passes_and_summarizes(tmp_path):
    out = tmp_path / "results.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("ARENA_HOME", None)  # the script makes its own fresh home: everything it reports is timed
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--data", str(cifar10_dir()), "--device", "cpu", "--out", str(out), "--micro",
         "--home", str(tmp_path / "home"),
         # Two agents a side (4 matches): the script's path end to end in under a minute; every agent's
         # play on colour inputs is tests/test_cifar_cpu.py's job.
         "--attackers", "none,badnet", "--defenders", "none,strip",
         # The workers sweep at 1 and 2 on one pair that the matches above left in the cache.
         "--workers-sweep", "1,2", "--sweep-attackers", "badnet", "--sweep-defenders", "none,strip"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["micro"] is True and summary["device"] == "cpu" and summary["memory"] is None
    assert summary["scenario"]["dataset"] == "cifar10" and summary["exit_code"] == 0
    assert 0.0 <= summary["benign"]["clean_accuracy"] <= 1.0 and summary["benign"]["seconds"] > 0
    tp = summary["throughput"]
    assert tp["train_images_per_s"] > 0 and tp["inference_images_per_s"] > 0
    totals, rows = summary["totals"], summary["matches"]
    assert totals["ok"] == totals["played"] == totals["pairs"] == len(rows) > 0
    assert totals["errors"] == totals["forfeits"] == totals["not_played"] == 0
    assert sorted((r["attacker"], r["defender"]) for r in rows) == [
        ("badnet", "none"), ("badnet", "strip"), ("none", "none"), ("none", "strip")]
    sweep = summary["workers_sweep"]["rows"]
    assert [(r["workers"], r["matches"], r["failed"]) for r in sweep] == [(1, 2, 0), (2, 2, 0)]
    assert all(r["matches_per_min"] > 0 and r["peak_gpu_mb_per_process"] is None for r in sweep)
    for r in rows:
        assert r["status"] == "ok" and 0.0 <= r["outcome"] <= 1.0
        assert r["seconds"] >= r["craft_s"] + r["deploy_s"] - 0.01 and r["other_s"] >= 0.0


def _gpu_check_module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_subset_takes_the_first_images(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("test", 12)):
        np.savez(src / f"{split}.npz", x=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                 y=rng.integers(0, 10, n))
    gpu_check = _gpu_check_module()
    assert (gpu_check.SUBSET_TRAIN, gpu_check.SUBSET_TEST) == (18_000, 2_500)
    assert gpu_check.make_subset(src, tmp_path / "small", n_train=20, n_test=5) == {"train": 20, "test": 5}
    # The command line, with the default sizes (larger than these files: all of them).
    proc = subprocess.run([sys.executable, str(SCRIPT), "--make-subset", str(src), str(tmp_path / "all")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for dst, n in ((tmp_path / "small", {"train": 20, "test": 5}), (tmp_path / "all", {"train": 30, "test": 12})):
        for split in ("train", "test"):
            with np.load(src / f"{split}.npz") as a, np.load(dst / f"{split}.npz") as b:
                assert np.array_equal(a["x"][: n[split]], b["x"]) and np.array_equal(a["y"][: n[split]], b["y"])


def test_coverage_order_plays_every_agent_first():
    order = _gpu_check_module().coverage_order(["a", "badnet", "none"], ["none", "x", "y"])
    assert order[:5] == [("a", "none"), ("badnet", "none"), ("none", "none"), ("badnet", "x"), ("badnet", "y")]
    assert sorted(order) == sorted((a, d) for a in ["a", "badnet", "none"] for d in ["none", "x", "y"])
