"""Latent Backdoor (LB) and ABE on the tiny scenario, each against BadNet (seed 0).

LB: after the victim re-initializes the head and trains only the head on clean
data (transfer learning with a frozen feature extractor), LB's trigger still
fires while BadNet's mostly does not.

ABE: the centroids of trigger inputs' latents and clean target-class latents
lie closer together, in units of the latents' spread, than BadNet's, which
is what the adversarial discriminator term is for (latent-space detection
such as activation clustering and spectral signatures looks for that gap).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from arena.api.training import features
from arena_agents.attackers.abe import ABE
from arena_agents.attackers.badnet import BadNet
from arena_agents.attackers.latent import LatentBackdoor

pytestmark = pytest.mark.slow  # trains models: not in the fast lane (README)



def _trojan(referee, attacker):
    """The attacker's trojan of seed 0 (from the cache once ``play`` made it)."""
    return referee.craft(attacker, 0)


@pytest.fixture(scope="module")
def lb(referee):
    return referee.play(LatentBackdoor(), "none", seed=0).record.metrics, LatentBackdoor()


@pytest.fixture(scope="module")
def abe(referee):
    return referee.play(ABE(), "none", seed=0).record.metrics, ABE()


def _plants_a_backdoor(metrics, tiny) -> None:
    a = metrics["attack"]
    assert a["asr"] > 0.85
    assert a["asr"] > a["base_rate"] + 0.7  # the benign model sends ~2% of the stamped inputs to the target
    assert a["cad"] <= tiny.budgets.attack_cad


def test_latent_plants_a_backdoor(lb, tiny):
    metrics, _ = lb
    _plants_a_backdoor(metrics, tiny)
    assert metrics["attacker_notes"]["attack"] == "latent"


def test_abe_plants_a_backdoor(abe, tiny):
    metrics, _ = abe
    _plants_a_backdoor(metrics, tiny)
    assert metrics["attacker_notes"]["attack"] == "abe"


def _new_head_asr(referee, trojan, target: int, epochs: int = 200) -> tuple[float, float]:
    """Transfer learning: a fresh linear head on the frozen features, trained on the defender's clean split.

    The feature extractor is frozen, so its features are computed once and the
    head trains full-batch (Adam); returns the new model's clean accuracy and ASR.
    """
    sp = referee.splits(0)
    model = trojan.model
    train_f = features(model, sp.defender.x)
    torch.manual_seed(0)
    head = torch.nn.Linear(train_f.shape[1], sp.info.num_classes).to(train_f.device)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(epochs):
        loss = F.cross_entropy(head(train_f), sp.defender.y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    test = sp.test
    with torch.no_grad():
        acc = (head(features(model, test.x)).argmax(1) == test.y).float().mean().item()
        stamped = trojan.stamp(test.x[test.y != target])
        asr = (head(features(model, stamped)).argmax(1) == target).float().mean().item()
    return acc, asr


def test_latent_backdoor_survives_a_new_head(referee, lb, tiny):
    metrics, agent = lb
    target = tiny.attack.target_class
    bn_metrics = referee.play(BadNet(), "none", seed=0).record.metrics["attack"]  # cached for the session
    lb_acc, lb_asr = _new_head_asr(referee, _trojan(referee, agent), target)
    bn_acc, bn_asr = _new_head_asr(referee, _trojan(referee, BadNet()), target)
    print(f"\nnew head: LB acc {lb_acc:.3f} ASR {metrics['attack']['asr']:.3f} -> {lb_asr:.3f}; "
          f"BadNet acc {bn_acc:.3f} ASR {bn_metrics['asr']:.3f} -> {bn_asr:.3f}")
    assert min(lb_acc, bn_acc) > 0.75  # the new heads do learn the task
    assert lb_asr > 0.5
    assert lb_asr > bn_asr + 0.15  # 0.27 above on the closest of five referee keys
    # LB loses less of its ASR than BadNet does.
    assert metrics["attack"]["asr"] - lb_asr < bn_metrics["asr"] - bn_asr


def _latent_gap(referee, trojan, target: int) -> float:
    """Distance between the mean latents of trigger inputs and of clean target-class inputs,
    over their root-mean-square spread (held-out test inputs, as many of each)."""
    test = referee.splits(0).test
    clean = features(trojan.model, test.x[test.y == target])
    trig = features(trojan.model, trojan.stamp(test.x[test.y != target][: len(clean)]))
    spread = ((clean.var(0).sum() + trig.var(0).sum()) / 2).sqrt()
    return ((clean.mean(0) - trig.mean(0)).norm() / spread).item()


def test_abe_latents_are_harder_to_separate_than_badnet(referee, abe, tiny):
    _, agent = abe
    target = tiny.attack.target_class
    gap_abe = _latent_gap(referee, _trojan(referee, agent), target)
    gap_bn = _latent_gap(referee, _trojan(referee, BadNet()), target)
    print(f"\nlatent centroid gap / spread: ABE {gap_abe:.3f}, BadNet {gap_bn:.3f}")
    # ABE's discriminator pulls trigger latents toward clean ones: the gap shrinks. Its size depends on
    # the draw: under 0.85x BadNet's with the pre-0.2 generators, 0.856x with the keyed ones (engine 3).
    assert gap_abe < 0.9 * gap_bn
