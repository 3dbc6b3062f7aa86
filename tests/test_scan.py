"""`arena scan` and `model:PATH`: a model you were handed, played in the sandbox against the
inspectors and calibrated against benign models, and the calibration of the combined verdict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from arena.cli import main
from arena.config.scenario import load_scenario
from arena.results.io import read_jsonl_gz
from arena.results.store import MatchRecord
from arena.run.scan import calibrate, calibration_rows, fisher, rank_p_value, scan

from conftest import have_fashion_mnist

REPO = Path(__file__).resolve().parents[1]
INSPECTORS = ["neural-cleanse", "tabor", "neuron-inspect"]


@pytest.fixture(scope="module")
def scan_setting(tiny_path, tmp_path_factory):
    """The tiny scenario with three benign models per control and cheap inspectors, a badnet trojan
    of it and its benign model, saved as state dicts the way a user would hand them over."""
    if not have_fashion_mnist():
        pytest.skip("Fashion-MNIST not installed")
    from arena.engine.referee import Referee

    d = tmp_path_factory.mktemp("scan")
    toml = d / "tiny3.toml"
    toml.write_text(f'''based_on = "{tiny_path}"
name = "tiny3"
[controls]
population = 3
[defenders.neural-cleanse]
epochs = 2
samples = 128
[defenders.tabor]
epochs = 2
samples = 128
[defenders.neuron-inspect]
min_samples = 64
''')
    sc = load_scenario(str(toml))
    referee = Referee(sc, device="cpu")
    torch.save(referee.craft("badnet", 0).model.state_dict(), d / "trojan.pt")
    torch.save(referee.benign(0)[0].state_dict(), d / "benign.pt")
    return sc, toml, d


@pytest.mark.slow
def test_scan_tells_a_trojan_from_a_benign_model(scan_setting):
    sc, _, d = scan_setting
    trojan = scan(sc, d / "trojan.pt", defenders=INSPECTORS)
    benign = scan(sc, d / "benign.pt", defenders=INSPECTORS)
    for r in (trojan, benign):
        assert [f.defender for f in r.findings] == INSPECTORS and not any(f.fault for f in r.findings)
        assert all(len(f.benign_indices) == 3 for f in r.findings)  # each calibrated on the 3 benign models
    assert trojan.fisher_p < benign.fisher_p
    # The inspectors that find the backdoor point at its target (class 0 of the tiny scenario).
    targets = [f.suspected_target for f in trojan.findings]
    assert targets.count(sc.attack.target_class) >= 2, targets
    assert sum(f.anomaly_index for f in trojan.findings) > sum(f.anomaly_index for f in benign.findings)
    json.dumps(trojan.to_dict())


@pytest.mark.slow
def test_scan_cli_json_and_a_match_against_the_given_model(scan_setting):
    _, toml, d = scan_setting
    page = d / "page"
    r = CliRunner().invoke(main, ["scan", str(d / "trojan.pt"), "-s", str(toml), "-d", "neuron-inspect,neural-cleanse",
                                  "--json", "--html", str(page)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    html = (page / "index.html").read_text()
    assert "neural-cleanse" in html and "Verdict:" in html
    assert (page / "img" / "neural-cleanse.png").is_file() and 'src="img/neural-cleanse.png"' in html
    assert out["findings"][0]["defender"] == "neuron-inspect" and out["verdict"] in (
        "trojaned", "clean", "no evidence of a backdoor")
    assert len(out["sha256"]) == 64
    # The same file as the attacker of an ordinary match: the backdoor is measured with the scenario's
    # trigger (badnet used it), and the match runs at the sandbox level of any other.
    r = CliRunner().invoke(main, ["match", f"model:{d / 'trojan.pt'}", "none", "-s", str(toml), "--json",
                                  "--no-store"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert rec["attacker"].startswith("model:") and rec["metrics"]["attack"]["asr"] > 0.8


@pytest.mark.slow
def test_a_file_that_is_no_model_forfeits_with_what_to_do(scan_setting, tmp_path):
    sc, _, _ = scan_setting
    from arena.engine.referee import Referee

    torch.save({"not": "weights"}, tmp_path / "junk.pt")
    rec = Referee(sc, device="cpu").play(f"model:{tmp_path / 'junk.pt'}", "none", seed=0).record
    assert rec.metrics["forfeit"]["side"] == "attacker" and "torch.save(model.state_dict()" in rec.reason
    small = torch.nn.Linear(3, 2)
    torch.save(small.state_dict(), tmp_path / "other.pt")
    rec = Referee(sc, device="cpu").play(f"model:{tmp_path / 'other.pt'}", "none", seed=0).record
    assert "does not fit the scenario's architecture" in rec.reason


def test_model_specs_play_only_the_attacker(tmp_path):
    from arena.core.errors import PluginError
    from arena.plugins import load_agent

    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "m.pt")
    loaded = load_agent("attacker", f"model:{tmp_path / 'm.pt'}")
    assert loaded.name.startswith("model:") and loaded.code_digest  # cached under the file's bytes
    with pytest.raises(PluginError, match="plays the attacker's side"):
        load_agent("defender", f"model:{tmp_path / 'm.pt'}")
    with pytest.raises(PluginError, match="model file not found"):
        load_agent("attacker", f"model:{tmp_path / 'absent.pt'}")


def test_rank_p_values_and_fisher():
    assert rank_p_value(5.0, [1.0, 2.0, 3.0]) == 0.25  # above every benign model: 1 / (n + 1)
    assert rank_p_value(0.0, [1.0, 2.0, 3.0]) == 1.0
    assert rank_p_value(2.0, [1.0, 2.0, 3.0]) == 0.75  # ties count against the model
    assert fisher([]) is None and fisher([1.0]) == pytest.approx(1.0)
    assert fisher([0.01, 0.01]) < 0.01 < fisher([0.01, 0.9])


def _record(attacker: str, defender: str, seed: int, aiv: float, members: list[float]) -> MatchRecord:
    return MatchRecord(scenario="s", scenario_digest="d", attacker=attacker, attacker_version="1", defender=defender,
                       defender_version="1", seed=seed, rounds=1, status="ok", outcome=0.0,
                       metrics={"defense": {"aiv": aiv},
                                "control": {"members": [{"member": i, "aiv": a} for i, a in enumerate(members)]}})


def test_calibration_rows_pair_each_model_across_inspectors():
    recs = [_record("badnet", d, s, 5.0 + s, [1.0, 2.0]) for d in ("nc", "tabor") for s in (0, 1)]
    recs.append(_record("none", "nc", 0, 1.0, [1.0, 2.0]))  # the untouched model: one of the benign ones
    recs.append(_record("latent", "nc", 0, 9.0, [1.0, 2.0]))  # read by one inspector only: left out
    x, y, seeds = calibration_rows(recs, ["nc", "tabor"])
    assert x.shape == (6, 2) and y.tolist().count(1) == 2 and sorted(seeds.tolist()) == [0, 0, 0, 1, 1, 1]


def test_the_combined_verdict_is_calibrated_on_fmnist_cnn():
    """The README's calibration figures, recomputed from the published fmnist-cnn matches: trojans
    of nine attackers and the benign control models of five test seeds, leave one seed out."""
    sc = load_scenario("fmnist-cnn")
    recs = [r for r in read_jsonl_gz(REPO / "leaderboards" / "fmnist-cnn.matches.jsonl.gz")
            if r.scenario_digest == sc.digest]
    ins = ["abs", "deep-inspect", "neural-cleanse", "neuron-inspect", "tabor"]
    x, y, seeds = calibration_rows(recs, ins)
    assert (int(y.sum()), int((1 - y).sum()), len(set(seeds.tolist()))) == (45, 25, 5)
    clf, cal = calibrate(x, y, seeds, "fmnist-cnn", ins)
    prior = y.mean()
    constant = -(prior * np.log(prior) + (1 - prior) * np.log(1 - prior))  # the best guess without features
    assert cal.auroc_interval[0] > 0.5 and cal.cross_entropy < constant
    assert cal.auroc_interval[0] <= cal.auroc <= cal.auroc_interval[1]
    p = clf.predict_proba(x)[:, 1]
    assert p[y == 1].mean() > p[y == 0].mean()
    readme = (REPO / "README.md").read_text()
    assert f"ROC AUC {cal.auroc:.2f} [{cal.auroc_interval[0]:.2f}, {cal.auroc_interval[1]:.2f}]" in readme
    assert f"cross-entropy {cal.cross_entropy:.2f} [{cal.cross_entropy_interval[0]:.2f}, " \
           f"{cal.cross_entropy_interval[1]:.2f}]" in readme
