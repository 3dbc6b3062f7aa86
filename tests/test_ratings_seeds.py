"""The seed bootstrap, adjacent-rank differences, deviance explained and per-category tables, on simulated
games: no training, no data files."""

from __future__ import annotations

import csv
import io
import math
import random
import re

import numpy as np
import pytest

from arena.results.leaderboard import (defender_categories, games_from_records, outcome_matrix, render_leaderboard,
                               render_markdown, write_leaderboard)
from arena.results.ratings import (Game, RatingTable, adjacent_differences, pair_claims, bootstrap_intervals, deviance_explained,
                           fit_bradley_terry, rate, resolve_unit)
from arena.results.intervals import t_quantile
from arena.results.store import MatchRecord


def p_win(ra: float, rd: float) -> float:
    return 1.0 / (1.0 + 10.0 ** ((rd - ra) / 400.0))


def tournament(attackers: dict[str, float], defenders: dict[str, float], n_seeds: int, seed: int,
               trials: int = 20, shock: float = 0.0, shocked: tuple[str, ...] = ()) -> list[Game]:
    """One game per attacker, defender and seed (as the arena plays), scores the mean of ``trials`` Bernoullis.

    Each player named in ``shocked`` (``"attacker:NAME"`` / ``"defender:NAME"``) gets, per seed, a rating
    offset drawn from N(0, ``shock``) that moves all of that seed's games together: a good or bad trojan,
    a lucky or unlucky control run.
    """
    rng = np.random.default_rng(seed)
    games, order = [], 0
    for s in range(n_seeds):
        offset = {k: rng.normal(0.0, shock) for k in shocked}
        for a, ra in attackers.items():
            for d, rd in defenders.items():
                p = p_win(ra + offset.get(f"attacker:{a}", 0.0), rd + offset.get(f"defender:{d}", 0.0))
                games.append(Game(a, d, float(rng.binomial(trials, p)) / trials, order, s))
                order += 1
    return games


ATTACKERS = {"a0": 1000.0, "a1": 1060.0, "a2": 1120.0, "a3": 1180.0, "a4": 1240.0}
DEFENDERS = {"none": 1000.0, "d1": 1050.0, "d2": 1100.0, "d3": 1150.0, "d4": 1200.0}


def widths(ci: dict[str, tuple[float, float]]) -> dict[str, float]:
    return {k: hi - lo for k, (lo, hi) in ci.items()}


def test_seed_bootstrap_widens_intervals_of_players_with_seed_level_shocks():
    # a1's trojan and d1's control run change from seed to seed; within a seed every game shares the change.
    games = tournament(ATTACKERS, DEFENDERS, n_seeds=10, seed=0, trials=40, shock=200.0,
                       shocked=("attacker:a1", "defender:d1"))
    by_seed = widths(bootstrap_intervals(games, rounds=60, seed=0, unit="seed"))
    by_match = widths(bootstrap_intervals(games, rounds=60, seed=0, unit="match"))
    # Resampling matches counts a1's 5 games of one seed as 5 independent pieces of evidence.
    for k in ("attacker:a1", "defender:d1"):
        assert by_seed[k] > 1.25 * by_match[k], (k, by_seed[k], by_match[k])


def test_a_seed_is_resampled_whole():
    # Every seed holds the very same games: any draw of whole seeds is the same data in other proportions...
    one = tournament(ATTACKERS, DEFENDERS, n_seeds=1, seed=3)
    games = [Game(g.attacker, g.defender, g.score, g.order + 100 * s, s) for s in range(4) for g in one]
    by_seed = bootstrap_intervals(games, rounds=15, seed=0, unit="seed")
    for k, (lo, hi) in by_seed.items():
        assert hi - lo == pytest.approx(0.0, abs=1e-6), k
    # ...whereas drawing single matches breaks them up.
    assert all(w > 1.0 for k, w in widths(bootstrap_intervals(games, rounds=15, seed=0, unit="match")).items()
               if k != "defender:none")


def test_one_seed_falls_back_to_matches_and_says_so():
    games = tournament(ATTACKERS, DEFENDERS, n_seeds=1, seed=1)
    assert resolve_unit(games) == "match" and resolve_unit(games, "match") == "match"
    assert resolve_unit(tournament(ATTACKERS, DEFENDERS, n_seeds=2, seed=1)) == "seed"
    with pytest.raises(ValueError, match="unit must be one of"):
        resolve_unit(games, "trojan")
    table = rate(games, bootstrap_rounds=10, seed=0)
    assert table.unit == "match" and table.seeds == 1 and table.rounds == 10
    # The fallback is the plain match bootstrap, interval for interval.
    assert {r.player: (r.ci_low, r.ci_high) for r in table} == bootstrap_intervals(games, rounds=10, unit="match")
    md = render_markdown("one", table, outcome_matrix([]), len(games))
    assert "over 1 seed." in md and "one seed only: they understate the uncertainty" in md
    assert "percentile bootstrap over matches" in md and "bootstrap over seeds" not in md


def test_rate_returns_a_table_that_still_reads_as_the_list_of_rows():
    games = tournament(ATTACKERS, DEFENDERS, n_seeds=3, seed=2)
    table = rate(games, bootstrap_rounds=10, seed=0)
    assert isinstance(table, RatingTable) and table.unit == "seed" and table.seeds == 3
    assert len(table) == 10 and table[0] is table.rows[0] and list(table) == list(table.rows)
    assert [r.rating for r in table] == sorted((r.rating for r in table), reverse=True)
    assert rate(games, bootstrap_rounds=10, seed=0, unit="match").unit == "match"
    # A player met in one seed only has no seed-to-seed spread to measure: no interval over seeds.
    late = rate(games + [Game("a1", "late", 0.5, 99, 2), Game("a2", "late", 0.25, 100, 2)], bootstrap_rounds=10)
    by = {r.player: r for r in late}
    assert math.isnan(by["defender:late"].ci_low) and not math.isnan(by["defender:d1"].ci_low)
    empty = rate([], bootstrap_rounds=10)
    assert len(empty) == 0 and empty.seeds == 0 and math.isnan(empty.deviance_explained)


# --- orderings ------------------------------------------------------------------------------------------

# Defenders far apart; two attackers of equal true strength.
STRONG_DEFENDERS = {"none": 1000.0, "mid": 1300.0, "top": 1600.0}
TWIN_ATTACKERS = {"ace": 1500.0, "twin-a": 1250.0, "twin-b": 1250.0, "weak": 1000.0}


def ordering_games() -> list[Game]:
    return tournament(TWIN_ATTACKERS, STRONG_DEFENDERS, n_seeds=12, seed=5, trials=20, shock=40.0,
                      shocked=("attacker:ace", "defender:mid"))


def test_seed_bootstrap_separates_a_strong_ordering_but_not_equals():
    table = rate(ordering_games(), bootstrap_rounds=60, seed=0)
    assert table.unit == "seed" and table.seeds == 12
    pairs = adjacent_differences(table)
    defenders = pairs["defender"]
    assert [(p.upper.name, p.lower.name) for p in defenders] == [("top", "mid"), ("mid", "none")]
    for p in defenders:
        assert p.excludes_zero and 0.0 < p.ci_low <= p.difference <= p.ci_high, p
    attackers = {frozenset((p.upper.name, p.lower.name)): p for p in pairs["attacker"]}
    assert set(attackers) == {frozenset(("ace", "twin-a")), frozenset(("twin-a", "twin-b")),
                              frozenset(("twin-b", "weak"))} or set(attackers) == {
        frozenset(("ace", "twin-b")), frozenset(("twin-a", "twin-b")), frozenset(("twin-a", "weak"))}
    twins = attackers[frozenset(("twin-a", "twin-b"))]
    assert not twins.excludes_zero and twins.ci_low < 0.0 < twins.ci_high
    assert sum(p.excludes_zero for p in attackers.values()) == 2

    md = render_markdown("order", table, outcome_matrix([]), 36)
    assert "over 12 seeds." in md and "Student's t over them" in md
    # Every pair is tested, not only adjacent ones: ace above both twins and weak, both twins above weak.
    claim = r"- `{}` ranks above `{}` \(difference \+\d+, 95% interval \[\d+, \d+\], Holm-adjusted p = [\d.e-]+\)\."
    for upper, lower in [("top", "mid"), ("top", "none"), ("mid", "none"), ("ace", "weak"), ("twin-a", "weak"),
                         ("twin-b", "weak")]:
        assert re.search(claim.format(upper, lower), md), (upper, lower)
    twin_line = next(line for line in md.splitlines() if line.startswith("Adjacent ranks not"))
    assert re.fullmatch(r"Adjacent ranks not separated after the correction: `twin-[ab]` and `twin-[ab]` \(\[-\d+, \d+\], "
                        r"adjusted p = [\d.]+\)\.", twin_line), twin_line
    assert md.count("ranks above") == 8


def test_difference_intervals_are_paired_within_seeds():
    # Shared opponents make two ratings move together: the difference is taken seed by seed, then the
    # t-interval; it is not the gap between the two ratings' own intervals.
    table = rate(ordering_games(), bootstrap_rounds=30, seed=0)
    by = {r.player: r for r in table}
    top, mid = by["defender:top"], by["defender:mid"]
    diff = table.samples.column(top.player) - table.samples.column(mid.player)
    half = t_quantile(0.95, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
    p = adjacent_differences(table)["defender"][0]
    assert (p.ci_low, p.ci_high) == pytest.approx((diff.mean() - half, diff.mean() + half))
    assert p.difference == pytest.approx(top.rating - mid.rating)  # ratings: means of the per-seed fits
    assert top.rating == pytest.approx(table.samples.column(top.player).mean())


# --- deviance explained ---------------------------------------------------------------------------------


def test_deviance_explained_is_near_zero_without_player_effects_and_high_for_a_strong_bt_model():
    flat = tournament({f"a{i}": 1100.0 for i in range(4)}, {f"d{i}": 1000.0 for i in range(4)},
                      n_seeds=20, seed=8, trials=10)
    assert abs(deviance_explained(flat, fit_bradley_terry(flat))) < 0.02
    attackers = {"a0": 700.0, "a1": 1100.0, "a2": 1500.0, "a3": 1900.0}
    defenders = {"none": 1000.0, "d1": 1400.0, "d2": 1800.0}
    strong = tournament(attackers, defenders, n_seeds=10, seed=8, trials=20)
    explained = deviance_explained(strong, fit_bradley_terry(strong))
    # A score that is the mean of 20 Bernoullis keeps its own entropy, so even the true ratings leave deviance
    # (here they explain ~0.54); the fit must do at least as well as the truth, up to the ridge.
    truth = {**{f"attacker:{k}": v for k, v in attackers.items()}, **{f"defender:{k}": v for k, v in defenders.items()}}
    assert explained > 0.5 and explained >= deviance_explained(strong, truth) - 1e-3
    assert rate(strong, bootstrap_rounds=0).deviance_explained == explained  # reported with the ratings


def test_deviance_explained_by_hand():
    games = [Game("a", "d", 0.75, 0), Game("a", "e", 0.25, 1)]
    ratings = {"attacker:a": 1000.0, "defender:d": 1000.0, "defender:e": 1000.0}  # p = 1/2 everywhere
    d_model = -2 * 2 * math.log(0.5)
    d_null = -2 * 2 * math.log(0.5)  # mean score 1/2
    assert deviance_explained(games, ratings) == pytest.approx(1 - d_model / d_null)
    fitted = fit_bradley_terry(games, ridge=1e-9)  # p = 3/4 and 1/4 exactly
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert deviance_explained(games, fitted) == pytest.approx(1 - (2 * 2 * h) / d_null, abs=1e-6)
    assert math.isnan(deviance_explained([Game("a", "d", 0.0, 0)], {"attacker:a": 0.0, "defender:d": 0.0}))


# --- leaderboard from records ---------------------------------------------------------------------------

CATEGORY = {"none": "none", "jpeg": "input_reformation", "strip": "input_filtering", "scan": "input_filtering",
            "prune": "model_sanitization", "cleanse": "model_inspection"}
REC_DEFENDERS = {"none": 1000.0, "jpeg": 1100.0, "strip": 1350.0, "scan": 1200.0, "prune": 1250.0,
                 "cleanse": 1300.0}
REC_ATTACKERS = {"badnet": 1100.0, "imc": 1300.0, "crasher": 800.0}


def records() -> list[MatchRecord]:
    rng = np.random.default_rng(4)
    out, mid = [], 1
    for seed in range(4):
        for a, ra in REC_ATTACKERS.items():
            for d, rd in REC_DEFENDERS.items():
                if a == "crasher":  # forfeits: scored, but no defence was run, so no defence metrics
                    metrics: dict = {"forfeit": "attacker"}
                    outcome = 0.0
                else:
                    metrics = {"defense": {"category": CATEGORY[d], "clean_acc": 0.9}}
                    outcome = float(rng.binomial(20, p_win(ra, rd))) / 20
                out.append(MatchRecord(scenario="cat", scenario_digest="abc", attacker=a, attacker_version="1",
                                       defender=d, defender_version="1", seed=seed, rounds=1, status="ok",
                                       outcome=outcome, metrics=metrics, id=mid))
                mid += 1
    # A defender only ever met by the forfeiting attacker, so its category comes from a failed match.
    out.append(MatchRecord(scenario="cat", scenario_digest="abc", attacker="crasher", attacker_version="1",
                           defender="lonely", defender_version="1", seed=0, rounds=1, status="ok", outcome=0.0,
                           metrics={}, id=mid))
    out.append(MatchRecord(scenario="cat", scenario_digest="abc", attacker="badnet", attacker_version="1",
                           defender="lonely", defender_version="1", seed=1, rounds=1, status="error", error="oom",
                           metrics={"defense": {"category": "model_inspection"}}, id=mid + 1))
    return out


def test_games_carry_the_seed():
    games = games_from_records(records())
    assert sorted({g.cluster for g in games}) == [0, 1, 2, 3]
    assert all(g.cluster == 0 for g in games if g.defender == "lonely")


def test_defender_categories_survive_forfeits_and_disagreements():
    assert defender_categories(records()) == {**CATEGORY, "lonely": "model_inspection"}
    rec = records()[0]
    mixed = [MatchRecord(**{**rec.to_dict(), "defender": "x", "metrics": {"defense": {"category": c}}})
             for c in ("input_filtering", "model_inspection", "model_inspection", "input_filtering")]
    mixed.append(MatchRecord(**{**rec.to_dict(), "defender": "x", "metrics": {"defense": None}}))
    assert defender_categories(mixed) == {"x": "input_filtering"}  # a tie: by name, whatever the order
    assert defender_categories(list(reversed(mixed))) == {"x": "input_filtering"}


def test_markdown_is_byte_identical_for_shuffled_records(tmp_path):
    recs = records()
    shuffled = recs[:]
    random.Random(7).shuffle(shuffled)
    assert shuffled != recs
    md, table = render_leaderboard("cat", recs, bootstrap_rounds=20, seed=0)
    assert (md, table) == render_leaderboard("cat", shuffled, bootstrap_rounds=20, seed=0)
    md_path, csv_path = write_leaderboard("cat", shuffled, tmp_path, bootstrap_rounds=20)
    assert md_path.read_text() == md and csv_path.read_text() == table
    assert "over 4 seeds (0, 1, 2, 3)." in md and "Student's t over them" in md
    explained = rate(games_from_records(recs), bootstrap_rounds=0).deviance_explained
    assert f"Deviance explained by the Bradley-Terry fit to all matches at once: {explained:.3f}" in md
    # A requested match bootstrap says that it understates the uncertainty.
    md_match, _ = render_leaderboard("cat", recs, bootstrap_rounds=20, unit="match")
    assert "over matches" in md_match and "understate the uncertainty" in md_match


def section(md: str, title: str) -> list[str]:
    lines = md.splitlines()
    start = lines.index(title) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("#")), len(lines))
    return lines[start:end]


def test_per_category_tables_list_their_defenders_ranked_on_the_overall_scale():
    recs = records()
    md, table = render_leaderboard("cat", recs, bootstrap_rounds=20, seed=0)
    ratings = rate(games_from_records(recs), bootstrap_rounds=20, seed=0)
    overall = {r.name: (rank, r) for rank, r in enumerate(ratings, start=1) if r.role == "defender"}
    titles = [line for line in md.splitlines() if line.startswith("### ")]
    assert titles == ["### Attackers", "### Defenders", "### none", "### input_reformation", "### input_filtering",
                      "### model_sanitization", "### model_inspection"]
    assert md.index("## Ratings\n") < md.index("## Defenders by category") < md.index("## Outcome matrix")
    expected = {"none": ["none"], "input_reformation": ["jpeg"], "input_filtering": ["strip", "scan"],
                "model_sanitization": ["prune"], "model_inspection": ["cleanse", "lonely"]}
    for category, names in expected.items():
        rows = [line for line in section(md, f"### {category}") if line.startswith("|") and "---" not in line][1:]
        cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
        # Ranked within the category by the overall rating; the overall rating, interval and rank unchanged.
        assert [c[1] for c in cells] == sorted(names, key=lambda n: -overall[n][1].rating), category
        for within, c in enumerate(cells, start=1):
            rank, r = overall[c[1]]
            assert c[0] == str(within) and c[2] == r.shown and c[4] == str(rank)
            assert c[3] == ("n/a" if c[1] == "lonely" else f"[{r.ci_low:.0f}, {r.ci_high:.0f}]")
    rows = list(csv.DictReader(io.StringIO(table)))
    # lonely played in one seed only: no interval over seeds, so no pair with it is tested or claimed.
    assert not [line for line in md.splitlines() if "`lonely`" in line and "ranks above" in line]
    claims = pair_claims(ratings)["defender"]
    assert all(math.isnan(c.p) and not c.ordered for c in claims if "lonely" in (c.upper.name, c.lower.name))
    assert next(r for r in rows if r["name"] == "lonely")["ci_low"] == ""
    assert {r["name"]: r["category"] for r in rows if r["role"] == "defender"} == {**CATEGORY,
                                                                                    "lonely": "model_inspection"}
    assert all(r["category"] == "" for r in rows if r["role"] == "attacker")


def test_a_defender_without_a_stored_category_is_listed_as_unknown():
    recs = [r for r in records() if r.defender != "lonely" or r.status == "ok"]  # drop the one that knew
    md, table = render_leaderboard("cat", recs, bootstrap_rounds=10, seed=0)
    assert section(md, "### unknown")[2:] != [] and "lonely" in "\n".join(section(md, "### unknown"))
    assert "lonely" not in "\n".join(section(md, "### model_inspection"))
    assert next(r for r in csv.DictReader(io.StringIO(table)) if r["name"] == "lonely")["category"] == ""
