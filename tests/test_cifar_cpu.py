"""Every installed attacker and every installed defender play on colour 32x32 inputs (a micro cifar10-cnn).

tests/test_every_pair.py covers the agents on 1-channel 28x28 Fashion-MNIST;
this covers them on 3-channel 32x32 CIFAR-10 with the small residual network
of the shipped cifar10-cnn scenario (BatchNorm, global pooling), where
channel- and size-dependent code paths differ. A smoke test of interfaces,
not of strength: the shipped scenario shrunk to 1,500 training images, one
epoch, one benign model in the control and cut-down agent settings
(``arena.config.micro``, on top of the scenario's own [defenders.*] tables).

Which pairs: a match costs at least ~1.5 s here (agent processes, scoring,
the control), and the 150 pairs took over 10 minutes on the shared 2-core
machine. The test plays the pairs where colour inputs meet different code:
every attacker against ``none`` (each craft); ``badnet``, a plain trojan,
against every defender (each deployment and its control); ``imc-adaptive``
against one defender per countermeasure (it deploys a surrogate of the
defender on its own data, or trains against it); ``trojannet``, whose trojan is its
own architecture around the benign network, against the defenders that
reach past its outputs (its features, channels, parameters). 34 matches.
``ARENA_CIFAR_ALL_PAIRS=1`` plays all of them.
"""

from __future__ import annotations

import os

import pytest

from arena.config.micro import shrink
from arena.plugins import discover
from arena.engine.referee import Referee
from arena.config.scenario import Scenario, load_scenario

from conftest import cifar10_dir, requires_cifar10

pytestmark = pytest.mark.slow  # trains models: not in the fast lane (README)


# Beyond the column of `none`: who else plays whom (names not installed are left out).
ROWS: dict[str, tuple[str, ...] | None] = {
    "badnet": None,  # every defender
    # one defender per countermeasure that changes its training (against the rest it plays plain IMC)
    "imc-adaptive": ("strip", "magnet", "adversarial-retraining", "abs"),
    # the defenders that reach past its outputs: channel mask, pooled features, re-training, saliency
    "trojannet": ("fine-pruning", "abs", "activation-clustering", "spectral-signature", "adversarial-retraining",
                  "neuron-inspect"),
}

def micro_cifar() -> Scenario:
    """The shipped cifar10-cnn at micro size (1,500 training images): its architecture, trigger and agent tables."""
    return shrink(load_scenario("cifar10-cnn"), train_limit=1500)


def pairs(attackers: list[str], defenders: list[str]) -> list[tuple[str, str]]:
    if os.environ.get("ARENA_CIFAR_ALL_PAIRS") == "1":
        return [(a, d) for a in attackers for d in defenders]
    out = [(a, "none") for a in attackers]
    for a, row in ROWS.items():
        if a in attackers:
            out += [(a, d) for d in defenders if d != "none" and (row is None or d in row)]
    return out


@requires_cifar10
def test_every_agent_plays_on_cifar10(monkeypatch):
    monkeypatch.setenv("ARENA_DATA_DIR", str(cifar10_dir()))
    sc = micro_cifar()
    assert sc.dataset == "cifar10" and sc.architecture == load_scenario("cifar10-cnn").architecture
    attackers = sorted(a for a in discover("attacker") if a != "blended")  # the example plugin has its own test
    defenders = sorted(discover("defender"))
    assert len(attackers) >= 10 and len(defenders) >= 15
    played = pairs(attackers, defenders)
    # One referee for all pairs (as a tournament worker plays them): the data, the benign model and
    # the agents' cards are loaded once; a tournament per group would read every card again.
    referee = Referee(sc, device="cpu")
    records, failed = [], []
    for a, d in played:
        try:
            records.append(referee.play(a, d, seed=0).record)
        except Exception as exc:  # every failure is reported, not only the first
            failed.append(f"{a} vs {d}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    assert failed == [], "\n".join(failed)
    assert all(r.status == "ok" for r in records)
    assert sorted((r.attacker, r.defender) for r in records) == sorted(played)
    assert {r.attacker for r in records} == set(attackers) and {r.defender for r in records} == set(defenders)
    forfeits = [f"{r.attacker} vs {r.defender}: {r.metrics['forfeit']}" for r in records if "forfeit" in r.metrics]
    assert forfeits == [], "\n".join(forfeits)
    for r in records:
        assert 0.0 <= r.outcome <= 1.0 and r.reason
    used = {r.defender: r.metrics["attacker_notes"].get("countermeasure") for r in records
            if r.attacker == "imc-adaptive"}
    if "imc-adaptive" in attackers:  # its surrogate deployments ran on colour inputs
        assert used["strip"] == "strip-high-transparency-retraining"
        assert used["magnet"] == "train-through-reformer"
        assert used["adversarial-retraining"] == "adversarial-training" and used["abs"] == "abs-cost-term"
