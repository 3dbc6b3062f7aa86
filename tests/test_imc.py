"""IMC and adaptive IMC on the tiny scenario."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from arena.engine.referee import Referee

pytestmark = pytest.mark.slow  # trains models: not in the fast lane (README)


@pytest.fixture(scope="module")
def transparent_referee(tiny, referee):
    # Same data and benign model (cache), but a half-transparent trigger.
    sc = dataclasses.replace(tiny, trigger=dataclasses.replace(tiny.trigger, alpha=0.5))
    return Referee(sc, device="cpu")


def test_imc_beats_badnet_with_a_transparent_trigger(transparent_referee):
    bn = transparent_referee.play("badnet", "none", seed=0).record.metrics["attack"]
    imc = transparent_referee.play("imc", "none", seed=0).record.metrics["attack"]
    # Tiny data, one half-transparent 3x3 patch: BadNet's fixed pattern fades (ASR 0.35-0.70 over five
    # referee keys), IMC's optimized one keeps more of it (0.59-0.81, 0.11-0.32 above BadNet's).
    assert imc["asr"] > 0.5
    assert imc["asr"] > bn["asr"] + 0.05
    assert imc["cad"] <= transparent_referee.scenario.budgets.attack_cad


def test_imc_adaptive_lowers_strip_tpr(referee):
    plain = referee.play("imc", "strip", seed=0).record.metrics
    adaptive = referee.play("imc-adaptive", "strip", seed=0).record.metrics
    assert adaptive["attacker_notes"]["countermeasure"] == "strip-high-transparency-retraining"
    assert adaptive["attack"]["asr"] > 0.85
    assert adaptive["defense"]["tpr"] < plain["defense"]["tpr"] - 0.2


def _ctx(tiny, defender=None, category=None, history=()):
    import torch

    from arena.api.protocol import AttackContext, RoundRecord
    from arena.api.triggers import make_trigger

    hist = [RoundRecord(i + 1, score, "", {}) for i, score in enumerate(history)]
    return AttackContext(scenario=tiny, data=None, validation=None, benign=None,
                         trigger=make_trigger(tiny.trigger, 1, 28), info=None, device=torch.device("cpu"),
                         generator=torch.Generator(), defender=defender, defender_category=category,
                         history=hist)


def test_imc_adaptive_picks_its_countermeasure(tiny):
    from arena.plugins import make_agent

    agent = make_agent("attacker", "imc-adaptive")
    assert agent._targets_strip(_ctx(tiny, defender=make_agent("defender", "strip")))[0]
    assert agent._targets_strip(_ctx(tiny, category="input_filtering"))[0]  # reveal = "category"
    assert not agent._targets_strip(_ctx(tiny, defender=make_agent("defender", "none")))[0]
    assert not agent._targets_strip(_ctx(tiny))[0]  # reveal = "none"


def test_imc_adaptive_strengthens_after_a_lost_round(tiny):
    from arena.plugins import make_agent

    agent = make_agent("attacker", "imc-adaptive")
    first = agent.strip_plan(_ctx(tiny), weight=0.5)
    after_loss = agent.strip_plan(_ctx(tiny, history=[0.1]), weight=0.5)
    after_win = agent.strip_plan(_ctx(tiny, history=[0.9]), weight=0.5)
    assert after_loss.fraction == 2 * first.fraction
    assert (after_loss.hi - after_loss.lo) > (first.hi - first.lo)
    assert after_win == first
    assert first.lo < 0.5 < first.hi  # STRIP's 0.5 mix halves an opaque trigger


def test_plain_imc_is_crafted_once_for_the_defenders_it_does_not_adapt_to(tiny, tmp_path, monkeypatch, arena_home):
    """imc-adaptive names its plain-IMC craft (craft_key): against a second defender it ignores, the referee
    hands over the trojan made for the first, with the second's own reason, and it is the very trojan a
    fresh home crafts for that defender alone."""
    from conftest import copy_benign, share_key

    def home(name: str, benign_from: Path) -> Referee:
        h = tmp_path / name
        share_key(arena_home, h)
        if (benign_from / "cache" / "benign").is_dir():  # a benign model already trained: not trained again
            copy_benign(benign_from, h)
        monkeypatch.setenv("ARENA_HOME", str(h))
        return Referee(tiny, device="cpu")

    ref = home("a", arena_home)
    first = ref.play("imc-adaptive", "neuron-inspect", seed=0).record
    second = ref.play("imc-adaptive", "none", seed=0).record
    crafted_in_a = sorted((tmp_path / "a" / "cache" / "trojan").glob("*.pt"))
    alone = home("b", tmp_path / "a").play("imc-adaptive", "none", seed=0).record

    assert first.metrics["timing"]["trojan_cached"] is False and second.metrics["timing"]["trojan_cached"] is True
    # One craft, under its match's key and under its name; the second match's key holds it too.
    assert len(crafted_in_a) == 3
    again = ref.play("imc-adaptive", "none", seed=0).record  # a replay: from its own key, its own notes
    assert again.metrics["attacker_notes"] == second.metrics["attacker_notes"]
    for rec, name in ((first, "neuron-inspect"), (second, "none")):
        notes = rec.metrics["attacker_notes"]
        assert notes["countermeasure"] is None and f"revealed defender '{name}'" in notes["reason"]
        assert notes["reason"].endswith("played plain IMC")
    assert alone.metrics["timing"]["trojan_cached"] is False
    assert alone.metrics["attacker_notes"] == second.metrics["attacker_notes"]
    assert alone.metrics["attack"] == second.metrics["attack"]  # the same trojan, measured the same
    assert (alone.outcome, alone.reason) == (second.outcome, second.reason)


def test_an_adapted_craft_has_no_name(tiny):
    from arena.plugins import make_agent

    agent = make_agent("attacker", "imc-adaptive")
    assert agent.craft_key(_ctx(tiny, defender=make_agent("defender", "strip"))) is None  # never shared
    name, notes = agent.craft_key(_ctx(tiny, defender=make_agent("defender", "none")))
    assert name.startswith("plain-imc@") and notes["countermeasure"] is None
    assert agent.craft_key(_ctx(tiny))[0] == name  # the same generator state: the same craft
