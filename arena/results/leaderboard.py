"""Leaderboards from stored matches: ratings (``arena.results.ratings``) and the outcome matrix, as Markdown and CSV.

The text is a pure function of the stored matches: no timestamps, records
sorted canonically before anything is summed, and ratings computed from
canonically sorted games with a seeded bootstrap. The same matches, read in
any order, give byte-identical files.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from arena.results.detection import DetectionROC, detection_rocs
from arena.core.errors import ArenaError
from arena.api.protocol import CATEGORIES
from arena.results.ratings import (ATTACKER, BASE_RATING, DEFAULT_ANCHOR, DEFENDER, MATCH, SEED, Game, PairDifference,
                           Rating, RatingTable, adjacent_differences, rate)
from arena.config.scenario import is_safe_name
from arena.results.store import MatchRecord

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


_UNIT_WORDS = {SEED: "over seeds", MATCH: "over matches"}
_ROLE_TITLES = {ATTACKER: "Attackers", DEFENDER: "Defenders"}


def _ordering_sentence(p: PairDifference) -> str:
    """An ordering claim only where the difference's interval excludes 0; otherwise say they are not separated."""
    a, b, over = f"`{p.upper.name}`", f"`{p.lower.name}`", _UNIT_WORDS[p.unit]
    if math.isnan(p.ci_low) or math.isnan(p.ci_high):
        return f"{a} and {b} cannot be compared (no bootstrap interval: one of them is in too few seeds or rounds)."
    if p.ci_low > 0.0:
        return (f"{a} ranks above {b} (difference {_pts(p.difference, '+')}, 95% interval "
                f"[{_pts(p.ci_low)}, {_pts(p.ci_high)}] {over}).")
    if p.ci_high < 0.0:  # the rounds disagree with the point estimate's order: report what they support
        return (f"{b} ranks above {a} (difference {_pts(-p.difference, '+')}, 95% interval "
                f"[{_pts(-p.ci_high)}, {_pts(-p.ci_low)}] {over}).")
    return f"{a} and {b} are not separated (difference interval [{_pts(p.ci_low)}, {_pts(p.ci_high)}] includes 0)."


def _uncertainty_line(ratings: RatingTable) -> str:
    if ratings.unit == SEED:
        line = (f"95% intervals: percentile bootstrap over seeds ({ratings.rounds} rounds, each redrawing the "
                f"{ratings.seeds} seeds with replacement and keeping all matches of a drawn seed together, because "
                "the matches of one seed share its trojans and its defenders' control runs).")
        if ratings.seeds < 10:
            line += (f" With only {ratings.seeds} seeds this bootstrap is coarse and still tends to understate "
                     "the uncertainty.")
        return line
    if ratings.seeds < 2:
        return (f"95% intervals over matches ({ratings.rounds} rounds; one seed only: they understate the "
                "uncertainty, since the matches of one seed share its trojans and control runs).")
    return (f"95% intervals over matches ({ratings.rounds} rounds, as requested; the matches of one seed share its "
            "trojans and control runs, so these intervals understate the uncertainty: the default resamples seeds).")


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
        rows = [(rank, r.name, f"{r.rating:.0f}", _ci(r), overall[r.player], r.matches, f"{r.mean_score:.3f}")
                for rank, r in enumerate(groups[category], start=1)]
        lines += [f"### {category}", "",
                  tabulate(rows, headers=["rank", "defender", "BT rating", "95% CI", "overall rank", "matches",
                                          "mean score"], tablefmt="github", disable_numparse=True,
                           colalign=("right", "left", "right", "right", "right", "right", "right")), ""]
    return lines


def _detection_section(rocs: Sequence[DetectionROC]) -> list[str]:
    rows = [(d.defender, d.trojans, d.benign, f"{d.flagged_trojans}/{d.trojans}", f"{d.flagged_benign}/{d.benign}",
             _num(d.auroc if d.auroc is not None else math.nan, ".3f"),
             _num(d.tpr_at_max_fpr if d.tpr_at_max_fpr is not None else math.nan, ".3f"),
             _num(d.cross_entropy if d.cross_entropy is not None else math.nan, ".3f")) for d in rocs]
    fpr = f"{rocs[0].max_fpr:.0%}" if rocs else "5%"
    return [
        "## Detection over models",
        "",
        "Defenders that give a model-level verdict, judged as detectors over every model they saw: the trojans "
        "of every attacker and seed that passed the attacker gate (positives) and the benign models of their "
        "control populations (negatives). A model's score is the defender's largest per-class anomaly index "
        "(its verdict where it has none). AUROC counts ties as a half; TPR is at a model-level FPR of at most "
        f"{fpr}; CE is the cross-entropy of the verdicts read as probabilities 0.99/0.01 (`arena.results.detection`).",
        "",
        tabulate(rows, headers=["defender", "trojans", "benign", "flagged trojans", "flagged benign", "AUROC",
                                f"TPR @ FPR {fpr}", "CE"],
                 tablefmt="github", disable_numparse=True,
                 colalign=("left",) + ("right",) * 7),
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


def render_markdown(scenario_name: str, ratings: RatingTable, matrix: pd.DataFrame, n_matches: int,
                    categories: Mapping[str, str] | None = None,
                    detection: Sequence[DetectionROC] | None = None, seed_list: Sequence[int] = ()) -> str:
    """The leaderboard as Markdown: header, ratings table, a note on how to read it, the orderings the
    intervals support, per-category defender tables (when ``categories``, defender name -> category as from
    ``defender_categories``, names any), the outcome matrix."""
    n_att = sum(1 for r in ratings if r.role == ATTACKER)
    n_def = sum(1 for r in ratings if r.role == DEFENDER)
    rows = [(rank, r.role, r.name, f"{r.rating:.0f}", _ci(r), f"{r.elo:.0f}", r.matches, f"{r.mean_score:.3f}")
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
        "model fitted by maximum likelihood to every match at once: an attacker rated R_a beats a defender "
        "rated R_d with probability 1 / (1 + 10^((R_d - R_a) / 400)), the attacker's fractional score being "
        f"the outcome. Ratings are {anchor_note}; a small ridge term keeps unbeaten and winless agents finite. "
        f"The 95% CI is a percentile bootstrap {_UNIT_WORDS[ratings.unit]}. *mean score* is the agent's own mean "
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
        _uncertainty_line(ratings),
        "",
        f"Deviance explained by the Bradley-Terry fit: {_num(ratings.deviance_explained, '.3f')} "
        "(1 - D_model / D_null, D the fractional-outcome deviance; D_null predicts every match by the mean score).",
        "",
        "## Ratings",
        "",
        table,
        "",
        note,
        "",
        "## Orderings the data support",
        "",
        "Adjacent ranks within each role. An order is stated only where the 95% bootstrap interval of the rating "
        "difference (the same rounds as the CIs) excludes 0; overlapping CIs alone decide nothing either way.",
        "",
    ]
    for role, pairs in adjacent_differences(ratings).items():
        lines += [f"### {_ROLE_TITLES[role]}", ""]
        lines += [f"- {_ordering_sentence(p)}" for p in pairs] or ["Fewer than two, nothing to order."]
        lines.append("")
    if categories:  # none stored (older matches): one "unknown" table would only repeat the defenders
        lines += _category_sections(ratings, categories)
    if detection:
        lines += _detection_section(detection)
    lines += [
        "## Outcome matrix",
        "",
        "Mean attacker score over seeds (rows: attackers, columns: defenders; higher favours the attacker).",
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


def render_leaderboard(scenario_name: str, records: Iterable[MatchRecord], bootstrap_rounds: int = 200,
                       seed: int = 0, unit: str = SEED) -> tuple[str, str]:
    """The Markdown and CSV texts of one scenario's matches (only those with status ``ok`` are rated)."""
    records = list(records)
    games = games_from_records(records)
    ratings = rate(games, bootstrap_rounds=bootstrap_rounds, seed=seed, unit=unit)
    categories = defender_categories(records)
    return (render_markdown(scenario_name, ratings, outcome_matrix(records), len(games), categories,
                            detection_rocs(records), seed_list=sorted({g.cluster for g in games})),
            render_csv(ratings, categories))


def write_leaderboard(scenario_name: str, records: Iterable[MatchRecord], out_dir: Path,
                      bootstrap_rounds: int = 200, seed: int = 0, unit: str = SEED) -> tuple[Path, Path]:
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
                                           unit=unit)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArenaError(f"cannot create the leaderboard folder {out_dir}: {exc.strerror or exc}") from None
    md.write_text(md_text)
    cv.write_text(csv_text)
    return md, cv
