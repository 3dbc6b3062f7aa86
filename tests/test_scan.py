"""`arena scan` and `model:PATH`: a model you were handed, played in the sandbox against the
inspectors and calibrated against benign models, and the calibration of the combined verdict."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from arena.cli import main
from arena.config.scenario import load_scenario
from arena.core.errors import ArenaError
from arena.results.io import read_jsonl_gz
from arena.results.store import MatchRecord
from arena.run.scan import Reading, ScanReport, _cast, calibrate, calibration_rows, fisher, rank_p_value, scan

from conftest import have_fashion_mnist

REPO = Path(__file__).resolve().parents[1]
INSPECTORS = ["neural-cleanse", "tabor", "neuron-inspect"]


@pytest.fixture(scope="module")
def scan_setting(tiny_path, tmp_path_factory):
    """The tiny scenario with three benign models per control and cheap inspectors, a badnet trojan
    of it and its benign model, saved as state dicts the way a user would hand them over; the trojan
    also as an exported program (trojan.pt2) and its trigger as an .npz (trigger.npz)."""
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
    trojan = referee.craft("badnet", 0)
    torch.save(trojan.model.state_dict(), d / "trojan.pt")
    torch.export.save(torch.export.export(trojan.model.eval(), (torch.zeros(1, 1, 28, 28),)), d / "trojan.pt2")
    np.savez(d / "trigger.npz", mask=trojan.trigger.mask.cpu().numpy(), pattern=trojan.trigger.pattern.cpu().numpy())
    torch.save(referee.benign(0)[0].state_dict(), d / "benign.pt")
    return sc, toml, d


@pytest.mark.slow
def test_scan_ranks_a_model_among_its_benign_calibrators(scan_setting):
    # What the scan adds to the inspectors is the ranking and the combination; whether a tiny draw's
    # trojan reads above three benign models depends on the draw (with these cheap inspectors the
    # benign model read higher on 2 of 5 referee keys), so the scan's power is measured where it has
    # the population for it: a tournament's matches (`--calibration`; docs/scan.md, ROC AUC 0.83 on fmnist-cnn).
    sc, _, d = scan_setting
    trojan = scan(sc, d / "trojan.pt", defenders=INSPECTORS)
    benign = scan(sc, d / "benign.pt", defenders=INSPECTORS)
    for r in (trojan, benign):
        assert [f.defender for f in r.findings] == INSPECTORS and not any(f.fault for f in r.findings)
        assert all(len(f.benign_indices) == 3 for f in r.findings)  # each calibrated on the 3 benign models
        assert [f.p_value for f in r.findings] == [rank_p_value(f.anomaly_index, f.benign_indices)
                                                    for f in r.findings]
        assert r.fisher_p == fisher([f.p_value for f in r.findings])
    # The calibrators are the scenario's, the same for every model scanned.
    assert [f.benign_indices for f in trojan.findings] == [f.benign_indices for f in benign.findings]
    # Most inspectors point at the backdoor's target (class 0 of the tiny scenario): 2 or 3 of the 3
    # on every referee key tried.
    targets = [f.suspected_target for f in trojan.findings]
    assert targets.count(sc.attack.target_class) >= 2, targets
    json.dumps(trojan.to_dict())
    # The same trojan handed over as an exported program: rebuilt from its graph in every process, it
    # reads the same to every inspector (the same operators, so the same numbers).
    exported = scan(sc, d / "trojan.pt2", defenders=INSPECTORS)
    assert [(f.defender, f.flagged, f.suspected_target, f.anomaly_index, f.p_value, f.fault)
            for f in exported.findings] == [(f.defender, f.flagged, f.suspected_target, f.anomaly_index, f.p_value,
                                             f.fault) for f in trojan.findings]
    assert exported.verdict == trojan.verdict and exported.fisher_p == trojan.fisher_p


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
def test_with_the_trigger_a_filter_and_a_mitigation_read_the_model(scan_setting):
    """Given the suspected trigger, STRIP's TPR on inputs stamped with it and Fine-Pruning's share of its
    ASR removed, as their matches with the model store them; JSON and the page carry them."""
    from arena.engine.referee import Referee

    sc, toml, d = scan_setting
    page = d / "page-trigger"
    r = CliRunner().invoke(main, ["scan", str(d / "trojan.pt2"), "-s", str(toml), "-d", "strip,fine-pruning",
                                  "--trigger", str(d / "trigger.npz"), "--target", "0", "--json", "--html", str(page)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["findings"] == [] and out["verdict"] == "undecided" and out["trigger"].endswith("trigger.npz")
    assert out["target_class"] == 0 and out["would_run"] == []
    strip, fp = (Reading(**x) for x in out["readings"])
    assert (strip.defender, strip.category, strip.metric) == ("strip", "input_filtering", "TPR")
    assert (fp.defender, fp.category, fp.metric) == ("fine-pruning", "model_sanitization", "ARD")
    assert not strip.fault and not fp.fault
    assert strip.value > strip.fpr + 0.5  # the trigger dominates the trojan: STRIP flags what it stamps
    assert fp.asr > 0.8 and fp.benign_asr < 0.2 and fp.asr_after < fp.asr and fp.value == fp.asr - fp.asr_after
    # The numbers are those of the match itself: played directly (from the state dict this time,
    # which the exported program computes the same), Fine-Pruning's match stores them.
    model = (d / "trojan.pt").resolve()
    played = dataclasses.replace(sc, attackers={f"model:{model}": {"trigger": str((d / "trigger.npz").resolve())}})
    rec = Referee(played, device="cpu").play(f"model:{model}", "fine-pruning", seed=0).record
    assert (rec.metrics["defense"]["ard"], rec.metrics["defense"]["cad"], rec.metrics["attack"]["base_rate"]) == (
        fp.value, fp.cad, fp.benign_asr)
    html = (page / "index.html").read_text()
    assert "Other defenders" in html and "fine-pruning" in html and "No inspector played the model" in html
    with pytest.raises(ArenaError, match="target class 10 is not one of the scenario's 10 classes"):
        scan(sc, d / "trojan.pt2", defenders=["strip"], trigger=d / "trigger.npz", target=10)


def test_the_report_says_what_a_trigger_would_add(tmp_path):
    from arena.present.scan_page import write_scan_page
    from arena.present.scan_text import scan_text

    tiny = load_scenario(str(_tiny_toml(tmp_path)))
    inspectors, others, would_run, skipped = _cast(tiny, None, False, "process")
    assert "neural-cleanse" in inspectors and others == [] and skipped == []
    assert {"input_filtering: strip", "model_sanitization: fine-pruning", "input_reformation: magnet"} <= set(would_run)
    assert not any(w.endswith(": none") or w.endswith(": abs") for w in would_run)
    # Given a trigger they play; named, a defender of category none is left out.
    _, others, would_run, _ = _cast(tiny, None, True, "process")
    assert ("strip", "input_filtering") in others and would_run == []
    assert _cast(tiny, ["abs", "strip", "none"], False, "process") == (["abs"], [("strip", "input_filtering")], [],
                                                                      ["none"])
    report = ScanReport(model="m.pt", sha256="0" * 64, scenario="tiny", digest="d", seed=0, findings=[],
                        fisher_p=None, would_run=["input_filtering: strip", "model_sanitization: fine-pruning"],
                        readings=[Reading("neo", "input_filtering", "TPR", 0.9, asr=0.97, asr_after=0.97, fpr=0.05,
                                          auroc=0.98, effective_asr=0.07),
                                  Reading("magnet", "input_reformation", "ARD", None, fault="defender: it broke")])
    text = scan_text(report)
    assert "With --trigger T.npz (a trigger you suspect the model answers to) 2 more defenders would play it: " \
           "input filters strip" in text and "mitigations fine-pruning" in text
    assert "Other defenders, with the scenario's trigger" in text and "FPR 0.05, AUROC 0.98" in text
    assert "defender: it broke" in text and "No inspector played the model" in text
    html = write_scan_page(report, tmp_path / "page").read_text()
    assert "2 more defenders would play it" in html and "neo" in html


def _tiny_toml(tmp_path: Path) -> Path:
    from conftest import TINY_TOML

    p = tmp_path / "tiny.toml"
    p.write_text(TINY_TOML)
    return p


@pytest.mark.slow
def test_a_file_that_is_no_model_forfeits_with_what_to_do(scan_setting, tmp_path):
    sc, _, d = scan_setting
    from arena.engine.referee import Referee

    torch.save({"not": "weights"}, tmp_path / "junk.pt")
    rec = Referee(sc, device="cpu").play(f"model:{tmp_path / 'junk.pt'}", "none", seed=0).record
    assert rec.metrics["forfeit"]["side"] == "attacker" and "torch.save(model.state_dict()" in rec.reason
    small = torch.nn.Linear(3, 2)
    torch.save(small.state_dict(), tmp_path / "other.pt")
    rec = Referee(sc, device="cpu").play(f"model:{tmp_path / 'other.pt'}", "none", seed=0).record
    assert "does not fit the scenario's architecture" in rec.reason
    # Exported programs: one of another task, and one whose weight is a pickle that would run code.
    five = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 5))
    torch.export.save(torch.export.export(five, (torch.zeros(1, 1, 28, 28),)), tmp_path / "five.pt2")
    rec = Referee(sc, device="cpu").play(f"model:{tmp_path / 'five.pt2'}", "none", seed=0).record
    assert rec.metrics["forfeit"]["side"] == "attacker" and "answers 5 classes" in rec.reason
    from test_exported import pickled_weight

    marker = tmp_path / "pwned"
    (tmp_path / "hostile.pt2").write_bytes(pickled_weight((d / "trojan.pt2").read_bytes(), marker))
    rec = Referee(sc, device="cpu").play(f"model:{tmp_path / 'hostile.pt2'}", "none", seed=0).record
    assert "is stored as a pickle, which could run code" in rec.reason and not marker.exists()


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
    of nine attackers and the benign control models (five a seed) of every published test seed, leave
    one seed out."""
    sc = load_scenario("fmnist-cnn")
    recs = [r for r in read_jsonl_gz(REPO / "leaderboards" / "fmnist-cnn.matches.jsonl.gz")
            if r.scenario_digest == sc.digest]
    ins = ["abs", "deep-inspect", "neural-cleanse", "neuron-inspect", "tabor"]
    x, y, seeds = calibration_rows(recs, ins)
    n = len({r.seed for r in recs})
    assert n >= 5 and (int(y.sum()), int((1 - y).sum()), len(set(seeds.tolist()))) == (9 * n, 5 * n, n)
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
