"""The stored matches a claim reads: the main setting, the variants that change one knob of it, and cells."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from arena.config.scenario import Scenario
from arena.results.endings import ending
from arena.results.paper.numbers import ATTACKS, WORKING_ASR
from arena.results.record import ControlRecord, MatchRecord

# A variant scenario changes one knob of the main one; its kind says which remark it can test.
VARIANT_KNOBS: dict[tuple[str, str], Callable[[Any], str | None]] = {
    ("trigger", "alpha"): lambda v: "transparent" if v >= 0.8 else None,
    ("trigger", "size"): lambda v: "single-pixel" if v == 1 else None,
    ("trigger", "shape"): lambda v: "random-shape" if v == "random" else None,
    ("attack", "from_scratch"): lambda v: "from-scratch" if v else None,
    ("attack", "mixing"): lambda v: {"dataset": "dataset-mixing", "loss": "loss-mixing"}.get(v),
}
VARIANT_HOWTO: dict[str, str] = {
    "transparent": "trigger alpha 0.8 (benchmarks/scenarios/fmnist-cnn-alpha08.toml is fmnist-cnn's)",
    "single-pixel": "`[trigger] size = 1` (alpha 0)",
    "random-shape": "`[trigger] shape = \"random\"`",
    "from-scratch": "`[attack] from_scratch = true`",
    "dataset-mixing": "`[attack] mixing = \"dataset\"`",
    "loss-mixing": "`[attack] mixing = \"loss\"`",
}
_IGNORED = {"name", "description", "version", "device", "seeds", "development_seeds"}


def _flat(d: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out: dict[tuple[str, ...], Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def classify_variant(main: Scenario | None, variant: Scenario) -> tuple[str | None, str]:
    """Which kind of variant ``variant`` is, and a note when it is none.

    A variant is matched to the main scenario only when it differs in exactly
    one knob (name, seeds and the like aside): otherwise a difference between
    the two could come from the other knobs, and the comparison would not be
    the paper's.
    """
    if main is None:
        kinds = [k for knob, judge in VARIANT_KNOBS.items()
                 if (k := judge(getattr(getattr(variant, knob[0]), knob[1])))]
        if len(kinds) == 1:
            return kinds[0], "main scenario unknown: classified by its own settings"
        return None, "main scenario unknown and the variant's kind is ambiguous"
    a, b = _flat(main.to_dict()), _flat(variant.to_dict())
    diff = sorted(k for k in set(a) | set(b) if k[0] not in _IGNORED and a.get(k) != b.get(k))
    if len(diff) != 1:
        shown = ", ".join(".".join(k) for k in diff) or "nothing"
        return None, f"not used: it differs from {main.name} in {shown} (a variant changes one knob)"
    knob = diff[0]
    judge = VARIANT_KNOBS.get((knob[0], knob[1])) if len(knob) == 2 else None
    kind = judge(b[knob]) if judge else None
    if kind is None:
        return None, f"not used: no claim compares {'.'.join(knob)} = {b[knob]!r} with {a[knob]!r}"
    return kind, ""


@dataclass(frozen=True)
class Setting:
    """The matches of one scenario that claims read, and what they were played under.

    ``records`` holds only finished matches on the seeds used (the test seeds,
    plus the development seeds when asked for); ``dropped`` says what was left
    out and why, for the page's header.
    """

    name: str
    records: tuple[MatchRecord, ...]
    scenario: Scenario | None = None
    kind: str = "main"
    seeds_used: tuple[int, ...] = ()
    dropped: tuple[str, ...] = ()
    # Extra control runs on benign models (``arena controls``), on the seeds used: the model-level AUROC's negatives.
    controls: tuple[ControlRecord, ...] = ()

    @property
    def seeds(self) -> list[int]:
        return sorted({r.seed for r in self.records})

    @property
    def target_class(self) -> int | None:
        return None if self.scenario is None else self.scenario.attack.target_class

    def label(self) -> str:
        if self.scenario is None:
            return f"`{self.name}`"
        t = self.scenario.trigger
        return f"`{self.name}` (alpha {t.alpha:g}, {t.size}x{t.size} {t.shape})"

    def empty_reason(self) -> str:
        """Why a setting has no matches, worded for an 'untested' line."""
        if not self.seeds_used:
            return f"no matches of `{self.name}` yet"
        test = self.scenario is not None and set(self.seeds_used) == set(self.scenario.seeds)
        return f"no matches of `{self.name}` on the {'test ' if test else ''}seeds {seed_span(self.seeds_used)} yet"


def seed_span(seeds: Iterable[int]) -> str:
    s = sorted(set(seeds))
    if not s:
        return ""
    if len(s) > 2 and s == list(range(s[0], s[-1] + 1)):
        return f"{s[0]}-{s[-1]}"
    return ", ".join(map(str, s))


def make_setting(name: str, records: Iterable[MatchRecord], scenario: Scenario | None = None,
                 kind: str = "main", development: bool = False,
                 controls: Iterable[ControlRecord] = ()) -> Setting:
    """A ``Setting`` from stored or published records: finished matches on the test seeds (and the
    development seeds with ``development``); with no scenario file every seed is used."""
    recs = list(records)
    dropped = []
    failed = [r for r in recs if r.status != "ok"]
    if failed:
        dropped.append(f"{len(failed)} failed match(es)")
    ok = [r for r in recs if r.status == "ok"]
    if scenario is None:
        used = tuple(sorted({r.seed for r in ok}))
    else:
        used = tuple(scenario.seeds) + (tuple(scenario.development_seeds) if development else ())
        dev = [r for r in ok if r.seed in scenario.development_seeds and not development]
        other = [r for r in ok if r.seed not in used and r.seed not in scenario.development_seeds]
        if dev:
            dropped.append(f"{len(dev)} match(es) on the development seeds {seed_span(scenario.development_seeds)} "
                           "(rules were tuned on them; add --development to use them)")
        if other:
            dropped.append(f"{len(other)} match(es) on seeds the scenario does not list "
                           f"({seed_span(r.seed for r in other)})")
    kept = tuple(r for r in ok if r.seed in used)
    return Setting(name=name, records=kept, scenario=scenario, kind=kind, seeds_used=tuple(sorted(used)),
                   dropped=tuple(dropped), controls=tuple(c for c in controls if c.seed in used))


@dataclass(frozen=True)
class Context:
    """Everything a claim may read: the main setting and the variants that change one knob of it."""

    main: Setting
    variants: tuple[Setting, ...] = ()

    def variant(self, kind: str) -> Setting | None:
        return next((v for v in self.variants if v.kind == kind), None)


def cells_of(setting: Setting, defender: str, value: Callable[[dict[str, Any]], Any],
             working_only: bool = False, gate_failed: float | None = None) -> dict[int, dict[str, float]]:
    """{seed: {attacker: value}} of ``setting``'s matches against ``defender``; unusable values left out.

    A trojan that failed the attacker gate never reached a defender: with
    ``working_only`` its matches are left out (a defence cannot act on it),
    and with ``gate_failed`` set its value is that number (ASR 0: the attack
    failed, however well its trigger works on a model nobody would deploy).
    """
    out: dict[int, dict[str, float]] = defaultdict(dict)
    for r in setting.records:
        if r.defender != defender:
            continue
        m = r.metrics or {}
        failed_gate = ending(r) == "attacker_gate"
        if working_only and (failed_gate or not works(m)):
            continue
        if failed_gate and gate_failed is not None:
            out[r.seed][r.attacker] = float(gate_failed)
            continue
        try:
            v = value(m)
        except (KeyError, TypeError, IndexError):
            continue
        if v is None:
            continue
        v = float(v)  # a verdict flag counts 1 or 0
        if math.isfinite(v):
            out[r.seed][r.attacker] = v
    return out


def works(m: Mapping[str, Any]) -> bool:
    asr = (m.get("attack") or {}).get("asr")
    return asr is not None and math.isfinite(asr) and asr >= WORKING_ASR


def missing_pairs(setting: Setting, attackers: Iterable[str] | None, defenders: Iterable[str]) -> tuple[str, ...]:
    """The (attacker vs defender) pairs of ``setting`` with no finished match on any seed used
    (``attackers`` None: the defenders with no match at all)."""
    if attackers is None:
        met = {r.defender for r in setting.records}
        gone = [f"any match of {d}" for d in defenders if d not in met]
    else:
        have = {(r.attacker, r.defender) for r in setting.records}
        gone = [f"{a} vs {d}" for d in defenders for a in attackers if (a, d) not in have]
    if not gone:
        return ()
    if not setting.records:
        return (setting.empty_reason(),)
    return (f"{', '.join(gone)} in `{setting.name}`",)


def group_mean(row: Mapping[str, float], names: Iterable[str]) -> float | None:
    vals = [row[n] for n in names if n in row]
    return sum(vals) / len(vals) if vals else None


def names_of(abbrevs: Iterable[str], table: Mapping[str, str] = ATTACKS) -> list[str]:
    return [table[a] for a in abbrevs]


def short(abbrevs: Iterable[str]) -> str:
    return ", ".join(abbrevs)

