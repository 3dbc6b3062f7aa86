"""How each match ended, so a trojan that failed its own gate is never read as an attack a defence stopped.

An attacker's score of 0 means different things: its trojan failed the
attacker gate (it costs too much clean accuracy, its trigger is over the
perturbation budget, or it is not finite: the attack never reached the
defender), the backdoor was too weak before any defence (its own success,
(ASR - base rate) / (1 - base rate), under 0.5), the defence stopped it, or
the attacker forfeited. Likewise a score
of 1 may be an attack that got through, or a defender that failed its own gate
or forfeited. The leaderboard counts each ending per attacker and per defender
(``arena.results.leaderboard``), from the stored reason, which the outcome rule
(``arena.engine.outcome``) writes with these prefixes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from arena.results.record import MatchRecord

# (key, column title), in the order the tables show them.
ENDINGS: tuple[tuple[str, str], ...] = (
    ("through", "got through"),
    ("stopped", "stopped by the defence"),
    ("weak", "too weak without a defence"),
    ("attacker_gate", "trojan failed the attacker gate"),
    ("defender_gate", "defence failed its gate"),
    ("attacker_forfeit", "attacker forfeited"),
    ("defender_forfeit", "defender forfeited"),
)


def ending(rec: MatchRecord) -> str:
    """One of ``ENDINGS``' keys for a scored match."""
    reason = rec.reason or ""
    if reason.startswith("attacker gate"):
        return "attacker_gate"
    if reason.startswith("defender gate"):
        return "defender_gate"
    if reason.startswith("attacker forfeits"):
        return "attacker_forfeit"
    if reason.startswith("defender forfeits"):
        return "defender_forfeit"
    if (rec.outcome or 0.0) >= 0.5:
        return "through"
    attack = (rec.metrics or {}).get("attack") or {}
    asr, base = attack.get("asr"), attack.get("base_rate") or 0.0
    if asr is not None and base < 1 and (asr - base) / (1 - base) < 0.5:
        return "weak"  # the trojan's own success, before any defence, is under the winning line
    return "stopped"


# The mark a heatmap cell gets when a gate or a forfeit decided some of its matches, and what it says.
MARKS: dict[str, tuple[str, str]] = {
    "attacker_gate": ("A", "the trojan failed the attacker gate"),
    "defender_gate": ("D", "the defence failed its gate"),
    "attacker_forfeit": ("F", "a side forfeited"),
    "defender_forfeit": ("F", "a side forfeited"),
}


def cell_marks(records: Iterable[MatchRecord]) -> dict[tuple[str, str], str]:
    """Per (attacker, defender): the marks (``MARKS``) of the endings that decided some of its matches
    without the attack meeting the defence, e.g. ``"A"`` or ``"DF"``; pairs with none are left out."""
    marks: dict[tuple[str, str], set[str]] = {}
    for r in records:
        if r.status == "ok" and r.outcome is not None and ending(r) in MARKS:
            marks.setdefault((r.attacker, r.defender), set()).add(MARKS[ending(r)][0])
    return {pair: "".join(sorted(m)) for pair, m in marks.items()}


def endings(records: Iterable[MatchRecord], role: str) -> dict[str, Counter]:
    """Per attacker (``role="attacker"``) or defender: how many of its scored matches ended each way."""
    out: dict[str, Counter] = {}
    for r in records:
        if r.status != "ok" or r.outcome is None:
            continue
        out.setdefault(r.attacker if role == "attacker" else r.defender, Counter())[ending(r)] += 1
    return dict(sorted(out.items()))
