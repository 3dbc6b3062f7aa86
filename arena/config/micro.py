"""Micro versions of scenarios: every code path of every agent, in seconds per match on a CPU.

Smoke tests and checks (the suite's every-pair tests, ``benchmarks/gpu_check.py
--micro``) ask whether each attacker and defender *plays* on a scenario's
inputs, not how strong it is. ``shrink`` keeps what shapes the code paths (the
dataset, the architecture, the trigger, the threat model, the budgets) and cuts
what only costs time: the data, the epochs, the scored inputs, the control
population, and the loops of the costliest agents (``MICRO_ATTACKERS``,
``MICRO_DEFENDERS``, laid over the scenario's own ``[attackers.*]`` /
``[defenders.*]`` tables). Numbers from a micro scenario say nothing about the
agents.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from arena.config.scenario import Scenario

# Each cut keeps the loop (so its code runs) and shortens it.
MICRO_ATTACKERS: dict[str, dict[str, Any]] = {
    "imc": {"pgd_iters": 2},
    "imc-adaptive": {"pgd_iters": 2, "ar_iters": 1},
    "trojannn": {"preprocess_iters": 2},
    "latent": {"preprocess_iters": 5, "samples_per_class": 50},
    "reflection": {"candidates": 4, "selected": 2, "selection_iters": 1, "inner_epochs": 1, "inner_subset": 128,
                   "eval_inputs": 50},
    "trojannet": {"steps": 20, "pool": 256},
}
MICRO_DEFENDERS: dict[str, dict[str, Any]] = {
    "strip": {"samples": 8, "calibration_inputs": 50},
    "neo": {"samples": 10, "confirm_images": 4, "calibration_inputs": 50},
    "randomized-smoothing": {"samples": 4},
    "magnet": {"steps": 20},
    "adversarial-retraining": {"epochs": 1, "iters": 1},
    "fine-pruning": {"epochs": 1},
    "neural-cleanse": {"epochs": 1, "samples": 64},
    "tabor": {"epochs": 1, "samples": 64},
    "deep-inspect": {"epochs": 1, "samples": 64},
    "neuron-inspect": {"min_samples": 32},
    "abs": {"seeds_per_class": 1, "top_neurons": 1, "iterations": 5, "samples": 64},
}


def overlay(shipped: dict[str, dict[str, Any]], micro: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    # The scenario's own settings stay (they are part of what is exercised); the micro ones cut the cost.
    return {name: {**shipped.get(name, {}), **micro.get(name, {})} for name in set(shipped) | set(micro)}


def shrink(sc: Scenario, *, name: str | None = None, train_limit: int = 2000, test_limit: int = 300) -> Scenario:
    """``sc`` at micro size on the CPU: one seed, one epoch, one benign model in each control."""
    return dataclasses.replace(
        sc,
        name=name or f"{sc.name}-micro",
        device="cpu",
        seeds=(sc.seeds[0] if sc.seeds else 0,),
        training=dataclasses.replace(sc.training, epochs=1, retrain_epochs=1),
        data=dataclasses.replace(sc.data, train_limit=train_limit, test_limit=test_limit, defender_fraction=0.1),
        attack=dataclasses.replace(sc.attack, poison_fraction=0.1),  # a real backdoor in one short epoch
        scoring=dataclasses.replace(sc.scoring, inputs=100),
        # One benign model per control: each further member costs every defender another deployment.
        controls=dataclasses.replace(sc.controls, population=1),
        attackers=overlay(sc.attackers, MICRO_ATTACKERS),
        defenders=overlay(sc.defenders, MICRO_DEFENDERS),
    )
