"""End to end: a real (tiny) match, and the behaviour of BadNet and STRIP."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow  # trains models: not in the fast lane (README)



def test_badnet_plants_a_working_backdoor(referee, tiny):
    result = referee.play("badnet", "none", seed=0)
    attack = result.record.metrics["attack"]
    assert attack["benign_acc"] > 0.75  # tiny data, but a real classifier
    assert attack["asr"] > 0.9
    assert attack["base_rate"] < 0.2  # the trigger alone does not do it
    assert attack["cad"] <= tiny.budgets.attack_cad
    # no defense: the effective ASR (on the scored prefix of trigger inputs) is about the ASR, and is
    # scored above the trigger's base rate; the attacker wins
    b, e = attack["base_rate"], result.record.metrics["defense"]["effective_asr"]
    assert abs(e - attack["asr"]) < 0.03
    assert abs(result.record.outcome - (e - b) / (1 - b)) < 1e-6 and result.record.outcome > 0.9


def test_strip_detects_badnet_trigger_inputs(referee):
    result = referee.play("badnet", "strip", seed=0)
    d = result.record.metrics["defense"]
    assert d["tpr"] > d["fpr"] + 0.5
    assert d["auroc"] > 0.85
    assert result.record.outcome < result.record.metrics["attack"]["asr"]


def test_trojan_is_cached_and_reused(referee):
    first = referee.play("badnet", "none", seed=0)
    second = referee.play("badnet", "none", seed=0)
    assert second.record.metrics["timing"]["trojan_cached"] is True
    assert second.record.outcome == first.record.outcome


def test_none_attacker_returns_the_benign_model(referee, tiny):
    result = referee.play("none", "none", seed=0)
    a = result.record.metrics["attack"]
    assert a["cad"] == 0.0
    assert a["asr"] == a["base_rate"]
