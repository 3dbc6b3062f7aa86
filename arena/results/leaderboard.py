"""Leaderboards from stored matches: ratings (``arena.results.ratings``) and the outcome matrix, as Markdown and CSV.

The text is a pure function of the stored matches: no timestamps, records
sorted canonically before anything is summed, and ratings computed from
canonically sorted games with a seeded bootstrap. The same matches, read in
any order, give byte-identical files.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from arena.results.detection import DetectionROC, detection_rocs
from arena.results.endings import ENDINGS, endings
from arena.core.errors import ArenaError
from arena.api.protocol import CATEGORIES
from arena.results.ratings import (ATTACKER, BASE_RATING, DEFAULT_ANCHOR, DEFENDER, SEED, Game, PairClaim,
                                   Rating, RatingTable, pair_claims, rate)
from arena.config.scenario import is_safe_name
from arena.results.record import ControlRecord, MatchRecord
from arena.results.roster import leave_one_out, nash
from arena.results.usability import Usability, models_needed, usability

DEFAULT_MODEL_FPR = 0.05  # budgets.model_fpr when the caller does not give the scenario's

# "category" comes last so that readers of the older columns are unaffected.
CSV_FIELDS = ("rank", "player", "role", "name", "rating", "ci_low", "ci_high", "elo", "matches", "mean_score",
              "category")
UNKNOWN_CATEGORY = "unknown"


def _ok(records: Iterable[MatchRecord]) -> list[MatchRecord]:
    """Finished matches with an outcome, in a canonical order independent of the input order."""
    ok = [r for r in records if r.status == "ok" and r.outcome is not None]
    return sorted(ok, key=lambda r: (r.attacker, r.defender, r.seed, r.rounds, r.attacker_version,
                                     r.defender_version, r.scenario_digest, float(r.outcome),
                                     -1 if r.id is None else r.id))


def latest_matches(records: Iterable[MatchRecord]) -> tuple[list[MatchRecord], int]:
    """One match per (attacker, defender, seed, rounds): the last stored, and how many older ones were dropped.

    A new version of an agent replays its matches beside the old ones (the store keys them by version);
    counting both would weigh that pair and seed twice. Which match is the newest is the store's order
    (its id); a record without one counts as newest."""
    records = list(records)
    newest: dict[tuple, MatchRecord] = {}
    for r in records:
        key = (r.attacker, r.defender, r.seed, r.rounds)
        old = newest.get(key)
        if old is None or (r.id is None or (old.id is not None and r.id > old.id)):
            newest[key] = r
    kept = list(newest.values())
    return kept, len(records) - len(kept)


def games_from_records(records: Iterable[MatchRecord]) -> list[Game]:
    """One ``Game`` per match with status ``ok``; ``order`` is the stored match id, ``cluster`` the match's seed.

    Records without an id (never stored) get order 0, so Elo falls back to the
    canonical order for them. Agent versions are not part of the player: a
    new version of an agent continues its rating.
    """
    return [Game(attacker=r.attacker, defender=r.defender, score=float(r.outcome),
                 order=0 if r.id is None else int(r.id), cluster=int(r.seed)) for r in _ok(records)]


def defender_categories(records: Iterable[MatchRecord]) -> dict[str, str]:
    """Each defender's category, read from ``metrics["defense"]["category"]`` of its stored matches.

    A match the attacker forfeited has no defence metrics, so the category
    comes from the defender's other matches (of any status); a defender with
    none anywhere is left out. Should the records disagree (a new version
    changed category), the most frequent wins, ties by name, so the answer
    does not depend on the order of the records.
    """
    seen: dict[str, Counter[str]] = {}
    for r in records:
        defense = r.metrics.get("defense") if isinstance(r.metrics, dict) else None
        category = defense.get("category") if isinstance(defense, dict) else None
        if isinstance(category, str) and category:
            seen.setdefault(r.defender, Counter())[category] += 1
    return {d: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for d, c in sorted(seen.items())}


def outcome_matrix(records: Iterable[MatchRecord]) -> pd.DataFrame:
    """Mean attacker score (over seeds) of each attacker (rows) against each defender (columns), both sorted.

    Pairs that never met are NaN.
    """
    ok = _ok(records)
    if not ok:
        return pd.DataFrame(dtype=float)
    df = pd.DataFrame({"attacker": [r.attacker for r in ok], "defender": [r.defender for r in ok],
                       "outcome": [float(r.outcome) for r in ok]})
    matrix = df.groupby(["attacker", "defender"], sort=True)["outcome"].mean().unstack("defender")
    matrix = matrix.sort_index(axis=0).sort_index(axis=1)
    matrix.index.name, matrix.columns.name = "attacker", "defender"
    return matrix


def ordered_matrix(matrix: pd.DataFrame, ratings: RatingTable, categories: Mapping[str, str]) -> pd.DataFrame:
    """``matrix`` with attackers by rating (strongest first) and defenders grouped by category (in
    ``CATEGORIES`` order) and by rating within each; agents the ratings leave out go last, by name."""
    score = {(r.role, r.name): r.rating for r in ratings}
    order = {c: i for i, c in enumerate(CATEGORIES)}

    def rank(role: str, name: str) -> tuple[float, str]:
        return (-score.get((role, name), -math.inf), name)

    rows = sorted(matrix.index, key=lambda a: rank(ATTACKER, str(a)))
    cols = sorted(matrix.columns, key=lambda d: (order.get(categories.get(str(d), ""), len(order)),
                                                 *rank(DEFENDER, str(d))))
    return matrix.loc[rows, cols]


def _num(v: float, fmt: str) -> str:
    return "n/a" if v is None or math.isnan(v) else format(v, fmt)


def _ci(r: Rating) -> str:
    if math.isnan(r.ci_low) or math.isnan(r.ci_high):
        return "n/a"
    return f"[{r.ci_low:.0f}, {r.ci_high:.0f}]"


def _pts(v: float, sign: str = "") -> str:
    """Elo points, whole, except that a bound rounding to 0 keeps a digit (so "[0, 12]" never claims separation)."""
    v += 0.0  # -0.0 -> 0.0
    return format(v, f"{sign}.0f") if abs(v) >= 0.5 or v == 0.0 else format(v, f"{sign}.1g")


_ROLE_TITLES = {ATTACKER: "Attackers", DEFENDER: "Defenders"}


def _uncertainty_line(ratings: RatingTable) -> str:
    if ratings.unit == SEED:
        return (f"Ratings and 95% intervals over seeds: every one of the {ratings.seeds} seeds is fitted on its own "
                "(the matches of one seed share its trojans and its defenders' control runs, so the seed is the "
                "independent unit); a rating is the mean of its per-seed ratings and its interval Student's t "
                "over them, whose coverage is checked by simulation (`tests/test_coverage.py`: 93-97% at 5 and "
                "20 seeds).")
    if ratings.seeds < 2:
        return (f"95% intervals over matches ({ratings.rounds} bootstrap rounds; one seed only: they understate "
                "the uncertainty, since the matches of one seed share its trojans and control runs, and no "
                "ordering is claimed from them).")
    return (f"95% intervals over matches ({ratings.rounds} bootstrap rounds, as requested; the matches of one seed "
            "share its trojans and control runs, so these intervals understate the uncertainty: the default fits "
            "each seed on its own).")


def _claim_sentence(c: PairClaim) -> str:
    """One ordering claim, always with its interval and adjusted p-value (never without them)."""
    return (f"`{c.upper.name}` ranks above `{c.lower.name}` (difference {_pts(c.difference, '+')}, 95% interval "
            f"[{_pts(c.ci_low)}, {_pts(c.ci_high)}], Holm-adjusted p = {c.p_holm:.3g}).")


def _claims_section(ratings: RatingTable, alpha: float = 0.05) -> list[str]:
    """Every pair of each role tested; the orders that survive Holm's correction, listed with their evidence."""
    lines = ["## Orderings the data support", ""]
    if ratings.unit != SEED:
        return lines + ["None claimed: the intervals resample the matches of one seed, which understates the "
                        "uncertainty (more seeds are needed to order anything).", ""]
    lines += [f"Every pair of players of one role is tested (two-sided t-test of the per-seed rating difference), "
              f"and an order is stated only where it survives Holm's correction over all the pairs of that role "
              f"at family-wise level {alpha:.0%}. Each claim carries its 95% interval; pairs not listed are not "
              "separated. Agents with a bound (they lost or won every match) take part in no claim.", ""]
    for role, claims in pair_claims(ratings, alpha=alpha).items():
        shown = [c for c in claims if c.ordered]
        tested = sum(1 for c in claims if not math.isnan(c.p))
        lines += [f"### {_ROLE_TITLES[role]}", "",
                  f"{len(shown)} of {tested} pairs ordered." if tested else "No pair can be tested.", ""]
        lines += [f"- {_claim_sentence(c)}" for c in shown]
        adjacent_open = [c for c in claims if not c.ordered and not math.isnan(c.p)
                         and [r.player for r in ratings if r.role == role].index(c.lower.player)
                         == [r.player for r in ratings if r.role == role].index(c.upper.player) + 1]
        if adjacent_open:
            lines += ["", "Adjacent ranks not separated after the correction: " + "; ".join(
                f"`{c.upper.name}` and `{c.lower.name}` ([{_pts(c.ci_low)}, {_pts(c.ci_high)}], adjusted p = "
                f"{c.p_holm:.2g})" for c in adjacent_open) + "."]
        lines.append("")
    return lines


def _bound_lines(ratings: RatingTable) -> list[str]:
    bounded = [r for r in ratings if r.bound]
    swept = [r for r in ratings if not r.bound and r.ridge_seeds]
    lines = []
    if bounded:
        lines.append("**Bounds, not ratings:** " + "; ".join(
            f"`{r.name}` {'lost' if r.bound == 'below' else 'won'} every one of its {r.matches} matches, so the data "
            f"say only that it rates {r.bound} {'its weakest' if r.bound == 'below' else 'its strongest'} opponent "
            f"({r.shown})" for r in bounded) + ". A number would be set by the ridge, not by the matches.")
    if swept:
        lines.append("**Ridge-set seeds:** " + "; ".join(
            f"`{r.name}` lost or won every match of {r.ridge_seeds} seed(s)" for r in swept)
            + ": its rating in those seeds is set by the ridge, which widens its interval.")
    return [line + "\n" for line in lines]


def _usability_section(judged: Sequence[Usability]) -> list[str]:
    """The inspectors' pooled control populations, the exact test of each, and what the test can see."""
    if not judged:
        return []
    budget = judged[0].budget
    rows = [(u.defender, f"{u.flagged}/{u.models}", f"{u.rate:.3f}", f"[{u.ci_low:.3f}, {u.ci_high:.3f}]",
             f"{u.p_value:.3g}", f"{u.power:.2f}", "usable" if u.usable else "**unusable at this budget**")
            for u in judged]
    sizes = sorted({u.models for u in judged})
    unusable = [u.defender for u in judged if not u.usable]
    # What the data already exclude, whatever the design's power: a usable defender whose interval ends
    # below twice the budget is not one whose true rate is that high (at 95%), however few models it took.
    shown = [f"`{u.defender}`" for u in judged if u.usable and u.ci_high < 2 * budget]
    open_ = [f"`{u.defender}`" for u in judged if u.usable and u.ci_high >= 2 * budget]
    weak = min(u.power for u in judged)  # the row with the fewest models
    if len(sizes) == 1:
        design = (f"With {sizes[0]} benign models the test fails a defender whose true rate is twice the budget "
                  f"with probability {judged[0].power:.2f}")
    else:
        design = (f"The power column is the chance that the test fails a defender whose true rate is twice the "
                  f"budget, with that defender's number of benign models ({sizes[0]} to {sizes[-1]})")
    return [
        "## Usability over benign models", "",
        f"Defenders that judge models were also run on every seed's population of benign models. Their flags are "
        f"pooled over all seeds and tested once against the model-level budget of {budget:.0%} (exact one-sided "
        f"binomial test at 5%: p is the chance of at least that many flags from a defender whose true rate is "
        f"the budget; the interval is Clopper-Pearson 95%). A defender that fails is unusable at this budget: "
        f"its matches keep the outcomes its deployments earned but are left out of the ratings"
        + (f" ({', '.join(f'`{d}`' for d in unusable)})." if unusable else "."), "",
        tabulate(rows, headers=["defender", "flagged", "rate", "95% CI", "p", "power", "verdict"], tablefmt="github",
                 disable_numparse=True, colalign=("left", "right", "right", "right", "right", "right", "left")), "",
        f"{design}; 80% would take {models_needed(budget)} benign models"
        + (" (`arena controls --population N` adds them without replaying a match)" if weak < 0.8 else "")
        + ". A defender listed as usable has not been shown to be within the budget, only not shown to be over it"
        + (f"; the interval{'s' if len(shown) > 1 else ''} of {', '.join(shown)} end{'' if len(shown) > 1 else 's'} "
           f"below twice the budget ({2 * budget:.0%})" if shown else "")
        + (f"; {'that' if len(open_) == 1 else 'those'} of {', '.join(open_)} "
           f"do{'es' if len(open_) == 1 else ''} not" if open_ else "") + ".",
        "",
    ]


def _roster_section(games: Sequence[Game], matrix: pd.DataFrame, unit: str) -> list[str]:
    """Leave-one-agent-out rank ranges, and the maximum-entropy Nash equilibrium of the payoff matrix."""
    if not games:
        return []
    ranges = leave_one_out(games, unit=unit)
    rows = [(r.role, r.name, r.rank, f"{r.best}-{r.worst}" if r.best != r.worst else str(r.rank),
             f"`{r.moved_most_by.partition(':')[2]}` ({r.moved_most_by.partition(':')[0]})" if r.moved_most_by else "")
            for r in ranges]
    eq = nash(matrix)
    mix = lambda w: ", ".join(f"`{k}` {v:.2f}" for k, v in sorted(w.items(), key=lambda kv: -kv[1]))  # noqa: E731
    lines = [
        "## Roster sensitivity", "",
        "Ratings depend on who else plays. Each agent's rank within its role on this roster, and its range over "
        "every roster with one other agent left out and the ratings refitted (the removed agent's own slot taken "
        "out), with the removal that moved it furthest.", "",
        tabulate(rows, headers=["role", "agent", "rank", "leave-one-out ranks", "moved most by removing"],
                 tablefmt="github", disable_numparse=True, colalign=("left", "left", "right", "right", "left")), "",
    ]
    if eq.defenders:
        lines += [
            "The outcome matrix below read as a zero-sum game (attackers maximise the mean score, defenders "
            "minimise it; Balduzzi et al. 2018), solved for its maximum-entropy Nash equilibrium, which does not "
            "change when a copy of an agent joins. A model owner who deploys the defence mixture concedes at "
            f"most **{eq.value:.3f}** to any attack, and the attack mixture scores at least that against any defence.",
            "", f"- defence mixture: {mix(eq.defenders)}", f"- attack mixture (the best response to it): "
            f"{mix(eq.attackers)}", "",
        ]
    return lines


def _category_sections(ratings: RatingTable, categories: Mapping[str, str]) -> list[str]:
    """One table per defender category: the overall ratings and intervals, ranked within the category."""
    overall = {r.player: rank for rank, r in enumerate(ratings, start=1)}
    groups: dict[str, list[Rating]] = {}
    for r in ratings:  # already in rating order, so each group is ranked
        if r.role == DEFENDER:
            groups.setdefault(categories.get(r.name, UNKNOWN_CATEGORY), []).append(r)
    order = [c for c in CATEGORIES if c in groups] + sorted(c for c in groups if c not in CATEGORIES)
    lines = ["## Defenders by category", "",
             "The overall Bradley-Terry ratings and 95% intervals above (same scale, no refit), ranked within "
             "each defender category.", ""]
    for category in order:
        rows = [(rank, r.name, r.shown, _ci(r), overall[r.player], r.matches, f"{r.mean_score:.3f}")
                for rank, r in enumerate(groups[category], start=1)]
        lines += [f"### {category}", "",
                  tabulate(rows, headers=["rank", "defender", "BT rating", "95% CI", "overall rank", "matches",
                                          "mean score"], tablefmt="github", disable_numparse=True,
                           colalign=("right", "left", "right", "right", "right", "right", "right")), ""]
    return lines


def _seed_interval(d: DetectionROC) -> str:
    if d.auroc_seeds is None:
        return "-"
    mean, low, high = d.auroc_seeds
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def _detection_section(rocs: Sequence[DetectionROC]) -> list[str]:
    rows = [(d.defender, d.trojans, d.benign, f"{d.flagged_trojans}/{d.trojans}", f"{d.flagged_benign}/{d.benign}",
             _num(d.auroc if d.auroc is not None else math.nan, ".3f"), _seed_interval(d),
             _num(d.tpr_at_max_fpr if d.tpr_at_max_fpr is not None else math.nan, ".3f"),
             _num(d.cross_entropy if d.cross_entropy is not None else math.nan, ".3f")) for d in rocs]
    fpr = f"{rocs[0].max_fpr:.0%}" if rocs else "5%"
    return [
        "## Detection over models",
        "",
        "Defenders that give a model-level verdict, judged as detectors over every model they saw: the trojans "
        "of every attacker and seed that passed the attacker gate (positives) and the benign models of their "
        "control populations (negatives). A model's score is the defender's largest per-class anomaly index "
        "(its verdict where it has none). AUROC counts ties as a half, over all models pooled; per seed, the "
        "mean of the seeds' own AUROCs and its 95% Student-t interval over seeds (the seed is the independent "
        "unit; '-' with fewer than two seeds). TPR is at a model-level FPR of at most "
        f"{fpr}; CE is the cross-entropy of the verdicts read as probabilities 0.99/0.01 (`arena.results.detection`).",
        "",
        tabulate(rows, headers=["defender", "trojans", "benign", "flagged trojans", "flagged benign", "AUROC",
                                "AUROC per seed (95% CI)", f"TPR @ FPR {fpr}", "CE"],
                 tablefmt="github", disable_numparse=True,
                 colalign=("left",) + ("right",) * 8),
        "",
    ]


def _endings_section(records: Sequence[MatchRecord]) -> list[str]:
    """How the rated matches ended, per attacker: a trojan that failed its own gate apart from an attack
    a defence stopped (``arena.results.endings``)."""
    table = endings(records, "attacker")
    if not table:
        return []
    used = [(k, t) for k, t in ENDINGS if any(c[k] for c in table.values())]
    rows = [[name, str(sum(c.values()))] + [str(c[k]) for k, _ in used] for name, c in table.items()]
    return [
        "## How the matches ended",
        "",
        "Per attacker, its rated matches by how they ended. *Trojan failed the attacker gate*: the attack never "
        "reached the defender (too costly in clean accuracy, a trigger over the perturbation budget, or not "
        "finite), and *too weak without a defence*: its own success, (ASR - base rate) / (1 - base rate), was "
        "under 0.5 before any defence; neither is an attack a defence stopped, although all three score 0. "
        "*Defence failed its gate*: "
        "the deployment cost too much clean accuracy or rejected too many clean inputs, which scores 1 without "
        "the attack getting through any defence.",
        "",
        tabulate(rows, headers=["attacker", "matches"] + [t for _, t in used], tablefmt="github",
                 disable_numparse=True, colalign=("left",) + ("right",) * (len(used) + 1)),
        "",
    ]


def _coverage_lines(matrix: pd.DataFrame) -> list[str]:
    """A warning when some attacker-defender pairs never met (a tournament cut short, or a subset played).

    Bradley-Terry rates an incomplete design without complaint, so the reader must be told: an agent's
    rating then rests on the opponents it happened to meet."""
    if matrix.empty:
        return []
    missing = matrix.isna()
    n_missing, n_pairs = int(missing.values.sum()), missing.size
    if n_missing == 0:
        return []
    idle = [str(a) for a in matrix.index if missing.loc[a].any()]
    return [f"**Incomplete:** {n_missing} of {n_pairs} attacker-defender pairs have no match (n/a in the outcome "
            f"matrix); attackers with unplayed pairs: {', '.join(idle)}. Each rating rests only on the opponents "
            "that agent met.", ""]


def partial_seeds(games: Sequence[Game]) -> str | None:
    """A warning when some seeds hold fewer attacker-defender pairs than others (a seed still being played,
    or cut short), or None.

    The pooled outcome matrix can be complete while a seed is not: every pair met on other seeds. But a
    rating is the mean of per-seed fits, and a partly played seed's fit rests on the pairs it happened to
    reach first, so the reader must be told which seeds those are."""
    pairs: dict[int, set[tuple[str, str]]] = {}
    for g in games:
        pairs.setdefault(g.cluster, set()).add((g.attacker, g.defender))
    if len(pairs) < 2:
        return None
    full = max(len(p) for p in pairs.values())
    short = {seed: len(p) for seed, p in sorted(pairs.items()) if len(p) < full}
    if not short:
        return None
    return ("partly played seeds: " + ", ".join(f"seed {seed} has {n} of {full} pairs" for seed, n in short.items())
            + "; each seed is fitted on its own, so finish them (`arena tournament` resumes) or leave them out")


def render_markdown(scenario_name: str, ratings: RatingTable, matrix: pd.DataFrame, n_matches: int,
                    categories: Mapping[str, str] | None = None,
                    detection: Sequence[DetectionROC] | None = None, seed_list: Sequence[int] = (),
                    usable: Sequence[Usability] = (), games: Sequence[Game] = (),
                    rated: Sequence[MatchRecord] = (), extra: Sequence[str] = ()) -> str:
    """The leaderboard as Markdown: header, ratings table, a note on how to read it, the orderings the
    intervals support, per-category defender tables (when ``categories``, defender name -> category as from
    ``defender_categories``, names any), the ``extra`` lines (a computed section such as
    ``arena.results.seed_gain``'s), the outcome matrix."""
    n_att = sum(1 for r in ratings if r.role == ATTACKER)
    n_def = sum(1 for r in ratings if r.role == DEFENDER)
    rows = [(rank, r.role, r.name, r.shown, _ci(r), f"{r.elo:.0f}", r.matches, f"{r.mean_score:.3f}")
            for rank, r in enumerate(ratings, start=1)]
    table = tabulate(rows, headers=["rank", "role", "agent", "BT rating", "95% CI", "Elo", "matches", "mean score"],
                     tablefmt="github", disable_numparse=True,
                     colalign=("right", "left", "left", "right", "right", "right", "right", "right"))
    anchored = any(r.player == DEFAULT_ANCHOR for r in ratings)
    anchor_note = (f"anchored so that the `none` defender (no defence) sits at exactly {BASE_RATING:.0f}"
                   if anchored else
                   f"shifted so that the mean rating is {BASE_RATING:.0f} (no `none` defender to anchor on)")
    note = (
        "**How to read it.** Attackers and defenders are rated on one Elo-style scale by a Bradley-Terry "
        "model fitted by maximum likelihood: an attacker rated R_a beats a defender "
        "rated R_d with probability 1 / (1 + 10^((R_d - R_a) / 400)), the attacker's fractional score being "
        f"the outcome. Ratings are {anchor_note}; a small ridge term keeps unbeaten and winless agents finite, "
        "and an agent that lost or won everything is shown as a bound. "
        + ("A rating is the mean of the per-seed fits and its 95% CI Student's t over the seeds. "
           if ratings.unit == SEED else "The 95% CI is a percentile bootstrap over matches. ")
        + "*mean score* is the agent's own mean "
        "score (the attacker's score for attackers, one minus it for defenders). *Elo* is online Elo (K = 32) "
        "replayed in match-id order: it depends on the order in which matches were played, so it is shown "
        "for reference only and the ranking uses the Bradley-Terry rating."
    )
    seeds = f"{ratings.seeds} seed" + ("" if ratings.seeds == 1 else "s")
    if seed_list:  # which seeds, so a reader can tell test seeds from development seeds
        seeds += f" ({', '.join(str(s) for s in seed_list)})"
    lines = [
        f"# Leaderboard: {scenario_name}",
        "",
        f"{n_matches} matches between {n_att} attackers and {n_def} defenders over {seeds}.",
        "",
        *_coverage_lines(matrix),
        *([f"**Incomplete:** {partial}.", ""] if (partial := partial_seeds(games)) else []),
        _uncertainty_line(ratings),
        "",
        f"Deviance explained by the Bradley-Terry fit to all matches at once: {_num(ratings.deviance_explained, '.3f')} "
        "(1 - D_model / D_null, D the fractional-outcome deviance; D_null predicts every match by the mean score).",
        "",
        "## Ratings",
        "",
        table,
        "",
        note,
        "",
    ]
    lines += _bound_lines(ratings)
    lines += _usability_section(usable)
    lines += _claims_section(ratings)
    lines += _roster_section(games, matrix, ratings.unit)
    lines += _endings_section(rated)
    if categories:  # none stored (older matches): one "unknown" table would only repeat the defenders
        lines += _category_sections(ratings, categories)
    if detection:
        lines += _detection_section(detection)
    lines += list(extra)
    lines += [
        "## Outcome matrix",
        "",
        "Mean attacker score over seeds (rows: attackers, columns: defenders; higher favours the attacker; "
        "defenders unusable over benign models are left out, as from the ratings).",
        "",
    ]
    if matrix.empty:
        lines.append("No matches.")
    else:
        mrows = [[str(a)] + [_num(v, ".3f") for v in matrix.loc[a].tolist()] for a in matrix.index]
        lines.append(tabulate(mrows, headers=["attacker \\ defender"] + [str(c) for c in matrix.columns],
                              tablefmt="github", disable_numparse=True,
                              colalign=("left",) + ("right",) * len(matrix.columns)))
    return "\n".join(lines) + "\n"


def render_csv(ratings: Sequence[Rating], categories: Mapping[str, str] | None = None) -> str:
    """The ratings table as CSV (one row per player, in leaderboard order; empty cells for missing intervals,
    and for the category of attackers and of defenders whose category is not known)."""

    def cell(v: float, fmt: str) -> str:
        return "" if math.isnan(v) else format(v, fmt)

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for rank, r in enumerate(ratings, start=1):
        category = (categories or {}).get(r.name, "") if r.role == DEFENDER else ""
        writer.writerow([rank, r.player, r.role, r.name, cell(r.rating, ".2f"), cell(r.ci_low, ".2f"),
                         cell(r.ci_high, ".2f"), cell(r.elo, ".2f"), r.matches, cell(r.mean_score, ".4f"), category])
    return buf.getvalue()


def rated_records(records: Iterable[MatchRecord], model_fpr: float = DEFAULT_MODEL_FPR,
                  controls: Iterable[ControlRecord] = ()) -> tuple[list[MatchRecord], list[Usability]]:
    """The matches the ratings rest on (those of defenders usable at ``model_fpr``), and every judged defender
    (on the matches' control populations and the extra runs ``controls``)."""
    records = list(records)
    judged = usability(records, model_fpr, controls)
    unusable = {u.defender for u in judged if not u.usable}
    return [r for r in records if r.defender not in unusable], judged


def leaderboard_data(scenario_name: str, records: Iterable[MatchRecord], bootstrap_rounds: int = 200,
                     seed: int = 0, unit: str = SEED, model_fpr: float = DEFAULT_MODEL_FPR,
                     controls: Iterable[ControlRecord] = ()) -> dict[str, Any]:
    """The leaderboard as plain data (``arena leaderboard --json``): the same computation as the Markdown."""
    rated, judged = rated_records(records, model_fpr, controls)
    games = games_from_records(rated)
    ratings = rate(games, bootstrap_rounds=bootstrap_rounds, seed=seed, unit=unit)
    claims = pair_claims(ratings)
    eq = nash(outcome_matrix(rated))
    return {
        "scenario": scenario_name, "matches": len(games), "seeds": sorted({g.cluster for g in games}),
        "interval_unit": ratings.unit, "deviance_explained": ratings.deviance_explained,
        "ratings": [dataclasses.asdict(r) for r in ratings],
        "orderings": [{"role": c.role, "upper": c.upper.name, "lower": c.lower.name, "difference": c.difference,
                       "ci_low": c.ci_low, "ci_high": c.ci_high, "p": c.p, "p_holm": c.p_holm}
                      for cs in claims.values() for c in cs if c.ordered],
        "usability": [{**dataclasses.asdict(u), "rate": u.rate, "usable": u.usable} for u in judged],
        "equilibrium": dataclasses.asdict(eq),
        "endings": {role: {name: dict(c) for name, c in endings(rated, role).items()}
                    for role in ("attacker", "defender")},
    }


def render_leaderboard(scenario_name: str, records: Iterable[MatchRecord], bootstrap_rounds: int = 200,
                       seed: int = 0, unit: str = SEED, model_fpr: float = DEFAULT_MODEL_FPR,
                       controls: Iterable[ControlRecord] = (), extra: Sequence[str] = ()) -> tuple[str, str]:
    """The Markdown and CSV texts of one scenario's matches (only those with status ``ok`` are rated).

    Defenders that fail the pooled model-level test at ``model_fpr`` (``arena.results.usability``) are
    listed as unusable and their matches left out of the ratings."""
    records, controls = list(records), list(controls)
    rated, judged = rated_records(records, model_fpr, controls)
    games = games_from_records(rated)
    ratings = rate(games, bootstrap_rounds=bootstrap_rounds, seed=seed, unit=unit)
    categories = defender_categories(records)
    return (render_markdown(scenario_name, ratings, outcome_matrix(rated), len(games), categories,
                            detection_rocs(records, controls=controls), seed_list=sorted({g.cluster for g in games}), usable=judged,
                            games=games, rated=rated, extra=extra),
            render_csv(ratings, categories))


def write_leaderboard(scenario_name: str, records: Iterable[MatchRecord], out_dir: Path,
                      bootstrap_rounds: int = 200, seed: int = 0, unit: str = SEED,
                      model_fpr: float = DEFAULT_MODEL_FPR, controls: Iterable[ControlRecord] = (),
                      extra: Sequence[str] = ()) -> tuple[Path, Path]:
    """Write ``out_dir/SCENARIO.md`` and ``out_dir/SCENARIO.csv``; return their paths.

    ``records`` should be one scenario's matches (e.g. ``Store.matches(scenario=...)``);
    only those with status ``ok`` count. The name becomes the file stem, so a
    name that would put the files anywhere but ``out_dir`` is refused.
    """
    out_dir = Path(out_dir)
    md = out_dir / f"{scenario_name}.md"
    cv = out_dir / f"{scenario_name}.csv"
    # Names come from scenario files and from the store (written by older versions): check both ways.
    if not is_safe_name(scenario_name) or any(p.resolve().parent != out_dir.resolve() for p in (md, cv)):
        raise ArenaError(f"scenario name {scenario_name!r} cannot name a leaderboard file in {out_dir}",
                         hint="rename the scenario: letters, digits, '.', '_' and '-', without '/' or '..'")
    md_text, csv_text = render_leaderboard(scenario_name, records, bootstrap_rounds=bootstrap_rounds, seed=seed,
                                           unit=unit, model_fpr=model_fpr, controls=controls, extra=extra)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArenaError(f"cannot create the leaderboard folder {out_dir}: {exc.strerror or exc}") from None
    md.write_text(md_text)
    cv.write_text(csv_text)
    return md, cv
