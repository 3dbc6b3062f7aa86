"""Leaderboards from stored matches: ratings (``arena.ratings``) and the outcome matrix, as Markdown and CSV.

The text is a pure function of the stored matches: no timestamps, records
sorted canonically before anything is summed, and ratings computed from
canonically sorted games with a seeded bootstrap. The same matches, read in
any order, give byte-identical files.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from arena.errors import ArenaError
from arena.ratings import BASE_RATING, DEFAULT_ANCHOR, Game, Rating, rate
from arena.scenario import is_safe_name
from arena.store import MatchRecord

CSV_FIELDS = ("rank", "player", "role", "name", "rating", "ci_low", "ci_high", "elo", "matches", "mean_score")


def _ok(records: Iterable[MatchRecord]) -> list[MatchRecord]:
    """Finished matches with an outcome, in a canonical order independent of the input order."""
    ok = [r for r in records if r.status == "ok" and r.outcome is not None]
    return sorted(ok, key=lambda r: (r.attacker, r.defender, r.seed, r.rounds, r.attacker_version,
                                     r.defender_version, r.scenario_digest, float(r.outcome),
                                     -1 if r.id is None else r.id))


def games_from_records(records: Iterable[MatchRecord]) -> list[Game]:
    """One ``Game`` per match with status ``ok``; ``order`` is the stored match id.

    Records without an id (never stored) get order 0, so Elo falls back to the
    canonical order for them. Agent versions are not part of the player: a
    new version of an agent continues its rating.
    """
    return [Game(attacker=r.attacker, defender=r.defender, score=float(r.outcome),
                 order=0 if r.id is None else int(r.id)) for r in _ok(records)]


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


def render_markdown(scenario_name: str, ratings: Sequence[Rating], matrix: pd.DataFrame, n_matches: int) -> str:
    """The leaderboard as Markdown: header, ratings table, a note on how to read it, the outcome matrix."""
    n_att = sum(1 for r in ratings if r.role == "attacker")
    n_def = sum(1 for r in ratings if r.role == "defender")
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
        "The 95% CI is a percentile bootstrap over matches. *mean score* is the agent's own mean score "
        "(the attacker's score for attackers, one minus it for defenders). *Elo* is online Elo (K = 32) "
        "replayed in match-id order: it depends on the order in which matches were played, so it is shown "
        "for reference only and the ranking uses the Bradley-Terry rating."
    )
    lines = [
        f"# Leaderboard: {scenario_name}",
        "",
        f"{n_matches} matches between {n_att} attackers and {n_def} defenders.",
        "",
        "## Ratings",
        "",
        table,
        "",
        note,
        "",
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


def render_csv(ratings: Sequence[Rating]) -> str:
    """The ratings table as CSV (one row per player, in leaderboard order; empty cells for missing intervals)."""

    def cell(v: float, fmt: str) -> str:
        return "" if math.isnan(v) else format(v, fmt)

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for rank, r in enumerate(ratings, start=1):
        writer.writerow([rank, r.player, r.role, r.name, cell(r.rating, ".2f"), cell(r.ci_low, ".2f"),
                         cell(r.ci_high, ".2f"), cell(r.elo, ".2f"), r.matches, cell(r.mean_score, ".4f")])
    return buf.getvalue()


def write_leaderboard(scenario_name: str, records: Iterable[MatchRecord], out_dir: Path,
                      bootstrap_rounds: int = 200, seed: int = 0) -> tuple[Path, Path]:
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
    records = list(records)
    games = games_from_records(records)
    ratings = rate(games, bootstrap_rounds=bootstrap_rounds, seed=seed)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArenaError(f"cannot create the leaderboard folder {out_dir}: {exc.strerror or exc}") from None
    md.write_text(render_markdown(scenario_name, ratings, outcome_matrix(records), len(games)))
    cv.write_text(render_csv(ratings))
    return md, cv
