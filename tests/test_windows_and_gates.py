"""Filters scored on traffic at the scenario's trigger share, and gates that allow for measurement error."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from arena.engine.metrics import AttackMetrics, DefenseMetrics, stream_scores
from arena.engine.outcome import decide
from arena.config.scenario import Budgets
from conftest import requires_fmnist


class Recorder:
    """A batch-aware 'filter' that records the windows it is asked to score (trigger inputs are all 1)."""

    def __init__(self) -> None:
        self.windows: list[torch.Tensor] = []

    def score(self, x: torch.Tensor) -> torch.Tensor:
        self.windows.append(x)
        return x.flatten(1).mean(1)


def test_batch_aware_filters_see_windows_at_the_trigger_share():
    clean, stamped = torch.zeros(50, 1, 4, 4), torch.ones(30, 1, 4, 4)
    rec = Recorder()
    sc, st = stream_scores(rec, clean, stamped, batch_aware=True, trigger_share=0.1, window=20)
    assert all(len(w) == 20 for w in rec.windows[:-1])
    assert [int(w.flatten(1).mean(1).sum()) for w in rec.windows] == [2] * 15  # 2 of 20 per window
    assert len(st) == 30 and (st == 1).all()  # every trigger input scored once
    assert len(sc) == 15 * 18 and (sc == 0).all()  # clean inputs fill the rest, reused cyclically
    per_input = Recorder()
    sc1, st1 = stream_scores(per_input, clean, stamped)
    assert len(per_input.windows) == 1 and len(sc1) == 50 and len(st1) == 30  # one call, each input once


@pytest.mark.slow
@requires_fmnist
def test_activation_clustering_keeps_its_fpr_budget_at_the_stated_share(referee, tiny):
    # On the benign model, windows holding 10% stamped inputs (no backdoor to find): AC's FPR on the
    # clean inputs of those windows stays in budget (a 50% share gave 8-14% in the old scoring). Its
    # threshold is a quantile of the calibration half of the clean set, and with the tiny scenario's
    # 400 clean images that half holds ~20 inputs a class: the FPR then swung from 0.01 to 0.26 with
    # the split alone (one referee key, three defender draws). The defender here holds 1700 clean
    # test inputs (disjoint from the 300 scored), nearer fmnist-cnn's set, where AC's FPR over the
    # 200 published matches was at most 0.06.
    from arena.engine.metrics import LocalDeployment
    from arena.api.models import clone
    from arena.api.protocol import DefenseContext
    from arena_agents.defenders.activation_clustering import ActivationClustering

    sp = referee.splits(0)
    benign, _ = referee.benign(0)
    clean = sp.test.subset(torch.arange(300, len(sp.test.x)))
    ctx = DefenseContext(scenario=tiny, clean=clean, info=sp.info, device=referee.device,
                         generator=torch.Generator().manual_seed(7))
    dep = LocalDeployment(ActivationClustering().deploy(clone(benign), ctx))
    _, _, trig_x = referee._scoring_inputs(0)
    stamped = referee.trigger(0).stamp(trig_x[:300])
    sc, _ = stream_scores(dep, sp.test.x[:300], stamped, batch_aware=True,
                          trigger_share=tiny.scoring.trigger_share, window=tiny.scoring.window)
    fpr = (sc > dep.threshold).float().mean().item()
    assert fpr <= tiny.budgets.fpr + tiny.budgets.fpr_tolerance, fpr


def _am(**kw):
    return dataclasses.replace(AttackMetrics(0.9, 0.9, 0.0, 0.95, 0.9, 0.8, 0.5, 0.0), **kw)


def _dm(**kw):
    base = dict(category="input_reformation", clean_acc=0.85, cad=0.0, ccc=0.8, asr=0.5, ard=0.45, tmc=0.9,
                effective_asr=0.5)
    return DefenseMetrics(**{**base, **kw})




@pytest.mark.parametrize("cad,se,gated", [
    (0.055, 0.010, False),  # over the 5-point budget, but within 1.645 standard errors of it
    (0.070, 0.010, True),   # over by 2 standard errors
    (0.055, 0.000, True),   # no measurement error claimed: a plain threshold
])
def test_the_defender_cad_gate_allows_for_measurement_error(cad, se, gated):
    o = decide(_am(), _dm(cad=cad, cad_se=se), Budgets())
    assert (o.gate == "defender") is gated


def test_fpr_and_attacker_gates_allow_for_measurement_error():
    near = _dm(category="input_filtering", fpr=0.08, fpr_se=0.012, tpr=0.5)
    assert decide(_am(), near, Budgets()).gate == "play"  # 8% vs 7% limit: 0.8 standard errors
    assert decide(_am(), near, Budgets(gate_z=0.0)).gate == "defender"
    assert decide(_am(cad=0.035, cad_se=0.004), _dm(), Budgets()).gate == "play"
    assert decide(_am(cad=0.05, cad_se=0.004), _dm(), Budgets()).gate == "attacker"
