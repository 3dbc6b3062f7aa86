"""The paper's claims (arena.results.paper): synthetic records with known answers give known verdicts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

from arena.cli import main
from arena.results.intervals import t_quantile
from arena.results.paper import (
    ATTACKS,
    CLAIMS,
    DEFENSES,
    TABLE8_ARD,
    cells_of,
    classify_variant,
    evaluate,
    kendall_tau_b,
    make_setting,
    render,
)
from arena.results.io import write_jsonl_gz
from arena.config.scenario import load_scenario
from arena.results.store import ControlRecord, MatchRecord

ROOT = Path(__file__).resolve().parents[1]
MAIN = load_scenario("fmnist-cnn")
ALPHA08 = load_scenario(str(ROOT / "benchmarks" / "scenarios" / "fmnist-cnn-alpha08.toml"))
SEEDS = list(MAIN.seeds[:5])  # five of the test seeds (10-14): the size of the first published board


def _rec(attacker: str, defender: str, seed: int, asr: float, sc=MAIN, defense: dict | None = None,
         nsr: float = 0.8, base_rate: float = 0.01) -> MatchRecord:
    metrics = {"attack": {"asr": asr, "cad": 0.0, "nsr": nsr, "base_rate": base_rate}}
    if defense is not None:
        metrics["defense"] = defense
    return MatchRecord(scenario=sc.name, scenario_digest=sc.digest, attacker=attacker, attacker_version="1",
                       defender=defender, defender_version="1", seed=seed, rounds=1, status="ok", outcome=0.5,
                       metrics=metrics)


def _jitter(seed: int) -> float:
    return 0.01 * (seed % 3)  # a little spread between seeds, so intervals have a width


def _vs_none(sc, asr: float, attackers=tuple(ATTACKS.values())) -> list[MatchRecord]:
    return [_rec(a, "none", s, asr - _jitter(s) - 0.001 * i, sc) for s in SEEDS for i, a in enumerate(attackers)]


def _finding(findings, claim_id: str):
    return next(f for f in findings if f.claim.id == claim_id).evidence


def test_t_quantile_and_kendall_tau_match_their_tables():
    assert t_quantile(0.95, 4) == pytest.approx(2.7764, abs=1e-4)
    assert t_quantile(0.95, 1) == pytest.approx(12.7062, abs=1e-3)
    assert t_quantile(0.95, 9) == pytest.approx(2.2622, abs=1e-4)
    assert kendall_tau_b([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert kendall_tau_b([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    # One tie in x: 4 concordant, 1 discordant, tau-b = 3 / sqrt(6 * 5).
    assert kendall_tau_b([1, 2, 3, 3], [1, 3, 2, 4]) == pytest.approx(3 / 30**0.5)
    assert kendall_tau_b([1, 2], [1, 2]) is None


def test_transparency_that_costs_asr_agrees_and_the_reverse_contradicts():
    main_recs, var_recs = _vs_none(MAIN, 0.98), _vs_none(ALPHA08, 0.30)
    ev = _finding(evaluate(main_recs, MAIN.name, MAIN, [(ALPHA08, var_recs)]), "Remark 1")
    assert ev.verdict == "agrees", ev.why
    assert "n=5 seeds" in ev.number and "+6" in ev.number  # about 68 points lost at alpha 0.8
    ev = _finding(evaluate(_vs_none(MAIN, 0.30), MAIN.name, MAIN, [(ALPHA08, _vs_none(ALPHA08, 0.98))]),
                  "Remark 1")
    assert ev.verdict == "contradicts", ev.why


def test_no_difference_with_noise_is_inconclusive():
    main_recs = [_rec(a, "none", s, 0.9 + (0.05 if s % 2 else -0.05)) for s in SEEDS for a in ATTACKS.values()]
    var_recs = [_rec(a, "none", s, 0.9, ALPHA08) for s in SEEDS for a in ATTACKS.values()]
    ev = _finding(evaluate(main_recs, MAIN.name, MAIN, [(ALPHA08, var_recs)]), "Remark 1")
    assert ev.verdict == "inconclusive" and "covers 0" in ev.why


def test_missing_agents_and_variants_are_untested_and_named():
    findings = evaluate(_vs_none(MAIN, 0.98, ("badnet", "imc")), MAIN.name, MAIN)
    strip = _finding(findings, "Remark 5")
    assert strip.verdict == "untested"
    assert "latent vs strip" in strip.why and "trojannet vs neo" in strip.why and "`fmnist-cnn`" in strip.why
    transparent = _finding(findings, "Remark 1")
    assert transparent.verdict == "untested" and "alpha 0.8" in transparent.why and "--variant" in transparent.why
    mixing = _finding(findings, "Remark 13")
    assert mixing.verdict == "untested" and 'mixing = "dataset"' in mixing.why and 'mixing = "loss"' in mixing.why


def test_an_empty_store_is_untested_on_the_test_seeds_and_nothing_else():
    findings = evaluate([], MAIN.name, MAIN)
    assert {f.evidence.verdict for f in findings} == {"untested", "not comparable"}
    assert f"no matches of `fmnist-cnn` on the test seeds {MAIN.seeds[0]}-{MAIN.seeds[-1]} yet" in _finding(findings, "Table 8 ordering").why
    assert [f.claim.id for f in findings if f.evidence.verdict == "not comparable"] == [
        "Remark 3", "Remark 12", "Remark 16"]


def _ard_records(sign: float) -> list[MatchRecord]:
    """Each attack-agnostic defense against the eight attacks, its ARD following Table 8 (sign +1) or its
    reverse (sign -1)."""
    recs = []
    for s in SEEDS:
        for d, row in TABLE8_ARD.items():
            for a, ard in row.items():
                val = 0.5 + sign * (ard / 200) + 0.001 * (s % 2)
                recs.append(_rec(ATTACKS[a], DEFENSES[d], s, 0.99,
                                 defense={"category": "model_sanitization", "ard": val, "cad": 0.01}))
    return recs


def test_table8_ordering_agrees_when_it_follows_the_table_and_contradicts_when_reversed():
    ev = _finding(evaluate(_ard_records(+1), MAIN.name, MAIN), "Table 8 ordering")
    assert ev.verdict == "agrees", ev.why
    ev = _finding(evaluate(_ard_records(-1), MAIN.name, MAIN), "Table 8 ordering")
    assert ev.verdict == "contradicts", ev.why


def test_attacks_that_do_not_work_are_left_out_of_defense_statistics():
    # Table 8 ordering with every attack failing (ASR 0.1): no working cell, so nothing to test.
    recs = [dataclasses.replace(r, metrics={**r.metrics, "attack": {**r.metrics["attack"], "asr": 0.1}})
            for r in _ard_records(+1)]
    assert _finding(evaluate(recs, MAIN.name, MAIN), "Table 8 ordering").verdict == "untested"


def test_development_seeds_are_left_out_unless_asked_for():
    dev = [_rec(a, "none", s, 0.98 - 0.01 * i - 0.001 * s) for s in MAIN.development_seeds
           for i, a in enumerate(ATTACKS.values())]
    findings = evaluate(dev, MAIN.name, MAIN)
    assert _finding(findings, "Table 5 ordering (alpha 0)").verdict == "untested"
    md = render(dev, MAIN.name, MAIN)
    assert "development seeds 0-2" in md and "--development" in md
    ev = _finding(evaluate(dev, MAIN.name, MAIN, development=True), "Table 5 ordering (alpha 0)")
    assert ev.verdict != "untested" and "n=3 seeds" in ev.number


def test_variants_are_matched_only_when_they_change_one_knob():
    assert classify_variant(MAIN, ALPHA08) == ("transparent", "")
    two = dataclasses.replace(ALPHA08, trigger=dataclasses.replace(ALPHA08.trigger, size=1))
    kind, note = classify_variant(MAIN, two)
    assert kind is None and "trigger.alpha" in note and "trigger.size" in note
    pixel = dataclasses.replace(MAIN, name="fmnist-1px", trigger=dataclasses.replace(MAIN.trigger, size=1))
    assert classify_variant(MAIN, pixel)[0] == "single-pixel"


def test_the_page_has_a_row_per_remark_and_table_and_a_summary():
    md = render(_vs_none(MAIN, 0.98), MAIN.name, MAIN, [(ALPHA08, _vs_none(ALPHA08, 0.3))],
                variant_specs=["benchmarks/scenarios/fmnist-cnn-alpha08.toml"])
    for n in range(1, 17):
        assert f"| Remark {n} |" in md
    for table in ("Table 5 ordering (alpha 0.8)", "Table 5 ordering (alpha 0)", "Table 8 ordering",
                  "Table 11 ordering"):
        assert f"| {table} |" in md
    assert len(CLAIMS) == 20 and "(of 20 claims)" in md
    assert f"test seeds {MAIN.seeds[0]}-{MAIN.seeds[-1]}" in md and "--variant benchmarks/scenarios/fmnist-cnn-alpha08.toml" in md
    assert md.count("\n- **") == 20  # one why line per claim


def test_the_command_writes_the_page_from_published_matches(tmp_path):
    src = write_jsonl_gz(_vs_none(MAIN, 0.98) + _vs_none(ALPHA08, 0.3), tmp_path / "m.jsonl.gz")
    out = tmp_path / "paper.md"
    res = CliRunner().invoke(main, ["paper", "fmnist-cnn", "--variant", str(ROOT / "benchmarks" / "scenarios" /
                                    "fmnist-cnn-alpha08.toml"), "--matches", str(src), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert res.output.strip().endswith("paper.md")
    text = out.read_text()
    assert "| Remark 1 |" in text and "**agrees**" in text and "`m.jsonl.gz`" in text
    res = CliRunner().invoke(main, ["paper", "fmnist-cnn", "--out", str(tmp_path / "no" / "paper.md")])
    assert res.exit_code == 2 and "does not exist" in res.output


def _member(k: int, aiv_max: float, flagged: bool = False) -> dict:
    """One benign model of a control population, as an inspector's match stores it."""
    return {"member": k, "verdict": True, "flagged": flagged, "aiv_max": aiv_max}


def _full_tournament(sc, rng_seed: int = 0) -> list[MatchRecord]:
    """Every attacker against every defender on the test seeds, with plausible random metrics."""
    import random

    rng = random.Random(rng_seed)
    recs = []
    for s in SEEDS:
        for a in [*ATTACKS.values(), "imc-adaptive", "none"]:
            asr = 0.01 if a == "none" else rng.uniform(0.6, 1.0)
            recs.append(_rec(a, "none", s, asr, sc, nsr=0.4 if a == "none" else rng.uniform(0.4, 0.9),
                             base_rate=0.01))
            for d in DEFENSES.values():
                per_class = [rng.uniform(0, 4) for _ in range(10)]
                rec = _rec(a, d, s, asr, sc, defense={
                    "category": "x", "ard": rng.uniform(0, asr), "cad": rng.uniform(0, 0.05),
                    "tpr": rng.uniform(0, 1), "flagged": rng.random() < 0.5, "mjs": rng.uniform(0, 1),
                    "aiv": per_class[0], "aiv_per_class": per_class, "art_model_s": rng.uniform(0.1, 100),
                    "effective_asr": rng.uniform(0, asr)})
                rec.metrics["control"] = {"members": [_member(k, rng.uniform(0, 4)) for k in range(5)]}
                recs.append(rec)
    return recs


def test_a_full_tournament_with_every_variant_tests_every_comparable_claim():
    knobs = {"fmnist-1px": ("trigger", "size", 1), "fmnist-random": ("trigger", "shape", "random"),
             "fmnist-scratch": ("attack", "from_scratch", True), "fmnist-dataset": ("attack", "mixing", "dataset"),
             "fmnist-loss": ("attack", "mixing", "loss")}
    variants = [(ALPHA08, _vs_none(ALPHA08, 0.3))]
    for name, (section, key, value) in knobs.items():
        vsc = dataclasses.replace(MAIN, name=name, **{section: dataclasses.replace(getattr(MAIN, section),
                                                                                    **{key: value})})
        variants.append((vsc, _vs_none(vsc, 0.9)))
    findings = evaluate(_full_tournament(MAIN), MAIN.name, MAIN, variants)
    untested = [f.claim.id for f in findings if f.evidence.verdict == "untested"]
    assert untested == ["Remark 2"]  # sweeps, not matches
    for f in findings:
        if f.claim.evaluate is not None:
            assert "n=5 seeds" in f.evidence.number, (f.claim.id, f.evidence.number)


def test_write_commands_default_to_the_arena_home(tmp_path, monkeypatch):
    """Run outside a checkout, `arena paper` and `leaderboard --write` write into the arena home and say where."""
    home = tmp_path / "home"
    monkeypatch.setenv("ARENA_HOME", str(home))
    monkeypatch.chdir(tmp_path)  # no docs/ or leaderboards/ folder here
    src = write_jsonl_gz(_vs_none(MAIN, 0.98), tmp_path / "m.jsonl.gz")
    res = CliRunner().invoke(main, ["paper", "fmnist-cnn", "--matches", str(src)])
    assert res.exit_code == 0, res.output
    assert (home / "paper" / "fmnist-cnn.md").is_file() and res.output.strip().endswith("fmnist-cnn.md")
    assert "--out" not in (home / "paper" / "fmnist-cnn.md").read_text()
    assert not (tmp_path / "docs").exists()


# --- the stricter rule: sizes of effect, gates, targets, confounds ----------------------------------------


def _remark4_records(cad_gap: float) -> list[MatchRecord]:
    """MP and AR remove the backdoor (ARD 0.9), RS nothing (ARD 0); MP and AR cost ``cad_gap`` more clean
    accuracy than RS, with a little spread between seeds."""
    recs = []
    for s in SEEDS:
        for a in ATTACKS.values():
            for d, ard, cad in (("magnet", 0.9, cad_gap), ("adversarial-retraining", 0.9, cad_gap),
                                ("randomized-smoothing", 0.0, 0.0)):
                recs.append(_rec(a, d, s, 0.99, defense={"category": "x", "ard": ard + 0.001 * (s % 2),
                                                          "cad": cad + 0.002 * (s % 3)}))
    return recs


def test_an_effect_on_the_papers_side_but_short_of_its_size_is_inconclusive_not_agreement():
    ev = _finding(evaluate(_remark4_records(0.12), MAIN.name, MAIN), "Remark 4")
    assert ev.verdict == "agrees", ev.why  # "over 10 points": 12 is the paper's size
    ev = _finding(evaluate(_remark4_records(0.03), MAIN.name, MAIN), "Remark 4")
    assert ev.verdict == "inconclusive", ev.why  # 3 points, clearly above 0, clearly short of 10
    assert "stops short of the paper's size of effect for: defense CAD of MP, AR - RS" in ev.why
    assert "covers 0" not in ev.why and "paper's size +10.0 points" in ev.number


def _gate_failed(r: MatchRecord) -> MatchRecord:
    return dataclasses.replace(r, outcome=0.0, reason="attacker gate: the trojan loses 16.1 points of clean accuracy")


def test_a_trojan_that_failed_the_attacker_gate_counts_as_a_failed_attack_and_both_are_reported():
    # At alpha 0.8 every attack works (ASR 0.9+) but TrojanNet's trojan fails the attacker gate each seed.
    var = [_gate_failed(r) if r.attacker == "trojannet" else r for r in _vs_none(ALPHA08, 0.95)]
    ev = _finding(evaluate(_vs_none(MAIN, 0.98), MAIN.name, MAIN, [(ALPHA08, var)]), "Table 5 ordering (alpha 0.8)")
    strict, lenient = ev.stats
    assert strict.judged and not lenient.judged and "gate-failed trojans at their measured ASR" in lenient.label
    assert dict(strict.per_seed) != dict(lenient.per_seed) and "[reported, not judged]" in ev.number
    # Remark 1 likewise: TrojanNet's drop is its full ASR when its gate-failed trojan counts as 0.
    r1 = _finding(evaluate(_vs_none(MAIN, 0.98), MAIN.name, MAIN, [(ALPHA08, var)]), "Remark 1")
    assert r1.stats[0].mean > r1.stats[1].mean
    # Defense statistics leave a gate-failed trojan out: it never met the defence.
    recs = [_gate_failed(r) if r.attacker == "badnet" else r for r in _ard_records(+1)]
    cells = cells_of(make_setting(MAIN.name, recs, MAIN), "magnet", lambda m: m["defense"]["ard"], working_only=True)
    assert set(cells) == set(SEEDS) and all("badnet" not in row and "trojannn" in row for row in cells.values())


def _inspections(abs_target: int) -> list[MatchRecord]:
    """ABS flags every trojan naming class ``abs_target`` as the suspect and ranks every trojan above the
    benign models (AUROC 1); NC and TABOR flag trojans at one seed in three and rank them among the benign
    models (AUROC below 1)."""
    target = MAIN.attack.target_class
    recs = []
    for s in SEEDS:
        for i, a in enumerate(ATTACKS.values()):
            recs.append(_rec(a, "abs", s, 0.99, defense={"category": "model_inspection", "flagged": True,
                                                         "suspected_target": abs_target, "mjs": 0.2,
                                                         "aiv_per_class": [3.0 + 0.01 * s]}))
            recs[-1].metrics["control"] = {"members": [_member(k, 1.0 + 0.1 * k) for k in range(5)]}
            for d in ("neural-cleanse", "tabor"):
                recs.append(_rec(a, d, s, 0.99, defense={"category": "model_inspection", "flagged": s % 3 == 0,
                                                         "suspected_target": target, "mjs": 0.6,
                                                         "aiv_per_class": [0.9 + 0.1 * i + 0.01 * s]}))
                recs[-1].metrics["control"] = {"members": [_member(k, 1.0 + 0.1 * k) for k in range(5)]}
    return recs


def test_a_flag_naming_the_wrong_target_counts_as_a_miss():
    right = _finding(evaluate(_inspections(MAIN.attack.target_class), MAIN.name, MAIN), "Remark 6")
    assert right.verdict == "agrees", right.why
    wrong = _finding(evaluate(_inspections((MAIN.attack.target_class + 1) % 10), MAIN.name, MAIN), "Remark 6")
    assert wrong.verdict != "agrees", wrong.why
    auroc, flags, _, lenient = wrong.stats
    assert auroc.mean > 0 and auroc.judged  # ABS ranks the trojans better whatever class it names
    assert flags.mean < 0 and flags.judged and lenient.mean > 0 and not lenient.judged  # misses; any-target flags


def test_extra_control_runs_are_the_auroc_s_negatives_too():
    """Benign models of `arena controls` that ABS scores above every trojan pull its AUROC down."""
    recs = _inspections(MAIN.attack.target_class)
    extra = [ControlRecord(scenario=MAIN.name, scenario_digest=MAIN.digest, defender="abs", defender_version="1",
                           seed=s, member=k, result={"verdict": True, "flagged": True, "aiv_max": 5.0})
             for s in SEEDS for k in range(5, 10)]
    alone = _finding(evaluate(recs, MAIN.name, MAIN), "Remark 6").stats[0]
    more = _finding(evaluate(recs, MAIN.name, MAIN, controls=extra), "Remark 6").stats[0]
    assert more.mean < alone.mean


def test_a_confounded_comparison_is_held_at_inconclusive():
    scratch = load_scenario(str(ROOT / "benchmarks" / "scenarios" / "fmnist-cnn-scratch.toml"))
    tr = scratch.training
    assert (tr.epochs, tr.lr) != (tr.retrain_epochs, tr.retrain_lr)  # the shipped variant is confounded
    ev = _finding(evaluate(_vs_none(MAIN, 0.6), MAIN.name, MAIN, [(scratch, _vs_none(scratch, 0.95))]), "Remark 11")
    assert ev.verdict == "inconclusive" and "training budget" in ev.why and "'agrees' on the numbers" in ev.why
    # A main setting that re-trains with the from-scratch budget, and its from-scratch variant: no confound.
    fair = dataclasses.replace(MAIN, training=dataclasses.replace(MAIN.training, retrain_epochs=MAIN.training.epochs,
                                                                  retrain_lr=MAIN.training.lr))
    var = dataclasses.replace(fair, name="fair-scratch", attack=dataclasses.replace(fair.attack, from_scratch=True))
    ev = _finding(evaluate(_vs_none(fair, 0.6), fair.name, fair, [(var, _vs_none(var, 0.95))]), "Remark 11")
    assert ev.verdict == "agrees", ev.why


def test_remark_15_must_hold_against_every_defence():
    def recs(gain_vs_abs: float) -> list[MatchRecord]:
        out = []
        for s in SEEDS:
            for d in ("magnet", "adversarial-retraining", "strip", "abs"):
                gain = gain_vs_abs if d == "abs" else 0.4
                for a, eff in (("imc", 0.3), ("imc-adaptive", 0.3 + gain + 0.01 * (s % 3))):
                    out.append(_rec(a, d, s, 0.99, defense={"category": "x", "effective_asr": eff}))
        return out

    assert _finding(evaluate(recs(0.4), MAIN.name, MAIN), "Remark 15").verdict == "agrees"
    ev = _finding(evaluate(recs(-0.2), MAIN.name, MAIN), "Remark 15")  # a mean over four would still be +0.25
    assert ev.verdict == "contradicts" and "vs ABS" in ev.why


def test_claims_the_arena_cannot_judge_show_their_numbers_without_a_verdict():
    findings = evaluate(_full_tournament(MAIN), MAIN.name, MAIN)
    r7 = _finding(findings, "Remark 7")
    assert r7.verdict == "not comparable" and "tau-b vs Table 13" in r7.number and "marginal" in r7.why
