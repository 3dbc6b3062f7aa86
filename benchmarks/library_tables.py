"""The attack and defense library tables (paper Tables 5-9 in spirit), from stored matches.

One command regenerates both documents from the match store:

    .venv/bin/python benchmarks/library_tables.py --scenario fmnist-cnn --seeds 3 --play

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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from arena.scenario import load_scenario  # noqa: E402
from arena.store import MatchRecord, Store  # noqa: E402


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


def attack_table(pairs: dict[tuple[str, str], list[MatchRecord]], attackers: list[str]) -> str:
    rows = []
    for a in attackers:
        recs = pairs.get((a, "none"), [])
        if not recs:
            rows.append([a] + ["-"] * 6)
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
        ])
    return _table(["attack (seeds)", "ASR % (TMC %)", "CAD points", "CCC %", "NSR", "base rate %",
                   "craft s"], rows)


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
            cad = [r.metrics["defense"]["cad"] for a in attackers for r in pairs.get((a, d), [])]
            rows.append(row + [_ms(cad, "{:.2f}")])
        parts.append("### ARD % (TMC %) of reformation and sanitization defenses\n\n"
                     + _table(["defense"] + attackers + ["defense CAD points"], rows))
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
            ctl = [r.metrics["control"]["flagged"] for a in attackers for r in pairs.get((a, d), [])]
            rows.append(row + [f"{sum(ctl)}/{len(ctl)}" if ctl else "-"])
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="fmnist-cnn")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--attackers", default="", help="comma-separated (default: all installed)")
    ap.add_argument("--defenders", default="", help="comma-separated (default: all installed)")
    ap.add_argument("--play", action="store_true", help="run/resume the tournament first")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=str(ROOT / "docs"))
    args = ap.parse_args()

    from arena.plugins import discover
    from arena.training import stderr_progress

    sc = load_scenario(args.scenario)
    attackers = [a for a in args.attackers.split(",") if a] or list(discover("attacker"))
    defenders = [d for d in args.defenders.split(",") if d] or list(discover("defender"))
    if "none" not in defenders:
        defenders = ["none"] + defenders
    seeds = list(sc.seeds)[: args.seeds]
    store = Store()
    if args.play:
        from arena.tournament import run

        run(sc, attackers=attackers, defenders=defenders, seeds=seeds, device=args.device, store=store,
            progress=stderr_progress)
    records = [r for r in store.matches(digest=sc.digest) if r.seed in seeds]
    pairs = _by_pair(records)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    head = (f"Scenario `{sc.name}` (digest {sc.digest}), seeds {seeds}; {len(records)} stored matches. "
            f"Regenerate: `.venv/bin/python benchmarks/library_tables.py --scenario {sc.name} "
            f"--seeds {args.seeds} --play`. Cells: mean ± sd over the seeds stored for the pair.\n")
    (out / "attacks.md").write_text(f"# Attack library on `{sc.name}`\n\n{head}\n"
                                    + attack_table(pairs, attackers) + "\n")
    (out / "defenses.md").write_text(f"# Defense library on `{sc.name}`\n\n{head}\n"
                                     + defense_tables(pairs, [a for a in attackers], [d for d in defenders if d != "none"])
                                     + "\n")
    print(f"wrote {out / 'attacks.md'} and {out / 'defenses.md'} from {len(records)} matches")


if __name__ == "__main__":
    main()
