"""The readable report of one match: the text `arena match` and `arena matches show` print.

It lives apart from the command line so that the HTML report (``arena.present.report``)
shows each stored match in exactly the words the terminal does, rather than a
second rendering that could drift from the first.
"""

from __future__ import annotations

import json
import math
from typing import Any

from tabulate import tabulate

from arena.core.cache import arena_home
from arena.results.record import MatchRecord


def fmt_value(v: Any) -> str:
    """A metric as the report shows it: floats to four places, NaN and None as "-", lists element-wise."""
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.4f}"
    if isinstance(v, list):
        return "[" + ", ".join(fmt_value(x) for x in v) + "]"
    return "-" if v is None else str(v)


def verdict(outcome: float) -> str:
    """Who won a match with this outcome (the attacker's score in [0, 1])."""
    return "attacker wins" if outcome > 0.5 else "defender wins" if outcome < 0.5 else "draw"


# What the abbreviations of a match report mean (TrojanZoo paper, sections 4.2 and 4.4), shown on every
# match page of `arena report` and in docs/metrics.md.
GLOSSARY: dict[str, str] = {
    "ASR": "attack success rate: the share of stamped non-target test inputs the model puts in the target class",
    "TMC": "trojan misclassification confidence: the model's mean probability of the target class on the "
           "stamped inputs it puts in the target class (the successful ones only; 0 when there are none)",
    "CAD": "clean accuracy drop: the benign model's clean test accuracy minus the trojan's (attack), or the "
           "undefended trojan's minus the deployment's (defense); in points of accuracy",
    "CCC": "clean classification confidence: the mean probability of the true class on clean inputs",
    "NSR": "neuron separation ratio: 1 minus the Jaccard overlap of the top-10% penultimate neurons that clean "
           "and stamped inputs activate most",
    "ARD": "attack rate deduction: the trojan's ASR minus its ASR through the deployment",
    "AIV": "anomaly index value: how far the suspected class's trigger size sits from the others (MAD units)",
    "MLN": "mask L1 norm: the size of the trigger mask an inspector recovered",
    "MJS": "mask Jaccard similarity: the overlap of the recovered mask with the true trigger's",
    "ART": "average running time: the deployment's one-off time per model (s) and its cost per input (ms)",
    "TPR / FPR": "a filter's share of stamped inputs rejected / of clean inputs rejected, at its threshold",
    "effective ASR": "the share of stamped inputs that pass the whole deployment unflagged and hit the target",
    "base rate": "the share of the same stamped inputs the benign model already puts in the target class",
}


def glossary_markdown() -> str:
    """docs/metrics.md: the glossary as a page (a test keeps the file equal to this)."""
    rows = "\n".join(f"| {k} | {v} |" for k, v in GLOSSARY.items())
    return ("# What the metrics of a match mean\n\n"
            "The abbreviations of `arena match`, `arena matches show` and the report's match pages "
            "(TrojanZoo paper, sections 4.2 and 4.4). How a match's outcome follows from them is in "
            "[match.md](match.md).\n\n| metric | meaning |\n|---|---|\n" + rows + "\n")


def match_report(rec: MatchRecord) -> str:
    """The readable report of a match: outcome, reason, metrics, notes, artifacts and every round."""
    m = rec.metrics or {}
    title = f"match #{rec.id}: " if rec.id is not None else ""
    lines = [f"{title}{rec.attacker} vs {rec.defender} on {rec.scenario} (seed {rec.seed}, {rec.rounds} round(s), "
             f"{rec.device or 'device unknown'}, {rec.duration_s:.1f} s)"]
    if rec.status != "ok" or rec.outcome is None:
        # A match that raised (stored by a tournament): no outcome, only what went wrong.
        lines += [f"status:  {rec.status}: the match did not finish", "", rec.error or "(no error stored)"]
        return "\n".join(lines)
    lines += [f"outcome: attacker scores {rec.outcome:.3f}  ->  {verdict(rec.outcome)}", f"reason:  {rec.reason}"]
    if m.get("sandbox"):  # matches stored before 0.2 do not say
        lines.append(f"sandbox: {m['sandbox']} (agent processes; docs/sandbox.md)")
    forfeit = m.get("forfeit")
    if forfeit:
        lines.append(f"forfeit: the {forfeit.get('side', '?')} {forfeit.get('kind', 'failed')}: "
                     f"{forfeit.get('message', '')}")
    lines.append("")
    rows = [("attack", k, fmt_value(v)) for k, v in m.get("attack", {}).items()]
    rows += [("defense", k, fmt_value(v)) for k, v in m.get("defense", {}).items()
             if v is not None and k != "category"]
    # Per-member control results stay in the record (`matches export`); the report shows their summary.
    rows += [("control", k, fmt_value(v)) for k, v in m.get("control", {}).items() if k != "members"]
    if rows:  # an attacker that forfeits leaves nothing to measure
        lines.append(tabulate(rows, headers=["side", "metric", "value"], tablefmt="simple"))
    notes = {**m.get("attacker_notes", {}), **{f"defender.{k}": v for k, v in m.get("defender_notes", {}).items()}}
    if notes:
        lines.append("")
        lines.append("notes: " + json.dumps(notes, default=str))
    for name, path in m.get("artifacts", {}).items():
        lines.append(f"{name}: {arena_home() / path}")
    if rec.rounds > 1 or len(rec.round_records) > 1:
        lines.append("")
        lines.append(tabulate([(r["round"], fmt_value(r["outcome"]), r["reason"]) for r in rec.round_records],
                              headers=["round", "outcome", "reason"]))
    return "\n".join(lines)
