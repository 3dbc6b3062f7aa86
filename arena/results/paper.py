"""The TrojanZoo paper's claims, checked against stored matches (``arena paper``).

Each of the paper's Remarks 1-16, and the orderings of its Tables 5, 8 and 11,
is a ``Claim``: the claim in our words with the paper's numbers (each cited to
its table, figure or section), the arena metric and agents it concerns, and a
function that computes our evidence from ``MatchRecord``s. ``render`` turns the
verdicts into one Markdown page (docs/paper.md).

Why a module and not a hand-written page: the verdicts must follow from the
stored matches alone, so that the page can be regenerated after every
tournament and nobody's reading of a table slips in. Every paper number below
is in the paper's text; every number of ours comes from the records.

How evidence is computed. The seed is the independent unit (the matches of one
seed share its benign model and trojans), so each claim reduces the matches of
a seed to one number -- a paired difference (e.g. ASR at alpha 0 minus ASR at
alpha 0.8 for the same attackers and seed), or a Kendall tau-b between the
paper's column and ours -- and reports the mean over seeds with its 95%
Student-t interval (n seeds stated).

Verdict rule (``SeedStat.verdict`` and ``_judge``):

- **agrees**: every statistic's 95% interval lies on the paper's side of 0;
- **contradicts**: some statistic's interval lies on the opposite side;
- **inconclusive**: otherwise (an interval covers 0, or one seed: no interval);
- **untested**: a statistic has no seed with the matches it needs (the why
  line names the missing agents and setting);
- **not comparable**: the arena cannot create the paper's condition (training
  on another dataset, downstream fine-tuning, attribution maps...): why says so.

Matches of an attack that did not work (undefended ASR under ``WORKING_ASR`` in
that match) are left out of defense statistics (ARD, TPR, flags, AIV, MJS): a
defense cannot reduce or detect a backdoor that is not there, and the paper's
attacks all work in its defense tables.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from arena.config.scenario import Scenario
from arena.results.record import MatchRecord

# --- the paper's names -------------------------------------------------------

ATTACKS: dict[str, str] = {"BN": "badnet", "TNN": "trojannn", "RB": "reflection", "TB": "targeted",
                           "LB": "latent", "ESB": "trojannet", "ABE": "abe", "IMC": "imc"}
DEFENSES: dict[str, str] = {"RS": "randomized-smoothing", "DU": "down-upsampling", "MP": "magnet",
                            "STRIP": "strip", "NEO": "neo", "AR": "adversarial-retraining", "FP": "fine-pruning",
                            "NC": "neural-cleanse", "DI": "deep-inspect", "TABOR": "tabor", "NI": "neuron-inspect",
                            "ABS": "abs", "AC": "activation-clustering", "SS": "spectral-signature"}
PAPER_ORDER = ("BN", "TNN", "RB", "TB", "LB", "ESB", "ABE", "IMC")  # the paper's column order
WORKING_ASR = 0.5  # an attack under this undefended ASR has no backdoor for a defense to act on
VERDICTS = ("agrees", "contradicts", "inconclusive", "untested", "not comparable")

# --- the paper's numbers that orderings are tested against --------------------

# Table 5, CIFAR-10 column (|m| = 3, alpha = 0.8): ASR %.
TABLE5_CIFAR10_ALPHA08 = {"BN": 72.4, "TNN": 91.5, "RB": 52.1, "TB": 11.5, "LB": 100.0, "ESB": 10.3,
                          "ABE": 74.3, "IMC": 100.0}
# Table 5, ImageNet column with |m| = 3, alpha = 0 (the only alpha-0 column): ASR %.
TABLE5_IMAGENET_ALPHA0 = {"BN": 90.0, "TNN": 95.2, "RB": 94.6, "TB": 82.8, "LB": 97.4, "ESB": 100.0,
                          "ABE": 82.6, "IMC": 98.4}
# Table 8: ARD % (the table prints them as ASR changes, -x).
TABLE8_ARD = {
    "RS": {"BN": 0.5, "TNN": 0.0, "RB": 0.0, "TB": 0.3, "LB": 0.0, "ESB": 89.1, "ABE": 0.5, "IMC": 0.0},
    "DU": {"BN": 2.2, "TNN": 0.4, "RB": 5.4, "TB": 67.8, "LB": 4.1, "ESB": 89.9, "ABE": 0.5, "IMC": 0.2},
    "MP": {"BN": 6.0, "TNN": 37.4, "RB": 78.6, "TB": 11.0, "LB": 42.6, "ESB": 87.8, "ABE": 4.6, "IMC": 16.0},
    "FP": {"BN": 82.9, "TNN": 86.5, "RB": 89.1, "TB": 38.0, "LB": 27.6, "ESB": 100.0, "ABE": 84.5, "IMC": 26.9},
    "AR": {"BN": 83.2, "TNN": 89.6, "RB": 89.8, "TB": 86.2, "LB": 90.1, "ESB": 100.0, "ABE": 85.3, "IMC": 89.7},
}
# Table 11: AIV of trojan models. ABS has seven values; the one left out is read as ESB, to which
# 5.3.3 (iii) says most inspectors are inapplicable.
TABLE11_AIV = {
    "NC": {"BN": 3.08, "TNN": 2.69, "RB": 2.48, "TB": 2.44, "LB": 2.12, "ESB": 0.04, "ABE": 2.67, "IMC": 1.66},
    "DI": {"BN": 0.54, "TNN": 0.46, "RB": 0.39, "TB": 0.29, "LB": 0.21, "ESB": 0.01, "ABE": 0.76, "IMC": 0.26},
    "TABOR": {"BN": 3.26, "TNN": 2.49, "RB": 2.32, "TB": 2.15, "LB": 2.01, "ESB": 0.89, "ABE": 2.44, "IMC": 1.89},
    "NI": {"BN": 1.28, "TNN": 0.59, "RB": 0.78, "TB": 1.11, "LB": 0.86, "ESB": 0.71, "ABE": 0.41, "IMC": 0.52},
    "ABS": {"BN": 3.02, "TNN": 4.16, "RB": 4.10, "TB": 15.55, "LB": 2.88, "ABE": 8.45, "IMC": 3.15},
}
# Table 13: running time in seconds (NVIDIA Quadro RTX 6000).
TABLE13_SECONDS = {"MP": 2.4e1, "NEO": 7.7e0, "STRIP": 1.8e-1, "AR": 1.7e4, "FP": 2.1e3, "NC": 1.8e3,
                   "TABOR": 4.2e3, "ABS": 1.9e3, "NI": 4.6e1, "DI": 4.1e2}


# --- statistics over seeds ----------------------------------------------------

def _t_two_sided(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with integer ``df`` (Abramowitz & Stegun 26.7.3-4): exact, no scipy."""
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2 == 1:
        if df == 1:
            return 2 * theta / math.pi
        term = total = c
        for k in range(1, (df - 3) // 2 + 1):
            term *= c * c * (2 * k) / (2 * k + 1)
            total += term
        return 2 / math.pi * (theta + s * total)
    term = total = 1.0
    for k in range(1, (df - 2) // 2 + 1):
        term *= c * c * (2 * k - 1) / (2 * k)
        total += term
    return s * total


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (p > 0.5) of Student's t with ``df`` degrees of freedom, by bisection."""
    want = 2 * p - 1
    lo, hi = 0.0, 1e6
    for _ in range(200):
        mid = (lo + hi) / 2
        if _t_two_sided(mid, df) < want:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b of two paired sequences (ties in either counted as tau-b does); None under 3 pairs."""
    n = len(x)
    if n < 3:
        return None
    conc = disc = tie_x = tie_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                tie_x += 1
            elif dy == 0:
                tie_y += 1
            elif (dx > 0) == (dy > 0):
                conc += 1
            else:
                disc += 1
    denom = math.sqrt((conc + disc + tie_x) * (conc + disc + tie_y))
    return (conc - disc) / denom if denom else None


@dataclass(frozen=True)
class SeedStat:
    """One statistic, one value per seed; its mean and 95% t-interval over seeds.

    ``direction`` is the paper's side: +1 when the paper says the statistic
    is above 0. ``scale``/``unit`` only change how it is printed (ASR
    fractions as percentage points). ``missing`` names the matches it needed
    and did not find.
    """

    label: str
    per_seed: Mapping[int, float]
    direction: int = 1
    scale: float = 1.0
    unit: str = ""
    missing: tuple[str, ...] = ()

    @property
    def n(self) -> int:
        return len(self.per_seed)

    @property
    def mean(self) -> float:
        return sum(self.per_seed.values()) / self.n if self.n else float("nan")

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95% Student-t interval of the mean over seeds; None with fewer than two seeds."""
        if self.n < 2:
            return None
        vals = list(self.per_seed.values())
        sd = math.sqrt(sum((v - self.mean) ** 2 for v in vals) / (self.n - 1))
        half = t_quantile(0.975, self.n - 1) * sd / math.sqrt(self.n)
        return self.mean - half, self.mean + half

    def verdict(self) -> str:
        if self.n == 0:
            return "untested"
        ci = self.interval
        if ci is None:
            return "inconclusive"
        lo, hi = (ci[0], ci[1]) if self.direction > 0 else (-ci[1], -ci[0])
        if lo > 0:
            return "agrees"
        if hi < 0:
            return "contradicts"
        return "inconclusive"

    def text(self) -> str:
        if self.n == 0:
            return f"{self.label}: no data"
        f = (lambda v: f"{v * self.scale:+.1f}") if self.scale != 1.0 else (lambda v: f"{v:+.2f}")
        unit = f" {self.unit}" if self.unit else ""
        ci = self.interval
        side = sum(1 for v in self.per_seed.values() if v * self.direction > 0)
        where = "above" if self.direction > 0 else "below"
        if ci is None:
            return f"{self.label}: {f(self.mean)}{unit} (1 seed, no interval)"
        return (f"{self.label}: {f(self.mean)}{unit}, 95% CI [{f(ci[0])}, {f(ci[1])}], n={self.n} seeds "
                f"({side}/{self.n} {where} 0)")


# --- the matches a claim reads ---------------------------------------------------

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
        return f"no matches of `{self.name}` on the {'test ' if test else ''}seeds {_seed_span(self.seeds_used)} yet"


def _seed_span(seeds: Iterable[int]) -> str:
    s = sorted(set(seeds))
    if not s:
        return ""
    if len(s) > 2 and s == list(range(s[0], s[-1] + 1)):
        return f"{s[0]}-{s[-1]}"
    return ", ".join(map(str, s))


def make_setting(name: str, records: Iterable[MatchRecord], scenario: Scenario | None = None,
                 kind: str = "main", development: bool = False) -> Setting:
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
            dropped.append(f"{len(dev)} match(es) on the development seeds {_seed_span(scenario.development_seeds)} "
                           "(rules were tuned on them; add --development to use them)")
        if other:
            dropped.append(f"{len(other)} match(es) on seeds the scenario does not list "
                           f"({_seed_span(r.seed for r in other)})")
    kept = tuple(r for r in ok if r.seed in used)
    return Setting(name=name, records=kept, scenario=scenario, kind=kind, seeds_used=tuple(sorted(used)),
                   dropped=tuple(dropped))


@dataclass(frozen=True)
class Context:
    """Everything a claim may read: the main setting and the variants that change one knob of it."""

    main: Setting
    variants: tuple[Setting, ...] = ()

    def variant(self, kind: str) -> Setting | None:
        return next((v for v in self.variants if v.kind == kind), None)


def _cells(setting: Setting, defender: str, value: Callable[[dict[str, Any]], Any],
           working_only: bool = False) -> dict[int, dict[str, float]]:
    """{seed: {attacker: value}} of ``setting``'s matches against ``defender``; unusable values left out."""
    out: dict[int, dict[str, float]] = defaultdict(dict)
    for r in setting.records:
        if r.defender != defender:
            continue
        m = r.metrics or {}
        if working_only and not _works(m):
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


def _works(m: Mapping[str, Any]) -> bool:
    asr = (m.get("attack") or {}).get("asr")
    return asr is not None and math.isfinite(asr) and asr >= WORKING_ASR


def _missing(setting: Setting, attackers: Iterable[str] | None, defenders: Iterable[str]) -> tuple[str, ...]:
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


def _group_mean(row: Mapping[str, float], names: Iterable[str]) -> float | None:
    vals = [row[n] for n in names if n in row]
    return sum(vals) / len(vals) if vals else None


def _names(abbrevs: Iterable[str], table: Mapping[str, str] = ATTACKS) -> list[str]:
    return [table[a] for a in abbrevs]


def _short(abbrevs: Iterable[str]) -> str:
    return ", ".join(abbrevs)


# --- evidence ---------------------------------------------------------------------

@dataclass(frozen=True)
class Evidence:
    """Our side of one claim: the matched condition, the numbers, the verdict and why."""

    verdict: str
    condition: str
    number: str
    why: str
    stats: tuple[SeedStat, ...] = ()


def _judge(stats: Sequence[SeedStat], condition: str, notes: str = "") -> Evidence:
    """The verdict of a claim from its statistics (module docstring: the verdict rule)."""
    number = "; ".join(s.text() for s in stats if s.n) or "-"
    missing = [m for s in stats for m in s.missing]
    untested = [s for s in stats if s.n == 0]
    tail = f" {notes}" if notes else ""
    if untested:
        need = "; ".join(dict.fromkeys(missing)) or "the matches it needs"
        return Evidence("untested", condition, number, f"missing: {need}.{tail}", tuple(stats))
    verdicts = [s.verdict() for s in stats]
    partial = f" Left out where absent: {'; '.join(dict.fromkeys(missing))}." if missing else ""
    if "contradicts" in verdicts:
        bad = [s.label for s, v in zip(stats, verdicts) if v == "contradicts"]
        why = f"the 95% interval lies on the opposite side of 0 from the paper's for: {'; '.join(bad)}."
        return Evidence("contradicts", condition, number, why + partial + tail, tuple(stats))
    if all(v == "agrees" for v in verdicts):
        why = "the 95% interval of every statistic lies on the paper's side of 0."
        return Evidence("agrees", condition, number, why + partial + tail, tuple(stats))
    open_ = [s for s, v in zip(stats, verdicts) if v == "inconclusive"]
    one = [s.label for s in open_ if s.n < 2]
    why = (f"one seed only for {'; '.join(one)}: no interval." if one else
           f"the 95% interval covers 0 for: {'; '.join(s.label for s in open_)}.")
    return Evidence("inconclusive", condition, number, why + partial + tail, tuple(stats))


def _no_variant(kind: str, condition: str, ctx: Context) -> Evidence:
    return Evidence("untested", condition, "-",
                    f"missing: matches of a variant of `{ctx.main.name}` with {VARIANT_HOWTO[kind]}, "
                    f"attackers against `none` on the same seeds (play it, then pass it with --variant).")


def _paired(label: str, a: Mapping[int, Mapping[str, float]], b: Mapping[int, Mapping[str, float]],
            attackers: Sequence[str], missing: tuple[str, ...], direction: int = 1) -> SeedStat:
    """Per seed: mean over ``attackers`` present in both of a[attacker] - b[attacker] (ASR in points)."""
    per = {}
    for seed in sorted(set(a) & set(b)):
        diffs = [a[seed][x] - b[seed][x] for x in attackers if x in a[seed] and x in b[seed]]
        if diffs:
            per[seed] = sum(diffs) / len(diffs)
    return SeedStat(label, per, direction, 100.0, "points", missing)


def _alpha(s: Setting) -> str:
    return "?" if s.scenario is None else f"{s.scenario.trigger.alpha:g}"


def _asr(m: dict[str, Any]) -> Any:
    return m["attack"]["asr"]


# --- the claims --------------------------------------------------------------------

def _remark1(ctx: Context) -> Evidence:
    abbrevs = ["BN", "TNN", "TB", "LB", "ESB", "ABE", "IMC"]
    cond = (f"ASR against `none` of {_short(abbrevs)} at alpha {_alpha(ctx.main)} ({ctx.main.name}) minus at alpha 0.8 "
            "(the transparent variant), per seed the mean over attackers; RB left out (its reflection "
            "trigger keeps its own transparency, 0.7, whatever the scenario says)")
    v = ctx.variant("transparent")
    if v is None:
        return _no_variant("transparent", cond, ctx)
    names = _names(abbrevs)
    miss = _missing(ctx.main, names, ["none"]) + _missing(v, names, ["none"])
    stat = _paired("ASR alpha 0 - alpha 0.8", _cells(ctx.main, "none", _asr), _cells(v, "none", _asr), names, miss)
    return _judge([stat], cond, "One dataset only: 'especially evident for complex data' is not tested.")


def _remark4(ctx: Context) -> Evidence:
    robust, cheap = ["MP", "AR"], "RS"
    att = _names(PAPER_ORDER)
    cond = ("defenses' ARD (working attacks only) and defense CAD, mean over the paper's attacks per seed: "
            "MP and AR (mean of the two) minus RS")
    ard = {d: _cells(ctx.main, DEFENSES[d], lambda m: m["defense"]["ard"], working_only=True)
           for d in robust + [cheap]}
    cad = {d: _cells(ctx.main, DEFENSES[d], lambda m: m["defense"]["cad"]) for d in robust + [cheap]}
    miss = _missing(ctx.main, att, [DEFENSES[d] for d in robust + [cheap]])

    def contrast(cells: dict[str, dict[int, dict[str, float]]]) -> dict[int, float]:
        per = {}
        for seed in cells[cheap]:
            hi = [_group_mean(cells[d].get(seed, {}), att) for d in robust]
            hi = [x for x in hi if x is not None]
            lo = _group_mean(cells[cheap][seed], att)
            if hi and lo is not None:
                per[seed] = sum(hi) / len(hi) - lo
        return per

    stats = [SeedStat("ARD of MP, AR - RS", contrast(ard), 1, 100.0, "points", miss),
             SeedStat("defense CAD of MP, AR - RS", contrast(cad), 1, 100.0, "points", miss)]
    return _judge(stats, cond, "Agreement needs both: the robust defenses remove more backdoor and cost "
                               "more clean accuracy. Our CAD is against the trojan model; Table 9's against "
                               "the clean model.")


def _remark5(ctx: Context) -> Evidence:
    cond = ("TPR at the scenario's FPR budget (working attacks only), per seed: STRIP's mean on LB, IMC "
            "minus its mean on BN, TNN, ABE; NEO's on ESB minus its mean on the other seven")
    strip = _cells(ctx.main, "strip", lambda m: m["defense"]["tpr"], working_only=True)
    neo = _cells(ctx.main, "neo", lambda m: m["defense"]["tpr"], working_only=True)
    hi_s, lo_s = _names(["LB", "IMC"]), _names(["BN", "TNN", "ABE"])
    hi_n, lo_n = _names(["ESB"]), _names([a for a in PAPER_ORDER if a != "ESB"])

    def contrast(cells: dict[int, dict[str, float]], hi: list[str], lo: list[str]) -> dict[int, float]:
        per = {}
        for seed, row in cells.items():
            a, b = _group_mean(row, hi), _group_mean(row, lo)
            if a is not None and b is not None:
                per[seed] = a - b
        return per

    stats = [SeedStat("STRIP TPR on LB, IMC - on BN, TNN, ABE", contrast(strip, hi_s, lo_s), 1, 100.0, "points",
                      _missing(ctx.main, hi_s + lo_s, ["strip"])),
             SeedStat("NEO TPR on ESB - on the others", contrast(neo, hi_n, lo_n), 1, 100.0, "points",
                      _missing(ctx.main, hi_n + lo_n, ["neo"]))]
    return _judge(stats, cond, "Agreement needs both: each filter is good against different attacks.")


def _remark6(ctx: Context) -> Evidence:
    cond = ("per seed over working attacks: share of trojan models ABS flags minus the mean share of NC "
            "and TABOR (detection); mean MJS of NC and TABOR minus ABS's (recovery)")
    att = _names(PAPER_ORDER)
    flag = {d: _cells(ctx.main, DEFENSES[d], lambda m: m["defense"]["flagged"], working_only=True)
            for d in ("ABS", "NC", "TABOR")}
    mjs = {d: _cells(ctx.main, DEFENSES[d], lambda m: m["defense"]["mjs"], working_only=True)
           for d in ("ABS", "NC", "TABOR")}
    miss = _missing(ctx.main, att, [DEFENSES[d] for d in ("ABS", "NC", "TABOR")])

    def contrast(cells: dict[str, dict[int, dict[str, float]]], sign: int) -> dict[int, float]:
        per = {}
        for seed in cells["ABS"]:
            a = _group_mean(cells["ABS"][seed], att)
            others = [x for d in ("NC", "TABOR") if (x := _group_mean(cells[d].get(seed, {}), att)) is not None]
            if a is not None and others:
                per[seed] = sign * (a - sum(others) / len(others))
        return per

    stats = [SeedStat("flag rate ABS - NC, TABOR", contrast(flag, 1), 1, 100.0, "points", miss),
             SeedStat("MJS NC, TABOR - ABS", contrast(mjs, -1), 1, 1.0, "", miss)]
    return _judge(stats, cond, "Detection is compared by verdicts, not AIV: our ABS reports its best REASR "
                               "per label (0-1), not a MAD index on NC's scale.")


def _remark7(ctx: Context) -> Evidence:
    cond = ("deploy time per model (art_model_s, mean over the attackers met on a seed) of MP, NEO, STRIP, AR, "
            "FP, NC, TABOR, ABS, NI, DI; per seed Kendall tau-b against Table 13's times")
    cells = {d: _cells(ctx.main, DEFENSES[d], lambda m: m["defense"]["art_model_s"]) for d in TABLE13_SECONDS}
    seeds = sorted({s for c in cells.values() for s in c})
    per = {}
    for seed in seeds:
        pairs = [(TABLE13_SECONDS[d], sum(c[seed].values()) / len(c[seed])) for d, c in cells.items()
                 if c.get(seed)]
        tau = kendall_tau_b([p for p, _ in pairs], [o for _, o in pairs])
        if tau is not None:
            per[seed] = tau
    miss = _missing(ctx.main, None, [DEFENSES[d] for d in TABLE13_SECONDS])
    stat = SeedStat("tau-b vs Table 13", per, 1, 1.0, "", miss)
    return _judge([stat], cond, "'Marginal' has no threshold in the paper; only Table 13's ordering is tested "
                                "(times here are on another machine and dataset, so only their order compares).")


def _remark8(ctx: Context) -> Evidence:
    abbrevs = ["BN", "TNN", "TB", "LB", "ABE", "IMC"]
    cond = (f"in the single-pixel variant, ASR against `none` minus the benign model's ASR on the same stamped "
            f"inputs (base rate), mean over {_short(abbrevs)} per seed (ESB inapplicable as in Table 14; RB "
            "keeps its own trigger)")
    v = ctx.variant("single-pixel")
    if v is None:
        return _no_variant("single-pixel", cond, ctx)
    names = _names(abbrevs)
    asr = _cells(v, "none", _asr)
    base = _cells(v, "none", lambda m: m["attack"]["base_rate"])
    stat = _paired("ASR - base rate, 1x1 trigger", asr, base, names, _missing(v, names, ["none"]))
    return _judge([stat], cond)


def _variant_gain(ctx: Context, kind: str, abbrevs: list[str], label: str, cond: str) -> Evidence:
    """Per seed: the mean ASR gain (against `none`) of ``abbrevs`` in the ``kind`` variant over the main setting."""
    v = ctx.variant(kind)
    if v is None:
        return _no_variant(kind, cond, ctx)
    names = _names(abbrevs)
    miss = _missing(ctx.main, names, ["none"]) + _missing(v, names, ["none"])
    return _judge([_paired(label, _cells(v, "none", _asr), _cells(ctx.main, "none", _asr), names, miss)], cond)


def _remark9(ctx: Context) -> Evidence:
    return _variant_gain(ctx, "random-shape", ["BN", "TNN"], "ASR random - square trigger",
                         "ASR against `none` of BN and TNN with the trigger's pixels at random places (same count) "
                         "minus with the square patch, per seed (RB keeps its own trigger; LB and IMC are at the "
                         "ceiling in Table 15)")


def _remark10(ctx: Context) -> Evidence:
    sep = ["BN", "TNN", "RB", "LB", "ABE", "IMC"]
    cond = (f"matches against `none`: NSR of {_short(sep)}'s trojans minus the benign model's (attacker `none`), "
            "mean per seed; and per seed Kendall tau-b between NSR and ASR over the paper's eight attacks")
    nsr = _cells(ctx.main, "none", lambda m: m["attack"]["nsr"])
    asr = _cells(ctx.main, "none", _asr)
    per_gap, per_tau = {}, {}
    for seed, row in nsr.items():
        t = _group_mean(row, _names(sep))
        if t is not None and "none" in row:
            per_gap[seed] = t - row["none"]
        both = [a for a in _names(PAPER_ORDER) if a in row and a in asr.get(seed, {})]
        tau = kendall_tau_b([row[a] for a in both], [asr[seed][a] for a in both])
        if tau is not None:
            per_tau[seed] = tau
    stats = [SeedStat("NSR trojan - benign", per_gap, 1, 1.0, "",
                      _missing(ctx.main, _names(sep) + ["none"], ["none"])),
             SeedStat("tau-b(NSR, ASR)", per_tau, 1, 1.0, "", _missing(ctx.main, _names(PAPER_ORDER), ["none"]))]
    return _judge(stats, cond, "NSR after fine-pruning (Table 16's second row) is not stored, so that part is "
                               "not tested.")


def _remark11(ctx: Context) -> Evidence:
    return _variant_gain(ctx, "from-scratch", ["BN", "TNN", "RB"], "ASR from scratch - re-trained",
                         "ASR against `none` of BN, TNN, RB trained from scratch (the variant) minus re-trained from "
                         "the benign model, per seed (LB and IMC reach 100% both ways in Table 17)")


def _remark13(ctx: Context) -> Evidence:
    abbrevs = ["BN", "TNN", "RB", "LB", "IMC"]
    names = _names(abbrevs)
    cond = (f"ASR against `none` of {_short(abbrevs)} with batch-level mixing (main) minus dataset-level and minus "
            "loss-level mixing (variants), per seed")
    stats = []
    for kind, label in (("dataset-mixing", "ASR batch - dataset mixing"), ("loss-mixing", "ASR batch - loss mixing")):
        v = ctx.variant(kind)
        if v is None:
            stats.append(SeedStat(label, {}, missing=(f"a variant with {VARIANT_HOWTO[kind]} (pass it with "
                                                      "--variant)",)))
            continue
        miss = _missing(ctx.main, names, ["none"]) + _missing(v, names, ["none"])
        stats.append(_paired(label, _cells(ctx.main, "none", _asr), _cells(v, "none", _asr), names, miss))
    return _judge(stats, cond)


def _remark14(ctx: Context) -> Evidence:
    cond = ("ASR against `none` at alpha 0.8 (the transparent variant): IMC (trigger and model co-optimized) minus "
            "BN (fixed trigger), per seed")
    v = ctx.variant("transparent")
    if v is None:
        return _no_variant("transparent", cond, ctx)
    asr = _cells(v, "none", _asr)
    per = {s: row["imc"] - row["badnet"] for s, row in asr.items() if "imc" in row and "badnet" in row}
    stat = SeedStat("ASR IMC - BN at alpha 0.8", per, 1, 100.0, "points", _missing(v, ["imc", "badnet"], ["none"]))
    return _judge([stat], cond, "The paper compares three BN variants at alpha 0.9; IMC against BN is our "
                                "nearest pair.")


def _remark15(ctx: Context) -> Evidence:
    defs = ["MP", "AR", "STRIP", "ABS"]
    cond = ("effective ASR (trigger inputs that pass the whole deployment and hit the target) of imc-adaptive "
            "minus imc, mean over MP, AR, STRIP, ABS per seed")
    eff = {d: _cells(ctx.main, DEFENSES[d], lambda m: m["defense"]["effective_asr"]) for d in defs}
    per: dict[int, float] = {}
    seeds = sorted({s for c in eff.values() for s in c})
    for seed in seeds:
        diffs = [c[seed]["imc-adaptive"] - c[seed]["imc"] for c in eff.values()
                 if "imc-adaptive" in c.get(seed, {}) and "imc" in c.get(seed, {})]
        if diffs:
            per[seed] = sum(diffs) / len(diffs)
    miss = _missing(ctx.main, ["imc", "imc-adaptive"], [DEFENSES[d] for d in defs])
    return _judge([SeedStat("effective ASR imc-adaptive - imc", per, 1, 100.0, "points", miss)], cond,
                  "Our adaptive IMC uses the scenario's 3x3 trigger; Figure 10's largest gains are at 6x6.")


def _ordering(label: str, paper: Mapping[str, float], cells: dict[int, dict[str, float]],
              missing: tuple[str, ...]) -> SeedStat:
    per = {}
    for seed, row in cells.items():
        keys = [a for a in paper if ATTACKS[a] in row]
        tau = kendall_tau_b([paper[a] for a in keys], [row[ATTACKS[a]] for a in keys])
        if tau is not None:
            per[seed] = tau
    return SeedStat(label, per, 1, 1.0, "", missing)


def _table5_alpha08(ctx: Context) -> Evidence:
    paper = {a: v for a, v in TABLE5_CIFAR10_ALPHA08.items() if a != "RB"}
    cond = ("ASR against `none` in the transparent variant (alpha 0.8, 3x3) of the seven attacks other than RB "
            "(its trigger ignores the scenario's transparency); per seed Kendall tau-b against Table 5's column")
    v = ctx.variant("transparent")
    if v is None:
        return _no_variant("transparent", cond, ctx)
    stat = _ordering("tau-b vs Table 5 (alpha 0.8)", paper, _cells(v, "none", _asr),
                     _missing(v, _names(paper), ["none"]))
    return _judge([stat], cond)


def _table5_alpha0(ctx: Context) -> Evidence:
    cond = (f"ASR against `none` in {ctx.main.name} of the paper's eight attacks; per seed Kendall tau-b against "
            "Table 5's ImageNet column at |m| = 3, alpha 0 (its only alpha-0 column)")
    stat = _ordering("tau-b vs Table 5 (alpha 0)", TABLE5_IMAGENET_ALPHA0, _cells(ctx.main, "none", _asr),
                     _missing(ctx.main, _names(PAPER_ORDER), ["none"]))
    return _judge([stat], cond, "The paper's column is ImageNet; ours is one small dataset.")


def _table8(ctx: Context) -> Evidence:
    cond = ("ARD of RS, DU, MP, FP, AR against the paper's eight attacks (cells of working attacks only); per seed "
            "Kendall tau-b over all cells against Table 8")
    per: dict[int, float] = {}
    cells = {d: _cells(ctx.main, DEFENSES[d], lambda m: m["defense"]["ard"], working_only=True) for d in TABLE8_ARD}
    seeds = sorted({s for c in cells.values() for s in c})
    for seed in seeds:
        xs, ys = [], []
        for d, row in TABLE8_ARD.items():
            ours = cells[d].get(seed, {})
            for a, val in row.items():
                if ATTACKS[a] in ours:
                    xs.append(val)
                    ys.append(ours[ATTACKS[a]])
        tau = kendall_tau_b(xs, ys)
        if tau is not None:
            per[seed] = tau
    miss = _missing(ctx.main, _names(PAPER_ORDER), [DEFENSES[d] for d in TABLE8_ARD])
    return _judge([SeedStat("tau-b vs Table 8", per, 1, 1.0, "", miss)], cond)


def _table11(ctx: Context) -> Evidence:
    target = ctx.main.target_class
    cond = ("anomaly index of the target class (working attacks only) under NC, DI, TABOR, NI, ABS; per seed and "
            "inspector Kendall tau-b over attacks against Table 11's row, averaged over inspectors")

    def aiv(m: dict[str, Any]) -> Any:
        d = m["defense"]
        per_class = d.get("aiv_per_class")
        if target is not None and per_class and target < len(per_class):
            return per_class[target]
        return d.get("aiv")

    cells = {d: _cells(ctx.main, DEFENSES[d], aiv, working_only=True) for d in TABLE11_AIV}
    seeds = sorted({s for c in cells.values() for s in c})
    per = {}
    for seed in seeds:
        taus = []
        for d, row in TABLE11_AIV.items():
            ours = cells[d].get(seed, {})
            keys = [a for a in row if ATTACKS[a] in ours]
            tau = kendall_tau_b([row[a] for a in keys], [ours[ATTACKS[a]] for a in keys])
            if tau is not None:
                taus.append(tau)
        if taus:
            per[seed] = sum(taus) / len(taus)
    miss = _missing(ctx.main, _names(PAPER_ORDER), [DEFENSES[d] for d in TABLE11_AIV])
    return _judge([SeedStat("mean tau-b vs Table 11 rows", per, 1, 1.0, "", miss)], cond,
                  "Orders are compared within each inspector: the inspectors' indices are on different scales.")


@dataclass(frozen=True)
class Claim:
    """One claim of the paper and how the arena checks it.

    ``evaluate`` is None where the arena cannot create the paper's condition;
    ``not_comparable`` then says why (and what would be needed).
    """

    id: str
    claim: str
    paper: str
    metric: str
    agents: str
    evaluate: Callable[[Context], Evidence] | None = None
    not_comparable: str = ""


CLAIMS: tuple[Claim, ...] = (
    Claim("Remark 1",
          "Trigger transparency trades attack effectiveness for evasiveness: most attacks lose ASR sharply once "
          "alpha exceeds 0.6, most of all on complex data.",
          "Fig. 4: TB near 10% at alpha >= 0.8; Table 5 (CIFAR-10, alpha 0.8): BN 72.4, ABE 74.3, TB 11.5, "
          "ESB 10.3% ASR, against BN 93.3, ABE 95.3, TB 96.7, ESB 100.0 in Table 8's no-defense row (alpha not "
          "stated there)",
          "ASR", "BN, TNN, TB, LB, ESB, ABE, IMC vs none", _remark1),
    Claim("Remark 2",
          "Attack effectiveness and model evasiveness trade off with a strong 'leverage' effect: the normalized "
          "CAD-ASR curve over poison fractions is convex, IMC's with the smallest area under it.",
          "Fig. 5 (|m| 3x3, alpha 0.8, CAD within 3%); no table numbers",
          "ASR and CAD over poison fractions", "all attacks", None,
          "untested from matches: it needs poison-fraction sweeps (`arena sweep ATTACKER`, the paper's Figure 5), "
          "which the store keeps apart from matches; this page reads matches only."),
    Claim("Remark 3",
          "Most attacks transfer across downstream classifiers, but weaker attacks transfer better across "
          "datasets.",
          "Table 6: full fine-tuning drops TNN's ASR by 62.5%; Table 7: BN keeps 77.0% from ImageNet to CIFAR-10, "
          "LB 10.0%",
          "ASR after fine-tuning and transfer", "BN, TNN, RB, LB, IMC", None,
          "not comparable: the arena plays no downstream fine-tuning, no other downstream classifiers (Bayes, SVM, "
          "random forest) and no transfer of a trojan between datasets."),
    Claim("Remark 4",
          "Attack-agnostic defenses trade robustness for utility: MP and AR remove backdoors best but cost over "
          "10 points of clean accuracy; RS costs about 0.4 points and removes almost nothing.",
          "Table 8: ARD MP 4.6-87.8, AR 83.2-100.0, RS 0.0-0.5 (ESB 89.1); Table 9: CAD MP 10.8-11.9, "
          "AR 10.4-11.4, RS 0.3-0.6 points",
          "ARD and defense CAD", "MP, AR, RS vs the eight attacks", _remark4),
    Claim("Remark 5",
          "Input filters must balance detection across attacks: STRIP catches LB and IMC but hardly BN, TNN, ABE; "
          "NEO catches ESB best.",
          "Table 10 (FPR 0.05, alpha 0): STRIP TPR LB 0.91, IMC 0.99 vs BN 0.07, TNN 0.13, ABE 0.07; NEO ESB 0.64 "
          "vs 0.23-0.36 on the others",
          "TPR at the FPR budget", "STRIP, NEO vs the eight attacks", _remark5),
    Claim("Remark 6",
          "Model inspection trades detection against trigger recovery: ABS detects trojan models best, yet NC "
          "and TABOR recover triggers closer to the injected one.",
          "Table 11: AIV ABS 2.88-15.55 vs NC 0.04-3.08; Table 12: MJS on BN NC 0.55, TABOR 0.70, ABS 0.42",
          "flag rate on trojan models, MJS", "ABS, NC, TABOR vs the eight attacks", _remark6),
    Claim("Remark 7",
          "Most defenses add marginal overhead: online filters take well under a second, offline inspection "
          "and sanitization 10^3-10^4 s, which the paper calls acceptable.",
          "Table 13 (s): STRIP 0.18, NEO 7.7, MP 24, NI 46, DI 410, NC 1.8e3, ABS 1.9e3, FP 2.1e3, TABOR 4.2e3, "
          "AR 1.7e4",
          "deploy time per model (ART)", "ten defenses", _remark7),
    Claim("Remark 8",
          "Trojan models (but not clean ones) respond to universal single-pixel triggers, with ASR close to "
          "larger triggers'.",
          "Table 14 (alpha 0, CAD <= 5%): BN 95.1, TNN 98.1, RB 77.7, TB 98.0, LB 100.0, ABE 90.0, IMC 99.7% "
          "ASR; ESB inapplicable",
          "ASR and base rate with a 1x1 trigger", "BN, TNN, TB, LB, ABE, IMC vs none", _remark8),
    Claim("Remark 9",
          "Lifting spatial constraints (the trigger's pixels at random places) makes attacks more effective.",
          "Table 15: BN 72.4 -> 97.6, TNN 91.5 -> 98.5, RB 79.2 -> 92.7% ASR (LB, IMC already near 100)",
          "ASR", "BN, TNN vs none", _remark9),
    Claim("Remark 10",
          "Neuron separation between clean and trigger inputs indicates attack effectiveness: trojan models have "
          "far higher NSR than benign ones, and more effective attacks higher NSR.",
          "Table 16: NSR 0.54-0.65 for BN, TNN, RB, LB, ABE, IMC vs 0.03 benign; 0.18-0.38 after FP",
          "NSR, ASR", "BN, TNN, RB, LB, ABE, IMC and none vs none", _remark10),
    Claim("Remark 11",
          "Training a trojan from scratch tends to give more effective attacks than re-training a benign model.",
          "Table 17: ASR from scratch vs re-trained BN 76.9 vs 72.4, TNN 98.9 vs 91.5, RB 81.2 vs 79.2; LB and "
          "IMC 100 both ways",
          "ASR", "BN, TNN, RB vs none", _remark11),
    Claim("Remark 12",
          "Damping gradients through skip connections (gamma 0.5) improves IMC's ASR marginally, mostly for small "
          "triggers.",
          "Fig. 8 (alpha 0.9); no table numbers",
          "ASR", "IMC", None,
          "not comparable: no arena attacker damps skip-connection gradients, and the default scenarios' small "
          "CNN has no skip connections (cifar10-resnet18 has them; the IMC variant would have to be written)."),
    Claim("Remark 13",
          "Batch-level mixing of clean and trigger inputs trains trojans best, ahead of dataset- and loss-level "
          "mixing.",
          "Table 18 (alpha 0, lambda 0.01): BN 72.4 batch vs 59.3 dataset vs 21.6 loss; TNN 91.5 vs 72.2 vs "
          "22.9% ASR",
          "ASR", "BN, TNN, RB, LB, IMC vs none", _remark13),
    Claim("Remark 14",
          "Optimizing trigger and model jointly gives more effective attacks, most of all at high transparency.",
          "Fig. 9: at alpha 0.9 co-optimization improves ASR by over 60% over a fixed trigger (6.2, RQ7)",
          "ASR", "IMC vs BN, against none", _remark14),
    Claim("Remark 15",
          "Most defenses can be evaded by adaptive attacks: IMC adapted to MP, AR, STRIP or ABS beats plain IMC "
          "against each.",
          "Fig. 10: at |m| 6x6 ASR against MP up by 80%, STRIP's TPR down by over 0.85 (6.3)",
          "effective ASR", "imc-adaptive, imc vs MP, AR, STRIP, ABS", _remark15),
    Claim("Remark 16",
          "Model interpretability looks promising for defense: attribution maps of trigger inputs differ strongly "
          "from clean ones on trojan models.",
          "Table 19: heatmap distance 8.52% (trojan model, target class) vs 0.12% (benign model)",
          "attribution-map distance", "-", None,
          "not comparable: the arena computes no attribution maps and has no interpretability-based defense."),
    Claim("Table 5 ordering (alpha 0.8)",
          "Order of the attacks by ASR with a transparent trigger: LB and IMC highest, then TNN, ABE, BN, RB; TB "
          "and ESB fail.",
          "Table 5, CIFAR-10, |m| 3, alpha 0.8: LB 100.0, IMC 100.0, TNN 91.5, ABE 74.3, BN 72.4, RB 52.1, "
          "TB 11.5, ESB 10.3",
          "ASR", "the eight attacks vs none", _table5_alpha08),
    Claim("Table 5 ordering (alpha 0)",
          "Order of the attacks by ASR with an opaque 3x3 trigger: all work; ESB, IMC, LB highest, ABE and TB "
          "lowest.",
          "Table 5, ImageNet, |m| 3, alpha 0: ESB 100.0, IMC 98.4, LB 97.4, TNN 95.2, RB 94.6, BN 90.0, TB 82.8, "
          "ABE 82.6",
          "ASR", "the eight attacks vs none", _table5_alpha0),
    Claim("Table 8 ordering",
          "Order of the attack-agnostic defenses' ARD across attacks: AR and FP remove most, MP some, DU and RS "
          "little except on ESB (and DU on TB).",
          "Table 8: e.g. BN: AR 83.2, FP 82.9, MP 6.0, DU 2.2, RS 0.5; ESB: 87.8-100 under every defense",
          "ARD", "RS, DU, MP, FP, AR vs the eight attacks", _table8),
    Claim("Table 11 ordering",
          "Order of the attacks by the anomaly index each inspector gives the target class: ESB lowest for NC, "
          "DI and TABOR, IMC low, BN highest for NC, TABOR and NI.",
          "Table 11: e.g. NC: BN 3.08, TNN 2.69, ABE 2.67, RB 2.48, TB 2.44, LB 2.12, IMC 1.66, ESB 0.04",
          "AIV of the target class", "NC, DI, TABOR, NI, ABS vs the eight attacks", _table11),
)


@dataclass(frozen=True)
class Finding:
    """A claim and our evidence on it."""

    claim: Claim
    evidence: Evidence


def build_context(records: Iterable[MatchRecord], scenario_name: str, scenario: Scenario | None = None,
                  variants: Sequence[tuple[Scenario, Iterable[MatchRecord]]] = (),
                  development: bool = False) -> tuple[Context, list[str]]:
    """The settings claims read, and notes on variants that could not be used."""
    main = make_setting(scenario_name, records, scenario, "main", development)
    settings, notes = [], []
    for vsc, vrecs in variants:
        kind, note = classify_variant(scenario, vsc)
        if kind is None:
            notes.append(f"`{vsc.name}`: {note}")
            continue
        if any(s.kind == kind for s in settings):
            notes.append(f"`{vsc.name}`: not used: another {kind} variant was given first")
            continue
        settings.append(make_setting(vsc.name, vrecs, vsc, kind, development))
    return Context(main, tuple(settings)), notes


def evaluate(records: Iterable[MatchRecord], scenario_name: str, scenario: Scenario | None = None,
             variants: Sequence[tuple[Scenario, Iterable[MatchRecord]]] = (),
             development: bool = False) -> list[Finding]:
    """Every claim with our evidence on it, from the matches of ``scenario_name`` (and of its variants)."""
    ctx, _ = build_context(records, scenario_name, scenario, variants, development)
    return [_find(c, ctx) for c in CLAIMS]


def _find(claim: Claim, ctx: Context) -> Finding:
    if claim.evaluate is None:
        verdict = "untested" if claim.not_comparable.startswith("untested") else "not comparable"
        why = claim.not_comparable.split(": ", 1)[1] if ": " in claim.not_comparable else claim.not_comparable
        return Finding(claim, Evidence(verdict, "-", "-", why))
    return Finding(claim, claim.evaluate(ctx))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _describe(s: Setting) -> str:
    sc = s.scenario
    n = len(s.records)
    if sc is None:
        seeds = f"seeds {_seed_span(s.seeds) or '(none)'} (no scenario file: test and development seeds unknown)"
        digest = ""
    else:
        kinds = "test" + (" and development" if set(s.seeds_used) - set(sc.seeds) else "")
        seeds = f"{kinds} seeds {_seed_span(s.seeds_used)} (with matches: {_seed_span(s.seeds) or 'none'})"
        digest = f", digest {sc.digest}"
    out = f"{s.label()}{digest}: {n} finished match(es) on {seeds}"
    if s.dropped:
        out += "; left out: " + "; ".join(s.dropped)
    return out


def render(records: Iterable[MatchRecord], scenario_name: str, scenario: Scenario | None = None,
           variants: Sequence[tuple[Scenario, Iterable[MatchRecord]]] = (), development: bool = False,
           command: str | None = None, source: str = "the match store",
           variant_specs: Sequence[str] = ()) -> str:
    """docs/paper.md: per claim the paper's numbers, our matched condition, our number and a verdict.

    ``variant_specs`` are the variants as the user named them (a path, where the
    name alone does not find the file), for the page's regenerate line; by
    default their names. ``command`` replaces the regenerate command itself.
    """
    variants = [(v, list(r)) for v, r in variants]
    ctx, notes = build_context(records, scenario_name, scenario, variants, development)
    findings = [_find(c, ctx) for c in CLAIMS]
    lines = ["# The TrojanZoo paper's claims, checked in the arena", ""]
    lines += [f"Computed by `arena paper` from {source}. Main setting: {_describe(ctx.main)}."]
    for v in ctx.variants:
        lines.append(f"Variant ({v.kind}): {_describe(v)}.")
    for note in notes:
        lines.append(f"Variant {note}.")
    lines.append("")
    if not ctx.main.records:
        lines += [f"**{ctx.main.empty_reason()[:1].upper() + ctx.main.empty_reason()[1:]}: every claim below that "
                  "the arena can test is untested until they are played.**", ""]
    spec = {vsc.name: (variant_specs[i] if i < len(variant_specs) else vsc.name)
            for i, (vsc, _) in enumerate(variants)}
    regen = command or " ".join(["arena paper", scenario_name] + [f"--variant {spec[v.name]}" for v in ctx.variants])
    plays = [f"`arena tournament -s {scenario_name}`"] + [f"`arena tournament -s {spec[v.name]} -d none`"
                                                         for v in ctx.variants]
    hint = ("; for fmnist-cnn's transparency remarks that is `benchmarks/scenarios/fmnist-cnn-alpha08.toml`, after "
            "`arena tournament -s benchmarks/scenarios/fmnist-cnn-alpha08.toml -d none`"
            if ctx.variant("transparent") is None else "")
    lines += [f"Regenerate after {' and '.join(plays)}: `{regen}`. The remarks that compare two settings (1, 8, 9, "
              "11, 13, 14 and Table 5 at alpha 0.8) read a variant scenario that changes one knob of the main one, "
              f"passed with `--variant`{hint}.", ""]
    if scenario is not None:
        t, a, tr = scenario.trigger, scenario.attack, scenario.training
        lines += [f"Every matched condition differs from the paper's: {scenario.dataset} and a {scenario.architecture} "
                  "here against the paper's CIFAR-10 (and ImageNet) and ResNet-18, DenseNet-121, VGG-13 (Table 4); "
                  f"trojans re-trained {tr.retrain_epochs} "
                  f"epoch(s) at {a.poison_fraction:.0%} poison against 50 epochs at 1% (Table 20); a "
                  f"{t.size}x{t.size} {t.pattern} trigger at alpha {t.alpha:g}; and our seeds against the paper's "
                  "10 trojan models per setting (5.1).", ""]
    lines += ["Verdicts: **agrees** where the 95% interval over seeds (Student t) of every statistic lies on the "
              "paper's side of 0, **contradicts** where one lies on the other side, **inconclusive** where an "
              "interval covers 0 (or one seed gives none), **untested** where the needed matches are not stored, "
              "**not comparable** where the arena cannot create the paper's condition. Defense statistics leave "
              f"out matches of attacks that did not work (undefended ASR under {WORKING_ASR:.0%}). Paper names: "
              + ", ".join(f"{k} `{v}`" for k, v in {**ATTACKS, **DEFENSES}.items()) + ".", ""]
    counts = {v: sum(f.evidence.verdict == v for f in findings) for v in VERDICTS}
    lines += ["**Summary:** " + ", ".join(f"{n} {v}" for v, n in counts.items()) + f" (of {len(findings)} claims).",
              ""]
    lines += ["| Claim | The paper says | Paper's numbers | Our matched condition | Ours (95% interval over seeds) "
              "| Verdict |", "|---|---|---|---|---|---|"]
    for f in findings:
        c, e = f.claim, f.evidence
        lines.append("| " + " | ".join(_cell(x) for x in (c.id, c.claim, c.paper, e.condition, e.number,
                                                          f"**{e.verdict}**")) + " |")
    lines += ["", "## Why", ""]
    for f in findings:
        why = f.evidence.why[:1].upper() + f.evidence.why[1:]
        lines.append(f"- **{f.claim.id}: {f.evidence.verdict}.** {why} "
                     f"(Metric: {f.claim.metric}; agents: {f.claim.agents}.)")
    return "\n".join(lines) + "\n"
