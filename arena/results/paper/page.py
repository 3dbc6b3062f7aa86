"""docs/paper.md: the claims, our evidence and the verdicts as one Markdown page."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from arena.config.scenario import Scenario
from arena.results.paper.claims import CLAIMS, Claim
from arena.results.paper.evidence import VERDICTS, Evidence
from arena.results.paper.numbers import ATTACKS, DEFENSES, WORKING_ASR
from arena.results.paper.settings import Context, Setting, classify_variant, make_setting, seed_span
from arena.results.record import ControlRecord, MatchRecord


@dataclass(frozen=True)
class Finding:
    """A claim and our evidence on it."""

    claim: Claim
    evidence: Evidence


def build_context(records: Iterable[MatchRecord], scenario_name: str, scenario: Scenario | None = None,
                  variants: Sequence[tuple[Scenario, Iterable[MatchRecord]]] = (),
                  development: bool = False, controls: Iterable[ControlRecord] = ()) -> tuple[Context, list[str]]:
    """The settings claims read, and notes on variants that could not be used. ``controls``: the main
    setting's extra control runs (``arena controls``)."""
    main = make_setting(scenario_name, records, scenario, "main", development, controls)
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
             development: bool = False, controls: Iterable[ControlRecord] = ()) -> list[Finding]:
    """Every claim with our evidence on it, from the matches of ``scenario_name`` (and of its variants)."""
    ctx, _ = build_context(records, scenario_name, scenario, variants, development, controls)
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
        seeds = f"seeds {seed_span(s.seeds) or '(none)'} (no scenario file: test and development seeds unknown)"
        digest = ""
    else:
        kinds = "test" + (" and development" if set(s.seeds_used) - set(sc.seeds) else "")
        seeds = f"{kinds} seeds {seed_span(s.seeds_used)} (with matches: {seed_span(s.seeds) or 'none'})"
        digest = f", digest {sc.digest}"
    out = f"{s.label()}{digest}: {n} finished match(es) on {seeds}"
    if s.dropped:
        out += "; left out: " + "; ".join(s.dropped)
    return out


def render(records: Iterable[MatchRecord], scenario_name: str, scenario: Scenario | None = None,
           variants: Sequence[tuple[Scenario, Iterable[MatchRecord]]] = (), development: bool = False,
           command: str | None = None, source: str = "the match store",
           variant_specs: Sequence[str] = (), controls: Iterable[ControlRecord] = ()) -> str:
    """docs/paper.md: per claim the paper's numbers, our matched condition, our number and a verdict.

    ``variant_specs`` are the variants as the user named them (a path, where the
    name alone does not find the file), for the page's regenerate line; by
    default their names. ``command`` replaces the regenerate command itself.
    """
    variants = [(v, list(r)) for v, r in variants]
    ctx, notes = build_context(records, scenario_name, scenario, variants, development, controls)
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
    lines += ["Verdicts: **agrees** where the 95% interval over seeds (Student t) of every judged statistic lies on "
              "the paper's side of 0 *and* reaches the paper's size of effect where the paper states one (shown as "
              "\"paper's size\"), **contradicts** where one lies on the other side of 0, **inconclusive** where an "
              "interval covers 0, one seed gives none, an interval on the paper's side stops short of the paper's "
              "size, or the compared settings differ in more than the claim's knob; **untested** where the needed "
              "matches are not stored, **not comparable** where the arena cannot create the paper's condition "
              "(numbers we have are still shown). A trojan that failed the attacker gate counts as a failed attack "
              "(ASR 0; its measured ASR is shown beside, not judged); an inspector's flag counts only with the true "
              "target as its suspect. Defense statistics leave out trojans that failed the attacker gate and "
              f"attacks that did not work (undefended ASR under {WORKING_ASR:.0%}). Paper names: "
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

