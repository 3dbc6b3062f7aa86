"""One seed's split of a scenario's data: attacker, defender, validation and test."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from arena.config.datasets import DATASET_INFO, DatasetInfo, Tensors, load_dataset
from arena.config.scenario import Scenario
from arena.core.errors import ScenarioError

MIN_SPLIT = 10  # images: below this a split cannot train, calibrate or score anything


@dataclass
class Splits:
    """One seed's split of a scenario's data (README, "Who sees what")."""

    attacker: Tensors  # attacker's training data
    defender: Tensors  # defender's small clean set, never shown to the attacker
    validation: Tensors  # thresholds, early stopping
    test: Tensors  # scoring only, never shown to an agent
    info: DatasetInfo


def make_splits(scenario: Scenario, seed: int, device: torch.device | str = "cpu") -> Splits:
    """Split train into attacker / defender / validation per seed; test stays whole."""
    info = DATASET_INFO[scenario.dataset]
    train = load_dataset(scenario.dataset, "train", os.environ.get("ARENA_DATA_DIR"))
    test = load_dataset(scenario.dataset, "test", os.environ.get("ARENA_DATA_DIR"))
    g = torch.Generator().manual_seed(10_007 * seed + 17)
    perm = torch.randperm(len(train), generator=g)
    if scenario.data.train_limit:
        perm = perm[: scenario.data.train_limit]
    n = len(perm)
    n_def = max(1, int(round(n * scenario.data.defender_fraction)))
    n_val = max(1, int(round(n * scenario.data.validation_fraction)))
    test_idx = torch.randperm(len(test), generator=g)
    if scenario.data.test_limit:
        test_idx = test_idx[: scenario.data.test_limit]
    sizes = {"attacker": max(0, n - n_def - n_val), "defender": n_def, "validation": n_val, "test": len(test_idx)}
    small = {k: v for k, v in sizes.items() if v < MIN_SPLIT}
    if small:
        raise ScenarioError(
            f"{scenario.source}: the splits of {scenario.dataset} leave too little data: "
            + ", ".join(f"{k} {v}" for k, v in small.items()) + f" image(s), fewer than {MIN_SPLIT}",
            hint="raise data.train_limit / data.test_limit (or the fractions) so every split has "
                 f"{MIN_SPLIT} images or more")
    return Splits(
        attacker=train.subset(perm[n_def + n_val :]).to(device),
        defender=train.subset(perm[:n_def]).to(device),
        validation=train.subset(perm[n_def : n_def + n_val]).to(device),
        test=test.subset(test_idx).to(device),
        info=info,
    )
