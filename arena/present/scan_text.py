"""``arena scan``'s report as text."""

from __future__ import annotations

from tabulate import tabulate

from arena.run.scan import Reading, ScanReport

KIND = {"input_filtering": "input filter", "model_sanitization": "sanitizer", "input_reformation": "input reformer"}


def _num(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def reading_row(r: Reading) -> list[str]:
    """A filter's or mitigation's line: name, kind, its metric and value, and what the value rests on."""
    if r.fault:
        return [r.defender, KIND.get(r.category, r.category), r.metric, "failed", "-", r.fault]
    if r.metric == "TPR":
        rest = f"FPR {_num(r.fpr)}, AUROC {_num(r.auroc)}; stamped inputs through it that hit: {_num(r.effective_asr)}"
        benign = "-"
    else:
        rest = f"ASR {_num(r.asr)} -> {_num(r.asr_after)}; CAD {_num(r.cad, 3)}"
        benign = _num(r.benign_asr)
    return [r.defender, KIND.get(r.category, r.category), r.metric, _num(r.value), benign, rest]


READING_HEADERS = ["defender", "kind", "metric", "value", "benign model's ASR", "from its match"]


def would_run_line(would_run: list[str]) -> str:
    """One line: which defenders a trigger would add to the scan, and why they need one."""
    by_kind: dict[str, list[str]] = {}
    for entry in would_run:
        category, _, name = entry.partition(": ")
        by_kind.setdefault(category, []).append(name)
    filters = by_kind.pop("input_filtering", [])
    mitigations = [n for names in by_kind.values() for n in names]
    parts = ([f"input filters {', '.join(filters)} (the share of inputs stamped with it each flags)"] if filters
             else []) + ([f"mitigations {', '.join(mitigations)} (how much of its ASR each removes, at what clean "
                          "accuracy)"] if mitigations else [])
    return (f"With --trigger T.npz (a trigger you suspect the model answers to) {len(would_run)} more defenders "
            f"would play it: {' and '.join(parts)}. They judge a model through its trigger, which a scan does "
            "not otherwise know.")


def scan_text(r: ScanReport) -> str:
    lines = [f"# Scan of {r.model}",
             f"sha256 {r.sha256[:16]}, scenario {r.scenario} (digest {r.digest}), seed {r.seed}", ""]
    lines += _inspectors(r) if r.findings else ["No inspector played the model: no verdict."]
    triggers = [(f.defender, f.trigger_pt) for f in r.findings if f.trigger_pt]
    if triggers:
        lines += ["", "Recovered triggers (in the arena home; `--html DIR` draws them):"] + \
            [f"- {d}: {p}" for d, p in triggers]
    if r.readings:
        whose = f"the trigger {r.trigger}" if r.trigger else "the scenario's trigger"
        lines += ["", f"Other defenders, with {whose} and target class {r.target_class} (not part of the verdict):", "",
                  tabulate([reading_row(x) for x in r.readings], headers=READING_HEADERS), "",
                  "TPR: the share of stamped inputs a filter flags at the FPR it was calibrated to (the scenario's "
                  "budget). ARD: how much of the trigger's ASR a mitigation removes (ASR before minus after; at "
                  "best down to the benign model's), at the cost in clean accuracy CAD."]
    if r.would_run:
        lines += ["", would_run_line(r.would_run)]
    faults = [(f.defender, f.fault) for f in r.findings if f.fault]
    if faults:
        lines += ["", "Failed:"] + [f"- {d}: {why}" for d, why in faults]
    if r.notes:
        lines += [""] + [f"Note: {n}." for n in r.notes]
    return "\n".join(lines)


def _inspectors(r: ScanReport) -> list[str]:
    """The inspectors' table, their own verdicts, the combined p-value and probability, and the verdict."""
    rows = []
    for f in r.findings:
        verdict = "failed" if f.fault else ("flagged" if f.flagged else "passed")
        benign = (f"{min(f.benign_indices):.2f} .. {max(f.benign_indices):.2f}" if f.benign_indices else "-")
        rows.append([f.defender, verdict, _num(f.anomaly_index), benign, _num(f.p_value),
                     "-" if f.suspected_target is None else f.suspected_target])
    n = max((len(f.benign_indices) for f in r.findings), default=0)
    lines = [tabulate(rows, headers=["inspector", "its verdict", "anomaly index", f"benign models (n={n})",
                                     "p (rank)", "suspected target"]), ""]
    flagged = [f for f in r.findings if f.flagged]
    if flagged:
        targets = sorted({f.suspected_target for f in flagged if f.suspected_target is not None})
        lines.append(f"Own verdicts: {len(flagged)} of {len(r.findings)} inspectors flag the model"
                     + (f" (suspected target{'s' if len(targets) > 1 else ''} {', '.join(map(str, targets))})"
                        if targets else "")
                     + "; each flags benign models at its own rate (the leaderboard's usability section).")
    else:
        lines.append(f"Own verdicts: none of {len(r.findings)} inspectors flags the model.")
    k = sum(f.p_value is not None for f in r.findings)
    if r.fisher_p is not None:
        lines.append(f"Combined p-value (Fisher, {k} inspectors): {r.fisher_p:.3g}. The inspectors read the same "
                     "benign models, so this is a screen, not an exact test.")
    if r.probability is not None and r.calibration is not None:
        c = r.calibration
        lines.append(
            f"P(trojaned) = {r.probability:.2f}: logistic regression on the inspectors' anomaly indices, fitted on "
            f"{c.trojans} trojans and {c.benign} benign models of {c.source} ({c.seeds} seeds); out of fold "
            f"(leave one seed out) ROC AUC {c.auroc:.2f} [{c.auroc_interval[0]:.2f}, {c.auroc_interval[1]:.2f}], "
            f"cross-entropy {c.cross_entropy:.2f} [{c.cross_entropy_interval[0]:.2f}, "
            f"{c.cross_entropy_interval[1]:.2f}] (95% seed-bootstrap intervals).")
    lines.append(f"Verdict: {r.verdict}.")
    return lines
