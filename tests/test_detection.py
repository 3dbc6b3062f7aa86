"""Detection over models (arena.results.detection): synthetic records with known answers, and one real tiny population."""

from __future__ import annotations

import math

import numpy as np
import pytest

from arena.results.detection import detection_rocs, model_scores
from arena.results.leaderboard import render_leaderboard
from arena.results.store import MatchRecord


def _members(seed_flags: list[tuple[float, bool]]) -> list[dict]:
    return [{"member": i, "flagged": f, "aiv_max": a, "verdict": True, "fault": None}
            for i, (a, f) in enumerate(seed_flags)]


def _match(attacker: str, seed: int, trojan: tuple[float, bool], members: list[dict], defender: str = "nc",
           gate: str = "play") -> MatchRecord:
    aiv, flagged = trojan
    return MatchRecord(
        scenario="s", scenario_digest="d", attacker=attacker, attacker_version="1", defender=defender,
        defender_version="1", seed=seed, rounds=1, status="ok", outcome=0.0,
        metrics={"gate": gate,
                 "defense": {"category": "model_inspection", "flagged": flagged, "aiv_per_class": [0.1, aiv, 0.5]},
                 "control": {"members": members}},
    )


def synthetic() -> list[MatchRecord]:
    # Seed 0: benign models scored 1 and 4 (the second flagged); seed 1: benign 2.
    m0, m1 = _members([(1.0, False), (4.0, True)]), _members([(2.0, False)])
    return [
        _match("badnet", 0, (3.0, True), m0),
        _match("imc", 0, (5.0, True), m0),  # the same control members again: counted once
        _match("none", 0, (9.0, True), m0),  # the benign model itself: not a trojan
        _match("targeted", 0, (0.2, False), m0, gate="attacker"),  # a failed attack: not a trojan to find
        _match("badnet", 1, (0.3, False), m1),
        # A filter: no verdict, no row.
        MatchRecord(scenario="s", scenario_digest="d", attacker="badnet", attacker_version="1", defender="strip",
                    defender_version="1", seed=0, rounds=1, status="ok", outcome=0.5,
                    metrics={"defense": {"category": "input_filtering", "flagged": None},
                             "control": {"members": [{"member": 0, "flagged": False, "verdict": False}]}}),
    ]


def test_models_are_counted_once_and_only_real_trojans_are_positives():
    scores = model_scores(synthetic())
    assert list(scores) == ["nc"]
    nc = scores["nc"]
    assert sorted(m.source for m in nc if m.trojan) == ["badnet", "badnet", "imc"]
    assert sorted(m.score for m in nc if not m.trojan) == [1.0, 2.0, 4.0]


def test_auroc_tpr_and_cross_entropy_by_hand():
    (roc,) = detection_rocs(synthetic())
    # Positives 3, 5, 0.3 against negatives 1, 2, 4: pairs won 2 + 3 + 0 of 9.
    assert roc.trojans == 3 and roc.benign == 3
    assert roc.auroc == pytest.approx(5 / 9)
    # No benign model may be flagged at a 5% FPR with three of them: only 5 clears the top negative (4).
    assert roc.tpr_at_max_fpr == pytest.approx(1 / 3)
    assert (roc.flagged_trojans, roc.flagged_benign) == (2, 1)
    # Two wrong verdicts of six (the 0.3 trojan missed, the 4.0 benign model flagged).
    expected = (4 * -math.log(0.99) + 2 * -math.log(0.01)) / 6
    assert roc.cross_entropy == pytest.approx(expected)


def test_the_leaderboard_shows_the_detection_table():
    md, _ = render_leaderboard("s", synthetic(), bootstrap_rounds=10)
    section = md.split("## Detection over models", 1)[1]
    row = next(line for line in section.splitlines() if line.startswith("| nc"))
    assert "0.556" in row and "0.333" in row and "2/3" in row and "1/3" in row
    assert "| strip" not in section


def test_the_auroc_gets_an_interval_over_seeds():
    from arena.results.detection import ModelScore, roc
    from arena.results.intervals import t_interval

    # Seed 0 ranks both trojans above both benign models (AUROC 1), seed 1 three of its four pairs
    # (0.75), seed 2 none (0): the interval is Student's t over those three values.
    def seed(s: int, trojans: list[float], benign: list[float]) -> list[ModelScore]:
        return ([ModelScore(True, v, False, s, "a") for v in trojans]
                + [ModelScore(False, v, False, s, f"benign/{i}") for i, v in enumerate(benign)])

    models = seed(0, [3, 4], [1, 2]) + seed(1, [3, 1.5], [1, 2]) + seed(2, [0.5, 0.6], [1, 2])
    r = roc("nc", models)
    assert r.auroc_seeds == pytest.approx(t_interval(np.array([1.0, 0.75, 0.0])))
    assert roc("nc", seed(0, [3], [1])).auroc_seeds is None  # one seed: no interval
