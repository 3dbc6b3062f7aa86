"""Fine-Pruning (model sanitization) and Neural Cleanse (model inspection) on the tiny scenario."""

from __future__ import annotations

import pytest

import torch

from arena_agents.defenders.fine_pruning import FinePruning
from arena_agents.defenders.neural_cleanse import anomaly_indices

pytestmark = pytest.mark.slow  # trains models: not in the fast lane (README)


def test_anomaly_index_is_signed_mad_score():
    norms = torch.tensor([10.0, 80.0, 90.0, 100.0, 110.0, 120.0])
    ai = anomaly_indices(norms)
    med = norms.median()  # torch's lower median: 90
    mad = 1.4826 * (norms - med).abs().median()
    assert torch.allclose(ai, (med - norms) / mad)
    assert int(ai.argmax()) == 0 and ai[0] > 2  # small norm: large positive index
    assert (ai[3:] < 0).all()  # larger norms than the median are negative, never anomalous


def test_fine_pruning_lowers_badnet_asr_within_budget(referee, tiny):
    result = referee.play("badnet", "fine-pruning", seed=0)
    m = result.record.metrics
    a, d = m["attack"], m["defense"]
    assert a["asr"] > 0.9
    assert d["ard"] > 0.05  # the backdoor is weakened: ARD 0.07-0.53 over five referee keys
    assert result.record.outcome < a["asr"]
    # Within the CAD budget by the referee's rule, which allows for the measurement's error: the pruning
    # keeps its 120-image holdout within the allowance, and the test set can read a point over.
    assert m["gate"] == "play"
    notes = m["defender_notes"]
    assert 0 < notes["pruned_channels"] <= int(0.95 * notes["channels"])
    # The stopping rule: within the allowance on the holdout, unless the back-offs ran out (on one of five
    # referee keys three halvings still left the tuned model 4.2 points down against a 4-point allowance).
    assert (notes["holdout_acc_before"] - notes["holdout_acc_after"] <= notes["allowance"] + 1e-9
            or notes["backoffs"] == FinePruning().max_backoffs)


def test_neural_cleanse_flags_badnet_and_recovers_its_trigger(referee, tiny, tmp_path):
    result = referee.play("badnet", "neural-cleanse", seed=0)
    m = result.record.metrics
    d = m["defense"]
    assert d["flagged"] is True
    assert d["suspected_target"] == tiny.attack.target_class == 0
    assert d["aiv"] > 2
    assert len(d["aiv_per_class"]) == 10
    assert d["mjs"] > 0  # the recovered mask overlaps the 3x3 bottom-right patch
    assert d["mln"] < 3 * tiny.trigger.size**2  # a small mask, as the backdoor is a shortcut
    assert d["effective_asr"] == 0.0 and result.record.outcome == 0.0
    assert m["control"]["flagged"] is False  # the benign model of the control run is not flagged
    assert d["cad"] == 0.0  # inspection does not touch the model
    # The recovered trigger is kept as an artifact (tensors) beside the true one; a picture is drawn
    # from them when shown (the report's), never during the match.
    from PIL import Image

    from arena.core.cache import arena_home
    from arena.present.gallery import load_trigger_tensors, save_recovered_trigger_png

    art = m["artifacts"]
    saved = torch.load(arena_home() / art["recovered_trigger_pt"], weights_only=True)
    assert saved["mask"].shape == saved["true_mask"].shape == (1, 28, 28)
    assert abs(float(saved["mask"].abs().sum()) - d["mln"]) < 1e-3  # the mask MLN was computed from
    # The verdict's mask itself: most of its mass near the true trigger (bottom-right corner).
    near = torch.nn.functional.max_pool2d(saved["true_mask"].unsqueeze(0), 5, 1, 2).squeeze(0)  # grown by 2 px
    assert (saved["mask"] * near).sum() > 0.5 * saved["mask"].sum()
    assert saved["pattern"].shape == (1, 28, 28)
    assert set(art) == {"recovered_trigger_pt"}
    png = save_recovered_trigger_png(load_trigger_tensors(arena_home() / art["recovered_trigger_pt"]),
                                     tmp_path / "recovered.png")
    with Image.open(png) as img:
        assert img.width > 3 * img.height and img.height >= 200  # four labelled panels in a row, legible


def test_neural_cleanse_does_not_flag_the_benign_model(referee):
    result = referee.play("none", "neural-cleanse", seed=0)
    d = result.record.metrics["defense"]
    # Not flagged; the MAD index alone can pass 2 on a benign model (2.1 on one of five referee keys),
    # which is why the flag also asks for a mask far smaller than the median (``max_norm_ratio``).
    assert d["flagged"] is False
    from arena.engine.outcome import above_base_rate

    a, d = result.record.metrics["attack"], result.record.metrics["defense"]
    assert result.record.outcome == above_base_rate(d["effective_asr"], a["base_rate"]) < 0.01


def test_an_inspector_that_flags_every_model_is_unusable_not_a_winner_or_loser_per_match(referee):
    # It rejects BadNet's trojan, and the benign model of the control run too. The match keeps what its
    # deployment earned (the trojan rejected); that it flags benign models makes it unusable over the
    # scenario's pooled population (arena.results.usability), where the leaderboard lists it apart.
    from arena.api.protocol import Defender, Deployment, Verdict
    from arena.results.usability import usability

    class Paranoid(Defender):
        name = "paranoid"
        category = "model_inspection"

        def deploy(self, model, ctx):
            return Deployment(model=model, verdict=Verdict(is_trojan=True, target=0))

    result = referee.play("badnet", Paranoid(), seed=0)
    m = result.record.metrics
    assert m["defense"]["flagged"] is True and m["control"]["flagged"] is True
    assert m["gate"] == "play" and result.record.outcome == 0.0
    (judged,) = usability([result.record], budget=0.05)
    # The tiny scenario's population is one benign model: one flag in one model has p = 0.05 at a 5% budget,
    # not below it, so a single model cannot show the budget exceeded (test_population: 3 of 3 can).
    assert judged.flagged == judged.models == 1 and judged.p_value == pytest.approx(0.05) and judged.usable
