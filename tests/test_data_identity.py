"""The data's content is part of the scenario digest and of every cache key: other data under a
dataset's name never reuses a model trained on the old data, nor mixes into its leaderboard."""

from __future__ import annotations

import hashlib
import io
import os
import time

import numpy as np
import pytest
import torch

from arena.config.datasets import DATASET_INFO, data_digest, load_dataset
from arena.config.scenario import load_scenario, scenario_from_dict
from arena.config.splits import bind_data
from arena.core.cache import ArtifactCache
from arena.engine.referee import Referee

from conftest import requires_fmnist


def _write_fmnist(root, labels_shift: int) -> None:
    d = root / "fashion-mnist"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 400), ("test", 100)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) + labels_shift) % 10
        np.savez(d / f"{split}.npz", x=x, y=y)
        # A rewrite within the same clock tick would keep the file's size and mtime: move the mtime on.
        t = time.time() + labels_shift
        os.utime(d / f"{split}.npz", (t, t))


@pytest.fixture
def own_data(tmp_path, monkeypatch):
    monkeypatch.setenv("ARENA_DATA_DIR", str(tmp_path))
    load_dataset.cache_clear()
    yield tmp_path
    load_dataset.cache_clear()


def test_other_data_under_the_same_name_gets_its_own_digest_and_models(own_data):
    scenario = scenario_from_dict({"name": "own", "dataset": "fashion-mnist", "device": "cpu",
                                   "training": {"epochs": 1, "batch_size": 64}})
    said: list[str] = []
    _write_fmnist(own_data, labels_shift=0)
    first = Referee(scenario, progress=said.append)
    assert first.scenario.data_digest == data_digest("fashion-mnist", str(own_data))
    assert first.scenario.digest != scenario.digest  # not the standard Fashion-MNIST: not its matches
    _, key_a = first.benign(0)
    assert not any("from cache" in m for m in said)
    assert Referee(scenario, progress=said.append).benign(0)[1] == key_a  # the same data: the cached model
    assert any("from cache" in m for m in said)

    _write_fmnist(own_data, labels_shift=3)  # relabelled: same name, same sizes, other content
    load_dataset.cache_clear()
    said.clear()
    second = Referee(scenario, progress=said.append)
    assert second.scenario.digest not in (scenario.digest, first.scenario.digest)
    _, key_b = second.benign(0)
    assert key_b != key_a and not any("from cache" in m for m in said)  # trained anew on the new labels


def test_a_forged_decoded_dataset_is_not_served(own_data, monkeypatch):
    """The decoded copy in the cache is MAC-verified: relabelling it in place changes nothing."""
    monkeypatch.setenv("ARENA_HOME", str(own_data / "home"))
    _write_fmnist(own_data, labels_shift=0)
    honest = load_dataset("fashion-mnist", "train", str(own_data)).y.clone()
    load_dataset.cache_clear()
    cache = ArtifactCache(on_event=lambda m: None)
    (entry,) = (cache.root / "data").glob("fashion-mnist-train-*.pt")
    value = cache.get("data", entry.stem)
    value["y"] = (value["y"] + 1) % 10  # relabelled, with a correct plain hash in the header
    buf = io.BytesIO()
    torch.save(value, buf)
    entry.write_bytes(b"ARENA-HMAC:" + hashlib.sha256(buf.getvalue()).hexdigest().encode() + b"\n" + buf.getvalue())
    load_dataset.cache_clear()
    assert (load_dataset("fashion-mnist", "train", str(own_data)).y == honest).all()


@requires_fmnist
def test_the_standard_copy_keeps_the_digest(monkeypatch):
    monkeypatch.delenv("ARENA_DATA_DIR", raising=False)
    s = load_scenario("fmnist-cnn")
    assert data_digest("fashion-mnist") == DATASET_INFO["fashion-mnist"].standard_digest
    assert bind_data(s) is s  # the published matches stay this scenario's
