"""One seed's split of a scenario's data: attacker, defender, validation and test."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from arena.config.datasets import DATASET_INFO, DatasetInfo, Tensors, scenario_data_digest, scenario_info, scenario_tensors
from arena.config.scenario import Scenario
from arena.core.errors import ScenarioError

MIN_SPLIT = 10  # images: below this a split cannot train, calibrate or score anything


@dataclass
class Splits:
    """One seed's split of a scenario's data (docs/match.md, "Who sees what")."""

    attacker: Tensors  # attacker's training data
    defender: Tensors  # defender's small clean set, never shown to the attacker
    validation: Tensors  # thresholds, early stopping
    test: Tensors  # scoring only, never shown to an agent
    info: DatasetInfo


def bind_data(scenario: Scenario, write: bool = True) -> Scenario:
    """``scenario`` bound to the data it would play on now (``ARENA_DATA_DIR`` and the other places
    ``arena.config.datasets`` looks): unchanged for the standard copy of its dataset, else with the
    data's content hash in its ``digest``, and so in every cache key and stored match. Other data
    under the same name then never reuses a model trained on the old data, nor mixes into its
    leaderboard. A described dataset (``[dataset]`` table) has no standard copy: its content hash is
    always in the digest. Raises ``DatasetNotFound`` when the data is absent, ``ScenarioError`` when
    the scenario does not fit it (target class, trigger size). ``write=False`` (read-only commands)
    neither caches the decoded data nor downloads it."""
    src = scenario.dataset_source
    found = scenario_data_digest(scenario.dataset, src, write)
    want = "" if src is None and found == DATASET_INFO[scenario.dataset].standard_digest else found
    if src is not None and write:
        check_fits(scenario, scenario_info(scenario.dataset, src))
    return scenario if scenario.data_digest == want else dataclasses.replace(scenario, data_digest=want)


def check_fits(scenario: Scenario, info: DatasetInfo) -> None:
    """The settings a described dataset decides only once read: target class and trigger size."""
    where = scenario.source or scenario.name
    if not 0 <= scenario.attack.target_class < info.num_classes:
        raise ScenarioError(f"{where}: 'attack.target_class' = {scenario.attack.target_class} must lie in "
                            f"0..{info.num_classes - 1} for {info.name} ({info.num_classes} classes)")
    if scenario.trigger.size + 2 > info.size:
        raise ScenarioError(f"{where}: a {scenario.trigger.size}-pixel trigger does not fit the "
                            f"{info.size}x{info.size} images of {info.name}",
                            hint=f"set trigger.size to {max(1, info.size - 2)} or less, or dataset.size larger")


def make_splits(scenario: Scenario, seed: int, device: torch.device | str = "cpu") -> Splits:
    """Split train into attacker / defender / validation per seed; test stays whole."""
    info = scenario_info(scenario.dataset, scenario.dataset_source)
    train = scenario_tensors(scenario.dataset, scenario.dataset_source, "train")
    test = scenario_tensors(scenario.dataset, scenario.dataset_source, "test")
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
