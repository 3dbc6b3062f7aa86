"""The referee: plays one match (attacker x defender x scenario x seed, R rounds).

Per round: the attacker crafts a trojan (seeing the revealed defender and the
history), the defender deploys on it, and the referee scores the deployment on
held-out test inputs and applies the outcome rule. The match's outcome is its
last round's; every round is kept.

Caching (``arena.cache``): the benign model once per scenario training setting
and seed; a non-adaptive trojan once per attacker, scenario and seed; the
defender's control run on the benign model once per defender, scenario and
seed. Adaptive trojans are cached too, keyed by the revealed defender and the
round history as well.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import arena
from arena.artifacts import save_recovered_trigger
from arena.cache import ArtifactCache, key_of
from arena.data import Splits, make_splits
from arena.metrics import AttackMetrics, DefenseMetrics, attack_metrics, defense_metrics, scored_prefix
from arena.models import ArchSpec, build_model, clone
from arena.outcome import Control, decide
from arena.plugins import agent_name, make_agent
from arena.protocol import (AttackContext, Attacker, DefenseContext, Defender, RoundRecord, Trojan)
from arena.scenario import Scenario
from arena.store import MatchRecord
from arena.training import Progress, fit, predict_proba, resolve_device
from arena.triggers import Trigger, make_trigger


@dataclass
class MatchResult:
    record: MatchRecord
    rounds: list[RoundRecord] = field(default_factory=list)


def _generator(seed: int, *labels: Any) -> torch.Generator:
    digest = hashlib.sha256(json.dumps([seed, *labels], default=str).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:6], "big"))


def _benign_fields(s: Scenario, seed: int) -> dict[str, Any]:
    # The attacker's re-training budget does not shape the benign model: leave it out of the key.
    training = {k: v for k, v in dataclasses.asdict(s.training).items() if not k.startswith("retrain_")}
    return {"kind": "benign", "dataset": s.dataset, "arch": s.architecture,
            "training": training, "data": dataclasses.asdict(s.data), "seed": seed}


def _model_payload(model: nn.Module) -> dict[str, Any]:
    return {"arch": model.spec.to_dict(), "state": {k: v.detach().cpu() for k, v in model.state_dict().items()}}


def _model_from_payload(payload: dict[str, Any], device: torch.device) -> nn.Module:
    model = build_model(ArchSpec.from_dict(payload["arch"]))
    model.load_state_dict(payload["state"])
    return model.to(device).eval()


def _agent_id(agent: Any) -> dict[str, Any]:
    return {"name": agent_name(agent), "version": type(agent).version, "params": agent.get_params()}


class Referee:
    """Plays matches of one scenario on one device, sharing data and cache across them."""

    def __init__(self, scenario: Scenario, device: str = "auto", cache: ArtifactCache | None = None,
                 progress: Progress | None = None) -> None:
        self.scenario = scenario
        self.device = resolve_device(device if device != "auto" else scenario.device)
        self.cache = cache or ArtifactCache()
        self.progress = progress
        self._splits: dict[int, Splits] = {}
        self._benign: dict[int, tuple[nn.Module, str]] = {}

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
        return make_trigger(self.scenario.trigger, sp.info.channels, sp.info.size, _generator(seed, "trigger"))

    def benign(self, seed: int) -> tuple[nn.Module, str]:
        """The benign model of this seed (trained once, then from the cache) and its cache key."""
        if seed in self._benign:
            return self._benign[seed]
        s, sp = self.scenario, self.splits(seed)
        key = key_of(_benign_fields(s, seed))

        def train() -> dict[str, Any]:
            self._say(f"training the benign {s.architecture} on {s.dataset} (seed {seed})")
            torch.manual_seed(seed)
            info = sp.info
            model = build_model(ArchSpec(s.architecture, info.channels, info.size, info.num_classes,
                                         info.mean, info.std)).to(self.device)
            t = s.training
            fit(model, sp.attacker.x, sp.attacker.y, epochs=t.epochs, batch_size=t.batch_size, lr=t.lr,
                optimizer=t.optimizer, momentum=t.momentum, weight_decay=t.weight_decay, augment=t.augment,
                generator=_generator(seed, "benign"), progress=self.progress, label="benign")
            return _model_payload(model)

        payload, hit = self.cache.get_or_make("benign", key, train)
        if hit:
            self._say(f"benign model (seed {seed}) from cache")
        self._benign[seed] = (_model_from_payload(payload, self.device), key)
        return self._benign[seed]

    def _scoring_inputs(self, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The whole test split, and its non-target inputs (to be stamped). Filters score a prefix of each."""
        test = self.splits(seed).test
        return test.x, test.y, test.x[test.y != self.scenario.attack.target_class]

    # --- agents -----------------------------------------------------------
    def _revealed(self, defender: Defender) -> tuple[Defender | None, str | None]:
        reveal = self.scenario.threat.reveal
        if reveal == "full":
            return defender, defender.category
        if reveal == "category":
            return None, defender.category
        return None, None

    def _craft(self, attacker: Attacker, defender: Defender, seed: int, rnd: int,
               history: list[RoundRecord]) -> tuple[Trojan, bool]:
        s, sp = self.scenario, self.splits(seed)
        benign, benign_key = self.benign(seed)
        revealed, category = self._revealed(defender)
        fields: dict[str, Any] = {
            "kind": "trojan", "benign": benign_key, "attacker": _agent_id(attacker),
            "trigger": dataclasses.asdict(s.trigger), "attack": dataclasses.asdict(s.attack), "seed": seed,
        }
        if attacker.adaptive:
            fields["revealed"] = _agent_id(revealed) if revealed is not None else category
            fields["round"] = rnd
            fields["history"] = [dataclasses.asdict(h) for h in history]
        key = key_of(fields)
        cached = self.cache.get("trojan", key)
        if cached is not None:
            self._say(f"trojan of {agent_name(attacker)} (seed {seed}) from cache")
            trig = Trigger.from_state(cached["trigger"]).to(self.device) if "trigger" in cached else None
            return Trojan(_model_from_payload(cached, self.device), trig,
                          notes=json.loads(cached.get("notes", "{}"))), True
        self._say(f"{agent_name(attacker)} crafts its trojan (seed {seed}, round {rnd})")
        torch.manual_seed(seed * 7919 + rnd)
        ctx = AttackContext(
            scenario=s, data=sp.attacker, validation=sp.validation, benign=clone(benign),
            trigger=self.trigger(seed).to(self.device), info=sp.info, device=self.device,
            generator=_generator(seed, "attack", agent_name(attacker), rnd), defender=revealed,
            defender_category=category, history=list(history), progress=self.progress,
        )
        trojan = attacker.craft(ctx)
        if not isinstance(trojan, Trojan):
            raise TypeError(f"attacker '{agent_name(attacker)}' returned {type(trojan).__name__}, not a Trojan")
        trojan.model.eval()
        if trojan.stamp_fn is None and trojan.trigger is not None:
            payload = _model_payload(trojan.model)
            payload["trigger"] = trojan.trigger.state()
            payload["notes"] = json.dumps(trojan.notes, default=str)
            self.cache.put("trojan", key, payload)
        return trojan, False

    def _control(self, defender: Defender, seed: int) -> Control:
        """The defender on the benign model: does it flag a clean model, what does it cost?"""
        benign, benign_key = self.benign(seed)
        key = key_of({"kind": "control", "benign": benign_key, "defender": _agent_id(defender),
                      "budgets": dataclasses.asdict(self.scenario.budgets),
                      "scoring": dataclasses.asdict(self.scenario.scoring), "seed": seed})

        def run() -> dict[str, Any]:
            self._say(f"{agent_name(defender)} control run on the benign model (seed {seed})")
            dep, _ = self._deploy(defender, clone(benign), seed, [], label="control")
            clean_x, clean_y, _ = self._scoring_inputs(seed)
            k = scored_prefix(len(clean_x), dep.passes_per_input, self.scenario.scoring.passes)
            clean_x, clean_y = clean_x[:k], clean_y[:k]
            xin = dep.transform(clean_x) if dep.transform is not None else clean_x
            acc_b = (predict_proba(benign, clean_x).argmax(1) == clean_y).float().mean().item()
            acc_d = (predict_proba(dep.model, xin).argmax(1) == clean_y).float().mean().item()
            fpr = None
            if dep.score is not None and dep.threshold is not None:
                n = self.scenario.scoring.inputs
                fpr = (dep.score(clean_x[:n]) > dep.threshold).float().mean().item()
            v = dep.verdict
            flagged = bool(v.is_trojan) if v is not None else False
            target = v.target if v is not None else None
            aiv = (float(v.anomaly_index[target]) if v is not None and v.anomaly_index is not None
                   and target is not None else None)
            return {"control": json.dumps({"flagged": flagged, "fpr": fpr, "cad": acc_b - acc_d,
                                           "suspected_target": target, "aiv": aiv})}

        payload, _ = self.cache.get_or_make("control", key, run)
        return Control(**json.loads(payload["control"]))

    def _deploy(self, defender: Defender, model: nn.Module, seed: int, history: list[RoundRecord],
                label: str) -> tuple[Any, float]:
        sp = self.splits(seed)
        ctx = DefenseContext(scenario=self.scenario, clean=sp.defender, info=sp.info, device=self.device,
                             generator=_generator(seed, "defense", agent_name(defender), label),
                             history=list(history), progress=self.progress)
        torch.manual_seed(seed * 104_729 + len(history))
        t0 = time.perf_counter()
        dep = defender.deploy(model, ctx)
        return dep, time.perf_counter() - t0

    # --- a match ----------------------------------------------------------
    def play(self, attacker: Attacker | str, defender: Defender | str, seed: int = 0,
             rounds: int | None = None) -> MatchResult:
        s = self.scenario
        if isinstance(attacker, str):
            attacker = make_agent("attacker", attacker, s.agent_params("attacker", attacker))
        if isinstance(defender, str):
            defender = make_agent("defender", defender, s.agent_params("defender", defender))
        rounds = rounds or s.rounds
        started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        t_start = time.perf_counter()
        history: list[RoundRecord] = []
        outcome = None
        metrics: dict[str, Any] = {}
        clean_x, clean_y, trig_x = self._scoring_inputs(seed)
        for rnd in range(1, rounds + 1):
            benign, _ = self.benign(seed)
            t0 = time.perf_counter()
            trojan, cached = self._craft(attacker, defender, seed, rnd, history)
            craft_s = time.perf_counter() - t0
            am: AttackMetrics = attack_metrics(benign, trojan, clean_x, clean_y, trig_x, s.attack.target_class)
            self._say(f"{agent_name(defender)} deploys (round {rnd})")
            dep, deploy_s = self._deploy(defender, clone(trojan.model), seed, history, label=f"round{rnd}")
            dm: DefenseMetrics = defense_metrics(dep, defender.category, trojan, am, clean_x, clean_y,
                                                 trig_x, s.attack.target_class, deploy_s,
                                                 filter_inputs=s.scoring.inputs, max_passes=s.scoring.passes)
            control = self._control(defender, seed)
            outcome = decide(am, dm, control, s.budgets)
            artifacts = (save_recovered_trigger(self.cache.root.parent, trojan.trigger, dep.verdict)
                         if dep.verdict is not None else {})
            metrics = {
                "attack": dataclasses.asdict(am), "defense": dataclasses.asdict(dm),
                "control": dataclasses.asdict(control), "gate": outcome.gate,
                "timing": {"craft_s": craft_s, "trojan_cached": cached, "deploy_s": deploy_s},
                "attacker_notes": trojan.notes, "defender_notes": dep.notes, "artifacts": artifacts,
            }
            history.append(RoundRecord(rnd, outcome.score, outcome.reason, metrics, dict(trojan.notes)))
        assert outcome is not None
        record = MatchRecord(
            scenario=s.name, scenario_digest=s.digest, attacker=agent_name(attacker),
            attacker_version=type(attacker).version, defender=agent_name(defender),
            defender_version=type(defender).version, seed=seed, rounds=rounds, status="ok",
            outcome=outcome.score, reason=outcome.reason, metrics=metrics,
            round_records=[json.loads(json.dumps(dataclasses.asdict(h), default=str)) for h in history],
            device=str(self.device), code_version=arena.__version__, started_at=started,
            duration_s=time.perf_counter() - t_start,
        )
        return MatchResult(record, history)
