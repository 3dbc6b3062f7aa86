"""``arena scan --html DIR``: the scan as a page in the ``arena report`` style, with the recovered triggers."""

from __future__ import annotations

from pathlib import Path

from arena.core.home import arena_home
from arena.present.gallery import load_trigger_tensors, save_recovered_trigger_png
from arena.present.report import ReportError, _e, _num, _page, _table, slug
from arena.present.scan_text import READING_HEADERS, reading_row, would_run_line
from arena.run.scan import ScanReport


def write_scan_page(r: ScanReport, out: Path) -> Path:
    """Write ``out/index.html`` (and ``out/img/``); returns the page's path."""
    out = Path(out)
    try:
        (out / "img").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot write the scan page to {out}: {exc.strerror or exc}",
                          hint="choose a writable folder with --html") from None
    rows, figures = [], []
    for f in r.findings:
        verdict = "failed" if f.fault else ("flagged" if f.flagged else "passed")
        benign = ", ".join(f"{b:.2f}" for b in sorted(f.benign_indices)) or "-"
        rows.append([f.defender, verdict, _num(f.anomaly_index, ".2f"), benign, _num(f.p_value, ".2f"),
                     "-" if f.suspected_target is None else str(f.suspected_target), f.fault or ""])
        tensors = load_trigger_tensors(arena_home() / f.trigger_pt) if f.trigger_pt else None
        if tensors is not None:
            name = f"img/{slug(f.defender)}.png"
            save_recovered_trigger_png(tensors, out / name, title=f"{f.defender}: suspected target "
                                       f"{f.suspected_target}, {'flagged' if f.flagged else 'not flagged'}")
            figures.append(f'<figure><img src="{_e(name)}" alt="trigger recovered by {_e(f.defender)}">'
                           f"<figcaption>{_e(f.defender)}: suspected target {_e(f.suspected_target)}"
                           f"{' (flagged)' if f.flagged else ''}</figcaption></figure>")
    inspectors = [
        _table(["inspector", "its verdict", "anomaly index", "benign models' indices", "p (rank)",
                "suspected target", "failure"], rows, text_last=True),
        '<p class="note">p (rank): (1 + benign models at or above the model) / (1 + benign models). The '
        "inspectors read the same benign models, so Fisher's combination is a screen, not an exact test.</p>",
    ] if r.findings else ["<p>No inspector played the model: no verdict.</p>"]
    body = [
        f"<h1>Scan of {_e(Path(r.model).name)}</h1>",
        f'<p class="note">{_e(r.model)}, sha256 {_e(r.sha256)}; scenario {_e(r.scenario)} (digest '
        f"{_e(r.digest)}), seed {r.seed}. Written by <code>arena scan</code>.</p>",
        f"<p><strong>Verdict: {_e(r.verdict)}</strong>"
        + (f"; P(trojaned) = {r.probability:.2f}" if r.probability is not None else "")
        + (f"; Fisher combined p = {r.fisher_p:.3g}" if r.fisher_p is not None else "") + ".</p>",
        "<h2>Inspectors</h2>",
        *inspectors,
    ]
    if r.calibration is not None:
        c = r.calibration
        body += ["<h2>Calibration</h2>",
                 f"<p>Logistic regression on the anomaly indices of {', '.join(map(_e, c.inspectors))}, fitted on "
                 f"{c.trojans} trojans and {c.benign} benign models of {_e(c.source)} ({c.seeds} seeds). Out of "
                 f"fold (leave one seed out): ROC AUC {c.auroc:.2f} [{c.auroc_interval[0]:.2f}, "
                 f"{c.auroc_interval[1]:.2f}], cross-entropy {c.cross_entropy:.2f} "
                 f"[{c.cross_entropy_interval[0]:.2f}, {c.cross_entropy_interval[1]:.2f}] (95% seed bootstrap).</p>"]
    if figures:
        body += ["<h2>Recovered triggers</h2>", *figures]
    body += _others(r)
    if r.notes:
        body += ["<h2>Notes</h2>", "<ul>", *(f"<li>{_e(n)}</li>" for n in r.notes), "</ul>"]
    page = _page(f"Scan of {Path(r.model).name}", body).replace(
        '<p class="note">Written by <code>arena report</code>. <a href="index.html">Report index</a></p>', "")
    path = out / "index.html"
    path.write_text(page)
    return path


def _others(r: ScanReport) -> list[str]:
    """The filters' and mitigations' readings with the trigger, or the line saying what a trigger would add."""
    out = []
    if r.readings:
        whose = f"the trigger {_e(r.trigger)}" if r.trigger else "the scenario's trigger"
        out += ["<h2>Other defenders</h2>",
                f"<p>With {whose} and target class {_e(r.target_class)}; not part of the verdict.</p>",
                _table(READING_HEADERS, [reading_row(x) for x in r.readings], name_columns=3, text_last=True),
                '<p class="note">TPR: the share of stamped inputs a filter flags at the FPR it was calibrated to '
                "(the scenario's budget). ARD: how much of the trigger's ASR a mitigation removes (ASR before minus "
                "after; at best down to the benign model's), at the cost in clean accuracy CAD.</p>"]
    if r.would_run:
        out.append(f'<p class="note">{_e(would_run_line(r.would_run))}</p>')
    return out
