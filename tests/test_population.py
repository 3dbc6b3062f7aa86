"""The defender's control on a population of benign models, and its model-level false-positive rate."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from arena.results.detection import detection_rocs
from arena.results.usability import usability
from arena.api.protocol import Defender, Deployment, Verdict
from arena.engine.referee import Referee
from arena.config.scenario import Controls
from conftest import requires_fmnist

pytestmark = pytest.mark.slow  # trains models: not in the fast lane (README)


class Paranoid(Defender):
    name = "paranoid"
    category = "model_inspection"

    def deploy(self, model, ctx):
        return Deployment(model=model, verdict=Verdict(is_trojan=True, target=0, anomaly_index=[3.0] + [0.0] * 9))


class Trusting(Defender):
    name = "trusting"
    category = "model_inspection"

    def deploy(self, model, ctx):
        return Deployment(model=model, verdict=Verdict(is_trojan=False, target=None, anomaly_index=[0.0] * 10))


@requires_fmnist
def test_controls_run_on_a_population_of_benign_models(tiny):
    sc = dataclasses.replace(tiny, controls=Controls(population=3))
    referee = Referee(sc, device="cpu")
    members = [referee.benign(0, i)[0] for i in range(3)]
    first = [m.state_dict()["fc.weight"] for m in members]
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[1], first[2])  # three models
    assert referee.benign(0, 0)[1] == Referee(tiny, device="cpu").benign(0)[1]  # member 0: the seed's model

    # A deployment that judges no model cannot flag a benign one: no control run, no population.
    plain = referee.play("badnet", "none", seed=0).record.metrics
    assert plain["control"]["population"] == 0 and not plain["control"]["members"]
    assert not any(k.startswith("control") for k in plain["timing"]["stages_s"])

    honest = referee.play("badnet", Trusting(), seed=0).record.metrics["control"]
    assert honest["population"] == 3 and honest["flagged_models"] == 0 and len(honest["members"]) == 3

    rec = referee.play("badnet", Paranoid(), seed=0).record
    c = rec.metrics["control"]
    # It flags the trojan too: the match is what its deployment earned (the model rejected, score 0), and
    # flagging every benign model makes it unusable over the scenario, not a winner or loser per match.
    assert c["flagged_models"] == 3 and rec.outcome == 0.0 and "inspection rejects the model" in rec.reason
    (judged,) = usability([rec], budget=0.05)
    assert (judged.defender, judged.flagged, judged.models, judged.usable) == ("paranoid", 3, 3, False)

    # The same matches as a detection problem over models: one trojan (flagged) against three benign
    # models (all flagged, at the same anomaly index 3): no threshold separates them.
    (roc,) = detection_rocs([rec])
    assert (roc.trojans, roc.benign, roc.flagged_trojans, roc.flagged_benign) == (1, 3, 1, 3)
    assert roc.auroc == 0.5 and roc.tpr_at_max_fpr == 0.0
    assert detection_rocs([referee.play("badnet", "none", seed=0).record]) == []  # no verdicts, no detector
