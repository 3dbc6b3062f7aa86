"""`arena report`: one scenario's stored matches as a self-contained static HTML folder.

Why a folder of static files: it opens from disk in any browser, can be copied,
archived or served as it is, and needs no server, no JavaScript and no network
(every picture is a PNG beside the page, every link relative). What it shows:

- the ratings and their 95% intervals (``arena.results.ratings.rate``, the
  leaderboard's own fit) as a chart and a table;
- the attacker x defender heatmap of mean outcomes over seeds; each cell is a
  link (an HTML image map over the picture, and the table under it) to the
  page of the match behind it;
- ASR against CAD per attacker;
- a gallery per attacker (``arena.present.gallery``): clean and stamped inputs, their
  difference and the difference magnified. It needs the scenario file and the
  trojans, which come from the cache a tournament filled (crafted once here
  when the cache lost them; ``galleries=False`` skips them);
- the triggers inspectors recovered, in labelled panels beside the true one,
  drawn from the tensors the match stored (``arena.engine.artifacts``);
- one page per stored match: the report `arena matches show ID` prints, every
  round in a table, its recovered trigger, and links to the same pair's other
  seeds.

Layout of the folder: ``index.html``, ``img/*.png``, ``matches/ID.html``,
``attackers/NAME.html`` (an attacker's gallery, matches and recovered
triggers) and a marker file ``.arena-report``. Writing a report again into the same folder
replaces the previous one; a folder holding anything else is refused rather
than overwritten.
"""

from __future__ import annotations

import hashlib
import html
import math
import re
import shutil
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arena.core.cache import arena_home
from arena.present.charts import AttackPoint, CellBox, asr_cad_figure, heatmap_figure, ratings_figure
from arena.core.errors import ArenaError
from arena.present.gallery import (collect_gallery, load_trigger_tensors, save_figure, save_gallery,
                           save_recovered_trigger_png)
from arena.results.endings import MARKS, cell_marks
from arena.results.leaderboard import (DEFAULT_MODEL_FPR, defender_categories, games_from_records, ordered_matrix,
                                       outcome_matrix, rated_records)
from arena.present.match_text import GLOSSARY, match_report, verdict
from arena.results.ratings import SEED, Rating, RatingTable, rate
from arena.results.record import MatchRecord

if TYPE_CHECKING:
    import pandas as pd

    from arena.config.scenario import Scenario

MARKER = ".arena-report"
_UNIT_WORDS = {"seed": "Student's t over per-seed fits", "match": "resampling single matches"}
_UNIT_CAVEAT = ": these intervals understate the uncertainty, since the matches of a seed share its trojans"
Progress = Callable[[str], None]


class ReportError(ArenaError):
    """A report or a picture cannot be made: no stored matches, or a folder it may not write."""


def default_folder(scenario_name: str) -> Path:
    """Where ``arena report`` writes when no ``--out`` is given: ``<arena home>/reports/<scenario>``."""
    return arena_home() / "reports" / slug(scenario_name)


def slug(name: str) -> str:
    """A file-name-safe form of an agent or scenario name; names that had to change get a short hash,
    so two names never share a file."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "agent"
    return clean if clean == name else f"{clean}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def prepare_folder(out: Path) -> Path:
    """Create ``out`` for a report, or empty the report written there before; refuse any other folder."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ReportError(f"cannot write a report to {out}: it is a file", hint="choose a folder with --out")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ReportError(f"{out} is not empty and holds no earlier arena report; refusing to write into it",
                          hint="choose a new or empty folder with --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        for sub in ("img", "matches", "attackers"):  # the previous report's pictures and pages: none may outlive it
            if (out / sub).is_dir():
                shutil.rmtree(out / sub)
            (out / sub).mkdir()
        (out / MARKER).write_text("written by `arena report`; the folder is replaced when the report is\n")
    except OSError as exc:
        raise ReportError(f"cannot write a report to {out}: {exc.strerror or exc}",
                          hint="choose a writable folder with --out") from None
    return out


# --- HTML pieces -----------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1150px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; } td.name, th.name { text-align: left; white-space: nowrap; }
td.text, th.text { text-align: left; }
.scroll { overflow-x: auto; } .scroll img { max-width: none; }
img { max-width: 100%; height: auto; }
figure { display: inline-block; margin: 0.5em 1em 1em 0; vertical-align: top; }
figcaption { font-size: 0.85em; color: #555; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.note { color: #666; font-size: 0.9em; } td a { color: inherit; }
"""


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _page(title: str, body: Iterable[str], root: str = "") -> str:
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>", *body,
        f'<p class="note">Written by <code>arena report</code>. <a href="{root}index.html">Report index</a></p>',
        "</body>", "</html>", "",
    ])


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], name_columns: int = 1,
           raw: bool = False, text_last: bool = False) -> str:
    """An HTML table: the first ``name_columns`` columns are names (left, unbroken), the last one running
    text when ``text_last`` (left), the rest numbers (right). ``raw``: the cells are HTML already."""
    last = len(headers) - 1

    def cls(j: int) -> str:
        return ' class="name"' if j < name_columns else ' class="text"' if text_last and j == last else ""

    head = "".join(f"<th{cls(j)}>{_e(h)}</th>" for j, h in enumerate(headers))
    body = ["<tr>" + "".join(f"<td{cls(j)}>{c if raw else _e(c)}</td>" for j, c in enumerate(row)) + "</tr>"
            for row in rows]
    return "\n".join(["<table>", f"<thead><tr>{head}</tr></thead>", "<tbody>", *body, "</tbody>", "</table>"])


def _num(v: Any, fmt: str = ".3f") -> str:
    return format(v, fmt) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else "-"


def _img(src: str, alt: str, caption: str | None = None, usemap: str | None = None,
         size: tuple[int, int] | None = None) -> str:
    extra = f' usemap="#{usemap}"' if usemap else ""
    if size:
        extra += f' width="{size[0]}" height="{size[1]}"'
    tag = f'<img src="{_e(src)}" alt="{_e(alt)}"{extra}>'
    return f"<figure>{tag}<figcaption>{_e(caption)}</figcaption></figure>" if caption else tag


# --- the report ------------------------------------------------------------------------------------

@dataclass
class ReportSummary:
    """What ``write_report`` wrote, and what it had to leave out (and why)."""

    index: Path
    matches: int
    galleries: list[str] = field(default_factory=list)
    recovered: int = 0
    notes: list[str] = field(default_factory=list)


def _match_href(rec: MatchRecord, root: str = "") -> str:
    return f"{root}matches/{rec.id}.html"


def attack_points(records: Iterable[MatchRecord]) -> list[AttackPoint]:
    """One point per attacker and seed: the mean ASR and CAD of its trojans' stored attack metrics.

    A non-adaptive attacker plays one trojan per seed against every defender,
    so the mean is that trojan's; an adaptive one averages over its trojans.
    Matches without attack metrics (an attacker that forfeited) are left out.
    """
    seen: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    for r in records:
        attack = (r.metrics or {}).get("attack") or {}
        asr, cad = attack.get("asr"), attack.get("cad")
        if all(isinstance(v, (int, float)) and math.isfinite(v) for v in (asr, cad)):
            seen[(r.attacker, r.seed)].append((float(asr), float(cad)))
    return [AttackPoint(a, s, sum(v[0] for v in vals) / len(vals), sum(v[1] for v in vals) / len(vals))
            for (a, s), vals in sorted(seen.items())]


def _ratings_section(table: RatingTable, categories: dict[str, str]) -> list[str]:
    def interval(r: Rating) -> str:
        return f"[{r.ci_low:.0f}, {r.ci_high:.0f}]" if math.isfinite(r.ci_low) and math.isfinite(r.ci_high) else "-"

    rows = [(r.role, r.name, r.shown, interval(r), str(r.matches), f"{r.mean_score:.3f}", categories.get(r.name, "") if r.role == "defender" else "")
            for r in table]
    return [
        '<h2 id="ratings">Ratings</h2>',
        '<p>Bradley-Terry ratings on an Elo scale (the <code>none</code> defender at 1000), the fit of '
        f'<code>arena leaderboard</code>, with 95% intervals ({table.rounds} '
        f'{"seeds" if table.unit == SEED else "bootstrap rounds"}, {_UNIT_WORDS.get(table.unit, table.unit)}) ({table.seeds} seed{"" if table.seeds == 1 else "s"}'
        f'{_UNIT_CAVEAT if table.unit != SEED else ""}). Deviance explained: {_num(table.deviance_explained)}.</p>',
        _img("img/ratings.png", "Ratings of attackers and defenders with 95% intervals"),
        _table(["role", "agent", "rating", "95% interval", "matches", "mean score", "category"], rows,
               name_columns=2, text_last=True),
    ]


MARK_LEGEND = "corner marks: " + "; ".join(f"{m} {why}" for m, why in dict(MARKS.values()).items())


def _heatmap_section(matrix: pd.DataFrame, boxes: dict[tuple[str, str], CellBox], size: tuple[int, int],
                     by_pair: dict[tuple[str, str], list[MatchRecord]], marks: dict[tuple[str, str], str],
                     categories: dict[str, str]) -> list[str]:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["coolwarm"]
    areas = []
    for (a, d), box in boxes.items():
        first = by_pair[(a, d)][0]
        v = float(matrix.loc[a, d])
        areas.append(f'<area shape="rect" coords="{box.coords}" href="{_e(_match_href(first))}" '
                     f'alt="{_e(a)} vs {_e(d)}: {v:.3f}" title="{_e(a)} vs {_e(d)}: {v:.3f}">')
    head = ["attacker \\ defender",
            *[f"{c} ({categories.get(str(c), '?').replace('_', ' ')})" for c in matrix.columns]]
    rows = []
    for a in matrix.index:
        cells = [f'<a href="{_e(attacker_page(str(a)))}">{_e(a)}</a>']
        for d in matrix.columns:
            v = float(matrix.loc[a, d])
            recs = by_pair.get((str(a), str(d)), [])
            if math.isnan(v) or not recs:
                cells.append("-")
                continue
            colour = to_hex(cmap(v))
            seeds = " ".join(f'<a href="{_e(_match_href(r))}">s{r.seed}</a>' for r in recs)
            text = "white" if abs(v - 0.5) > 0.3 else "black"
            mark = marks.get((str(a), str(d)), "")
            sup = (f'<sup title="{_e("; ".join(why for m, why in dict(MARKS.values()).items() if m in mark))}">'
                   f"{_e(mark)}</sup>" if mark else "")
            cells.append(f'<span style="display:block;background:{colour};color:{text};padding:0 0.3em">'
                         f'<a href="{_e(_match_href(recs[0]))}">{v:.3f}</a>{sup}</span>'
                         + (f'<small>{seeds}</small>' if len(recs) > 1 else ""))
        rows.append(cells)
    return [
        '<h2 id="heatmap">Outcomes: attacker x defender</h2>',
        "<p>Mean attacker score over seeds (1: the attacker wins, 0: the defender wins). Attackers are ordered "
        "by rating, strongest first; defenders grouped by category, strongest first within each. A corner "
        f"mark says a gate or a forfeit decided some of the cell's matches ({_e(MARK_LEGEND.split(': ', 1)[1])}"
        "): there the attack never met the defence. Click a cell to open its match (the lowest seed; the table "
        "links every seed).</p>",
        f'<div class="scroll">{_img("img/heatmap.png", "Heatmap of mean outcomes", usemap="heatmap", size=size)}'
        "</div>",
        '<map name="heatmap">', *areas, "</map>",
        f'<div class="scroll">{_table(head, rows, raw=True)}</div>',
    ]


def _asr_section(points: list[AttackPoint]) -> list[str]:
    means: dict[str, list[AttackPoint]] = defaultdict(list)
    for p in points:
        means[p.attacker].append(p)
    rows = [(a, str(len(ps)), _num(sum(p.asr for p in ps) / len(ps)),
             _num(100 * sum(p.cad for p in ps) / len(ps), ".2f")) for a, ps in sorted(means.items())]
    return [
        '<h2 id="asr-cad">ASR against CAD</h2>',
        "<p>Each attacker's trojans: attack success rate against the clean accuracy they cost (mean over the "
        "matches of a seed; small points per seed, large ones the mean over seeds).</p>",
        _img("img/asr_cad.png", "ASR against CAD per attacker"),
        _table(["attacker", "seeds", "ASR", "CAD (points)"], rows),
    ]


def _pair_index(records: Sequence[MatchRecord]) -> dict[tuple[str, str], list[MatchRecord]]:
    by_pair: dict[tuple[str, str], list[MatchRecord]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.seed, r.rounds, r.id or 0)):
        by_pair[(r.attacker, r.defender)].append(r)
    return by_pair


def _recovered_png(rec: MatchRecord, out: Path) -> str | None:
    """Draw the recovered trigger of a stored match into the report (relative path), None without one."""
    rel = ((rec.metrics or {}).get("artifacts") or {}).get("recovered_trigger_pt")
    if not rel or rec.id is None:
        return None
    tensors = load_trigger_tensors(arena_home() / rel)
    if tensors is None:
        return None
    defense = (rec.metrics or {}).get("defense") or {}
    target = defense.get("suspected_target")
    flagged = "flagged" if defense.get("flagged") else "not flagged"
    title = f"{rec.defender} on {rec.attacker}'s trojan (seed {rec.seed}): {flagged}, suspected target {target}"
    name = f"img/recovered-{rec.id}.png"
    save_recovered_trigger_png(tensors, out / name, title=title)
    return name


def _match_page(rec: MatchRecord, same_pair: Sequence[MatchRecord], recovered: str | None) -> str:
    body = [f"<h1>Match #{_e(rec.id)}: {_e(rec.attacker)} vs {_e(rec.defender)}</h1>",
            f'<p>Scenario <code>{_e(rec.scenario)}</code> (digest {_e(rec.scenario_digest)}), seed {rec.seed}, '
            f"{rec.rounds} round(s), status <b>{_e(rec.status)}</b>"
            + (f", outcome <b>{rec.outcome:.3f}</b> ({_e(verdict(rec.outcome))})" if rec.outcome is not None else "")
            + ".</p>"]
    others = [r for r in same_pair if r.id != rec.id]
    if others:
        body.append("<p>Same pair, other seeds or rounds: " + ", ".join(
            f'<a href="{r.id}.html">seed {r.seed}, {r.rounds} round(s) (#{r.id})</a>' for r in others) + "</p>")
    if rec.round_records:
        body += ["<h2>Rounds</h2>", _table(
            ["round", "outcome", "gate", "reason"],
            [(str(r.get("round", "?")), _num(r.get("outcome")), str((r.get("metrics") or {}).get("gate", "-")),
              str(r.get("reason", ""))) for r in rec.round_records], name_columns=0, text_last=True)]
    if recovered:
        body += ["<h2>Recovered trigger</h2>",
                 _img(f"../{recovered}", f"trigger recovered by {rec.defender}",
                      "What the inspector reverse-engineered for its suspected target, beside the true trigger.")]
    body += ["<h2>Report</h2>", "<p>As <code>arena matches show "
             f"{_e(rec.id)}</code> prints it.</p>", f"<pre>{_e(match_report(rec))}</pre>",
             "<h2>What the metrics mean</h2>",
             "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in GLOSSARY.items()) + "</dl>"]
    return _page(f"match #{rec.id}: {rec.attacker} vs {rec.defender}", body, root="../")


def write_report(name: str, digest: str, records: Sequence[MatchRecord], out: Path, *,
                 scenario: Scenario | None = None, seed: int | None = None, galleries: bool = True,
                 craft: bool = False, inputs: int = 4, device: str = "cpu", bootstrap_rounds: int = 200, unit: str = SEED,
                 progress: Progress | None = None) -> ReportSummary:
    """Write the HTML report of one scenario setting's stored ``records`` into the folder ``out``.

    ``scenario`` (the loaded scenario file) is needed for the galleries; without
    it, or with ``galleries=False``, they are left out and the summary says so. A gallery draws the
    trojan its matches left in the cache; one that is not there is left out, saying so, unless ``craft``
    (then it is trained and crafted now: presentation reads, it plays only when asked).
    Galleries and the recovered triggers on the front page use ``seed``
    (default: the lowest stored seed); every match page shows its own.
    """
    say = progress or (lambda _msg: None)
    records = [r for r in records if r.id is not None]
    ok = [r for r in records if r.status == "ok" and r.outcome is not None]
    if not ok:
        raise ReportError(f"no stored matches for scenario '{name}': run `arena tournament --scenario {name}` first")
    seeds = sorted({r.seed for r in ok})
    if seed is not None and seed not in seeds:  # its trojans and benign model were never made: refuse, don't train
        raise ReportError(f"no stored matches of scenario '{name}' at seed {seed}",
                          hint=f"stored seeds: {', '.join(str(s) for s in seeds)}")
    shown_seed = seeds[0] if seed is None else seed
    out = prepare_folder(Path(out))
    summary = ReportSummary(index=out / "index.html", matches=len(records))

    say("fitting ratings")
    # The leaderboard's ratings: defenders unusable over benign models are left out (arena.results.usability).
    rated, _ = rated_records(ok, scenario.budgets.model_fpr if scenario is not None else DEFAULT_MODEL_FPR)
    table = rate(games_from_records(rated), bootstrap_rounds=bootstrap_rounds, unit=unit)
    save_figure(ratings_figure(table), out / "img" / "ratings.png")
    # Attackers by rating, defenders by category and rating; a cell a gate or a forfeit decided is marked.
    categories = defender_categories(records)
    matrix = ordered_matrix(outcome_matrix(ok), table, categories)
    marks = cell_marks(ok)
    fig, boxes = heatmap_figure(matrix, marks, legend=MARK_LEGEND if marks else "")
    save_figure(fig, out / "img" / "heatmap.png")
    size = (round(fig.bbox.width), round(fig.bbox.height))
    points = attack_points(ok)
    save_figure(asr_cad_figure(points, None if scenario is None else scenario.budgets.attack_cad),
                out / "img" / "asr_cad.png")
    by_pair = _pair_index(ok)
    attackers = [str(a) for a in matrix.index]
    pictures, gallery_note = _galleries(attackers, scenario, shown_seed, galleries, inputs, device, out, say,
                                        summary, craft)

    say("drawing recovered triggers and match pages")
    recovered: dict[int, str] = {}
    for r in ok:
        png = _recovered_png(r, out)
        if png is not None and r.id is not None:
            recovered[r.id] = png
    summary.recovered = len(recovered)
    all_pairs = _pair_index(records)
    for r in records:
        (out / "matches" / f"{r.id}.html").write_text(
            _match_page(r, all_pairs[(r.attacker, r.defender)], recovered.get(r.id or -1)))
    for a in attackers:
        (out / attacker_page(a)).write_text(
            _attacker_page(a, name, shown_seed, pictures.get(a), gallery_note.get(a),
                           [r for r in records if r.attacker == a], recovered))

    failed = [r for r in records if r.status != "ok" or r.outcome is None]
    match_rows = [(f'<a href="{_e(_match_href(r))}">#{r.id}</a>', _e(r.attacker), _e(r.defender), str(r.seed),
                   str(r.rounds), _e(r.status), "-" if r.outcome is None else f"{r.outcome:.3f}",
                   _e((r.reason if r.status == "ok" else (r.error or "").splitlines()[0] if r.error else "")[:90]))
                  for r in sorted(records, key=lambda r: r.id or 0)]
    body = [
        f"<h1>Backdoor Arena report: {_e(name)}</h1>",
        f"<p>{len(ok)} finished match(es)"
        + (f" and {len(failed)} that failed" if failed else "")
        + f" between {len(attackers)} attacker(s) and {len(matrix.columns)} defender(s) over seed(s) "
        f"{', '.join(str(s) for s in seeds)}; scenario digest <code>{_e(digest)}</code>.</p>",
        '<nav><a href="#heatmap">Heatmap</a><a href="#ratings">Ratings</a><a href="#asr-cad">ASR vs CAD</a>'
        '<a href="#galleries">Galleries</a><a href="#recovered">Recovered triggers</a>'
        '<a href="#matches">All matches</a></nav>',
        *_heatmap_section(matrix, boxes, size, by_pair, marks, categories),
        *_ratings_section(table, categories),
        *_asr_section(points),
        *_gallery_section(attackers, pictures, gallery_note, scenario, shown_seed),
        *_inspector_section(ok, recovered, shown_seed),
        '<h2 id="matches">All matches</h2>',
        _table(["match", "attacker", "defender", "seed", "rounds", "status", "outcome", "reason / error"],
               match_rows, name_columns=3, raw=True, text_last=True),
    ]
    if summary.notes:
        body += ["<h2>Left out</h2>", "<ul>", *[f"<li>{_e(n)}</li>" for n in summary.notes], "</ul>"]
    summary.index.write_text(_page(f"Backdoor Arena report: {name}", body))
    return summary


def attacker_page(attacker: str) -> str:
    """The path of an attacker's page inside the report folder."""
    return f"attackers/{slug(attacker)}.html"


def _galleries(attackers: list[str], scenario: Scenario | None, seed: int, wanted: bool, inputs: int,
               device: str, out: Path, say: Progress, summary: ReportSummary,
               craft: bool = False) -> tuple[dict[str, str], dict[str, str]]:
    """Draw each attacker's gallery: (attacker -> picture in the report, attacker -> why there is none)."""
    if not wanted:
        summary.notes.append("galleries: left out (--no-galleries)")
        return {}, {a: "left out (--no-galleries)" for a in attackers}
    if scenario is None:
        summary.notes.append("galleries: left out, no scenario file to make the trojans from (give the "
                             "scenario's .toml path instead of its stored name)")
        return {}, {a: "no scenario file to make the trojan from" for a in attackers}
    from arena.engine.referee import Referee

    referee = Referee(scenario, device=device, progress=say, make=craft)
    pictures, missing = {}, {}
    for attacker in attackers:
        say(f"gallery of {attacker} (seed {seed})")
        try:
            g = collect_gallery(referee, attacker, seed, inputs)  # craft() pins threads as a match does
        except ArenaError as exc:  # not cached, not installed any more, or it fails to craft: say so
            missing[attacker] = str(exc).splitlines()[0] + (
                " (arena report --craft makes it)" if type(exc).__name__ == "NotCached" else "")
            summary.notes.append(f"gallery of {attacker}: {missing[attacker]}")
            continue
        pictures[attacker] = f"img/gallery-{slug(attacker)}.png"
        save_gallery(g, out / pictures[attacker])
        summary.galleries.append(attacker)
    return pictures, missing


GALLERY_WORDS = ("clean test inputs, the same inputs stamped by the attacker, their difference, and the difference "
                 "magnified until its largest change fills the scale (the factor is in the column title); under "
                 "each input, what the trojan predicts")


def _gallery_section(attackers: list[str], pictures: dict[str, str], missing: dict[str, str],
                     scenario: Scenario | None, seed: int) -> list[str]:
    parts = ['<h2 id="galleries">Galleries</h2>',
             f"<p>One per attacker (seed {seed}): {GALLERY_WORDS}. Click one for the attacker's page.</p>"]
    for a in attackers:
        if a in pictures:
            img = f'<img src="{_e(pictures[a])}" alt="gallery of {_e(a)}" style="width:270px">'
            parts.append(f'<figure><a href="{_e(attacker_page(a))}">{img}</a>'
                         f"<figcaption>{_e(a)}</figcaption></figure>")
        else:
            parts.append(f'<p class="note"><a href="{_e(attacker_page(a))}">{_e(a)}</a>: no gallery '
                         f"({_e(missing.get(a, 'not drawn'))}).</p>")
    return parts


def _attacker_page(attacker: str, scenario_name: str, seed: int, picture: str | None, missing: str | None,
                   records: Sequence[MatchRecord], recovered: dict[int, str]) -> str:
    body = [f"<h1>{_e(attacker)} on {_e(scenario_name)}</h1>", "<h2>Gallery</h2>"]
    if picture:
        body += [f"<p>Seed {seed}: {GALLERY_WORDS}.</p>", _img(f"../{picture}", f"gallery of {attacker}")]
    else:
        body.append(f'<p class="note">No gallery: {_e(missing or "not drawn")}.</p>')
    rows = [(f'<a href="../{_e(_match_href(r))}">#{r.id}</a>', _e(r.defender), str(r.seed), str(r.rounds),
             "-" if r.outcome is None else f"{r.outcome:.3f}",
             _e(r.reason if r.status == "ok" else f"{r.status}: {(r.error or '').splitlines()[0] if r.error else ''}"))
            for r in sorted(records, key=lambda r: (r.defender, r.seed, r.rounds))]
    body += ["<h2>Matches</h2>", _table(["match", "defender", "seed", "rounds", "outcome", "reason"], rows,
                                        name_columns=2, raw=True, text_last=True)]
    found = [r for r in records if r.seed == seed and (r.id or -1) in recovered]
    if found:
        body += ["<h2>Recovered triggers</h2>",
                 f"<p>What each inspector reverse-engineered from this attacker's trojan (seed {seed}).</p>"]
        body += [f'<figure><a href="../{_e(_match_href(r))}"><img src="../{_e(recovered[r.id or -1])}" '
                 f'alt="{_e(r.defender)} on {_e(attacker)}" style="width:540px"></a>'
                 f"<figcaption>{_e(r.defender)} (match #{r.id})</figcaption></figure>"
                 for r in sorted(found, key=lambda r: r.defender)]
    return _page(f"{attacker} on {scenario_name}", body, root="../")


def _inspector_section(ok: Sequence[MatchRecord], recovered: dict[int, str], seed: int) -> list[str]:
    parts = ['<h2 id="recovered">Recovered triggers</h2>']
    shown = [r for r in ok if r.seed == seed and (r.id or -1) in recovered]
    if not shown:
        return parts + ['<p class="note">No inspector in these matches stored a recovered trigger (Neural '
                        "Cleanse, TABOR, DeepInspect and ABS do), or its files are not in this arena home.</p>"]
    parts.append(f"<p>What each inspection defender reverse-engineered for the class it suspects (seed {seed}), "
                 "in labelled panels beside the attack's true trigger. Click one for its match.</p>")
    by_defender: dict[str, list[MatchRecord]] = defaultdict(list)
    for r in sorted(shown, key=lambda r: (r.defender, r.attacker, r.rounds)):
        by_defender[r.defender].append(r)
    for defender, recs in by_defender.items():
        parts.append(f"<h3>{_e(defender)}</h3>")
        for r in recs:
            img = (f'<img src="{_e(recovered[r.id or -1])}" alt="{_e(defender)} on {_e(r.attacker)}" '
                   'style="width:540px">')
            parts.append(f'<figure><a href="{_e(_match_href(r))}">{img}</a>'
                         f"<figcaption>{_e(r.attacker)} (match #{r.id}, outcome {r.outcome:.3f})"
                         "</figcaption></figure>")
    return parts
