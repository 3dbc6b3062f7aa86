"""Imported once by the agent processes' forkserver, before it forks any agent.

A fresh process pays for lazy imports on first use: the first optimizer an
agent builds imports ``torch._dynamo``, and scikit-learn is slow to import as
well (the costs are in docs/measurements.md). Importing them here, once, makes every
forked agent process start warm. Only the arena's own code is imported:
third-party plugins are never loaded into the forkserver, where their import
could reach every agent process forked after it.
"""

from __future__ import annotations

import importlib

import torch._dynamo  # noqa: F401 - imported by every torch.optim optimizer on first construction

for _module in ("sklearn.cluster", "sklearn.decomposition", "sklearn.mixture",
                "arena.api.defenses", "arena.api.poison", "arena.api.triggers",
                *(f"arena_agents.attackers.{m}" for m in ("none", "badnet", "imc", "imc_adaptive", "trojannn",
                                                          "targeted", "latent", "abe", "reflection", "trojannet")),
                *(f"arena_agents.defenders.{m}" for m in ("none", "strip", "fine_pruning", "neural_cleanse",
                                                          "neuron_inspect", "abs", "randomized_smoothing",
                                                          "down_upsampling", "magnet", "activation_clustering",
                                                          "spectral_signature", "neo", "adversarial_retraining",
                                                          "tabor", "deep_inspect"))):
    try:
        importlib.import_module(_module)
    except ImportError:  # an optional piece missing only costs its import later, in the agent process
        pass
