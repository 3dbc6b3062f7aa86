"""Shared fixtures: a tiny Fashion-MNIST scenario and one arena home per test session.

The tiny scenario trains on 8,000 images for a few epochs, so the benign model
costs a few seconds and is trained once for the whole session (the cache).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from arena.config.datasets import DEBIAN_FASHION_MNIST, data_dir

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

TINY_TOML = """
name = "tiny"
description = "test-sized Fashion-MNIST"
dataset = "fashion-mnist"
architecture = "small-cnn"
device = "cpu"
seeds = [0]

[training]
epochs = 3
batch_size = 128
lr = 0.05
retrain_epochs = 2
retrain_lr = 0.03

[data]
train_limit = 8000
test_limit = 2000

[attack]
target_class = 0
poison_fraction = 0.1

[scoring]
inputs = 600

[controls]
population = 1          # one benign model per control: the population itself is tested on its own
"""


def have_fashion_mnist() -> bool:
    return (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file() or (
        data_dir() / "fashion-mnist" / "train.npz"
    ).is_file()


requires_fmnist = pytest.mark.skipif(not have_fashion_mnist(), reason="Fashion-MNIST not installed")


def cifar10_dir() -> Path | None:
    """A folder holding CIFAR-10 for ``ARENA_DATA_DIR``: the variable's own, or ../shared/data beside the repo."""
    candidates = [Path(os.environ["ARENA_DATA_DIR"])] if os.environ.get("ARENA_DATA_DIR") else []
    candidates.append(SHARED_DATA)
    for root in candidates:
        if (root / "cifar10" / "train.npz").is_file() or (root / "cifar-10-batches-py" / "data_batch_1").is_file():
            return root
    return None


requires_cifar10 = pytest.mark.skipif(
    cifar10_dir() is None,
    reason="CIFAR-10 not found: set ARENA_DATA_DIR to a folder with cifar10/{train,test}.npz "
           "(or cifar-10-batches-py/), or place it in ../shared/data beside the repo",
)


# The suite runs on two xdist workers, each taking whole files in collection order
# (--dist loadfile --no-loadscope-reorder, pyproject.toml); a worker that finishes a file takes
# the next in the queue. The longest files go first, longest first (the LPT rule), so that the
# last files to end are short ones and the two workers end close together. Seconds per file,
# measured on a nearly idle 2-core machine, 2026-12-07 (`pytest -v`, each result line
# timestamped; 487 s in all): every_pair 82, tv_models 77, hostile 75, cifar_cpu 72, imc 57,
# tournament_ray 42, gpu_check 39, artifacts 39, scan 37, controls 37, ar_tabor_di 36,
# windows_and_gates 30, own_data 27, tournament_workers 26, cli_results 22, sanitize_inspect 20;
# the rest 15 s or less each. Queued alphabetically, test_tv_models ran last and ended 33 s
# after the other worker's last file.
LONGEST_FIRST = ("test_every_pair.py", "test_tv_models.py", "test_hostile.py", "test_cifar_cpu.py", "test_imc.py",
                 "test_tournament_ray.py", "test_gpu_check.py", "test_artifacts.py", "test_scan.py",
                 "test_controls.py", "test_defenders_ar_tabor_di.py", "test_windows_and_gates.py",
                 "test_own_data.py", "test_tournament_workers.py", "test_cli_results.py",
                 "test_defenders_sanitize_inspect.py")


# The fast lane (`-m "not slow"`) leaves most of those out, and its own longest files are others.
# Seconds per file there, idle 2-core machine, 2026-12-07 (`pytest -m "not slow" --durations=0`,
# summed per file; 125 s in all, 91 s wall in the full suite's order): sandbox 30.8 (its environment test
# starts a fresh interpreter and forkserver, 20 s with the tiny benign model to train, 11 s
# without), scan 18.1, tv_models 10.8, published 10.7, plugins 9.3, own_data 9.0, coverage 9.0,
# inputs 8.7, revealed 5.6; the rest 3.3 s or less each.
FAST_LANE_LONGEST_FIRST = ("test_sandbox.py", "test_scan.py", "test_tv_models.py", "test_published.py",
                           "test_plugins.py", "test_own_data.py", "test_coverage.py", "test_inputs.py",
                           "test_revealed.py", "test_layers.py", "test_data_identity.py", "test_keys.py",
                           "test_exported.py", "test_cli_errors.py", "test_paper.py")


def pytest_collection_modifyitems(session, config, items) -> None:
    fast_lane = config.getoption("markexpr", "").replace(" ", "") == "notslow"
    rank = {name: i for i, name in enumerate(FAST_LANE_LONGEST_FIRST if fast_lane else LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


@pytest.fixture(scope="session", autouse=True)
def arena_home(tmp_path_factory) -> Path:
    # ARENA_TEST_HOME lets a developer keep the tiny scenario's artifacts between runs; CI uses a fresh one.
    home = Path(os.environ["ARENA_TEST_HOME"]) if os.environ.get("ARENA_TEST_HOME") else tmp_path_factory.mktemp("arena-home")
    os.environ["ARENA_HOME"] = str(home)
    # A fixed referee key (arena.core.keys): the agents' generators, hence the tests' trojans and
    # scores, are the same in every run. Homes a test makes beside it copy it (``share_key``).
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "referee.key").exists():
        (home / "referee.key").write_bytes(TEST_KEY)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker and not os.environ.get("ARENA_TEST_HOME") and not (home / "cache").exists():
        # The xdist workers share one artifact cache (not the store): a benign model or trojan that
        # files on both workers need is made once, under the cache's per-entry lock, as tournament
        # workers share theirs. Every worker's home has the same key, so each accepts the others' MACs.
        shared = tmp_path_factory.getbasetemp().parent / "shared-cache"
        shared.mkdir(exist_ok=True)
        (home / "cache").symlink_to(shared, target_is_directory=True)
    return home


# ARENA_TEST_KEY (64 hex digits) runs the suite under another key: every draw changes (the benign
# models too, engine 5), and the behaviour tests should still hold (README, after the test commands).
TEST_KEY = bytes.fromhex(os.environ["ARENA_TEST_KEY"]) if os.environ.get("ARENA_TEST_KEY") else bytes(range(32))


def copy_benign(from_home: Path, home: Path) -> None:
    """Give ``home`` the benign models of ``from_home`` (nothing trained twice). The session's cache is
    shared with the other xdist worker, which may be writing an entry now: its temporary files and
    locks are left behind, and only finished entries (renamed into place whole) are copied."""
    shutil.copytree(from_home / "cache" / "benign", home / "cache" / "benign",
                    ignore=shutil.ignore_patterns("*.lock", "*.tmp*"))


def share_key(session_home: Path, home: Path) -> None:
    """Give ``home`` the session's referee key: matches there then draw what they draw here."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(session_home / "referee.key", home / "referee.key")


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("scenarios") / "tiny.toml"
    p.write_text(TINY_TOML)
    return p


@pytest.fixture(scope="session")
def tiny(tiny_path):
    from arena.config.scenario import load_scenario

    return load_scenario(str(tiny_path))


@pytest.fixture(scope="session")
def referee(tiny):
    if not have_fashion_mnist():
        pytest.skip("Fashion-MNIST not installed")
    from arena.engine.referee import Referee

    return Referee(tiny, device="cpu")
