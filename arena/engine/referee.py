"""The referee: plays one match (attacker x defender x scenario x seed, R rounds).

Per round: the attacker crafts a trojan (seeing its view: ``arena.api.views``),
the defender deploys on it, and the referee scores the deployment on held-out
test inputs and applies the outcome rule. The match's outcome is its last
round's; every round is kept. Agents named by a string (installed names, file
plugins) run in their own processes under the scenario's limits
(``arena.engine.hosts``); a crash, overrun or garbage loses the match for that
side, with the reason stored. The referee's process alone holds the store,
the cache, the test split and the outcome rule.

Caching (``arena.core.cache``): the benign model once per scenario training setting
and seed; a non-adaptive trojan once per attacker, scenario and seed; the
defender's control run on the benign model once per defender, scenario and
seed. Adaptive trojans are cached too, keyed by the revealed defender and the
round history as well.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
import datetime as dt
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import arena
from arena.engine.artifacts import save_recovered_trigger
from arena.core.cache import ArtifactCache, digest_tensors, key_of
from arena.core.errors import ArenaError
from arena.core.keys import key_id, referee_key, secret_generator, secret_seed
from arena.config.datasets import DATASET_INFO, Tensors
from arena.config.splits import Splits, bind_data, make_splits
from arena.engine.agent_process import gpu_peak_mb, model_from_payload
from arena.engine.hosts import AgentFault, InProcessHost, open_host
from arena.engine.messages import AgentCard, DeploymentSummary, TrojanPayload
from arena.engine.metrics import (AttackMetrics, DefenseMetrics, defense_metrics, measure_attack, scored_prefix,
                                  stream_scores)
from arena.api.exported import EXPORTED
from arena.api.models import ArchSpec, build_model
from arena.engine.outcome import Control, attack_gate, decide, forfeit
from arena.core.progress import Eta, Ticker
from arena.core.stages import Stages
from arena.config.specs import absolute_spec, canonical_spec, is_model_spec, own_file
from arena.api.protocol import AttackContext, Agent, DefenseContext, RoundRecord
from arena.engine.environment import environment
from arena.engine.sandbox import weakest
from arena.config.scenario import Scenario
from arena.results.record import MatchRecord
from arena.api.training import Progress, fit, match_threads, pinned_threads, predict_proba, resolve_device
from arena.api.triggers import Trigger, make_trigger
from arena.api.views import RevealedDefender, attack_view, defender_scenario, defense_view, revealed_defender
from arena.engine.revealed import RevealedRelay


@dataclass
class MatchResult:
    record: MatchRecord
    rounds: list[RoundRecord] = field(default_factory=list)


def draw_label(card: AgentCard) -> str:
    """An agent's part of the labels its generators are drawn under (``arena.core.keys``). A file agent
    (or a model file) is named by its path, which differs between checkouts, folders and test runs; its
    label is the file's name and its content digest instead, so the same code draws the same in every
    place. Installed agents and objects handed in keep their name."""
    if own_file(card.name) is None or not card.code_digest:
        return card.name
    return f"{os.path.basename(card.name)}@{card.code_digest}"


def _benign_fields(s: Scenario, seed: int) -> dict[str, Any]:
    # The attacker's re-training budget does not shape the benign model: leave it out of the key.
    training = {k: v for k, v in dataclasses.asdict(s.training).items() if not k.startswith("retrain_")}
    return {"kind": "benign", "dataset": s.dataset, "arch": s.architecture,
            "content": s.data_digest or DATASET_INFO[s.dataset].standard_digest,
            "training": training, "data": dataclasses.asdict(s.data), "seed": seed}


def _model_payload(model: nn.Module) -> dict[str, Any]:
    return {"arch": model.spec.to_dict(), "state": {k: v.detach().cpu() for k, v in model.state_dict().items()}}


def trigger_problem(trig: Trigger, shape: tuple[int, ...]) -> str | None:
    """Why ``trig`` cannot be stamped on inputs of ``shape`` (C x H x W), or None."""
    c, h, w = shape
    if tuple(trig.mask.shape) != (1, h, w) or tuple(trig.pattern.shape) != (c, h, w):
        return (f"a trigger with mask {tuple(trig.mask.shape)} and pattern {tuple(trig.pattern.shape)} for "
                f"{c}x{h}x{w} inputs: they must be (1, {h}, {w}) and ({c}, {h}, {w})")
    for name, t in (("mask", trig.mask), ("pattern", trig.pattern)):
        if not torch.isfinite(t).all() or t.min() < 0 or t.max() > 1:
            return f"a trigger whose {name} is not finite within [0, 1]"
    if not (isinstance(trig.alpha, (int, float)) and 0 <= float(trig.alpha) <= 1):
        return f"a trigger with alpha {trig.alpha!r}, not within [0, 1]"
    return None


@torch.no_grad()
def trojan_problem(model: nn.Module, stamped: torch.Tensor, clean: torch.Tensor, num_classes: int) -> str | None:
    """Why a crafted trojan does not fit the scenario (its model's inputs and classes, its stamped
    inputs), or None. Checked before any metric, so the attacker forfeits with the reason instead of
    the referee (or the defender, served outputs of another shape) failing later."""
    if not isinstance(stamped, torch.Tensor) or stamped.shape != clean.shape:
        return f"stamped inputs of shape {tuple(getattr(stamped, 'shape', ()))}, not {tuple(clean.shape)}"
    if not torch.isfinite(stamped).all():
        return "stamped inputs that are not finite"
    try:
        out = model.eval()(clean[:2])
    except Exception as exc:  # noqa: BLE001 - whatever the model does wrong is the attacker's
        return f"a model that fails on the scenario's inputs ({type(exc).__name__}: {exc})"
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (min(2, len(clean)), num_classes):
        return (f"a model whose output has shape {tuple(getattr(out, 'shape', ()))} for "
                f"{tuple(clean[:2].shape)} inputs: the scenario has {num_classes} classes")
    return None


@dataclass
class PlayedTrojan:
    """A trojan as the referee holds it: the model rebuilt from its spec, the trigger (when it is a
    mask and pattern), and the non-target test inputs stamped with it."""

    model: nn.Module
    trigger: Trigger | None
    stamped: torch.Tensor
    notes: dict[str, Any]
    cached: bool
    gpu_peak_mb: float | None = None  # the attacker process's peak CUDA memory (a fresh craft on CUDA)

    def stamp(self, x: torch.Tensor) -> torch.Tensor:
        """Stamp other inputs (a mask-and-pattern trigger only: a function trigger lives in the
        attacker's process, which stamped the test inputs in ``stamped``)."""
        if self.trigger is None:
            raise ValueError("this trojan's trigger is a function of the attacker's process; use .stamped")
        return self.trigger.stamp(x)


@dataclass
class ServedDeployment:
    """A deployment served by the defender's host: the referee queries it like a user would."""

    host: Any
    summary: DeploymentSummary
    seconds: float
    limit: float | None
    num_classes: int
    order: torch.Generator  # secret (arena.core.keys): the order and padding of every question
    call_size: int = 256  # every predict and per-input score call holds exactly this many inputs
    # The model the deployment predicts with, when it says it is the one it was given, untouched
    # (``DeploymentSummary.model_unchanged``): the referee predicts with it here, no question asked.
    model: nn.Module | None = None
    say: Progress | None = None  # hears how far a long question is, about every ``Ticker.every_s``
    # Inputs and the untouched model's softmax outputs on them, already measured (``_attack_metrics``).
    known: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def threshold(self) -> float | None:
        return self.summary.threshold

    @property
    def passes_per_input(self) -> int:
        return self.summary.passes_per_input

    @property
    def verdict(self) -> Any:
        return self.summary.verdict

    @property
    def notes(self) -> dict[str, Any]:
        return self.summary.notes

    @property
    def score(self) -> Any:
        return self._score if self.summary.has_score else None

    def _fault(self, what: str) -> AgentFault:
        return AgentFault("defender", self.host.card.name, "returned garbage", what)

    def _blinded(self, cmd: str, x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """Ask ``cmd`` about ``x`` as the deployment cannot tell apart: in a secret order (clean and
        stamped inputs mixed, when the caller passes both), in calls of exactly ``call_size`` inputs
        (the last one padded with inputs drawn again), answers put back in ``x``'s order."""
        n = len(x)
        if n == 0:
            return torch.empty((0, *shape))
        perm = torch.randperm(n, generator=self.order)
        pad = (-n) % self.call_size
        if pad:
            perm = torch.cat([perm, perm[torch.randint(0, n, (pad,), generator=self.order)]])
        out = torch.empty((n, *shape))
        what = "predictions" if cmd == "predict" else "filter scores"
        ticker = Ticker(len(perm), self.say, f"  {self.host.card.name}: {what} for")
        for start in range(0, len(perm), self.call_size):
            ticker.tick(start, "inputs")
            idx = perm[start : start + self.call_size]
            answer = self.host.call(cmd, x[idx.to(x.device)], self.limit)
            if not isinstance(answer, torch.Tensor) or tuple(answer.shape) != (len(idx), *shape):
                what = "predictions" if cmd == "predict" else "filter scores"
                raise self._fault(f"{what} of shape {tuple(getattr(answer, 'shape', ()))} for {len(idx)} inputs "
                                  + (f"and {self.num_classes} classes" if cmd == "predict"
                                     else "(one score per input expected)"))
            if not torch.isfinite(answer).all():
                raise self._fault(f"non-finite {'predictions' if cmd == 'predict' else 'filter scores'} (NaN or inf)")
            out[idx] = answer.float().cpu()
        return out

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        if self.model is not None:
            if self.known is not None and self.known[0].shape == x.shape and torch.equal(self.known[0], x):
                return self.known[1]
            return predict_proba(self.model, x)
        return self._blinded("predict", x, (self.num_classes,)).to(x.device)

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        if self.summary.batch_aware:  # a window is scored as one batch: its composition is the question
            s = self.host.call("score", x, self.limit)
            if not isinstance(s, torch.Tensor) or s.shape != (len(x),):
                raise self._fault(f"filter scores of shape {tuple(getattr(s, 'shape', ()))} for {len(x)} inputs "
                                  "(one score per input expected)")
            if not torch.isfinite(s).all():
                raise self._fault("non-finite filter scores (NaN or inf)")
            return s
        return self._blinded("score", x, ())


AgentLike = str | Agent


class NotCached(ArenaError):
    """A model a read-only referee (``make=False``) would have had to train or craft."""


class Referee:
    """Plays matches of one scenario on one device, sharing data and cache across them.

    ``isolation``: ``"process"`` (default) runs every agent named by a string in its own process
    with the scenario's limits; ``"inprocess"`` runs it here (for a debugger: no limits, no
    process boundary). Agent *objects* passed to ``play`` always run in this process.
    """

    def __init__(self, scenario: Scenario, device: str = "auto", cache: ArtifactCache | None = None,
                 progress: Progress | None = None, isolation: str = "process", make: bool = True) -> None:
        self.scenario = bind_data(scenario)  # other data under the dataset's name: another digest, other keys
        self.device = resolve_device(device if device != "auto" else scenario.device)
        self.cache = cache or ArtifactCache()
        if self.cache.on_event is None:  # a corrupt entry is rebuilt, and the user is told so
            self.cache.on_event = self._say
        self.progress = progress
        self.isolation = isolation
        self.key = referee_key()  # the home's secret (arena.core.keys): never in any agent's view
        self._splits: dict[int, Splits] = {}
        self._benign: dict[tuple[int, int], tuple[nn.Module, str]] = {}
        self._cards: dict[tuple[str, str, str | None], AgentCard] = {}
        self.stages = Stages()  # where the time goes (the match record's timing.stages_s)
        # False: serve benign models and trojans from the cache only, never train or craft (``NotCached``
        # instead): the report's pictures draw what matches left, and craft only when asked.
        self.make = make

    def _say(self, msg: str) -> None:
        if self.progress:
            self.progress(msg)

    # --- shared artifacts -------------------------------------------------
    def splits(self, seed: int) -> Splits:
        if seed not in self._splits:
            self._splits[seed] = make_splits(self.scenario, seed, self.device)
        return self._splits[seed]

    def trigger(self, seed: int) -> Trigger:
        sp = self.splits(seed)
        return make_trigger(self.scenario.trigger, sp.info.channels, sp.info.size,
                            secret_generator(self.key, seed, "referee", "trigger"))

    def benign(self, seed: int, member: int = 0) -> tuple[nn.Module, str]:
        """A benign model of this seed (trained once, then from the cache) and its cache key.

        Member 0 is the model attackers start from; members 1.. form the control population
        (``controls.population``): the same training from another initialization and data order.
        """
        if (seed, member) in self._benign:
            return self._benign[(seed, member)]
        with self.stages("benign"):
            return self._benign_model(seed, member)

    def _benign_key(self, seed: int, member: int) -> str:
        # Benign training draws from the home's key, as agents' generators do: were it a function of
        # the seed alone, anyone could train the same bytes, and an inspector carrying their hashes
        # would reject every trojan that changes a weight and never flag a control, with no analysis.
        fields = {**_benign_fields(self.scenario, seed), "key_id": key_id(self.key)}
        if member:
            fields["member"] = member
        return key_of(fields)

    def _benign_model(self, seed: int, member: int) -> tuple[nn.Module, str]:
        s, sp = self.scenario, self.splits(seed)
        key = self._benign_key(seed, member)

        def train() -> dict[str, Any]:
            with pinned_threads(match_threads()):  # the same bytes whoever trains it first
                return _train()

        def _train() -> dict[str, Any]:
            which = f"seed {seed}" + (f", control population member {member}" if member else "")
            self._say(f"training the benign {s.architecture} on {s.dataset} ({which})")
            torch.manual_seed(secret_seed(self.key, seed, "referee", "benign init", member))
            info = sp.info
            model = build_model(ArchSpec(s.architecture, info.channels, info.size, info.num_classes,
                                         info.mean, info.std)).to(self.device)
            t = s.training
            labels = ("benign",) if not member else ("benign", member)
            fit(model, sp.attacker.x, sp.attacker.y, epochs=t.epochs, batch_size=t.batch_size, lr=t.lr,
                optimizer=t.optimizer, momentum=t.momentum, weight_decay=t.weight_decay, augment=t.augment,
                generator=secret_generator(self.key, seed, "referee", *labels), progress=self.progress,
                label="benign")
            return _model_payload(model)

        if not self.make:  # read-only (pictures from what matches left): the cache or nothing
            payload, hit = self.cache.get("benign", key), True
            if payload is None:
                raise NotCached(f"the benign model of seed {seed} is not in the cache")
        else:
            payload, hit = self.cache.get_or_make("benign", key, train)
        if hit:
            self._say(f"benign model (seed {seed}{f', member {member}' if member else ''}) from cache")
        self._benign[(seed, member)] = (model_from_payload(payload, self.device), key)
        return self._benign[(seed, member)]

    def _scoring_inputs(self, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The whole test split, and its non-target inputs (to be stamped). Filters score a prefix of each."""
        test = self.splits(seed).test
        return test.x, test.y, test.x[test.y != self.scenario.attack.target_class]

    # --- agents -----------------------------------------------------------
    def _host(self, role: str, agent: AgentLike) -> Any:
        """A fresh host for one side of one call sequence (a new process per craft, per deployment)."""
        if isinstance(agent, str):
            return open_host(role, agent, self.scenario.agent_params(role, agent), self.device, self.isolation,
                             self.scenario.budgets.memory_mb)
        return InProcessHost(role, type(agent).name, agent.get_params(), self.device, agent=agent)

    def card(self, role: str, agent: AgentLike) -> AgentCard:
        """An agent's name, version, category and parameters, read in its own host (once per named
        agent and referee: a file plugin edited meanwhile is read again, its source hash changed)."""
        key = None
        if isinstance(agent, str):
            digest = None
            if own_file(agent) is not None:
                try:
                    digest = hashlib.sha256(Path(own_file(agent)).read_bytes()).hexdigest()
                except OSError:
                    digest = None
            key = (role, canonical_spec(agent), digest)
            if key in self._cards:
                return self._cards[key]
        host = self._host(role, agent)
        try:
            card = host.card
        finally:
            host.close()
        if key is not None:
            self._cards[key] = card
        return card

    def _revealed(self, card: AgentCard, agent: AgentLike) -> tuple[RevealedDefender | None, str | None]:
        name = absolute_spec(agent) if isinstance(agent, str) else card.name  # built in the attacker's process
        params = card.params if isinstance(agent, str) else agent.get_params()
        return revealed_defender(self.scenario, name, card.category, card.version, params)

    def _attack_view(self, seed: int, rnd: int, attacker_name: str, revealed: RevealedDefender | None,
                     category: str | None, history: list[RoundRecord]) -> AttackContext:
        benign, _ = self.benign(seed)
        return attack_view(self.scenario, self.splits(seed), benign, self.trigger(seed), self.device,
                           secret_generator(self.key, seed, "attack", attacker_name, rnd), revealed, category, history)

    def _defense_view(self, seed: int, defender_name: str, label: str,
                      history: list[RoundRecord]) -> DefenseContext:
        return defense_view(self.scenario, self.splits(seed), self.device,
                            secret_generator(self.key, seed, "defense", defender_name, label), history)

    def _surrogate_view(self, seed: int, clean: Tensors, draw: int) -> DefenseContext:
        """The revealed defender's context for an adaptive attacker's surrogate: the attacker's clean data
        in place of the defender's set, the scenario's budgets, a generator from the attacker's draw."""
        return DefenseContext(scenario=defender_scenario(self.scenario), clean=clean, info=self.splits(seed).info,
                              device=self.device, generator=torch.Generator().manual_seed(draw), history=[])

    def _question_problem(self, seed: int, cmd: str, payload: Any) -> str | None:
        """Why an adaptive attacker's question about the revealed defender is malformed, or None."""
        info = self.splits(seed).info
        shape = (info.channels, info.size, info.size)

        def inputs(x: Any, most: int) -> str | None:
            if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != shape:
                return f"inputs must be N x {' x '.join(map(str, shape))}, got {tuple(getattr(x, 'shape', ()))}"
            if not 1 <= len(x) <= most:
                return f"{len(x)} inputs in one question (1 to {most})"
            if not x.is_floating_point() or not torch.isfinite(x).all():
                return "inputs must be finite floating-point values"
            return None

        if cmd in ("transform", "score"):
            return inputs(payload, 4096)
        if not (isinstance(payload, tuple) and len(payload) == 3):
            return "deploy takes (model, clean data, seed)"
        model, clean, draw = payload
        if not (isinstance(model, dict) and set(model) == {"arch", "state"} and isinstance(model["arch"], dict)
                and isinstance(model["state"], dict)
                and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model["state"].items())):
            return "the model must be {'arch': spec, 'state': tensors}"
        if not isinstance(clean, Tensors) or not isinstance(clean.y, torch.Tensor) or clean.y.dim() != 1 \
                or len(clean.y) != len(clean.x) or clean.y.dtype != torch.int64:
            return "the clean data must be Tensors with one int64 label per input"
        if clean.y.numel() and not (0 <= int(clean.y.min()) and int(clean.y.max()) < info.num_classes):
            return f"labels must lie in 0..{info.num_classes - 1}"
        if type(draw) is not int:
            return "the seed must be an integer"
        return inputs(clean.x, len(self.splits(seed).attacker))

    def _trojan(self, attacker: AgentLike, a_card: AgentCard, d_card: AgentCard, defender: AgentLike,
                seed: int, rnd: int, history: list[RoundRecord]) -> PlayedTrojan:
        """The round's trojan: from the cache, or crafted in the attacker's host (``AgentFault`` on failure)."""
        s = self.scenario
        _, benign_key = self.benign(seed)
        _, _, trig_x = self._scoring_inputs(seed)
        revealed, category = self._revealed(d_card, defender)
        fields: dict[str, Any] = {
            "kind": "trojan", "benign": benign_key, "attacker": a_card.identity(),
            "trigger": dataclasses.asdict(s.trigger), "attack": dataclasses.asdict(s.attack), "seed": seed,
        }
        if a_card.adaptive:
            fields["revealed"] = d_card.identity() if revealed is not None else category
            fields["round"] = rnd
            fields["history"] = [dataclasses.asdict(h) for h in history]
        key = key_of(fields)
        cached = self.cache.get("trojan", key)
        if cached is None and not self.make:
            raise NotCached(f"{a_card.name}'s trojan (seed {seed}, round {rnd}) is not in the cache")
        if cached is not None:
            self._say(f"trojan of {a_card.name} (seed {seed}) from cache")
            return self._cached_trojan(cached, trig_x)
        self._say(f"{a_card.name} crafts its trojan (seed {seed}, round {rnd})")
        torch.manual_seed(seed * 7919 + rnd)
        limit = s.budgets.craft_seconds
        host = self._host("attacker", attacker)
        relay = None
        if a_card.adaptive and revealed is not None and isinstance(defender, str):
            # The revealed defender answers the attacker from a sandboxed process of its own, within the
            # attacker's craft time (arena.engine.revealed); its code never runs in the attacker's process.
            relay = RevealedRelay(open_host=lambda: self._host("defender", defender),
                                  context=lambda clean, s_: self._surrogate_view(seed, clean, s_),
                                  check=lambda cmd, p: self._question_problem(seed, cmd, p), seconds=limit)
            host.on_ask = relay
        shared_key = None
        try:
            ctx = self._attack_view(seed, rnd, draw_label(a_card), revealed, category, history)
            if a_card.names_crafts:
                # The attacker names the craft it would make here; a craft of that name made for another
                # defender (same attacker, seed, round, history) is handed over instead of made again.
                t_key = time.perf_counter()
                named = host.call("craft_key", ctx, limit)
                limit = max(1.0, limit - (time.perf_counter() - t_key))
                if named is not None:
                    shared_key = key_of({**{k: v for k, v in fields.items() if k != "revealed"},
                                         "craft_name": named["name"]})
                    shared = self.cache.get("trojan", shared_key)
                    if shared is not None:
                        self._say(f"{a_card.name}'s craft '{named['name']}' (seed {seed}) from cache, made for "
                                  "another defender")
                        # Also under this match's key, with its notes: a replay, the report and `arena
                        # trigger show` find it there without asking the attacker again.
                        self.cache.put("trojan", key, {**shared, "notes": json.dumps(named["notes"], default=str)})
                        return self._cached_trojan(shared, trig_x, named["notes"])
            payload: TrojanPayload = host.call("craft", ctx, limit)
            if (payload.arch or {}).get("arch") == EXPORTED and not is_model_spec(a_card.name):
                # A program's graph is run here, by the referee: only a model file the user handed over
                # (model:PATH) may bring one; from an agent it would be a way to spend the referee's memory.
                raise AgentFault("attacker", a_card.name, "returned garbage",
                                 "an exported program as its trojan: only a model file (model:PATH) may be one")
            try:
                model = model_from_payload({"arch": payload.arch, "state": payload.state}, self.device)
            except Exception as exc:
                raise AgentFault("attacker", a_card.name, "returned garbage",
                                 f"a model the referee cannot rebuild from its spec ({type(exc).__name__}: {exc})")
            trig = None
            if payload.has_stamp_fn:
                stamped = host.call("stamp", trig_x, limit).to(self.device)
            else:
                try:
                    trig = Trigger.from_state(payload.trigger).to(self.device)
                except Exception as exc:
                    raise AgentFault("attacker", a_card.name, "returned garbage",
                                     f"a trigger the referee cannot read ({type(exc).__name__}: {exc})")
                problem = trigger_problem(trig, tuple(trig_x.shape[1:]))
                if problem is None:
                    stamped = trig.stamp(trig_x)
            if trig is None or problem is None:
                problem = trojan_problem(model, stamped, trig_x, self.splits(seed).info.num_classes)
            if problem is not None:
                raise AgentFault("attacker", a_card.name, "returned garbage", problem)
        finally:
            if relay is not None:
                relay.close()
            host.close()
        stored = {"arch": payload.arch, "state": payload.state, "notes": json.dumps(payload.notes, default=str)}
        if trig is not None:
            stored["trigger"] = trig.state()
        else:
            stored["stamped"] = stamped.detach().cpu()
        self.cache.put("trojan", key, stored)
        if shared_key is not None:
            self.cache.put("trojan", shared_key, stored)
        return PlayedTrojan(model, trig, stamped, payload.notes, False, payload.gpu_peak_mb)

    def _cached_trojan(self, cached: dict[str, Any], trig_x: torch.Tensor,
                       notes: dict[str, Any] | None = None) -> PlayedTrojan:
        """A stored trojan, with its own notes or (a craft shared between defenders) the asking match's."""
        model = model_from_payload(cached, self.device)
        trig = Trigger.from_state(cached["trigger"]).to(self.device) if "trigger" in cached else None
        stamped = cached["stamped"].to(self.device) if "stamped" in cached else trig.stamp(trig_x)
        return PlayedTrojan(model, trig, stamped, notes if notes is not None else json.loads(cached.get("notes", "{}")),
                            True)

    def craft(self, attacker: AgentLike, seed: int = 0, defender: AgentLike = "none", rnd: int = 1,
              history: list[RoundRecord] | None = None) -> PlayedTrojan:
        """The trojan ``attacker`` plays against ``defender`` in round ``rnd`` (from the cache when it was
        crafted before): for inspecting an attack outside a match."""
        # The same thread count as in a match, so a trojan crafted here has the bytes a match would cache.
        with pinned_threads(match_threads()):
            a_card, d_card = self.card("attacker", attacker), self.card("defender", defender)
            return self._trojan(attacker, a_card, d_card, defender, seed, rnd, list(history or []))

    def _deploy(self, defender: AgentLike, d_card: AgentCard, model: nn.Module, seed: int,
                history: list[RoundRecord], label: str) -> ServedDeployment:
        """Open a defender host and deploy on ``model``; the caller closes ``served.host``."""
        limit = self.scenario.budgets.deploy_seconds
        host = self._host("defender", defender)
        try:
            ctx = self._defense_view(seed, draw_label(d_card), label, history)
            torch.manual_seed(seed * 104_729 + len(history))
            t0 = time.perf_counter()
            summary = host.call("deploy", (_model_payload(model), ctx), limit)
            seconds = time.perf_counter() - t0
        except BaseException:
            host.close()
            raise
        return ServedDeployment(host, summary, seconds, limit, self.splits(seed).info.num_classes,
                                secret_generator(self.key, seed, "queries", draw_label(d_card), label),
                                model=model if summary.model_unchanged else None, say=self.progress)

    def _control(self, defender: AgentLike, d_card: AgentCard, seed: int) -> Control:
        """The defender on the seed's population of benign models, each in its own process: how many
        does it flag, what does it cost? A control run that fails is stored as such (``fault``) and
        loses the defender its matches."""
        population = self.scenario.controls.population
        eta = Eta(population)
        made: dict[int, dict[str, Any]] = {}
        pending = list(range(population))
        while pending:
            # A member another worker is making now waits its turn: the first matches of a seed all
            # meet the first inspector, and two workers then make different members side by side
            # instead of one idling on the other's locks for the whole population (minutes on CIFAR).
            i = self._free_member(d_card, seed, pending)
            pending.remove(i)
            made[i] = self._control_member(defender, d_card, seed, i)
            cached = made[i].pop("cached")  # how this run got it, not a property of the model: not stored
            if population > 1 and not cached:
                self._say(f"  {d_card.name} control (seed {seed}): {eta.status(len(made))} benign model(s)")
        members = [made[i] for i in range(population)]
        fault = next((m["fault"] for m in members if m.get("fault")), None)
        if fault:
            return Control(flagged=False, fpr=None, cad=0.0, fault=fault, population=len(members))
        fprs = [m["fpr"] for m in members if m["fpr"] is not None]
        first = members[0]
        return Control(
            flagged=bool(first["flagged"]), fpr=sum(fprs) / len(fprs) if fprs else None,
            cad=sum(m["cad"] for m in members) / len(members), suspected_target=first["suspected_target"],
            aiv=first["aiv"], population=len(members), flagged_models=sum(bool(m["flagged"]) for m in members),
            members=members,
        )

    def control_member(self, defender: AgentLike, seed: int, member: int) -> dict[str, Any]:
        """The defender on benign model ``member`` of ``seed``, as a match's control run records it
        (member 0 is the model attackers start from). Members past the scenario's population enlarge
        the pooled usability gate's sample (``arena.run.controls``); each is cached like a match's."""
        d_card = self.card("defender", defender)
        with self.stages("control"):
            out = self._control_member(defender, d_card, seed, member)
        out.pop("cached")
        return out

    def _control_key(self, d_card: AgentCard, benign_key: str, seed: int) -> str:
        return key_of({"kind": "control", "benign": benign_key, "defender": d_card.identity(),
                       "budgets": {"fpr": self.scenario.budgets.fpr},
                       "scoring": dataclasses.asdict(self.scenario.scoring), "seed": seed})

    def free_member(self, defender: AgentLike, seed: int, pending: list[int]) -> int:
        """Of the ``pending`` members of ``seed``'s benign population, the first that no other process is
        making now for this defender (else the first): workers that reach the same population, in
        matches or in ``arena controls``, then make different members side by side instead of each
        waiting on the other's locks, member by member."""
        return self._free_member(self.card("defender", defender), seed, pending)

    def _free_member(self, d_card: AgentCard, seed: int, pending: list[int]) -> int:
        return next((j for j in pending if not self._control_busy(d_card, seed, j)), pending[0])

    def _control_busy(self, d_card: AgentCard, seed: int, member: int) -> bool:
        """Whether another process is making this member's benign model or this defender's run on it."""
        benign_key = self._benign_key(seed, member)
        return self.cache.busy("benign", benign_key) or self.cache.busy(
            "control", self._control_key(d_card, benign_key, seed))

    def _control_member(self, defender: AgentLike, d_card: AgentCard, seed: int, member: int) -> dict[str, Any]:
        """The defender on one benign model of the population (cached per defender, model and scoring)."""
        benign, benign_key = self.benign(seed, member)
        key = self._control_key(d_card, benign_key, seed)

        def run() -> dict[str, Any]:
            which = f"seed {seed}" + (f", member {member}" if member else "")
            self._say(f"{d_card.name} control run on the benign model ({which})")
            try:
                with self.stages("deploy"):
                    served = self._deploy(defender, d_card, benign, seed, [], label=f"control{member or ''}")
            except AgentFault as fault:
                return {"control": json.dumps({"flagged": False, "fpr": None, "cad": 0.0, "fault": str(fault)})}
            try:
                # The questions of a match, so a deployment cannot tell a control from a match: the
                # clean inputs and as many stamped ones (the scenario's trigger), mixed, in the
                # same calls; only the clean answers count here.
                sc = self.scenario.scoring
                clean_x, clean_y, trig_x = self._scoring_inputs(seed)
                stamped = self.trigger(seed).to(self.device).stamp(trig_x)
                k = scored_prefix(len(clean_x), served.passes_per_input, sc.passes)
                if k < len(clean_x) or k < len(stamped):
                    clean_x, clean_y, stamped = clean_x[:k], clean_y[:k], stamped[:k]
                with self.stages("scoring"):
                    acc_b = (predict_proba(benign, clean_x).argmax(1) == clean_y).float().mean().item()
                    acc_d = acc_b  # a deployment on the untouched benign model predicts as it does
                    if served.model is None:
                        pred = served.predict(torch.cat([clean_x, stamped]))[: len(clean_x)]
                        acc_d = (pred.argmax(1) == clean_y).float().mean().item()
                    fpr = None
                    if served.score is not None and served.threshold is not None:
                        n = sc.inputs
                        scores, _ = stream_scores(served, clean_x[:n], stamped[:n], served.summary.batch_aware,
                                                  sc.trigger_share, sc.window)
                        fpr = (scores > served.threshold).float().mean().item()
                v = served.verdict
            except AgentFault as fault:
                return {"control": json.dumps({"flagged": False, "fpr": None, "cad": 0.0, "fault": str(fault)})}
            finally:
                served.host.close()
            flagged = bool(v.is_trojan) if v is not None else False
            target = v.target if v is not None else None
            aiv = (float(v.anomaly_index[target]) if v is not None and v.anomaly_index is not None
                   and target is not None else None)
            # The detector's own statistic over classes, for the detection ROC over models (arena.results.detection).
            aiv_max = (max(float(a) for a in v.anomaly_index) if v is not None and v.anomaly_index is not None
                       and len(v.anomaly_index) else None)
            return {"control": json.dumps({"flagged": flagged, "fpr": fpr, "cad": acc_b - acc_d,
                                           "suspected_target": target, "aiv": aiv, "aiv_max": aiv_max,
                                           "verdict": v is not None})}

        payload, hit = self.cache.get_or_make("control", key, run)
        return {"member": member, "fault": None, "suspected_target": None, "aiv": None,
                **json.loads(payload["control"]), "cached": hit}

    # --- a match ----------------------------------------------------------
    def play(self, attacker: AgentLike, defender: AgentLike, seed: int = 0,
             rounds: int | None = None) -> MatchResult:
        """Play a match. Every match runs on ``match_threads()`` CPU threads, so its bytes do not
        depend on how many matches run beside it (``arena.api.training.match_threads``)."""
        with pinned_threads(match_threads()):
            return self._play(attacker, defender, seed, rounds)

    def _attack_metrics(self, benign: nn.Module, trojan: PlayedTrojan, trig_x: torch.Tensor, clean_x: torch.Tensor,
                        clean_y: torch.Tensor) -> tuple[AttackMetrics, torch.Tensor | None, torch.Tensor | None]:
        """The trojan's attack metrics, measured once per trojan and seed and then read from the cache.

        A non-adaptive attacker's trojan meets every defender of a seed, and measuring it (the
        benign and the trojan model over the whole test set, clean and stamped, and the neuron
        separation) was most of a match's own time on cifar10-cnn. The key is the content of
        everything the measurement reads, so a hit is the same computation's result to the bit
        (same device type, thread count and torch), and a trojan rebuilt with other bytes is
        measured afresh."""
        s = self.scenario
        inputs = digest_tensors([*benign.state_dict().values(), *trojan.model.state_dict().values(),
                                 trig_x, trojan.stamped, clean_x, clean_y])
        key = key_of({"kind": "attack-metrics", "inputs": inputs, "target": s.attack.target_class,
                      "area": s.budgets.trigger_area, "linf": s.budgets.trigger_linf, "device": self.device.type,
                      "threads": torch.get_num_threads(), "torch": torch.__version__})

        def measure() -> dict[str, Any]:
            am, ok, probs = measure_attack(benign, trojan.model, trig_x, trojan.stamped, clean_x, clean_y,
                                           s.attack.target_class, s.budgets.trigger_area, s.budgets.trigger_linf)
            return {"attack": dataclasses.asdict(am), "trojan_clean_ok": None if ok is None else ok.cpu(),
                    "trojan_probs": None if probs is None else probs.cpu()}

        value, hit = self.cache.get_or_make("measure", key, measure)
        if hit:
            self._say("attack metrics of this trojan from cache")
        ok, probs = value["trojan_clean_ok"], value.get("trojan_probs")  # older entries hold no probabilities
        return (AttackMetrics(**value["attack"]), None if ok is None else ok.to(self.device),
                None if probs is None else probs.to(self.device))

    def _play(self, attacker: AgentLike, defender: AgentLike, seed: int, rounds: int | None) -> MatchResult:
        s = self.scenario
        a_card, d_card = self.card("attacker", attacker), self.card("defender", defender)
        rounds = rounds or s.rounds
        started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        t_start = time.perf_counter()
        history: list[RoundRecord] = []
        outcome = None
        metrics: dict[str, Any] = {}
        clean_x, clean_y, trig_x = self._scoring_inputs(seed)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        for rnd in range(1, rounds + 1):
            outcome, metrics, notes = self._round(attacker, defender, a_card, d_card, seed, rnd, history,
                                                  clean_x, clean_y, trig_x)
            history.append(RoundRecord(rnd, outcome.score, outcome.reason, metrics, notes))
            if "forfeit" in metrics:
                break  # a side that cannot play this round cannot play the next
        assert outcome is not None
        if self.device.type == "cuda" and "timing" in metrics:  # this process's share of the GPU
            metrics["timing"]["referee_gpu_peak_mb"] = gpu_peak_mb(self.device)
        record = MatchRecord(
            scenario=s.name, scenario_digest=s.digest, attacker=a_card.name, attacker_version=a_card.version,
            defender=d_card.name, defender_version=d_card.version, seed=seed, rounds=rounds, status="ok",
            outcome=outcome.score, reason=outcome.reason,
            metrics={**metrics, "environment": environment(self.device),
                     "sandbox": weakest(a_card.sandbox, d_card.sandbox), "key_id": key_id(self.key)},
            round_records=[json.loads(json.dumps(dataclasses.asdict(h), default=str)) for h in history],
            device=str(self.device), code_version=arena.__version__, started_at=started,
            duration_s=time.perf_counter() - t_start,
        )
        return MatchResult(record, history)

    def _round(self, attacker: AgentLike, defender: AgentLike, a_card: AgentCard, d_card: AgentCard, seed: int,
               rnd: int, history: list[RoundRecord], clean_x: torch.Tensor, clean_y: torch.Tensor,
               trig_x: torch.Tensor) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        s = self.scenario
        benign, _ = self.benign(seed)
        t0 = time.perf_counter()
        before = dict(self.stages.seconds)
        try:
            with self.stages("craft"):
                trojan = self._trojan(attacker, a_card, d_card, defender, seed, rnd, history)
        except AgentFault as fault:
            return (forfeit("attacker", str(fault)),
                    {"forfeit": {"side": "attacker", "kind": fault.kind, "message": fault.detail}}, {})
        craft_s = time.perf_counter() - t0
        with self.stages("measure"):
            am, trojan_clean_ok, trojan_probs = self._attack_metrics(benign, trojan, trig_x, clean_x, clean_y)
        timing: dict[str, Any] = {"craft_s": craft_s, "trojan_cached": trojan.cached}
        if trojan.gpu_peak_mb is not None:
            timing["craft_gpu_peak_mb"] = trojan.gpu_peak_mb
        if not am.finite:  # nothing to defend, nothing to measure: the trojan lost at its gate
            gate = attack_gate(am, s.budgets)
            timing["stages_s"] = self.stages.since(before)
            return gate, {"attack": dataclasses.asdict(am), "gate": gate.gate, "timing": timing,
                          "attacker_notes": trojan.notes}, dict(trojan.notes)
        # A trojan over its other gates (CAD, perturbation) still meets the defender, so every
        # match carries the defense metrics; decide() applies the gate.
        self._say(f"{d_card.name} deploys (round {rnd})")
        served = None
        try:
            with self.stages("deploy"):
                served = self._deploy(defender, d_card, trojan.model, seed, history, label=f"round{rnd}")
            if served.model is not None and trojan_probs is not None:  # the trojan's answers, measured once
                served.known = (torch.cat([clean_x, trojan.stamped]), trojan_probs)
            filtered = (f", its filter on the first {min(s.scoring.inputs, len(clean_x))} of each"
                        if served.score is not None else "")
            k = scored_prefix(len(clean_x), served.passes_per_input, s.scoring.passes)
            self._say(f"scoring {d_card.name} ({served.seconds:.1f} s to deploy): predictions on {k} clean and "
                      f"{min(k, len(trig_x))} trigger inputs{filtered}")
            with self.stages("scoring"):
                dm: DefenseMetrics = defense_metrics(
                    served, d_card.category or "none", trojan.model, trojan.trigger, am, clean_x, clean_y,
                    trojan.stamped, s.attack.target_class, served.seconds, filter_inputs=s.scoring.inputs,
                    max_passes=s.scoring.passes, batch_aware=served.summary.batch_aware,
                    trigger_share=s.scoring.trigger_share, window=s.scoring.window, progress=self.progress,
                    ref_clean_ok=trojan_clean_ok)
        except AgentFault as fault:
            return (forfeit("defender", str(fault)),
                    {"attack": dataclasses.asdict(am), "attacker_notes": trojan.notes, "timing": timing,
                     "forfeit": {"side": "defender", "kind": fault.kind, "message": fault.detail}},
                    dict(trojan.notes))
        finally:
            if served is not None:
                served.host.close()
        # Only a deployment that judges the model can flag benign ones: the model-level gate, the one
        # use of a control population in the outcome, does not apply to any other (docs/match.md).
        if served.verdict is not None:
            with self.stages("control"):
                control = self._control(defender, d_card, seed)
        else:
            control = Control(flagged=False, fpr=None, cad=0.0, population=0, flagged_models=0)
        if control.fault:
            outcome = forfeit("defender", f"control run: {control.fault}")
            forfeited = {"forfeit": {"side": "defender", "kind": "control", "message": control.fault}}
        else:
            outcome, forfeited = decide(am, dm, s.budgets), {}
        artifacts = (save_recovered_trigger(self.cache.root.parent, trojan.trigger, served.verdict)
                     if served.verdict is not None else {})
        timing["deploy_s"] = served.seconds
        timing["stages_s"] = self.stages.since(before)
        if served.summary.gpu_peak_mb is not None:
            timing["deploy_gpu_peak_mb"] = served.summary.gpu_peak_mb
        metrics = {
            "attack": dataclasses.asdict(am), "defense": dataclasses.asdict(dm),
            "control": dataclasses.asdict(control), "gate": outcome.gate, "timing": timing,
            "attacker_notes": trojan.notes, "defender_notes": served.notes, "artifacts": artifacts, **forfeited,
        }
        return outcome, metrics, dict(trojan.notes)
