"""Every installed attacker survives a tournament round against every installed defender.

A smoke test of the interfaces, not of strength: a micro scenario (2,000
training images, one epoch, 100 scored inputs) and cut-down agent settings
(``arena.config.micro``), so all pairs fit in a few minutes. Strength is tested per agent in the other files.
"""

from __future__ import annotations

import dataclasses

import pytest

from arena.run import tournament
from arena.config.micro import MICRO_ATTACKERS, MICRO_DEFENDERS
from arena.plugins import discover
from arena.config.scenario import load_scenario
from arena.results.store import Store

from conftest import requires_fmnist

pytestmark = pytest.mark.slow  # trains models: not in the fast lane (README)

MICRO_TOML = """
name = "micro"
dataset = "fashion-mnist"
architecture = "small-cnn"
device = "cpu"
seeds = [0]

[training]
epochs = 1
batch_size = 128
lr = 0.05
retrain_epochs = 1
retrain_lr = 0.03

[data]
train_limit = 2000
test_limit = 300
defender_fraction = 0.1

[attack]
poison_fraction = 0.1

[scoring]
inputs = 100

[controls]
population = 1
"""


@requires_fmnist
def test_every_attacker_plays_every_defender(tmp_path):
    path = tmp_path / "micro.toml"
    path.write_text(MICRO_TOML)
    sc = load_scenario(str(path))
    sc = dataclasses.replace(sc, attackers=MICRO_ATTACKERS, defenders=MICRO_DEFENDERS)
    attackers = sorted(a for a in discover("attacker") if a != "blended")  # the example plugin has its own test
    defenders = sorted(discover("defender"))
    assert len(attackers) >= 10 and len(defenders) >= 15  # the paper's 8 attacks and 14 defenses, plus baselines
    store = Store(tmp_path / "arena.db")
    report = tournament.run(sc, attackers=attackers, defenders=defenders, seeds=[0], device="cpu", store=store)
    assert report.failed == [], "\n".join(f"{a} vs {d}: {err.splitlines()[-1]}" for a, d, _, err in report.failed)
    records = store.matches(scenario="micro", status="ok")
    assert len(records) == len(attackers) * len(defenders)
    for r in records:
        assert 0.0 <= r.outcome <= 1.0 and r.reason
        assert r.metrics["defense"]["category"] in ("none", "input_reformation", "input_filtering",
                                                    "model_sanitization", "model_inspection")
    adaptive = [r for r in records if r.attacker == "imc-adaptive"]
    assert all("countermeasure" in r.metrics["attacker_notes"] for r in adaptive)
    used = {r.defender: r.metrics["attacker_notes"]["countermeasure"] for r in adaptive}
    assert used["strip"] == "strip-high-transparency-retraining"
    assert used["magnet"] == used["down-upsampling"] == "train-through-reformer"
    assert used["adversarial-retraining"] == "adversarial-training"
    assert used["abs"] == "abs-cost-term"
