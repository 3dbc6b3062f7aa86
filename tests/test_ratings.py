"""Ratings and leaderboards on simulated games: no training, no data files."""

from __future__ import annotations

import csv
import io
import math
import random

import numpy as np
import pytest

from arena.results.leaderboard import (games_from_records, outcome_matrix, render_leaderboard,
                               write_leaderboard)
from arena.results.ratings import SCALE, Game, bootstrap_intervals, elo, fit_bradley_terry, rate
from arena.results.store import MatchRecord

# Known strengths; defender "none" is the anchor at 1000.
TRUE_ATTACKERS = {"weak": 850.0, "badnet": 1050.0, "imc": 1250.0, "imc-adaptive": 1450.0}
TRUE_DEFENDERS = {"none": 1000.0, "strip": 1150.0, "fine-pruning": 1300.0, "neural-cleanse": 1400.0}
TRUTH = {**{f"attacker:{k}": v for k, v in TRUE_ATTACKERS.items()},
         **{f"defender:{k}": v for k, v in TRUE_DEFENDERS.items()}}


def p_win(ra: float, rd: float) -> float:
    return 1.0 / (1.0 + 10.0 ** ((rd - ra) / 400.0))


def simulate(per_pair: int, seed: int, trials: int | None = None) -> list[Game]:
    """Games from the true ratings: Bernoulli outcomes (trials=None) or the mean of ``trials`` Bernoullis."""
    rng = np.random.default_rng(seed)
    games, order = [], 0
    for a, ra in TRUE_ATTACKERS.items():
        for d, rd in TRUE_DEFENDERS.items():
            p = p_win(ra, rd)
            for _ in range(per_pair):
                s = float(rng.random() < p) if trials is None else float(rng.binomial(trials, p)) / trials
                games.append(Game(a, d, s, order))
                order += 1
    return games


def diffs(r: dict[str, float]) -> dict[str, float]:
    return {k: v - r["defender:none"] for k, v in r.items()}


def test_bt_exact_expected_scores_recover_truth():
    # Scores equal to the model's win probabilities: the unpenalised MLE is exactly the truth.
    games = [Game(a, d, p_win(ra, rd), i) for i, ((a, ra), (d, rd)) in
             enumerate((x, y) for x in TRUE_ATTACKERS.items() for y in TRUE_DEFENDERS.items())]
    games = games * 10
    fitted = fit_bradley_terry(games, ridge=1e-8)
    assert fitted["defender:none"] == 1000.0
    assert set(fitted) == set(TRUTH)
    for k, v in TRUTH.items():
        assert fitted[k] == pytest.approx(v, abs=0.05), k
    # The default ridge shrinks these ratings by only about an Elo point (less with more games).
    shrunk = fit_bradley_terry(games)
    for k, v in TRUTH.items():
        assert shrunk[k] == pytest.approx(v, abs=3.0), k


def test_bt_recovers_known_strengths_fractional():
    games = simulate(per_pair=25, seed=7, trials=10)  # 400 games, scores like an ASR over 10 inputs
    fitted = fit_bradley_terry(games)
    assert fitted["defender:none"] == 1000.0  # exactly the anchor
    # Standard error of a rating difference here is about 15 Elo points; same-role players are 100+ apart.
    for k, v in diffs(fitted).items():
        assert v == pytest.approx(TRUTH[k] - 1000.0, abs=60.0), k
    for role, truth in (("attacker", TRUE_ATTACKERS), ("defender", TRUE_DEFENDERS)):
        names = sorted(truth, key=truth.get)
        assert [fitted[f"{role}:{n}"] for n in names] == sorted(fitted[f"{role}:{n}"] for n in names)


def test_bt_recovers_known_strengths_bernoulli():
    games = simulate(per_pair=40, seed=3)  # 640 win/loss games
    fitted = fit_bradley_terry(games)
    assert fitted["defender:none"] == 1000.0
    # Standard error of a rating difference here is about 40 Elo points; same-role players are 100-200 apart.
    for k, v in diffs(fitted).items():
        assert v == pytest.approx(TRUTH[k] - 1000.0, abs=150.0), k
    for role, truth in (("attacker", TRUE_ATTACKERS), ("defender", TRUE_DEFENDERS)):
        names = sorted(truth, key=truth.get)
        assert [fitted[f"{role}:{n}"] for n in names] == sorted(fitted[f"{role}:{n}"] for n in names)


def test_bt_is_the_penalised_mle():
    # First-order conditions: for every player, sum of (own score - predicted) == ridge * beta.
    games = simulate(per_pair=10, seed=11, trials=5)
    ridge = 0.5  # large, so a wrong penalty scale would show
    fitted = fit_bradley_terry(games, ridge=ridge)
    mean = sum(fitted.values()) / len(fitted)
    beta = {k: (v - mean) / SCALE for k, v in fitted.items()}  # the ridge centres the log-odds at 0
    grad = dict.fromkeys(fitted, 0.0)
    for g in games:
        resid = g.score - 1.0 / (1.0 + math.exp(beta[g.defender_key] - beta[g.attacker_key]))
        grad[g.attacker_key] += resid
        grad[g.defender_key] -= resid
    for k in fitted:
        assert grad[k] == pytest.approx(ridge * beta[k], abs=1e-4), k


def test_unbeaten_and_winless_players_stay_finite_and_anchor_fallback():
    games = [Game("a", "x", 1.0, 0), Game("a", "x", 1.0, 1), Game("b", "x", 0.0, 2)]
    fitted = fit_bradley_terry(games)  # no defender "none": mean is 1000
    assert all(math.isfinite(v) for v in fitted.values())
    assert sum(fitted.values()) / len(fitted) == pytest.approx(1000.0)
    assert fitted["attacker:a"] > fitted["defender:x"] > fitted["attacker:b"]


def test_attacker_and_defender_with_the_same_name_are_different_players():
    games = [Game("none", "none", 0.0, 0), Game("badnet", "none", 0.9, 1), Game("none", "strip", 0.0, 2),
             Game("badnet", "strip", 0.4, 3)]
    fitted = fit_bradley_terry(games)
    assert set(fitted) == {"attacker:none", "attacker:badnet", "defender:none", "defender:strip"}
    assert fitted["defender:none"] == 1000.0
    assert fitted["attacker:none"] < 1000.0 < fitted["attacker:badnet"]


def test_bt_and_bootstrap_do_not_depend_on_game_order():
    games = simulate(per_pair=8, seed=5, trials=4)
    shuffled = games[:]
    random.Random(1).shuffle(shuffled)
    assert shuffled != games
    assert fit_bradley_terry(shuffled) == fit_bradley_terry(games)
    assert bootstrap_intervals(shuffled, rounds=30, seed=4) == bootstrap_intervals(games, rounds=30, seed=4)
    # ...but the seed matters.
    assert bootstrap_intervals(games, rounds=30, seed=5) != bootstrap_intervals(games, rounds=30, seed=4)


def test_intervals_contain_estimate_and_narrow_with_more_games():
    small = simulate(per_pair=8, seed=21, trials=4)
    large = simulate(per_pair=80, seed=21, trials=4)

    def widths(games: list[Game]) -> dict[str, float]:
        point = fit_bradley_terry(games)
        ci = bootstrap_intervals(games, rounds=60, seed=0)
        assert ci["defender:none"] == (1000.0, 1000.0)  # the anchor carries no uncertainty
        for k, (lo, hi) in ci.items():
            assert lo <= point[k] <= hi, k
        return {k: hi - lo for k, (lo, hi) in ci.items() if k != "defender:none"}

    w_small, w_large = widths(small), widths(large)
    assert all(w > 0 for w in w_large.values())
    # Ten times the games: intervals roughly sqrt(10) ~ 3.2 times narrower.
    for k in w_small:
        assert w_large[k] < 0.6 * w_small[k], k


def test_elo_depends_on_order_by_design():
    games = simulate(per_pair=5, seed=9)
    orders = [g.order for g in games]
    random.Random(2).shuffle(orders)
    reordered = [Game(g.attacker, g.defender, g.score, o) for g, o in zip(games, orders)]
    assert elo(reordered) != elo(games)
    # Bradley-Terry ignores the order field entirely.
    assert fit_bradley_terry(reordered) == fit_bradley_terry(games)
    # Elo follows `order`, not list position.
    assert elo(list(reversed(games))) == elo(games)
    # Elo is zero-sum around the base rating.
    assert sum(elo(games).values()) / len(TRUTH) == pytest.approx(1000.0)


def test_rate_rows():
    games = simulate(per_pair=6, seed=13, trials=4)
    rows = rate(games, bootstrap_rounds=20, seed=0)
    assert [r.player for r in rows] == sorted(TRUTH, key=lambda k: -fit_bradley_terry(games)[k])
    assert [r.rating for r in rows] == sorted((r.rating for r in rows), reverse=True)
    by = {r.player: r for r in rows}
    assert by["defender:none"].rating == 1000.0
    assert by["attacker:badnet"].role == "attacker" and by["attacker:badnet"].name == "badnet"
    assert by["attacker:badnet"].matches == 6 * len(TRUE_DEFENDERS)
    assert by["defender:strip"].matches == 6 * len(TRUE_ATTACKERS)
    badnet = [g.score for g in games if g.attacker == "badnet"]
    strip = [1.0 - g.score for g in games if g.defender == "strip"]
    assert by["attacker:badnet"].mean_score == pytest.approx(sum(badnet) / len(badnet))
    assert by["defender:strip"].mean_score == pytest.approx(sum(strip) / len(strip))
    assert by["attacker:imc"].elo == elo(games)["attacker:imc"]


# --- leaderboard ---------------------------------------------------------------------------------------------


def records() -> list[MatchRecord]:
    rng = np.random.default_rng(0)
    out, mid = [], 1
    for a, ra in TRUE_ATTACKERS.items():
        for d, rd in TRUE_DEFENDERS.items():
            for seed in range(3):
                out.append(MatchRecord(scenario="tiny", scenario_digest="abc", attacker=a, attacker_version="1",
                                       defender=d, defender_version="1", seed=seed, rounds=1, status="ok",
                                       outcome=float(rng.binomial(20, p_win(ra, rd))) / 20, id=mid))
                mid += 1
    out.append(MatchRecord(scenario="tiny", scenario_digest="abc", attacker="broken", attacker_version="1",
                           defender="none", defender_version="1", seed=0, rounds=1, status="error",
                           error="boom", id=mid))
    return out


def render(recs: list[MatchRecord]) -> tuple[str, str]:
    return render_leaderboard("tiny", recs, bootstrap_rounds=20, seed=0)


def test_games_and_matrix_from_records():
    recs = records()
    games = games_from_records(recs)
    assert len(games) == 16 * 3  # the error row is left out
    assert all(g.attacker != "broken" for g in games)
    assert sorted(g.order for g in games) == list(range(1, 49))
    m = outcome_matrix(recs)
    assert list(m.index) == sorted(TRUE_ATTACKERS) and list(m.columns) == sorted(TRUE_DEFENDERS)
    pair = [r.outcome for r in recs if r.attacker == "imc" and r.defender == "strip"]
    assert m.loc["imc", "strip"] == pytest.approx(sum(pair) / 3)


def test_leaderboard_is_deterministic_and_complete(tmp_path):
    recs = records()
    shuffled = recs[:]
    random.Random(3).shuffle(shuffled)
    md, table = render(recs)
    md2, table2 = render(shuffled)
    assert md == md2 and table == table2
    for name in [*TRUE_ATTACKERS, *TRUE_DEFENDERS]:
        assert name in md and name in table
    assert "broken" not in md
    assert "# Leaderboard: tiny" in md and "48 matches" in md
    assert "BT rating" in md and "95% CI" in md and "Elo" in md and "order" in md
    assert "`none` defender" in md and "1000" in md

    rows = list(csv.DictReader(io.StringIO(table)))
    assert {r["player"] for r in rows} == set(TRUTH)
    none = next(r for r in rows if r["player"] == "defender:none")
    assert none["rating"] == "1000.00"
    assert [float(r["rating"]) for r in rows] == sorted((float(r["rating"]) for r in rows), reverse=True)

    md_path, csv_path = write_leaderboard("tiny", shuffled, tmp_path / "out", bootstrap_rounds=20)
    assert md_path == tmp_path / "out" / "tiny.md" and csv_path == tmp_path / "out" / "tiny.csv"
    assert md_path.read_text() == md and csv_path.read_text() == table


def test_leaderboard_says_when_pairs_never_met():
    recs = records()
    md, _ = render(recs)
    assert "Incomplete" not in md  # every pair played
    # A tournament cut short: imc-adaptive never met strip or fine-pruning.
    cut = [r for r in recs if not (r.attacker == "imc-adaptive" and r.defender in ("strip", "fine-pruning"))]
    md, _ = render(cut)
    assert ("**Incomplete:** 2 of 16 attacker-defender pairs have no match (n/a in the outcome matrix); "
            "attackers with unplayed pairs: imc-adaptive.") in md


def test_match_endings_tell_a_failed_trojan_from_a_stopped_attack():
    from arena.results.endings import ending, endings
    from arena.results.store import MatchRecord

    def rec(defender, outcome, reason, asr=0.9, base=0.1):
        return MatchRecord(scenario="s", scenario_digest="d", attacker="a", attacker_version="1", defender=defender,
                           defender_version="1", seed=0, rounds=1, status="ok", outcome=outcome, reason=reason,
                           metrics={"attack": {"asr": asr, "base_rate": base}})

    cases = [
        rec("strip", 0.0, "attacker gate: the trojan loses 6.0 points of clean accuracy"),
        rec("strip", 1.0, "defender gate: the filter rejects 30% of clean inputs"),
        rec("strip", 0.1, "10% of trigger inputs pass the deployment and hit the target"),
        rec("none", 0.05, "5% of trigger inputs pass", asr=0.15),  # the backdoor never worked
        rec("strip", 0.9, "90% of trigger inputs pass"),
        rec("strip", 0.0, "attacker forfeits: attacker 'a' crashed in craft"),
    ]
    assert [ending(r) for r in cases] == ["attacker_gate", "defender_gate", "stopped", "weak", "through",
                                          "attacker_forfeit"]
    assert sum(endings(cases, "attacker")["a"].values()) == len(cases)
