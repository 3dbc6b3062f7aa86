"""Old import paths, kept for one release: ``arena.protocol`` is ``arena.api.protocol`` now.

Before the package was laid out by layer (0.2.0) every module sat directly in
``arena/``. A plugin written then (``from arena.protocol import Attacker``)
still imports: the finder below answers each old name with the new module
object itself (so ``monkeypatch.setattr`` on either name patches both) and
warns once with ``DeprecationWarning``. New code imports ``arena.api``; the
old names go in the release after next.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

MOVED: dict[str, str] = {
    "errors": "core.errors", "progress": "core.progress", "cache": "core.cache",
    "scenario": "config.scenario", "micro": "config.micro", "data": "config.datasets",
    "protocol": "api.protocol", "views": "api.views", "defenses": "api.defenses", "triggers": "api.triggers",
    "poison": "api.poison", "training": "api.training", "models": "api.models",
    "store": "results.store", "detection": "results.detection", "ratings": "results.ratings",
    "leaderboard": "results.leaderboard", "paper": "results.paper",
    "execution": "engine.hosts", "referee": "engine.referee", "metrics": "engine.metrics",
    "outcome": "engine.outcome", "artifacts": "engine.artifacts", "agent_preload": "engine.agent_preload",
    "tournament": "run.tournament", "ray_backend": "run.backends.ray", "sweep": "run.sweep",
    "replay": "run.replay", "match_text": "present.match_text", "charts": "present.charts",
    "gallery": "present.gallery", "report": "present.report",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        pass  # the target module is already executed


class MovedFinder(importlib.abc.MetaPathFinder):
    """Finds ``arena.<old>`` for every name in ``MOVED``, and nothing else."""

    def find_spec(self, fullname: str, path: object = None, target: object = None
                  ) -> importlib.machinery.ModuleSpec | None:
        prefix, _, old = fullname.partition(".")
        if prefix != "arena" or old not in MOVED:
            return None
        new = f"arena.{MOVED[old]}"
        warnings.warn(f"'{fullname}' moved to '{new}' (import agents' names from 'arena.api'); "
                      "the old path goes in the release after next", DeprecationWarning, stacklevel=3)
        return importlib.machinery.ModuleSpec(fullname, _Alias(new))


def install() -> None:
    if not any(isinstance(f, MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedFinder())
