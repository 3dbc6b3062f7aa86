"""``arena scan MODEL``: is this model I was handed backdoored?

The model is played as an attacker (``model:PATH``, ``agents/attackers/given_model.py``),
so it is loaded and run only inside the agent sandbox, against every model
inspector of the scenario (the defenders of category ``model_inspection``).
Each inspector's match also runs it on the scenario's benign control population
(``controls.population`` models of the same seed), which calibrates it:

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
  and seed-bootstrap intervals.
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
         trigger: Path | None = None, population: int | None = None,
         calibration_records: list[MatchRecord] | None = None, calibration_source: str = "",
         device: str = "auto", progress: Callable[[str], None] | None = None,
         isolation: str = "process") -> ScanReport:
    """Play ``model`` against every inspector of ``scenario`` and combine their readings.

    ``population`` overrides ``controls.population`` (benign models each inspector is calibrated
    on): n models floor each rank p-value at 1 / (n + 1). ``trigger``: an ``.npz`` (mask, pattern)
    the model is suspected to answer to, for the attack metrics of the matches."""
    from arena.engine.hosts import describe
    from arena.engine.referee import Referee
    from arena.plugins import discover

    model = Path(model).resolve()
    if not model.is_file():
        raise ArenaError(f"model file not found: {model}", hint="arena scan PATH/TO/model.pt -s SCENARIO")
    if defenders is None:
        defenders = [d for d in discover("defender")
                     if describe("defender", d, scenario.agent_params("defender", d), isolation).category == INSPECTION]
    if not defenders:
        raise ArenaError("no model inspector is installed", hint="arena agents list shows the defenders")
    seed = scenario.seeds[0] if seed is None else seed
    spec = f"model:{model}"
    played = scenario
    if trigger is not None:  # the model's own trigger, if the user knows it (agents/attackers/given_model.py)
        played = dataclasses.replace(played, attackers={**played.attackers, spec: {"trigger": str(Path(trigger).resolve())}})
    if population is not None:
        played = dataclasses.replace(played, controls=dataclasses.replace(played.controls, population=population))
    referee = Referee(played, device=device, progress=progress, isolation=isolation)
    findings: list[Finding] = []
    for d in defenders:
        if progress:
            progress(f"scan: {d}")
        rec = referee.play(spec, d, seed=seed).record
        findings.append(_finding(rec, d))
    p_values = [f.p_value for f in findings if f.p_value is not None]
    report = ScanReport(model=str(model), sha256=file_sha256(model), scenario=scenario.name,
                        digest=referee.scenario.digest, seed=seed, findings=findings, fisher_p=fisher(p_values))
    if calibration_records:
        inspectors = [f.defender for f in findings if f.anomaly_index is not None]
        x, y, seeds = calibration_rows(calibration_records, inspectors)
        fitted = calibrate(x, y, seeds, calibration_source, inspectors) if inspectors else None
        if fitted is None:
            report.notes.append("no probability: the calibration matches lack two seeds with both trojans and "
                                "benign models read by every inspector")
        else:
            clf, report.calibration = fitted
            row = np.array([[_feature(f.anomaly_index) for f in findings if f.anomaly_index is not None]])
            report.probability = float(clf.predict_proba(row)[0, 1])
    else:
        report.notes.append("no probability: no played matches of this scenario to calibrate on "
                            "(play a tournament, or pass --calibration FILE.jsonl.gz)")
    if any(f.benign_indices and len(f.benign_indices) < 19 for f in findings):
        n = min(len(f.benign_indices) for f in findings if f.benign_indices)
        report.notes.append(f"each p-value ranks the model among {n} benign model(s): none can fall below "
                            f"1/{n + 1} = {1 / (n + 1):.2f} (controls.population sets n)")
    return report


def _finding(rec: MatchRecord, defender: str) -> Finding:
    m = rec.metrics or {}
    if rec.status != "ok":
        return Finding(defender, None, None, None, [], None, fault=rec.error or rec.reason)
    if isinstance(m.get("forfeit"), dict):  # the model does not load, or the inspector failed on it
        f = m["forfeit"]
        return Finding(defender, None, None, None, [], None, fault=f"{f.get('side')}: {f.get('message')}")
    d, c = m.get("defense") or {}, m.get("control") or {}
    aiv = d.get("aiv")
    benign = [float(x["aiv"]) for x in c.get("members") or [] if x.get("aiv") is not None]
    return Finding(
        defender=defender, flagged=d.get("flagged"), anomaly_index=None if aiv is None else float(aiv),
        suspected_target=d.get("suspected_target"), benign_indices=benign,
        p_value=rank_p_value(float(aiv), benign) if aiv is not None and benign else None,
        trigger_pt=(m.get("artifacts") or {}).get("recovered_trigger_pt"))
