"""Input filters AC, SS and NEO on the tiny scenario (BadNet, seed 0), and their building blocks."""

from __future__ import annotations

import pytest
import torch

from arena_agents.defenders.activation_clustering import ActivationClustering, cluster_scores
from arena_agents.defenders.neo import NEO, blocker_grid, blocker_masks, dominant_colors
from arena_agents.defenders.spectral_signature import SpectralSignature, spectral_scores

pytestmark = pytest.mark.slow  # trains models: not in the fast lane (README)

# NEO with a smaller search than its defaults (25 positions of an 8 x 8 blocker instead of 81 of a 5 x 5
# one, one candidate confirmed instead of two) keeps this file fast on a 2-core CPU; AC and SS are cheap.
FILTERS = {
    "activation-clustering": lambda: ActivationClustering(),
    "spectral-signature": lambda: SpectralSignature(),
    "neo": lambda: NEO(samples=25, candidates=1, confirm_images=16),
}


# --- building blocks (synthetic, no model) ---------------------------------
def _clean_and_shifted(n_ref: int, n_clean: int, n_shift: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(n_ref, 32, generator=g)
    window = torch.randn(n_clean + n_shift, 32, generator=g)
    window[n_clean:, :4] += 6.0  # a shared shift, as a trigger gives its inputs
    return ref, window


def test_ac_flags_the_cluster_without_reference_inputs_even_when_it_is_the_majority():
    ref, window = _clean_and_shifted(30, 40, 300)
    joint = torch.cat([ref, window])
    is_ref = torch.arange(len(joint)) < len(ref)
    s = cluster_scores(joint, is_ref, components=10, iterations=100)[~is_ref]
    assert s[40:].min() > 0.8 and s[:40].max() < 0.2
    # an all-clean window: both halves hold their share of reference inputs, scores stay low but vary
    ref, window = _clean_and_shifted(30, 300, 0)
    joint = torch.cat([ref, window])
    s = cluster_scores(joint, torch.arange(len(joint)) < 30, components=10, iterations=100)
    assert s.max() < 0.6 and s.unique().numel() > 0.9 * len(s)


def test_ss_scores_the_shifted_inputs_far_above_the_clean_ones():
    ref, window = _clean_and_shifted(30, 40, 300)  # shifted inputs outnumber the clean ones
    s = spectral_scores(ref, window)
    assert s[40:].min() > s[:40].max()
    assert s[:40].median() < 3  # about chi-square(1) for clean inputs


def test_neo_blocker_grid_covers_every_trigger_position():
    b, offsets = blocker_grid(28, 3, 100)
    assert (b, len(offsets) ** 2) == (5, 81)
    masks = blocker_masks(28, b, offsets, torch.device("cpu"))
    for r in range(26):
        for c in range(26):
            assert masks[:, 0, r : r + 3, c : c + 3].flatten(1).all(1).any()
    assert len(blocker_grid(32, 3, 100)[1]) ** 2 <= 100


def test_neo_dominant_color_is_the_largest_cluster():
    x = torch.zeros(2, 3, 8, 8)
    x[0, :, :2] = 1.0  # a quarter white: black dominates
    x[1] = 0.5
    x[1, :, :3, :3] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    assert torch.allclose(dominant_colors(x, 3, 10), torch.tensor([[0.0] * 3, [0.5] * 3]))


# --- matches on the tiny scenario ------------------------------------------
@pytest.mark.parametrize("name", list(FILTERS))
def test_filter_detects_badnet_trigger_inputs(referee, tiny, name):
    defender = FILTERS[name]()
    assert defender.name == name
    result = referee.play("badnet", defender, seed=0)
    m = result.record.metrics
    d, control = m["defense"], m["control"]
    assert m["attack"]["asr"] > 0.9
    if name == "activation-clustering":
        # Scored on windows with 10% trigger inputs (scoring.trigger_share): TPR 0.94-0.97 over five
        # referee keys (the clean inputs' FPR: below).
        assert d["trigger_share"] == tiny.scoring.trigger_share and d["tpr"] > d["fpr"] + 0.3
    else:
        assert d["tpr"] > d["fpr"] + 0.5  # measured ~0.9-1.0 against <= 0.05
        assert d["auroc"] > 0.9
    # The FPR that the gate reads: clean inputs of the match's own traffic. Within budget plus tolerance
    # for the filters calibrated on inputs alone; AC's per-class clustering changes when trigger inputs
    # join a window, and on 1 of 5 referee keys it flagged 12% of the clean inputs there: the gate then
    # gives the match to the attacker, whatever the TPR.
    if name != "activation-clustering" or d["fpr"] <= tiny.budgets.fpr + tiny.budgets.fpr_tolerance:
        assert d["fpr"] <= tiny.budgets.fpr + tiny.budgets.fpr_tolerance and m["gate"] == "play"
    else:
        assert m["gate"] == "defender" and result.record.outcome == 1.0
    assert control["population"] == 0  # a filter judges inputs, not models: no control run
    assert m["gate"] != "play" or result.record.outcome < m["attack"]["asr"]


@pytest.mark.parametrize("name", list(FILTERS))
def test_filter_scores_are_deterministic_and_continuous(referee, tiny, name):
    from arena.api.models import clone
    from arena.api.protocol import DefenseContext

    sp = referee.splits(0)
    trojan = referee.craft("badnet", 0)
    ctx = DefenseContext(scenario=tiny, clean=sp.defender, info=sp.info, device=referee.device,
                         generator=torch.Generator().manual_seed(5))
    dep = FILTERS[name]().deploy(clone(trojan.model), ctx)
    test = sp.test
    clean = test.x[:100]
    window = torch.cat([clean, trojan.stamp(test.x[test.y != tiny.attack.target_class][:100])])
    first = dep.score(window)
    assert first.shape == (200,) and torch.isfinite(first).all()
    assert torch.equal(first, dep.score(window))
    on_clean = dep.score(clean)  # an all-clean window, as in the control run and the calibration
    assert torch.isfinite(on_clean).all() and on_clean.unique().numel() > 0.9 * len(on_clean)
    if name == "neo":  # a per-input filter: an input's score does not depend on the window
        assert torch.allclose(on_clean, first[:100], atol=1e-4)
