"""Charts of a scenario's stored matches, for the HTML report (``arena.present.report``).

Each chart is drawn by matplotlib from numbers computed elsewhere: ratings and
their intervals from ``arena.results.ratings.rate`` (the leaderboard's fit, not a
second one), the outcome matrix from ``arena.results.leaderboard.outcome_matrix``, ASR
and CAD from the stored attack metrics. Nothing here decides anything; it
only makes the leaderboard's numbers visible.

The heatmap also returns where each cell landed in the PNG, in pixels, so
the report can lay an HTML image map over it and make each cell a link to
the matches behind it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from arena.present.gallery import new_figure
from arena.results.ratings import ATTACKER, BASE_RATING, DEFENDER, Rating, RatingTable

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_ROLE_TITLES = {ATTACKER: "Attackers", DEFENDER: "Defenders"}
_UNIT_WORDS = {"seed": "Student's t over per-seed fits", "match": "bootstrap over matches"}


def ratings_figure(table: RatingTable) -> Figure:
    """Bradley-Terry ratings with their 95% intervals, attackers above defenders, best at the top of each.

    A player without an interval (too few seeds to resample) is drawn as a
    hollow point, so the absence of a whisker is not read as certainty.
    """
    groups = {role: [r for r in table if r.role == role] for role in (ATTACKER, DEFENDER)}
    groups = {role: rows for role, rows in groups.items() if rows}
    heights = [max(len(rows), 1) for rows in groups.values()] or [1]
    fig = new_figure(8.0, 1.2 + 0.32 * sum(heights) + 0.9 * len(heights))
    axes = fig.subplots(len(heights), 1, squeeze=False, height_ratios=heights)[:, 0]
    lows = [r.ci_low for r in table if math.isfinite(r.ci_low)] + [r.rating for r in table]
    highs = [r.ci_high for r in table if math.isfinite(r.ci_high)] + [r.rating for r in table]
    span = (min(lows, default=BASE_RATING), max(highs, default=BASE_RATING))
    pad = max(25.0, 0.06 * (span[1] - span[0]))
    room = max(120.0, 0.2 * (span[1] - span[0]))  # on the right, for the printed rating and interval
    for ax, (role, rows) in zip(axes, groups.items()):
        _rating_rows(ax, rows, role == ATTACKER)
        ax.set_title(f"{_ROLE_TITLES[role]} ({len(rows)})", fontsize=10, loc="left")
        ax.set_xlim(span[0] - pad, span[1] + room)
        ax.axvline(BASE_RATING, color="grey", lw=0.8, ls="--")
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel(f"Bradley-Terry rating (Elo scale; the `none` defender at {BASE_RATING:.0f}, dashed)\n"
                        f"whiskers: 95% interval, {_UNIT_WORDS.get(table.unit, table.unit)}", fontsize=9)
    if not groups:
        axes[0].text(0.5, 0.5, "no rated matches", ha="center", va="center", transform=axes[0].transAxes)
    return fig


def _rating_rows(ax: Axes, rows: Sequence[Rating], attacker: bool) -> None:
    colour = "firebrick" if attacker else "steelblue"
    y = np.arange(len(rows))[::-1]  # best (first) at the top
    for yi, r in zip(y, rows):
        has_ci = math.isfinite(r.ci_low) and math.isfinite(r.ci_high)
        if has_ci:
            ax.errorbar([r.rating], [yi], xerr=[[r.rating - r.ci_low], [r.ci_high - r.rating]], fmt="o",
                        color=colour, ecolor=colour, elinewidth=2, capsize=4, ms=6)
        else:
            ax.plot([r.rating], [yi], "o", mfc="white", mec=colour, ms=6)
        label = r.shown + (f"  [{r.ci_low:.0f}, {r.ci_high:.0f}]" if has_ci else "  (no interval)")
        ax.annotate(label, (r.ci_high if has_ci else r.rating, yi), xytext=(6, 0), textcoords="offset points",
                    va="center", fontsize=8, color="dimgrey")
    ax.set_yticks(y, [r.name for r in rows], fontsize=9)
    ax.set_ylim(-0.7, len(rows) - 0.3)


@dataclass(frozen=True)
class CellBox:
    """Where a heatmap cell lies in the saved PNG: pixel corners, origin top-left (as an HTML image map)."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def coords(self) -> str:
        return f"{self.left},{self.top},{self.right},{self.bottom}"


def heatmap_figure(matrix: pd.DataFrame, marks: Mapping[tuple[str, str], str] | None = None,
                   legend: str = "") -> tuple[Figure, dict[tuple[str, str], CellBox]]:
    """The attacker x defender matrix of mean outcomes, coloured from defender wins (blue) to attacker wins
    (red), each cell labelled; and each cell's box in the PNG (save with ``arena.present.gallery.save_figure``).

    Pairs that never met are grey and get no box. ``marks`` (pair -> short text, e.g. "A") is written
    small in the corner of a cell decided by a gate or a forfeit, ``legend`` under the axes.
    """
    attackers, defenders = [str(a) for a in matrix.index], [str(d) for d in matrix.columns]
    values = matrix.to_numpy(dtype=float) if len(attackers) and len(defenders) else np.zeros((0, 0))
    fig = new_figure(max(5.0, 2.6 + 0.8 * len(defenders)), max(3.0, 2.0 + 0.5 * len(attackers)))
    ax = fig.subplots()
    from matplotlib import colormaps

    cmap = colormaps["coolwarm"].with_extremes(bad="#d9d9d9")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto",
                      interpolation="nearest")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            text, dark = ("-", False) if math.isnan(v) else (f"{v:.2f}", abs(v - 0.5) > 0.3)
            ax.text(j, i, text, ha="center", va="center", fontsize=9, color="white" if dark else "black")
            mark = (marks or {}).get((attackers[i], defenders[j]))
            if mark:
                ax.text(j + 0.45, i - 0.45, mark, ha="right", va="top", fontsize=7, fontweight="bold",
                        color="white" if dark else "black")
    ax.set_xticks(range(len(defenders)), defenders, rotation=40, ha="right", fontsize=9)
    ax.set_yticks(range(len(attackers)), attackers, fontsize=9)
    ax.set_xlabel("defender", fontsize=9)
    ax.set_ylabel("attacker", fontsize=9)
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    bar.set_label("attacker's mean score over seeds\n(0: defender wins, 1: attacker wins)", fontsize=8)
    if legend:
        ax.set_title(legend, fontsize=8, loc="left")
    fig.canvas.draw()  # lay the figure out, so data coordinates map to the pixels savefig will write
    height = fig.bbox.height
    boxes: dict[tuple[str, str], CellBox] = {}
    for i, a in enumerate(attackers):
        for j, d in enumerate(defenders):
            if math.isnan(values[i, j]):
                continue
            (x0, y0), (x1, y1) = ax.transData.transform([(j - 0.5, i - 0.5), (j + 0.5, i + 0.5)])
            ys = sorted((round(height - y0), round(height - y1)))  # display y grows upwards, PNG y downwards
            boxes[(a, d)] = CellBox(round(min(x0, x1)), ys[0], round(max(x0, x1)), ys[1])
    return fig, boxes


@dataclass(frozen=True)
class AttackPoint:
    """One trojan's attack metrics: an attacker's ASR and CAD at one seed (the mean over its matches there)."""

    attacker: str
    seed: int
    asr: float
    cad: float


def asr_cad_figure(points: Sequence[AttackPoint], cad_budget: float | None = None,
                   labels: Mapping[str, str] | None = None) -> Figure:
    """ASR against CAD, one colour per attacker: small points per seed, a large one for the mean over seeds.

    The attacker wants the top left (the backdoor works, clean accuracy
    intact); ``cad_budget`` (the scenario's ``budgets.attack_cad``) is drawn
    where a trojan starts to lose at the CAD gate.
    """
    fig = new_figure(8.0, 5.0)
    ax = fig.subplots()
    names = sorted({p.attacker for p in points})
    from matplotlib import colormaps

    colours = colormaps["tab10" if len(names) <= 10 else "tab20"]
    markers = "os^Dv<>pP*Xh"
    for k, name in enumerate(names):
        mine = [p for p in points if p.attacker == name]
        colour, marker = colours(k % colours.N), markers[k % len(markers)]
        cad = np.array([100.0 * p.cad for p in mine])
        asr = np.array([p.asr for p in mine])
        if len(mine) > 1:
            ax.scatter(cad, asr, s=18, color=colour, marker=marker, alpha=0.35, linewidths=0)
        ax.scatter([cad.mean()], [asr.mean()], s=70, color=colour, marker=marker, edgecolors="black",
                   linewidths=0.6, label=(labels or {}).get(name, name))
    if cad_budget is not None:
        ax.axvline(100.0 * cad_budget, color="grey", ls="--", lw=0.9)
        ax.annotate("attack CAD budget", (100.0 * cad_budget, 0.02), xytext=(4, 0), textcoords="offset points",
                    fontsize=8, color="dimgrey", rotation=90, va="bottom")
    ax.set_xlabel("CAD: clean accuracy drop of the trojan (percentage points; left is better for the attacker)",
                  fontsize=9)
    ax.set_ylabel("ASR: share of stamped inputs sent to the target", fontsize=9)
    ax.set_ylim(-0.03, 1.05)
    ax.grid(alpha=0.3)
    if names:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False,
                  title="attacker (mean over seeds)", title_fontsize=8)
    else:
        ax.text(0.5, 0.5, "no attack metrics stored", ha="center", va="center", transform=ax.transAxes)
    return fig
