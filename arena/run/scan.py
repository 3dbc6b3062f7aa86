"""``arena scan MODEL``: is this model I was handed backdoored?

MODEL is a state dict for the scenario's architecture or a ``torch.export``
program (``.pt2``, any architecture: ``arena.api.exported`` reads it without
torch's loader, which would run code the file holds). The model is played as
an attacker (``model:PATH``, ``agents/attackers/given_model.py``), so it is
loaded and run only inside the agent sandbox (the referee and the defenders
rebuild an exported program from its bytes with the same reader), against
every model inspector of the scenario (the defenders of category
``model_inspection``). Each inspector's match also runs it on the scenario's
benign control population (``controls.population`` models of the same seed),
which calibrates it:

- **per inspector**: its own verdict, its anomaly index for the model, the
  benign models' indices, and the p-value of the model's index against them,
  ``(1 + #benign >= model) / (1 + n)`` (a rank test: with n benign models no
  p-value is below ``1 / (n + 1)``), its suspected target and recovered trigger;
- **combined**: Fisher's method over the inspectors' p-values (they are run on
  the same benign models, so not independent: a screen, not an exact test),
  and, where the store holds played matches of the scenario, a probability
  that the model is trojaned from a logistic regression on the inspectors'
  anomaly indices, fitted on the scenario's own trojans (every attacker but
  ``none``) and benign models (the control populations), cross-validated
  leave-one-seed-out, with its cross-entropy and ROC AUC (the TrojAI metrics)
  and seed-bootstrap intervals;
- **given the suspected trigger** (``--trigger T.npz``), every other defender
  that can say something about the model plays it too, its numbers read from
  its match (``Reading``): an input filter, the share of inputs stamped with
  that trigger it flags (TPR) at the false-positive rate it was calibrated to
  (the scenario's FPR budget; its measured FPR and AUROC beside it); a
  mitigation (a sanitizer that returns a repaired model, or an input
  reformer), how much of that trigger's ASR it removes (ARD: the model's ASR
  before and after, and the benign model's ASR with the same trigger, which
  is where a complete removal brings it) and the clean accuracy it costs
  (CAD). No control population runs for them (only a defender that judges a
  model can flag a benign one). Without a trigger they would measure only the
  scenario's own trigger, so they run only with ``--trigger``, or when named
  with ``-d``; the default scan plays the inspectors alone, and its report
  names the defenders a trigger would add.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from arena.config.scenario import Scenario
from arena.core.errors import ArenaError
from arena.results.record import MatchRecord

INSPECTION = "model_inspection"
# Defenders that speak about a model through its trigger: the share of stamped inputs a filter flags, the
# ASR a mitigation removes from the trigger. Category "none" says nothing about a model.
THROUGH_TRIGGER = ("input_filtering", "model_sanitization", "input_reformation")


@dataclass
class Finding:
    """One inspector's reading of the scanned model."""

    defender: str
    flagged: bool | None  # the inspector's own verdict (None: it failed on the model)
    anomaly_index: float | None
    suspected_target: int | None
    benign_indices: list[float]
    p_value: float | None
    trigger_pt: str | None = None  # the recovered trigger (mask, pattern), relative to the arena home
    fault: str | None = None


@dataclass
class Reading:
    """What a defender other than an inspector says about the model, measured with the trigger: an input
    filter's TPR on stamped inputs (``metric`` "TPR"), a mitigation's ARD (``metric`` "ARD"), with the
    numbers of its match they come from."""

    defender: str
    category: str
    metric: str  # "TPR" (input filters) or "ARD" (sanitizers and reformers)
    value: float | None
    asr: float | None = None  # the model's ASR with the trigger, undefended
    asr_after: float | None = None  # through the deployment (a filter's: its flags not applied)
    benign_asr: float | None = None  # the benign model's ASR with the same trigger (the base rate)
    cad: float | None = None  # clean accuracy the deployment costs (trojan's minus deployment's)
    fpr: float | None = None  # a filter's share of clean inputs flagged
    auroc: float | None = None  # a filter's separation of stamped from clean inputs
    effective_asr: float | None = None  # stamped inputs that pass the whole deployment and hit the target
    fault: str | None = None


@dataclass
class Calibration:
    """How the combined probability was calibrated, and how well it separates (out of fold)."""

    inspectors: list[str]
    trojans: int
    benign: int
    seeds: int
    auroc: float
    auroc_interval: tuple[float, float]
    cross_entropy: float
    cross_entropy_interval: tuple[float, float]
    source: str


@dataclass
class ScanReport:
    model: str
    sha256: str
    scenario: str
    digest: str
    seed: int
    findings: list[Finding]
    fisher_p: float | None
    probability: float | None = None
    calibration: Calibration | None = None
    notes: list[str] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)  # the other defenders, given the trigger
    trigger: str | None = None  # the suspected trigger's path (None: the scenario's)
    target_class: int | None = None  # the class every ASR is measured towards
    would_run: list[str] = field(default_factory=list)  # defenders a trigger would add ("category: name")

    @property
    def verdict(self) -> str:
        if self.probability is not None:
            return "trojaned" if self.probability >= 0.5 else "clean"
        if self.fisher_p is not None:
            return "trojaned" if self.fisher_p < 0.05 else "no evidence of a backdoor"
        return "undecided"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["verdict"] = self.verdict
        return d


def rank_p_value(value: float, benign: list[float]) -> float:
    """``(1 + #benign >= value) / (1 + n)``: exact for a model exchangeable with the benign ones."""
    return (1 + sum(b >= value for b in benign)) / (1 + len(benign))


def fisher(p_values: list[float]) -> float | None:
    """Fisher's combined p-value (chi-squared with 2k degrees of freedom)."""
    if not p_values:
        return None
    from scipy.stats import chi2  # scikit-learn's dependency; a function scipy does better than we would

    return float(chi2.sf(-2.0 * sum(math.log(p) for p in p_values), 2 * len(p_values)))


def _feature(aiv: float) -> float:
    # Anomaly indices span orders of magnitude (a trojan's can be 10^3); a signed log keeps one
    # inspector's outlier from deciding the fit.
    return math.copysign(math.log1p(abs(aiv)), aiv)


def calibration_rows(records: Iterable[MatchRecord], inspectors: list[str]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feature rows (one signed-log anomaly index per inspector), labels (1 trojan) and seeds, from
    played matches: a trojan per (attacker, seed) from its matches against the inspectors, a benign
    model per (seed, control member). Models some inspector has no index for are left out."""
    rows: dict[tuple[Any, ...], dict[str, float]] = {}
    for r in records:
        if r.status != "ok" or r.defender not in inspectors:
            continue
        m = r.metrics or {}
        aiv = (m.get("defense") or {}).get("aiv")
        if r.attacker != "none" and aiv is not None:
            rows.setdefault(("trojan", r.attacker, r.seed), {})[r.defender] = float(aiv)
        for member in (m.get("control") or {}).get("members") or []:
            if member.get("aiv") is not None:
                rows.setdefault(("benign", r.seed, member.get("member")), {})[r.defender] = float(member["aiv"])
    keep = [(k, v) for k, v in sorted(rows.items(), key=lambda kv: str(kv[0])) if all(d in v for d in inspectors)]
    x = np.array([[_feature(v[d]) for d in inspectors] for _, v in keep], dtype=float).reshape(-1, len(inspectors))
    y = np.array([k[0] == "trojan" for k, _ in keep], dtype=int)
    seeds = np.array([k[2] if k[0] == "trojan" else k[1] for k, _ in keep], dtype=int)
    return x, y, seeds


def _fit(x: np.ndarray, y: np.ndarray) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000)).fit(x, y)


def calibrate(x: np.ndarray, y: np.ndarray, seeds: np.ndarray, source: str, inspectors: list[str],
              bootstrap: int = 1000) -> tuple[Any, Calibration] | None:
    """The fitted model (all rows) and its leave-one-seed-out AUROC and cross-entropy, with 95%
    percentile intervals from resampling seeds. None without two seeds and both classes."""
    from sklearn.metrics import log_loss, roc_auc_score

    groups = sorted(set(seeds.tolist()))
    if len(groups) < 2 or len(set(y.tolist())) < 2:
        return None
    oof = np.full(len(y), np.nan)
    for g in groups:
        test = seeds == g
        train = ~test
        if len(set(y[train].tolist())) < 2:
            return None
        oof[test] = _fit(x[train], y[train]).predict_proba(x[test])[:, 1]
    eps = 1e-6
    p = np.clip(oof, eps, 1 - eps)
    auc, ce = float(roc_auc_score(y, p)), float(log_loss(y, p, labels=[0, 1]))
    rng = np.random.default_rng(0)
    aucs, ces = [], []
    by_seed = {g: np.flatnonzero(seeds == g) for g in groups}
    for _ in range(bootstrap):
        idx = np.concatenate([by_seed[g] for g in rng.choice(groups, size=len(groups))])
        if len(set(y[idx].tolist())) < 2:
            continue
        aucs.append(roc_auc_score(y[idx], p[idx]))
        ces.append(log_loss(y[idx], p[idx], labels=[0, 1]))
    ci = (lambda v: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))))
    cal = Calibration(inspectors=list(inspectors), trojans=int(y.sum()), benign=int((1 - y).sum()),
                      seeds=len(groups), auroc=auc, auroc_interval=ci(aucs), cross_entropy=ce,
                      cross_entropy_interval=ci(ces), source=source)
    return _fit(x, y), cal


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def calibration_matches(scenario: Scenario, files: Iterable[Path] = (), store: Any = None
                        ) -> tuple[list[MatchRecord], str]:
    """Played matches of ``scenario`` (its digest) to calibrate on: the store's, and those of ``files``
    (``.matches.jsonl.gz``, e.g. a published leaderboard's). Returns them and a line saying whence."""
    from arena.results.io import read_jsonl_gz

    found: list[MatchRecord] = []
    whence: list[str] = []
    if store is not None:
        mine = store.matches(digest=scenario.digest, status="ok")
        if mine:
            found += mine
            whence.append(f"{len(mine)} stored matches")
    for f in files:
        recs = [r for r in read_jsonl_gz(Path(f)) if r.scenario_digest == scenario.digest and r.status == "ok"]
        if recs:
            found += recs
            whence.append(f"{len(recs)} matches of {Path(f).name}")
    return found, f"{scenario.name} ({', '.join(whence)})" if whence else ""


def scan(scenario: Scenario, model: Path, *, seed: int | None = None, defenders: list[str] | None = None,
         trigger: Path | None = None, target: int | None = None, population: int | None = None,
         calibration_records: list[MatchRecord] | None = None, calibration_source: str = "",
         device: str = "auto", progress: Callable[[str], None] | None = None,
         isolation: str = "process") -> ScanReport:
    """Play ``model`` against every inspector of ``scenario`` and combine their readings.

    ``population`` overrides ``controls.population`` (benign models each inspector is calibrated
    on): n models floor each rank p-value at 1 / (n + 1). ``trigger``: an ``.npz`` (mask, pattern)
    the model is suspected to answer to, for the attack metrics of the matches; given one, the input
    filters and mitigations play the model too (``Reading``); ``target``: the class it is suspected to
    send stamped inputs to (default the scenario's ``attack.target_class``), which every ASR is measured
    towards. ``defenders`` names whom to run instead (inspectors, filters and mitigations alike)."""
    from arena.engine.referee import Referee

    model = Path(model).resolve()
    if not model.is_file():
        raise ArenaError(f"model file not found: {model}", hint="arena scan PATH/TO/model.pt -s SCENARIO")
    inspectors, others, would_run, skipped = _cast(scenario, defenders, trigger is not None, isolation)
    if not inspectors and not others:
        raise ArenaError("no model inspector is installed" if defenders is None
                         else f"none of {', '.join(defenders)} says anything about a model",
                         hint="arena agents list shows the defenders and their categories")
    seed = scenario.seeds[0] if seed is None else seed
    spec = f"model:{model}"
    played = scenario
    if trigger is not None:  # the model's own trigger, if the user knows it (agents/attackers/given_model.py)
        played = dataclasses.replace(played, attackers={**played.attackers, spec: {"trigger": str(Path(trigger).resolve())}})
    if population is not None:
        played = dataclasses.replace(played, controls=dataclasses.replace(played.controls, population=population))
    if target is not None:
        played = dataclasses.replace(played, attack=dataclasses.replace(played.attack, target_class=target))
    referee = Referee(played, device=device, progress=progress, isolation=isolation)
    classes = referee.splits(seed).info.num_classes
    if not 0 <= played.attack.target_class < classes:
        raise ArenaError(f"target class {played.attack.target_class} is not one of the scenario's {classes} classes",
                         hint=f"--target takes a class in 0..{classes - 1}")

    def play(d: str) -> MatchRecord:
        if progress:
            progress(f"scan: {d}")
        return referee.play(spec, d, seed=seed).record

    findings = [_finding(play(d), d) for d in inspectors]
    readings = [_reading(play(d), d, category) for d, category in others]
    p_values = [f.p_value for f in findings if f.p_value is not None]
    report = ScanReport(model=str(model), sha256=file_sha256(model), scenario=scenario.name,
                        digest=referee.scenario.digest, seed=seed, findings=findings, fisher_p=fisher(p_values),
                        readings=readings, trigger=str(Path(trigger).resolve()) if trigger is not None else None,
                        target_class=played.attack.target_class, would_run=would_run)
    if findings:
        _calibrate(report, calibration_records, calibration_source)
    if any(f.benign_indices and len(f.benign_indices) < 19 for f in findings):
        n = min(len(f.benign_indices) for f in findings if f.benign_indices)
        report.notes.append(f"each p-value ranks the model among {n} benign model(s): none can fall below "
                            f"1/{n + 1} = {1 / (n + 1):.2f} (controls.population sets n)")
    if readings and trigger is None:
        report.notes.append(f"{', '.join(r.defender for r in readings)} measured the scenario's own trigger "
                            "(no --trigger): their numbers say whether that trigger works on the model, not "
                            "whether the model has a backdoor of its own")
    if skipped:
        report.notes.append(f"{', '.join(skipped)} left out: a defender of category 'none' says nothing about a model")
    return report


def _cast(scenario: Scenario, named: list[str] | None, have_trigger: bool, isolation: str
          ) -> tuple[list[str], list[tuple[str, str]], list[str], list[str]]:
    """Who plays the model: the inspectors, the (defender, category) pairs that speak through the trigger,
    those a trigger would add (as "category: name"), and named defenders that say nothing about a model.
    By default the inspectors, and the others only given a trigger (they would measure the scenario's)."""
    from arena.engine.hosts import describe
    from arena.plugins import discover

    pool = list(discover("defender")) if named is None else list(named)
    category = {d: describe("defender", d, scenario.agent_params("defender", d), isolation).category for d in pool}
    inspectors = [d for d in pool if category[d] == INSPECTION]
    through = [(d, category[d]) for d in pool if category[d] in THROUGH_TRIGGER]
    skipped = [d for d in pool if d not in inspectors and category[d] not in THROUGH_TRIGGER]
    if named is None and not have_trigger:
        return inspectors, [], [f"{c}: {d}" for d, c in through], []
    return inspectors, through, [], skipped if named is not None else []


def _calibrate(report: ScanReport, records: list[MatchRecord] | None, source: str) -> None:
    """The probability that the model is trojaned, from the inspectors' anomaly indices (``calibrate``)."""
    if not records:
        report.notes.append("no probability: no played matches of this scenario to calibrate on "
                            "(play a tournament, or pass --calibration FILE.jsonl.gz)")
        return
    inspectors = [f.defender for f in report.findings if f.anomaly_index is not None]
    x, y, seeds = calibration_rows(records, inspectors)
    fitted = calibrate(x, y, seeds, source, inspectors) if inspectors else None
    if fitted is None:
        report.notes.append("no probability: the calibration matches lack two seeds with both trojans and "
                            "benign models read by every inspector")
        return
    clf, report.calibration = fitted
    row = np.array([[_feature(f.anomaly_index) for f in report.findings if f.anomaly_index is not None]])
    report.probability = float(clf.predict_proba(row)[0, 1])


def _reading(rec: MatchRecord, defender: str, category: str) -> Reading:
    """A filter's or a mitigation's numbers, as its match with the model stored them."""
    metric = "TPR" if category == "input_filtering" else "ARD"
    fault = _fault(rec)
    if fault is not None:
        return Reading(defender, category, metric, None, fault=fault)
    m = rec.metrics or {}
    a, d = m.get("attack") or {}, m.get("defense") or {}
    return Reading(defender=defender, category=category, metric=metric,
                   value=d.get("tpr") if metric == "TPR" else d.get("ard"), asr=a.get("asr"),
                   asr_after=d.get("asr"), benign_asr=a.get("base_rate"), cad=d.get("cad"), fpr=d.get("fpr"),
                   auroc=d.get("auroc"), effective_asr=d.get("effective_asr"))


def _fault(rec: MatchRecord) -> str | None:
    """Why a match says nothing of the model: it did not finish, or a side forfeited (the model does not
    load, the defender failed on it); None when it played."""
    if rec.status != "ok":
        return rec.error or rec.reason
    f = (rec.metrics or {}).get("forfeit")
    return f"{f.get('side')}: {f.get('message')}" if isinstance(f, dict) else None


def _finding(rec: MatchRecord, defender: str) -> Finding:
    fault = _fault(rec)
    if fault is not None:
        return Finding(defender, None, None, None, [], None, fault=fault)
    m = rec.metrics or {}
    d, c = m.get("defense") or {}, m.get("control") or {}
    aiv = d.get("aiv")
    benign = [float(x["aiv"]) for x in c.get("members") or [] if x.get("aiv") is not None]
    return Finding(
        defender=defender, flagged=d.get("flagged"), anomaly_index=None if aiv is None else float(aiv),
        suspected_target=d.get("suspected_target"), benign_indices=benign,
        p_value=rank_p_value(float(aiv), benign) if aiv is not None and benign else None,
        trigger_pt=(m.get("artifacts") or {}).get("recovered_trigger_pt"))
