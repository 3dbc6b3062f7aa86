"""One seed's split of a scenario's data: attacker, defender, validation and test."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from arena.config.datasets import DATASET_INFO, DatasetInfo, Tensors, load_dataset
from arena.config.scenario import Scenario


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
    return Splits(
        attacker=train.subset(perm[n_def + n_val :]).to(device),
        defender=train.subset(perm[:n_def]).to(device),
        validation=train.subset(perm[n_def : n_def + n_val]).to(device),
        test=test.subset(test_idx).to(device),
        info=info,
    )
