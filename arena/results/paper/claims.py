"""Each claim of the paper, its numbers, and the function that computes the arena's evidence on it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from arena.results.detection import model_scores, roc
from arena.results.paper.evidence import Evidence, SeedStat, judge, kendall_tau_b, not_comparable
from arena.results.paper.numbers import (ATTACKS, DEFENSES, PAPER_ORDER, TABLE5_CIFAR10_ALPHA08,
                                         TABLE5_IMAGENET_ALPHA0, TABLE8_ARD, TABLE11_AIV, TABLE13_SECONDS)
from arena.results.paper.settings import (VARIANT_HOWTO, Context, Setting, cells_of, group_mean, missing_pairs,
                                          names_of, short)


def _no_variant(kind: str, condition: str, ctx: Context) -> Evidence:
    return Evidence("untested", condition, "-",
                    f"missing: matches of a variant of `{ctx.main.name}` with {VARIANT_HOWTO[kind]}, "
                    f"attackers against `none` on the same seeds (play it, then pass it with --variant).")


def _paired(label: str, a: Mapping[int, Mapping[str, float]], b: Mapping[int, Mapping[str, float]],
            attackers: Sequence[str], missing: tuple[str, ...], direction: int = 1, size: float | None = None,
            size_note: str = "") -> SeedStat:
    """Per seed: mean over ``attackers`` present in both of a[attacker] - b[attacker] (ASR in points)."""
    per = {}
    for seed in sorted(set(a) & set(b)):
        diffs = [a[seed][x] - b[seed][x] for x in attackers if x in a[seed] and x in b[seed]]
        if diffs:
            per[seed] = sum(diffs) / len(diffs)
    return SeedStat(label, per, direction, 100.0, "points", missing, size, size_note)


AsrCells = Callable[[Setting], dict[int, dict[str, float]]]


def _strict_asr(s: Setting) -> dict[int, dict[str, float]]:
    """ASR against `none`, a trojan that failed the attacker gate counted as a failed attack (0)."""
    return cells_of(s, "none", _asr, gate_failed=0.0)


def _lenient_asr(s: Setting) -> dict[int, dict[str, float]]:
    """ASR against `none` as measured, gate or no gate."""
    return cells_of(s, "none", _asr)


def _both(build: Callable[[AsrCells], SeedStat]) -> list[SeedStat]:
    """The statistic with gate-failed trojans counted as failed (judged), and, where that changes any
    number, the same statistic at their measured ASR beside it (reported, not judged)."""
    strict, lenient = build(_strict_asr), build(_lenient_asr)
    if dict(strict.per_seed) == dict(lenient.per_seed):
        return [strict]
    return [strict, replace(lenient, label=f"{lenient.label}, gate-failed trojans at their measured ASR",
                            judged=False)]


def _alpha(s: Setting) -> str:
    return "?" if s.scenario is None else f"{s.scenario.trigger.alpha:g}"


def _asr(m: dict[str, Any]) -> Any:
    return m["attack"]["asr"]


def _remark1(ctx: Context) -> Evidence:
    abbrevs = ["BN", "TNN", "TB", "LB", "ESB", "ABE", "IMC"]
    cond = (f"ASR against `none` of {short(abbrevs)} at alpha {_alpha(ctx.main)} ({ctx.main.name}) minus at alpha 0.8 "
            "(the transparent variant), per seed the mean over attackers, a trojan that failed the attacker gate "
            "counted as ASR 0; RB left out (its reflection trigger keeps its own transparency, 0.7, whatever the "
            "scenario says)")
    v = ctx.variant("transparent")
    if v is None:
        return _no_variant("transparent", cond, ctx)
    names = names_of(abbrevs)
    miss = missing_pairs(ctx.main, names, ["none"]) + missing_pairs(v, names, ["none"])
    stats = _both(lambda asr: _paired("ASR alpha 0 - alpha 0.8", asr(ctx.main), asr(v), names, miss, size=0.10,
                                      size_note="a sharp loss, 10 points or more on average (Table 5 against "
                                                "Table 8: 21-90 points for BN, ABE, TB, ESB)"))
    return judge(stats, cond, "One dataset only: 'especially evident for complex data' is not tested.")


def _remark4(ctx: Context) -> Evidence:
    robust, cheap = ["MP", "AR"], "RS"
    att = names_of(PAPER_ORDER)
    cond = ("defenses' ARD (working attacks only) and defense CAD, mean over the paper's attacks per seed: "
            "MP and AR (mean of the two) minus RS")
    ard = {d: cells_of(ctx.main, DEFENSES[d], lambda m: m["defense"]["ard"], working_only=True)
           for d in robust + [cheap]}
    cad = {d: cells_of(ctx.main, DEFENSES[d], lambda m: m["defense"]["cad"]) for d in robust + [cheap]}
    miss = missing_pairs(ctx.main, att, [DEFENSES[d] for d in robust + [cheap]])

    def contrast(cells: dict[str, dict[int, dict[str, float]]]) -> dict[int, float]:
        per = {}
        for seed in cells[cheap]:
            hi = [group_mean(cells[d].get(seed, {}), att) for d in robust]
            hi = [x for x in hi if x is not None]
            lo = group_mean(cells[cheap][seed], att)
            if hi and lo is not None:
                per[seed] = sum(hi) / len(hi) - lo
        return per

    stats = [SeedStat("ARD of MP, AR - RS", contrast(ard), 1, 100.0, "points", miss, 0.10,
                      "removes clearly more, 10 points or more (Table 8: about 50)"),
             SeedStat("defense CAD of MP, AR - RS", contrast(cad), 1, 100.0, "points", miss, 0.10,
                      "over 10 points (Table 9: MP 10.8-11.9, AR 10.4-11.4 against RS 0.3-0.6)")]
    return judge(stats, cond, "Agreement needs both: the robust defenses remove more backdoor and cost "
                               "more clean accuracy. Our CAD is against the trojan model; Table 9's against "
                               "the clean model.")


def _remark5(ctx: Context) -> Evidence:
    cond = ("TPR at the scenario's FPR budget (working attacks only), per seed: STRIP's mean on LB, IMC "
            "minus its mean on BN, TNN, ABE; NEO's on ESB minus its mean on the other seven")
    strip = cells_of(ctx.main, "strip", lambda m: m["defense"]["tpr"], working_only=True)
    neo = cells_of(ctx.main, "neo", lambda m: m["defense"]["tpr"], working_only=True)
    hi_s, lo_s = names_of(["LB", "IMC"]), names_of(["BN", "TNN", "ABE"])
    hi_n, lo_n = names_of(["ESB"]), names_of([a for a in PAPER_ORDER if a != "ESB"])

    def contrast(cells: dict[int, dict[str, float]], hi: list[str], lo: list[str]) -> dict[int, float]:
        per = {}
        for seed, row in cells.items():
            a, b = group_mean(row, hi), group_mean(row, lo)
            if a is not None and b is not None:
                per[seed] = a - b
        return per

    stats = [SeedStat("STRIP TPR on LB, IMC - on BN, TNN, ABE", contrast(strip, hi_s, lo_s), 1, 100.0, "points",
                      missing_pairs(ctx.main, hi_s + lo_s, ["strip"]), 0.30,
                      "'catches' against 'hardly', 30 points or more (Table 10: 86)"),
             SeedStat("NEO TPR on ESB - on the others", contrast(neo, hi_n, lo_n), 1, 100.0, "points",
                      missing_pairs(ctx.main, hi_n + lo_n, ["neo"]), 0.10,
                      "'best', 10 points or more (Table 10: 28-41)")]
    return judge(stats, cond, "Agreement needs both: each filter is good against different attacks.")


def _auroc_contrast(setting: Setting, defs: Sequence[str]) -> dict[int, float]:
    """Per seed: the first defence's model-level AUROC (trojans against the benign control models, by the
    largest per-class anomaly score) minus the mean of the others'."""
    scores = model_scores(setting.records, setting.controls)
    per = {}
    for seed in setting.seeds:
        auc = {}
        for d in defs:
            models = [m for m in scores.get(DEFENSES[d], []) if m.seed == seed]
            auc[d] = roc(DEFENSES[d], models).auroc
        others = [auc[d] for d in defs[1:] if auc[d] is not None]
        if auc[defs[0]] is not None and others:
            per[seed] = auc[defs[0]] - sum(others) / len(others)
    return per


def _remark6(ctx: Context) -> Evidence:
    cond = ("per seed: the AUROC with which ABS tells the seed's trojans from its benign control models (by its "
            "largest anomaly score, as Table 11 ranks by AIV) minus the mean of NC's and TABOR's; over working "
            "attacks, the share of trojan models ABS flags *with the true target as its suspect* minus NC's and "
            "TABOR's (a flag naming another class counts as a miss); mean MJS of NC and TABOR minus ABS's (recovery)")
    att = names_of(PAPER_ORDER)
    target = ctx.main.target_class

    def right_flag(m: dict[str, Any]) -> Any:
        d = m["defense"]
        return bool(d["flagged"]) and (target is None or d.get("suspected_target") == target)

    defs = ("ABS", "NC", "TABOR")
    flag = {d: cells_of(ctx.main, DEFENSES[d], right_flag, working_only=True) for d in defs}
    any_flag = {d: cells_of(ctx.main, DEFENSES[d], lambda m: m["defense"]["flagged"], working_only=True)
                for d in defs}
    mjs = {d: cells_of(ctx.main, DEFENSES[d], lambda m: m["defense"]["mjs"], working_only=True) for d in defs}
    miss = missing_pairs(ctx.main, att, [DEFENSES[d] for d in defs])

    def contrast(cells: dict[str, dict[int, dict[str, float]]], sign: int) -> dict[int, float]:
        per = {}
        for seed in cells["ABS"]:
            a = group_mean(cells["ABS"][seed], att)
            others = [x for d in ("NC", "TABOR") if (x := group_mean(cells[d].get(seed, {}), att)) is not None]
            if a is not None and others:
                per[seed] = sign * (a - sum(others) / len(others))
        return per

    stats = [SeedStat("model-level AUROC ABS - NC, TABOR", _auroc_contrast(ctx.main, defs), 1, 1.0, "", miss),
             SeedStat("right-target flag rate ABS - NC, TABOR", contrast(flag, 1), 1, 100.0, "points", miss),
             SeedStat("MJS NC, TABOR - ABS", contrast(mjs, -1), 1, 1.0, "", miss)]
    lenient = SeedStat("flag rate ABS - NC, TABOR, any suspected target", contrast(any_flag, 1), 1, 100.0,
                       "points", miss, judged=False)
    if dict(lenient.per_seed) != dict(stats[1].per_seed):
        stats.append(lenient)
    return judge(stats, cond, "Detection is compared by AUROC and by verdicts, not by AIV itself: our ABS "
                              "reports its best REASR per label (0-1), not a MAD index on NC's scale, and an "
                              "AUROC does not depend on the scale. The paper states no size for either trade, "
                              "so only the signs are tested.")


def _remark7(ctx: Context) -> Evidence:
    cond = ("deploy time per model (art_model_s, mean over the attackers met on a seed) of MP, NEO, STRIP, AR, "
            "FP, NC, TABOR, ABS, NI, DI; per seed Kendall tau-b against Table 13's times")
    cells = {d: cells_of(ctx.main, DEFENSES[d], lambda m: m["defense"]["art_model_s"]) for d in TABLE13_SECONDS}
    seeds = sorted({s for c in cells.values() for s in c})
    per = {}
    for seed in seeds:
        pairs = [(TABLE13_SECONDS[d], sum(c[seed].values()) / len(c[seed])) for d, c in cells.items()
                 if c.get(seed)]
        tau = kendall_tau_b([p for p, _ in pairs], [o for _, o in pairs])
        if tau is not None:
            per[seed] = tau
    miss = missing_pairs(ctx.main, None, [DEFENSES[d] for d in TABLE13_SECONDS])
    stat = SeedStat("tau-b vs Table 13", per, 1, 1.0, "", miss)
    if stat.n == 0:
        return judge([stat], cond)
    return not_comparable([stat], cond, "the claim is that the overhead is marginal, and 'marginal' has no "
                                        "threshold in the paper; the order of the run times against Table 13 is "
                                        "shown, but agreeing on an order is not agreeing that the cost is small "
                                        "(times here are on another machine and dataset).")


def _remark8(ctx: Context) -> Evidence:
    abbrevs = ["BN", "TNN", "TB", "LB", "ABE", "IMC"]
    cond = (f"in the single-pixel variant, ASR against `none` minus the benign model's ASR on the same stamped "
            f"inputs (base rate), mean over {short(abbrevs)} per seed (ESB inapplicable as in Table 14; RB "
            "keeps its own trigger)")
    v = ctx.variant("single-pixel")
    if v is None:
        return _no_variant("single-pixel", cond, ctx)
    names = names_of(abbrevs)
    asr = _strict_asr(v)
    base = cells_of(v, "none", lambda m: m["attack"]["base_rate"])
    stat = _paired("ASR - base rate, 1x1 trigger", asr, base, names, missing_pairs(v, names, ["none"]), size=0.5,
                   size_note="a response close to larger triggers', 50 points or more above the base rate "
                             "(Table 14: 77.7-100% ASR)")
    return judge([stat], cond)


def _variant_gain(ctx: Context, kind: str, abbrevs: list[str], label: str, cond: str, size: float | None = None,
                  size_note: str = "", confounded: str = "") -> Evidence:
    """Per seed: the mean ASR gain (against `none`) of ``abbrevs`` in the ``kind`` variant over the main setting."""
    v = ctx.variant(kind)
    if v is None:
        return _no_variant(kind, cond, ctx)
    names = names_of(abbrevs)
    miss = missing_pairs(ctx.main, names, ["none"]) + missing_pairs(v, names, ["none"])
    stats = _both(lambda asr: _paired(label, asr(v), asr(ctx.main), names, miss, size=size, size_note=size_note))
    return judge(stats, cond, confounded=confounded)


def _remark9(ctx: Context) -> Evidence:
    return _variant_gain(ctx, "random-shape", ["BN", "TNN"], "ASR random - square trigger",
                         "ASR against `none` of BN and TNN with the trigger's pixels at random places (same count) "
                         "minus with the square patch, per seed (RB keeps its own trigger; LB and IMC are at the "
                         "ceiling in Table 15)", 0.07, "more effective, 7 points or more (Table 15: +7.0 to +25.2)")


def _remark10(ctx: Context) -> Evidence:
    sep = ["BN", "TNN", "RB", "LB", "ABE", "IMC"]
    cond = (f"matches against `none`: NSR of {short(sep)}'s trojans minus the benign model's (attacker `none`), "
            "mean per seed; and per seed Kendall tau-b between NSR and ASR over the paper's eight attacks")
    nsr = cells_of(ctx.main, "none", lambda m: m["attack"]["nsr"])
    asr = cells_of(ctx.main, "none", _asr)
    per_gap, per_tau = {}, {}
    for seed, row in nsr.items():
        t = group_mean(row, names_of(sep))
        if t is not None and "none" in row:
            per_gap[seed] = t - row["none"]
        both = [a for a in names_of(PAPER_ORDER) if a in row and a in asr.get(seed, {})]
        tau = kendall_tau_b([row[a] for a in both], [asr[seed][a] for a in both])
        if tau is not None:
            per_tau[seed] = tau
    stats = [SeedStat("NSR trojan - benign", per_gap, 1, 1.0, "",
                      missing_pairs(ctx.main, names_of(sep) + ["none"], ["none"]), 0.3,
                      "far higher, 0.3 or more (Table 16: 0.51-0.62)"),
             SeedStat("tau-b(NSR, ASR)", per_tau, 1, 1.0, "", missing_pairs(ctx.main, names_of(PAPER_ORDER), ["none"]))]
    return judge(stats, cond, "NSR after fine-pruning (Table 16's second row) is not stored, so that part is "
                               "not tested.")


def _remark11(ctx: Context) -> Evidence:
    v = ctx.variant("from-scratch")
    confound = ""
    if v is not None and v.scenario is not None:
        tr = v.scenario.training
        if (tr.epochs, tr.lr) != (tr.retrain_epochs, tr.retrain_lr):
            confound = (f"training budget (from scratch: {tr.epochs} epoch(s) at lr {tr.lr:g}; re-trained: "
                        f"{tr.retrain_epochs} epoch(s) at lr {tr.retrain_lr:g})")
    return _variant_gain(ctx, "from-scratch", ["BN", "TNN", "RB"], "ASR from scratch - re-trained",
                         "ASR against `none` of BN, TNN, RB trained from scratch (the variant) minus re-trained from "
                         "the benign model, per seed (LB and IMC reach 100% both ways in Table 17)", 0.02,
                         "'tends to' be higher, 2 points or more (Table 17: +2.0 to +7.4)", confound)


def _remark13(ctx: Context) -> Evidence:
    abbrevs = ["BN", "TNN", "RB", "LB", "IMC"]
    names = names_of(abbrevs)
    cond = (f"ASR against `none` of {short(abbrevs)} with batch-level mixing (main) minus dataset-level and minus "
            "loss-level mixing (variants), per seed")
    stats = []
    for kind, label in (("dataset-mixing", "ASR batch - dataset mixing"), ("loss-mixing", "ASR batch - loss mixing")):
        v = ctx.variant(kind)
        if v is None:
            stats.append(SeedStat(label, {}, missing=(f"a variant with {VARIANT_HOWTO[kind]} (pass it with "
                                                      "--variant)",)))
            continue
        miss = missing_pairs(ctx.main, names, ["none"]) + missing_pairs(v, names, ["none"])
        stats += _both(lambda asr: _paired(label, asr(ctx.main), asr(v), names, miss))
    if any(s.n == 0 for s in stats):
        return judge(stats, cond)
    return not_comparable(stats, cond, "the paper's loss-level mixing weighs the trigger loss by lambda = 0.01 "
                                       "(Table 18), which the arena's loss mixing (stamped copies appended to the "
                                       "clean batch) does not reproduce, and where every mixing level puts these "
                                       "attacks near the ASR ceiling no ordering of the levels can show; the "
                                       "differences are shown for what they are.")


def _remark14(ctx: Context) -> Evidence:
    cond = ("ASR against `none` at alpha 0.8 (the transparent variant): IMC (trigger and model co-optimized) minus "
            "BN (fixed trigger), per seed")
    v = ctx.variant("transparent")
    if v is None:
        return _no_variant("transparent", cond, ctx)
    asr = _strict_asr(v)
    per = {s: row["imc"] - row["badnet"] for s, row in asr.items() if "imc" in row and "badnet" in row}
    stat = SeedStat("ASR IMC - BN at alpha 0.8", per, 1, 100.0, "points", missing_pairs(v, ["imc", "badnet"], ["none"]))
    return judge([stat], cond, "The paper compares three BN variants at alpha 0.9; IMC against BN is our "
                                "nearest pair. The paper's size (over 60%, relative, at alpha 0.9) does not "
                                "carry to points at alpha 0.8, so only the sign is tested.")


def _remark15(ctx: Context) -> Evidence:
    defs = ["MP", "AR", "STRIP", "ABS"]
    cond = ("effective ASR (trigger inputs that pass the whole deployment and hit the target) of imc-adaptive "
            "minus imc, per seed, against each of MP, AR, STRIP and ABS (the paper says 'across all the cases': "
            "each must agree)")
    stats = []
    for d in defs:
        eff = cells_of(ctx.main, DEFENSES[d], lambda m: m["defense"]["effective_asr"])
        per = {seed: row["imc-adaptive"] - row["imc"] for seed, row in eff.items()
               if "imc-adaptive" in row and "imc" in row}
        stats.append(SeedStat(f"effective ASR imc-adaptive - imc vs {d}", per, 1, 100.0, "points",
                              missing_pairs(ctx.main, ["imc", "imc-adaptive"], [DEFENSES[d]])))
    return judge(stats, cond, "Our adaptive IMC uses the scenario's 3x3 trigger; Figure 10's largest gains are at "
                              "6x6, so only the signs are tested.")


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
    stats = _both(lambda asr: _ordering("tau-b vs Table 5 (alpha 0.8)", paper, asr(v),
                                        missing_pairs(v, names_of(paper), ["none"])))
    return judge(stats, cond, "A trojan that failed the attacker gate counts as ASR 0 (TrojanNet's, where it fails "
                              "it, as the paper's ESB fails at this alpha).")


def _table5_alpha0(ctx: Context) -> Evidence:
    cond = (f"ASR against `none` in {ctx.main.name} of the paper's eight attacks; per seed Kendall tau-b against "
            "Table 5's ImageNet column at |m| = 3, alpha 0 (its only alpha-0 column)")
    stats = _both(lambda asr: _ordering("tau-b vs Table 5 (alpha 0)", TABLE5_IMAGENET_ALPHA0, asr(ctx.main),
                                        missing_pairs(ctx.main, names_of(PAPER_ORDER), ["none"])))
    return judge(stats, cond, "The paper's column is ImageNet; ours is one small dataset. An ordering claim is a "
                              "claim of sign: the order agrees with the paper's more than chance would.")


def _table8(ctx: Context) -> Evidence:
    cond = ("ARD of RS, DU, MP, FP, AR against the paper's eight attacks (cells of working attacks only); per seed "
            "Kendall tau-b over all cells against Table 8")
    per: dict[int, float] = {}
    cells = {d: cells_of(ctx.main, DEFENSES[d], lambda m: m["defense"]["ard"], working_only=True) for d in TABLE8_ARD}
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
    miss = missing_pairs(ctx.main, names_of(PAPER_ORDER), [DEFENSES[d] for d in TABLE8_ARD])
    return judge([SeedStat("tau-b vs Table 8", per, 1, 1.0, "", miss)], cond)


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

    cells = {d: cells_of(ctx.main, DEFENSES[d], aiv, working_only=True) for d in TABLE11_AIV}
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
    miss = missing_pairs(ctx.main, names_of(PAPER_ORDER), [DEFENSES[d] for d in TABLE11_AIV])
    return judge([SeedStat("mean tau-b vs Table 11 rows", per, 1, 1.0, "", miss)], cond,
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

