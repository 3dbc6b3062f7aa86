"""What more seeds bought: the leaderboard on a subset of its seeds against the leaderboard on all of them.

A tournament grows seed by seed, and the question after each batch is what the new seeds resolved:
which orderings they settled, which they undid, which usability verdicts moved and how much the
intervals narrowed. The answer is computed here from the same functions the leaderboard uses (the
per-seed t-intervals, Holm's correction over every pair of a role, the pooled usability gate), so a
page that says "the extra seeds resolve ..." prints what the computation found, never a sentence
written by hand.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from arena.core.errors import ArenaError
from arena.results.leaderboard import games_from_records, rated_records
from arena.results.ratings import ATTACKER, DEFENDER, PairClaim, RatingTable, pair_claims, rate
from arena.results.record import ControlRecord, MatchRecord
from arena.results.usability import Usability


@dataclass(frozen=True)
class Order:
    """One ordering claim, by name: ``upper`` ranks above ``lower`` with this 95% interval."""

    role: str
    upper: str
    lower: str
    ci_low: float
    ci_high: float

    @property
    def pair(self) -> tuple[str, str, str]:
        return (self.role, *sorted((self.upper, self.lower)))


@dataclass(frozen=True)
class VerdictChange:
    """A defender whose usability verdict differs between the subset and the whole."""

    defender: str
    before: Usability | None  # None: judged on the whole only
    after: Usability


@dataclass(frozen=True)
class SeedGain:
    """The board on ``baseline`` seeds against the board on ``seeds`` (a superset).

    ``kept``/``gained``/``lost``/``reversed`` are the ordering claims of the whole board, sorted by
    role and name (for ``lost``, the subset's claim); ``open_adjacent`` the pairs adjacent in the
    whole board's ranking that it still does not separate; ``width`` per role the median width of
    the rating intervals, subset then whole."""

    baseline: tuple[int, ...]
    seeds: tuple[int, ...]
    kept: tuple[Order, ...]
    gained: tuple[Order, ...]
    lost: tuple[Order, ...]
    reversed: tuple[Order, ...]
    open_adjacent: tuple[tuple[str, str, str], ...]  # (role, upper, lower)
    verdicts: tuple[VerdictChange, ...]
    width: dict[str, tuple[float, float]]


def _orders(claims: dict[str, list[PairClaim]]) -> dict[tuple[str, str, str], Order]:
    return {o.pair: o for o in (Order(c.role, c.upper.name, c.lower.name, c.ci_low, c.ci_high)
                                for cs in claims.values() for c in cs if c.ordered)}


def _median_width(table: RatingTable, role: str) -> float:
    widths = [r.ci_high - r.ci_low for r in table if r.role == role and not r.bound
              and math.isfinite(r.ci_low) and math.isfinite(r.ci_high)]
    return statistics.median(widths) if widths else math.nan


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"10-14"``, ``"10,12,15"`` or a mix (``"10-12,15"``) as sorted seeds."""
    seeds: set[int] = set()
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            lo, dash, hi = part.partition("-")
            first, last = int(lo), int(hi if dash else lo)
            if last < first:
                raise ValueError(part)
            seeds.update(range(first, last + 1))
    except ValueError:
        raise ArenaError(f"cannot read seeds from {text!r}",
                         hint="give seeds as numbers and ranges separated by commas, e.g. 10-14 or 10,12,15") from None
    if not seeds:
        raise ArenaError("no seeds given", hint="e.g. --baseline-seeds 10-14")
    return tuple(sorted(seeds))


def seed_gain(records: Iterable[MatchRecord], baseline: Sequence[int], model_fpr: float,
              controls: Iterable[ControlRecord] = ()) -> SeedGain:
    """Compare the leaderboard on the ``baseline`` seeds with the leaderboard on all the seeds of ``records``.

    Both boards are computed exactly as ``arena leaderboard`` computes one (usability judged on each
    board's own pooled population, unusable defenders left out of its ratings). The baseline must be
    a proper subset with at least two seeds, or there is nothing to compare."""
    records, controls = list(records), list(controls)
    seeds = tuple(sorted({int(r.seed) for r in records}))
    base = tuple(sorted(set(int(s) for s in baseline)))
    missing = sorted(set(base) - set(seeds))
    if missing:
        raise ArenaError(f"baseline seed(s) {', '.join(map(str, missing))} have no stored match",
                         hint=f"the stored seeds are {', '.join(map(str, seeds))}")
    if len(base) < 2 or len(base) >= len(seeds):
        raise ArenaError(f"the baseline needs at least two of the {len(seeds)} stored seeds and fewer than all of them",
                         hint="name the seeds of the earlier board, e.g. --baseline-seeds 10-14")

    def board(recs: list[MatchRecord], ctrl: list[ControlRecord]) -> tuple[RatingTable, list[Usability]]:
        rated, judged = rated_records(recs, model_fpr, ctrl)
        return rate(games_from_records(rated)), judged

    chosen = set(base)
    before, judged_before = board([r for r in records if int(r.seed) in chosen],
                                  [c for c in controls if int(c.seed) in chosen])
    after, judged_after = board(records, controls)
    after_claims = pair_claims(after)
    old, new = _orders(pair_claims(before)), _orders(after_claims)

    def key(o: Order) -> tuple[str, str, str]:
        return (o.role, o.upper, o.lower)

    kept = [o for p, o in new.items() if p in old and old[p].upper == o.upper]
    reversed_ = [o for p, o in new.items() if p in old and old[p].upper != o.upper]
    gained = [o for p, o in new.items() if p not in old]
    lost = [o for p, o in old.items() if p not in new]
    open_adjacent = []
    for role in (ATTACKER, DEFENDER):
        ranked = [r.player for r in after if r.role == role]
        for c in after_claims[role]:
            if not c.ordered and not math.isnan(c.p) and ranked.index(c.lower.player) == ranked.index(c.upper.player) + 1:
                open_adjacent.append((role, c.upper.name, c.lower.name))
    was = {u.defender: u for u in judged_before}
    verdicts = [VerdictChange(u.defender, was.get(u.defender), u) for u in judged_after
                if u.defender not in was or was[u.defender].usable != u.usable]
    width = {role: (_median_width(before, role), _median_width(after, role)) for role in (ATTACKER, DEFENDER)}
    return SeedGain(base, seeds, tuple(sorted(kept, key=key)), tuple(sorted(gained, key=key)),
                    tuple(sorted(lost, key=key)), tuple(sorted(reversed_, key=key)), tuple(open_adjacent),
                    tuple(verdicts), width)


def _seed_list(seeds: Sequence[int]) -> str:
    """Seeds as ranges: 10-14, 17."""
    parts, run = [], [seeds[0]] if seeds else []
    for s in seeds[1:]:
        if s == run[-1] + 1:
            run.append(s)
        else:
            parts.append(run)
            run = [s]
    if run:
        parts.append(run)
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in parts)


def _order(o: Order) -> str:
    return f"`{o.upper}` > `{o.lower}` [{o.ci_low:.0f}, {o.ci_high:.0f}]"


def render_seed_gain(g: SeedGain) -> list[str]:
    """The comparison as a Markdown section (a list of lines, ending with a blank one)."""
    added = [s for s in g.seeds if s not in g.baseline]
    roles = {ATTACKER: "attacker", DEFENDER: "defender"}
    lines = [f"## What seeds {_seed_list(added)} added to seeds {_seed_list(g.baseline)}", "",
             f"The same board computed on seeds {_seed_list(g.baseline)} only ({len(g.baseline)} seeds) and on all "
             f"{len(g.seeds)}, under the same rules (per-seed t-intervals, Holm's correction over every pair of a "
             "role, the pooled usability gate on each board's own benign models). Each claim is shown with its "
             "95% interval on all the seeds (a lost one with its interval on the subset).", ""]
    for role in (ATTACKER, DEFENDER):
        n = {name: sum(1 for o in group if o.role == role)
             for name, group in (("kept", g.kept), ("gained", g.gained), ("lost", g.lost), ("reversed", g.reversed))}
        lines.append(f"- **{roles[role].capitalize()} pairs:** {n['kept']} ordering(s) kept, {n['gained']} gained, "
                     f"{n['lost']} lost, {n['reversed']} reversed.")
        for name, group in (("Gained", g.gained), ("Lost", g.lost), ("Reversed", g.reversed)):
            shown = [_order(o) for o in group if o.role == role]
            if shown:
                lines.append(f"  {name}: " + "; ".join(shown) + ".")
        still = [f"`{u}` and `{lo}`" for r, u, lo in g.open_adjacent if r == role]
        lines.append("  Adjacent ranks still not separated: " + ("; ".join(still) if still else "none") + ".")
        before, after = g.width[role]
        if math.isfinite(before) and math.isfinite(after):
            lines.append(f"  Median width of the {roles[role]}s' 95% intervals: {before:.0f} -> {after:.0f} rating points.")
    if g.verdicts:
        lines.append("- **Usability verdicts that changed:** " + "; ".join(
            f"`{v.defender}` " + (f"{v.before.flagged}/{v.before.models} "
                                  f"{'usable' if v.before.usable else 'unusable'} -> " if v.before else "")
            + f"{v.after.flagged}/{v.after.models} {'usable' if v.after.usable else 'unusable'} (p = {v.after.p_value:.2g})"
            for v in g.verdicts) + ".")
    else:
        lines.append("- **Usability verdicts:** none changed.")
    return lines + [""]
