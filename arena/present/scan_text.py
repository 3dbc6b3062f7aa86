"""``arena scan``'s report as text."""

from __future__ import annotations

from tabulate import tabulate

from arena.run.scan import ScanReport


def _num(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def scan_text(r: ScanReport) -> str:
    rows = []
    for f in r.findings:
        verdict = "failed" if f.fault else ("flagged" if f.flagged else "passed")
        benign = (f"{min(f.benign_indices):.2f} .. {max(f.benign_indices):.2f}" if f.benign_indices else "-")
        rows.append([f.defender, verdict, _num(f.anomaly_index), benign, _num(f.p_value),
                     "-" if f.suspected_target is None else f.suspected_target])
    n = max((len(f.benign_indices) for f in r.findings), default=0)
    lines = [
        f"# Scan of {r.model}",
        f"sha256 {r.sha256[:16]}, scenario {r.scenario} (digest {r.digest}), seed {r.seed}",
        "",
        tabulate(rows, headers=["inspector", "its verdict", "anomaly index", f"benign models (n={n})",
                                "p (rank)", "suspected target"]),
        "",
    ]
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
    triggers = [(f.defender, f.trigger_pt) for f in r.findings if f.trigger_pt]
    if triggers:
        lines += ["", "Recovered triggers (in the arena home; `--html DIR` draws them):"] + \
            [f"- {d}: {p}" for d, p in triggers]
    faults = [(f.defender, f.fault) for f in r.findings if f.fault]
    if faults:
        lines += ["", "Failed:"] + [f"- {d}: {why}" for d, why in faults]
    if r.notes:
        lines += [""] + [f"Note: {n}." for n in r.notes]
    return "\n".join(lines)
