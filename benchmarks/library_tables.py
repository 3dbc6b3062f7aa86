"""The attack and defense library tables (paper Tables 5-9 in spirit), from stored matches.

One command regenerates both documents from the match store:

    .venv/bin/python benchmarks/library_tables.py --scenario fmnist-cnn --play

``--play`` first runs (or resumes) the tournament of the chosen attackers x
defenders x seeds, so a killed run loses nothing; without it the tables are
rendered from whatever is stored. Every cell is mean +- standard deviation
over the seeds stored for that pair (the count is shown when fewer than
asked). Writes ``docs/attacks.md`` and ``docs/defenses.md``.

Tables:
- attacks (vs the ``none`` defender): ASR (TMC), CAD, CCC, NSR, base rate,
  and the time to craft the trojan (the first, uncached craft per seed);
- defenses: ARD (TMC) of every reformation/sanitization defender against
  every attack; TPR at the FPR budget (and the measured FPR, AUROC) of every
  filter; AIV / MLN / MJS and the detection rate of every inspector, with its
  control (benign model) verdict; ART per defender (per model and per input).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from arena.config.scenario import load_scenario  # noqa: E402
from arena.results.leaderboard import latest_matches  # noqa: E402
from arena.results.store import MatchRecord, Store  # noqa: E402


def _ms(values: list[float], fmt: str = "{:.1f}", scale: float = 100.0) -> str:
    vals = [v * scale for v in values if v is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return fmt.format(vals[0])
    return f"{fmt.format(statistics.mean(vals))} ± {fmt.format(statistics.stdev(vals))}"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _by_pair(records: list[MatchRecord]) -> dict[tuple[str, str], list[MatchRecord]]:
    pairs: dict[tuple[str, str], list[MatchRecord]] = defaultdict(list)
    for r in records:
        if r.status == "ok":
            pairs[(r.attacker, r.defender)].append(r)
    return pairs


def attack_table(pairs: dict[tuple[str, str], list[MatchRecord]], attackers: list[str],
                 transparent: dict[tuple[str, str], list[MatchRecord]] | None, alpha: float) -> str:
    """The attack table; ``transparent`` None leaves out the column of the transparent-trigger variant."""
    rows = []
    for a in attackers:
        recs = pairs.get((a, "none"), [])
        tr = [r.metrics["attack"] for r in (transparent or {}).get((a, "none"), [])]
        tr_cell = (f"{_ms([x['asr'] for x in tr])} ({_ms([x['tmc'] for x in tr])}) · CAD "
                   f"{_ms([x['cad'] for x in tr], '{:.2f}')}" + (f" [{len(tr)}]" if len(tr) > 1 else "")
                   if tr else "-")
        if not recs:
            rows.append([a] + ["-"] * 6 + [tr_cell])
            continue
        m = [r.metrics["attack"] for r in recs]
        crafts = [r.metrics["timing"]["craft_s"] for rs in pairs.values() for r in rs
                  if r.attacker == a and not r.metrics["timing"]["trojan_cached"]]
        rows.append([
            f"{a} ({len(recs)})",
            f"{_ms([x['asr'] for x in m])} ({_ms([x['tmc'] for x in m])})",
            _ms([x["cad"] for x in m], "{:.2f}"),
            _ms([x["ccc"] for x in m]),
            _ms([x["nsr"] for x in m], "{:.2f}", 1.0),
            _ms([x["base_rate"] for x in m]),
            _ms(crafts, "{:.0f}", 1.0),
            tr_cell,
        ])
    headers = ["attack (seeds)", "ASR % (TMC %)", "CAD points", "CCC %", "NSR", "base rate %", "craft s"]
    if transparent is None:
        return _table(headers, [r[:-1] for r in rows])
    return _table(headers + [f"at alpha {alpha}: ASR % (TMC %) · CAD"], rows)


def defense_tables(pairs: dict[tuple[str, str], list[MatchRecord]], attackers: list[str],
                   defenders: list[str]) -> str:
    cats: dict[str, str] = {}
    for (a, d), recs in pairs.items():
        cats[d] = recs[0].metrics["defense"]["category"]
    parts = []
    mitig = [d for d in defenders if cats.get(d) in ("input_reformation", "model_sanitization")]
    if mitig:
        rows = []
        for d in mitig:
            row = [d]
            for a in attackers:
                ms = [r.metrics["defense"] for r in pairs.get((a, d), [])]
                row.append(f"{_ms([x['ard'] for x in ms])} ({_ms([x['tmc'] for x in ms])})" if ms else "-")
            ms = [r.metrics["defense"] for a in attackers for r in pairs.get((a, d), [])]
            # Clean inputs each match scored the deployment on (fewer for costly ones: scoring.passes).
            scored = sorted({x.get("scored_inputs") for x in ms} - {None})
            span = "?" if not scored else str(scored[0]) if len(scored) == 1 else f"{scored[0]}-{scored[-1]}"
            rows.append(row + [_ms([x["cad"] for x in ms], "{:.2f}"), span])
        parts.append("### ARD % (TMC %) of reformation and sanitization defenses\n\n"
                     + _table(["defense"] + attackers + ["defense CAD points", "test inputs scored"], rows))
    filters = [d for d in defenders if cats.get(d) == "input_filtering"]
    if filters:
        rows = []
        for d in filters:
            row = [d]
            for a in attackers:
                ms = [r.metrics["defense"] for r in pairs.get((a, d), [])]
                row.append(f"{_ms([x['tpr'] for x in ms])} / {_ms([x['fpr'] for x in ms])} / "
                           f"{_ms([x['auroc'] for x in ms], '{:.2f}', 1.0)}" if ms else "-")
            rows.append(row)
        parts.append("### TPR % / FPR % / AUROC of input filters (FPR budget from the scenario)\n\n"
                     + _table(["filter"] + attackers, rows))
    inspectors = [d for d in defenders if cats.get(d) == "model_inspection"]
    if inspectors:
        rows = []
        for d in inspectors:
            row = [d]
            for a in attackers:
                ms = [r.metrics["defense"] for r in pairs.get((a, d), [])]
                if not ms:
                    row.append("-")
                    continue
                hit = sum(1 for x in ms if x["flagged"]) / len(ms)
                row.append(f"{hit:.0%} · AIV {_ms([x['aiv'] for x in ms], '{:.2f}', 1.0)} · "
                           f"MLN {_ms([x['mln'] for x in ms], '{:.1f}', 1.0)} · "
                           f"MJS {_ms([x['mjs'] for x in ms], '{:.2f}', 1.0)}")
            # One control run per seed (every match of that seed shares it): count seeds, not matches.
            ctl = {r.seed: r.metrics["control"]["flagged"] for a in attackers for r in pairs.get((a, d), [])}
            rows.append(row + [f"{sum(ctl.values())}/{len(ctl)} seeds" if ctl else "-"])
        parts.append("### Inspection: detection rate · AIV · MLN · MJS (control: benign model flagged)\n\n"
                     + _table(["inspector"] + attackers + ["control flagged"], rows))
    rows = []
    for d in defenders:
        ms = [r.metrics["defense"] for a in attackers for r in pairs.get((a, d), [])]
        if ms:
            rows.append([d, cats.get(d, "?"), _ms([x["art_model_s"] for x in ms], "{:.1f}", 1.0),
                         _ms([x["art_input_ms"] for x in ms], "{:.3f}", 1.0)])
    parts.append("### ART: defense running time\n\n"
                 + _table(["defense", "category", "per model s (deploy)", "per input ms (score + predict)"], rows))
    return "\n\n".join(parts)


def time_table(records: list[MatchRecord], attackers: list[str], defenders: list[str]) -> str:
    """Where a tournament's time goes, from the stored per-match timings.

    A match's duration covers the attacker's craft (uncached crafts only: a non-adaptive trojan is
    made once per seed, an adaptive one per defender), the defender's deployment, the defender's
    control run on the benign model (once per defender and seed, inside its first match) and the
    referee's scoring. The benign model is trained before the first match and is not in any row.
    """
    ok = [r for r in records if r.status == "ok" and r.attacker in attackers and r.defender in defenders]
    total = sum(r.duration_s for r in ok)
    crafts = defaultdict(float)
    for r in ok:
        if not r.metrics["timing"]["trojan_cached"]:
            crafts[r.attacker] += r.metrics["timing"]["craft_s"]
    rows = []
    for d in defenders:
        rs = [r for r in ok if r.defender == d]
        if not rs:
            continue
        match_s = sum(r.duration_s for r in rs)
        craft_s = sum(r.metrics["timing"]["craft_s"] for r in rs if not r.metrics["timing"]["trojan_cached"])
        deploy_s = sum(r.metrics["timing"]["deploy_s"] for r in rs)
        rows.append([d, str(len(rs)), f"{match_s / 60:.1f}", f"{craft_s / 60:.1f}", f"{deploy_s / 60:.1f}",
                     f"{(match_s - craft_s - deploy_s) / 60:.1f}"])
    rows.sort(key=lambda r: -float(r[2]))
    crows = [[a, f"{crafts[a] / 60:.1f}"] for a in sorted(crafts, key=lambda a: -crafts[a])]
    return (f"Sum of stored match durations: {total / 60:.1f} min over {len(ok)} matches.\n\n"
            "Per defender (minutes; *rest* = the control run on the benign model, the referee's "
            "scoring and evaluation):\n\n"
            + _table(["defender", "matches", "total", "attacker crafts", "deploy", "rest"], rows)
            + "\n\nPer attacker, uncached crafts (minutes):\n\n" + _table(["attacker", "craft"], crows))


NOTES_MARKER = "<!-- hand-written notes below: library_tables.py keeps them when it rewrites the tables -->"


def write_keeping_notes(path: Path, generated: str) -> None:
    """Write the generated tables, keeping the hand-written notes after ``NOTES_MARKER``."""
    notes = ""
    if path.is_file():
        old = path.read_text()
        if NOTES_MARKER in old:
            notes = old[old.index(NOTES_MARKER):]
    path.write_text(generated + ("\n" + notes if notes else ""))


def _shown(path: Path) -> str:
    """``path`` as the regenerate command should name it: relative to the checkout when inside it."""
    try:
        return str(path.resolve().relative_to(ROOT.resolve()))
    except ValueError:
        return str(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="fmnist-cnn")
    ap.add_argument("--seeds", type=int, default=None, help="the first N test seeds (default: all of them)")
    ap.add_argument("--attackers", default="", help="comma-separated (default: all installed)")
    ap.add_argument("--defenders", default="", help="comma-separated (default: all installed)")
    ap.add_argument("--play", action="store_true", help="run/resume the tournament first")
    ap.add_argument("--transparent", default=str(ROOT / "benchmarks" / "scenarios" / "fmnist-cnn-alpha08.toml"),
                    help="scenario whose attackers-vs-none matches give the transparency column "
                         "('' for none: a scenario without such a variant)")
    ap.add_argument("--defense-seeds", type=int, default=None,
                    help="seeds of the full attackers x defenders tournament (default: --seeds); the "
                         "attack table's matches against `none` always use --seeds")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=str(ROOT / "docs"))
    args = ap.parse_args()

    from arena.plugins import discover
    from arena.api.training import stderr_progress

    sc = load_scenario(args.scenario)
    attackers = [a for a in args.attackers.split(",") if a] or list(discover("attacker"))
    defenders = [d for d in args.defenders.split(",") if d] or list(discover("defender"))
    if "none" not in defenders:
        defenders = ["none"] + defenders
    seeds = list(sc.seeds)[: args.seeds]  # None: all test seeds
    defense_seeds = list(sc.seeds)[: args.defense_seeds or args.seeds]
    tsc = load_scenario(args.transparent) if args.transparent else None
    store = Store()
    if args.play:
        from arena.run.tournament import run

        # Cheapest first, and one seed at a time, so that a run cut short leaves whole tables behind:
        # the attack table (attackers vs none), its transparency column, then the full tournament.
        run(sc, attackers=attackers, defenders=["none"], seeds=seeds, device=args.device, store=store,
            progress=stderr_progress)
        if tsc is not None:
            run(tsc, attackers=attackers, defenders=["none"], seeds=seeds, device=args.device, store=store,
                progress=stderr_progress)
        for seed in defense_seeds:
            run(sc, attackers=attackers, defenders=defenders, seeds=[seed], device=args.device, store=store,
                progress=stderr_progress)
    # One match per pair and seed, the last stored: an agent's new version replays beside its old matches.
    records = [r for r in latest_matches(store.matches(digest=sc.digest))[0]
               if r.seed in (seeds if r.defender == "none" else defense_seeds)]
    pairs = _by_pair(records)
    transparent = (_by_pair([r for r in latest_matches(store.matches(digest=tsc.digest))[0] if r.seed in seeds])
                   if tsc else None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    regen = (f"`.venv/bin/python benchmarks/library_tables.py --scenario {sc.name}"
             + (f" --seeds {args.seeds}" if args.seeds else "")
             + (f" --defense-seeds {args.defense_seeds}" if args.defense_seeds else "")
             + (" --transparent ''" if tsc is None else "")
             # Without it the command would write the default scenario's pages (docs/) over theirs.
             + (f" --out {_shown(out)}" if out.resolve() != (ROOT / "docs").resolve() else "") + " --play`")
    stored_none = sorted({r.seed for r in records if r.defender == "none"})
    stored_rest = sorted({r.seed for r in records if r.defender != "none"})
    head = (f"Scenario `{sc.name}` (digest {sc.digest}): matches against `none` stored for seeds {stored_none} "
            f"(asked: {seeds}), all other pairs for seeds {stored_rest} (asked: {defense_seeds}); "
            f"{len(records)} stored matches. Regenerate: {regen}. "
            "Cells: mean ± sd over the seeds stored for the pair (one value when one seed is stored).\n")
    if tsc is None:
        alpha, column = sc.trigger.alpha, "\n"
    else:
        alpha = tsc.trigger.alpha
        stored_tr = sorted({r.seed for rs in transparent.values() for r in rs})
        column = (f"\n\nThe last column is the same attack against `none` in `{tsc.name}` "
                  f"(trigger transparency {alpha}, seeds {stored_tr}; [n]: seeds in the cell).\n")
    write_keeping_notes(out / "attacks.md", f"# Attack library on `{sc.name}`\n\n{head}\n"
                        + attack_table(pairs, attackers, transparent, alpha) + column)
    write_keeping_notes(out / "defenses.md", f"# Defense library on `{sc.name}`\n\n{head}\n"
                                     + defense_tables(pairs, [a for a in attackers], [d for d in defenders if d != "none"])
                                     + "\n\n## Where the time goes\n\n"
                                     + time_table(records, attackers, defenders) + "\n")
    print(f"wrote {out / 'attacks.md'} and {out / 'defenses.md'} from {len(records)} matches")


if __name__ == "__main__":
    main()
