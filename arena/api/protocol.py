"""The contract between agents and the referee.

An attacker turns a benign model and the attacker's data into a ``Trojan``;
a defender turns a (possibly trojan) model and its small clean set into a
``Deployment``. Agents follow scikit-learn's estimator habit: the constructor
only stores hyper-parameters (so a scenario file or the CLI can build one),
and all work happens in ``craft`` / ``deploy``.

The referee computes every metric itself from what the agents return; an
agent's own numbers are never trusted. What each side's context holds is the
capability contract of ``arena.api.views``; by default each call runs in the
agent's own process (``arena.engine.hosts``), inside the Landlock and seccomp
sandbox of ``arena.engine.sandbox``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from arena.config.datasets import DatasetInfo, Tensors
from arena.api.poison import Poisoner
from arena.api.training import Progress
from arena.api.triggers import Trigger

if TYPE_CHECKING:  # the views import this module to build the contexts
    from arena.api.views import AttackerScenario, DefenderScenario, RevealedDefender

CATEGORIES = ("none", "input_reformation", "input_filtering", "model_sanitization", "model_inspection")


class Agent:
    """Common base: a name, a version (part of every cache key) and stored hyper-parameters."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"

    def get_params(self) -> dict[str, Any]:
        sig = inspect.signature(type(self).__init__)
        return {
            p: getattr(self, p)
            for p in sig.parameters
            if p != "self" and sig.parameters[p].kind not in (inspect.Parameter.VAR_POSITIONAL,
                                                               inspect.Parameter.VAR_KEYWORD)
        }

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


@dataclass
class RoundRecord:
    """What a finished round revealed to both sides (``ctx.history``)."""

    round: int
    outcome: float
    reason: str
    metrics: dict[str, Any]
    attacker_notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Trojan:
    """A trojan model and its trigger.

    ``model`` must carry an ``arena.api.models.ArchSpec`` as ``model.spec`` (models
    from ``arena.api.models.build_model`` or an ``arena.architectures`` entry point
    do): the referee rebuilds it from its spec and weights. ``trigger`` is a
    mask-and-pattern trigger the referee stamps itself (every built-in
    attacker returns one, reflection included). Attacks whose trigger is a
    function (a warp, an input-specific pattern) set ``stamp_fn`` instead: the
    referee then sends the non-target test inputs to the attacker's process
    to be stamped, after the trojan is fixed, and the stamped inputs must stay
    within the scenario's perturbation budget like any other trigger.
    Trojans are cached by the attacker's name, version, parameters (and, for
    file plugins, source hash), scenario and seed; a ``stamp_fn`` trojan is
    cached with the test inputs it stamped, so later matches reuse both
    without running the attacker again. ``notes`` lands in the match record
    (e.g. which countermeasure an adaptive attacker used).
    """

    model: nn.Module
    trigger: Trigger | None = None
    stamp_fn: Callable[[torch.Tensor], torch.Tensor] | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def stamp(self, x: torch.Tensor) -> torch.Tensor:
        if self.stamp_fn is not None:
            return self.stamp_fn(x)
        if self.trigger is None:
            raise ValueError("a Trojan needs a trigger or a stamp function")
        return self.trigger.stamp(x)


@dataclass
class Verdict:
    """An inspection defender's finding about a model."""

    is_trojan: bool
    target: int | None = None
    anomaly_index: list[float] | None = None  # per class
    mask: torch.Tensor | None = None  # recovered mask of the suspected target (1 x H x W)
    pattern: torch.Tensor | None = None


@dataclass
class Deployment:
    """What a defender puts in front of users.

    ``transform`` reforms inputs before the model; ``score`` rates inputs
    (higher = more suspicious) and inputs with ``score > threshold`` are
    rejected; ``verdict`` rejects the whole model when ``is_trojan``.
    """

    model: nn.Module
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    score: Callable[[torch.Tensor], torch.Tensor] | None = None
    threshold: float | None = None
    verdict: Verdict | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    # Forward passes of the model per input (randomized smoothing: its samples); the referee scores
    # a costly deployment on fewer test inputs (scenario ``scoring.passes``).
    passes_per_input: int = 1
    # A filter whose score of an input depends on the other inputs of the call (activation
    # clustering, spectral signatures): the referee scores it on windows of traffic at the
    # scenario's trigger share (``scoring.trigger_share``); a per-input filter in one call.
    batch_aware: bool = False


@dataclass
class AttackContext:
    """The attacker's view (``arena.api.views``): its data, a benign copy, the trigger, what is revealed."""

    scenario: AttackerScenario
    data: Tensors  # the attacker's training data
    validation: Tensors  # the attacker may use it for checkpoint choice
    benign: nn.Module  # a copy the attacker may change
    trigger: Trigger  # the scenario's trigger (size, position, pattern, alpha)
    info: DatasetInfo
    device: torch.device
    generator: torch.Generator
    revealed: RevealedDefender | None = None  # threat model "full": name, category, parameters
    # Under "full", for adaptive attackers: a ``RevealedProxy`` (``arena.engine.revealed``), the revealed
    # data and a ``deploy`` the referee answers from the defender's own sandboxed process, never its code
    # (None for a defender the referee was handed as an in-process object).
    defender: "Defender | None" = None
    defender_category: str | None = None  # revealed category ("full" or "category")
    history: list[RoundRecord] = field(default_factory=list)
    progress: Progress | None = None

    @property
    def target(self) -> int:
        return self.scenario.attack.target_class

    def poisoner(self, stamp: Callable[[torch.Tensor], torch.Tensor], fraction: float | None = None) -> Poisoner:
        """A ``fit`` hook that mixes trigger inputs in at the scenario's level (``attack.mixing``)."""
        a = self.scenario.attack
        return Poisoner(stamp, a.target_class, a.poison_fraction if fraction is None else fraction,
                        level=a.mixing, n_data=len(self.data), generator=self.generator)

    def training_budget(self, epochs: int | None = None, lr: float | None = None) -> tuple[nn.Module, int, float]:
        """The model to poison and its budget: the benign copy and ``training.retrain_*``, or, with
        ``attack.from_scratch``, a freshly initialized model and the full ``training.epochs``/``lr``.
        Explicit ``epochs``/``lr`` (an agent's own hyper-parameters) win."""
        t = self.scenario.training
        if self.scenario.attack.from_scratch:
            with torch.no_grad():
                for m in self.benign.modules():
                    if hasattr(m, "reset_parameters"):
                        m.reset_parameters()
            return self.benign, epochs or t.epochs, lr or t.lr
        return self.benign, epochs or t.retrain_epochs, lr or t.retrain_lr


@dataclass
class DefenseContext:
    """The defender's view (``arena.api.views``): its clean set, the budgets, the data's shape; nothing of the attack."""

    scenario: DefenderScenario
    clean: Tensors  # the defender's small clean set
    info: DatasetInfo
    device: torch.device
    generator: torch.Generator
    history: list[RoundRecord] = field(default_factory=list)
    progress: Progress | None = None

    @property
    def fpr_budget(self) -> float:
        return self.scenario.budgets.fpr


class Attacker(Agent):
    """Base class of attackers. ``adaptive`` attackers read ``ctx.defender`` and ``ctx.history``."""

    adaptive: ClassVar[bool] = False

    def craft(self, ctx: AttackContext) -> Trojan:  # pragma: no cover - interface
        """Return a ``Trojan``: usually ``ctx.benign`` re-trained with ``ctx.poisoner(...)`` as the batch
        hook, within ``ctx.training_budget()``, and the trigger it plants. Runs in the attacker's own
        process under the scenario's ``budgets.craft_seconds`` and ``budgets.memory_mb``; raising,
        overrunning or returning anything but a ``Trojan`` loses the match."""
        raise NotImplementedError

    def craft_key(self, ctx: AttackContext) -> tuple[str, dict[str, Any]] | None:
        """Optional, for adaptive attackers: asked before ``craft`` with the same context, a name for the
        trojan ``craft(ctx)`` would make and the notes it would carry, or None (the default: always craft).

        Crafts of one attacker, seed, round and history that give the same name are made once: the
        referee crafts for the first defender that asks and hands that trojan, with this call's notes,
        to the others. So name a craft only where ``craft`` makes the same bytes whatever defender is
        revealed (``imc-adaptive``: plain IMC, named by its generator's state). The name must be 1-200
        printable characters; the call runs under the craft's time budget."""
        return None


class Defender(Agent):
    """Base class of defenders; ``category`` is one of ``CATEGORIES``. Subclass a category base of
    ``arena.api.defenses`` (it does the calibration and the clean-set splits) where one fits."""

    category: ClassVar[str] = "none"

    def deploy(self, model: nn.Module, ctx: DefenseContext) -> Deployment:  # pragma: no cover - interface
        """Return a ``Deployment`` for ``model`` (a copy the defender may change). Runs in the defender's
        own process under ``budgets.deploy_seconds`` and ``budgets.memory_mb``; the deployment then
        serves the referee's queries there. Raising, overrunning, or a deployment whose outputs are
        not finite loses the match."""
        raise NotImplementedError


def calibrate_threshold(clean_scores: torch.Tensor, fpr: float, conservative: bool = True) -> float:
    """Threshold on clean calibration scores for a false-positive budget ``fpr``.

    The empirical quantile of n calibration scores misses the true FPR by
    about sqrt(fpr (1 - fpr) / n) (1.5 points at n = 200, fpr = 0.05), and the
    referee judges the FPR on other clean inputs. ``conservative`` aims one
    such standard error below the budget (never below half of it), so a
    deployment calibrated on a small clean set stays inside budget plus the
    scenario's tolerance with high probability instead of about 90%.
    """
    s = clean_scores.float().flatten().cpu()
    target = fpr
    if conservative and len(s) > 0:
        target = max(fpr - math.sqrt(fpr * (1 - fpr) / len(s)), fpr / 2)
    return float(torch.quantile(s, 1.0 - target).item())
