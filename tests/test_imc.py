"""IMC and adaptive IMC on the tiny scenario."""

from __future__ import annotations

import dataclasses

import pytest

from arena.referee import Referee


@pytest.fixture(scope="module")
def transparent_referee(tiny, referee):
    # Same data and benign model (cache), but a half-transparent trigger.
    sc = dataclasses.replace(tiny, trigger=dataclasses.replace(tiny.trigger, alpha=0.5))
    return Referee(sc, device="cpu")


def test_imc_beats_badnet_with_a_transparent_trigger(transparent_referee):
    bn = transparent_referee.play("badnet", "none", seed=0).record.metrics["attack"]
    imc = transparent_referee.play("imc", "none", seed=0).record.metrics["attack"]
    # Tiny data, one half-transparent 3x3 patch: BadNet's fixed pattern fades
    # (~35% ASR here), IMC's optimized one stays effective (~70%).
    assert imc["asr"] > 0.6
    assert imc["asr"] > bn["asr"] + 0.2
    assert imc["cad"] <= transparent_referee.scenario.budgets.attack_cad


def test_imc_adaptive_lowers_strip_tpr(referee):
    plain = referee.play("imc", "strip", seed=0).record.metrics
    adaptive = referee.play("imc-adaptive", "strip", seed=0).record.metrics
    assert adaptive["attacker_notes"]["countermeasure"] == "strip-high-transparency-retraining"
    assert adaptive["attack"]["asr"] > 0.85
    assert adaptive["defense"]["tpr"] < plain["defense"]["tpr"] - 0.2
