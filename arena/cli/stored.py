"""Commands on the store: matches list, show, replay, import, rescore, export."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from tabulate import tabulate

from arena.core.errors import ArenaError
from arena.present.match_text import fmt_value as _fmt
from arena.present.match_text import match_report as _report
from arena.api.training import stderr_progress
from arena.cli.common import (_finite, _friendly, _shown, _say, _error_line, _json, _load, _stored_name, SEED,
                              device_option)
from arena.cli.group import main


@main.group()
def matches() -> None:
    """List, show, replay, export and import stored matches."""


@matches.command("list")
@click.option("--scenario", "-s", default=None, help="Only this scenario (name, stored name, or .toml path).")
@click.option("--errors", is_flag=True, help="Only failed matches.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of the full records instead of the table.")
@_friendly
def matches_list(scenario: str | None, errors: bool, as_json: bool) -> None:
    """One line per stored match: agents, seed, status, outcome and its reason (or error)."""
    from arena.results.store import Store

    store = Store(readonly=True)
    name = None if scenario is None else _stored_name(store, scenario)
    recs = store.matches(scenario=name, status="error" if errors else None)
    store.close()
    if as_json:
        click.echo(_json([r.to_dict() for r in recs]))
        return
    rows = [(r.id, r.scenario, r.attacker, r.defender, r.seed, r.rounds, r.status,
             "-" if r.outcome is None else f"{r.outcome:.3f}",
             _error_line(r.error if r.status != "ok" else r.reason)[:70])
            for r in recs]
    click.echo(tabulate(rows, headers=["id", "scenario", "attacker", "defender", "seed", "rounds", "status",
                                       "outcome", "reason / error"]))


@matches.command("show")
@click.argument("match_id", metavar="ID", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="The full record as one JSON object instead of the report.")
@_friendly
def matches_show(match_id: int, as_json: bool) -> None:
    """The report of one stored match (ID as in `arena matches list`).

    The report `arena match` prints: outcome, reason, metrics, every round of
    a multi-round match, and who forfeited and why.
    """
    from arena.results.store import Store

    store = Store(readonly=True)
    try:
        rec, last = store.get(match_id), store.max_id()
    finally:
        store.close()
    if rec is None:
        raise ArenaError(f"no stored match #{match_id} in {_shown(store.path)}",
                         hint="the store is empty: play one with `arena match ATTACKER DEFENDER`" if last is None
                         else f"stored ids go up to {last}; see `arena matches list`")
    click.echo(_json(rec.to_dict()) if as_json else _report(rec))


@matches.command("replay")
@click.argument("match_ids", metavar="[ID]...", nargs=-1, type=click.IntRange(min=1))
@click.option("--from", "source", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Published matches (leaderboards/NAME.matches.jsonl.gz) instead of the store.")
@click.option("--sample", type=click.IntRange(min=1), default=None,
              help="Replay a seeded random sample of this many matches (default: the IDs given, or all).")
@click.option("--sample-seed", type=int, default=0, show_default=True, help="Seed of the sample.")
@click.option("--scenario", "-s", default=None,
              help="Scenario to replay under (default: each match's own, by name; its digest must match).")
@device_option
@_friendly
def matches_replay(match_ids: tuple[int, ...], source: str | None, sample: int | None, sample_seed: int,
                   scenario: str | None, device: str) -> None:
    """Play stored (or published) matches again from scratch and report how far each number drifts.

    Models are re-trained in a throw-away cache; nothing is stored. On the machine and settings
    that played a match the replay is bit for bit (drift 0); elsewhere the drift says how far
    the published numbers move. Exits 1 when any replayed match differs.
    """
    from arena.results.io import read_jsonl_gz
    from arena.run import replay as rp
    from arena.results.store import Store

    if source:
        records = read_jsonl_gz(Path(source))
    else:
        store = Store(readonly=True)
        try:
            records = [r for i in match_ids if (r := store.get(i)) is not None] if match_ids else store.matches()
            missing = sorted(set(match_ids) - {r.id for r in records})
        finally:
            store.close()
        if missing:
            raise ArenaError(f"no stored match #{missing[0]}", hint="see `arena matches list`")
    if source and match_ids:
        records = [r for r in records if r.id in set(match_ids)]
    todo = rp.sample(records, sample, sample_seed)
    if not todo:
        raise ArenaError("no finished matches to replay", hint="play some first, or pass --from FILE")
    _say(f"replaying {len(todo)} match(es) from scratch")
    drifts = rp.replay(todo, scenario, device=device, progress=stderr_progress)
    rows = [(d.match_id, d.attacker, d.defender, d.seed, _fmt(d.stored_outcome), _fmt(d.replayed_outcome),
             "identical" if d.identical else f"{d.max_drift:.4g} ({d.worst})") for d in drifts]
    click.echo(tabulate(rows, headers=["id", "attacker", "defender", "seed", "stored", "replayed", "largest drift"]))
    same = sum(d.identical for d in drifts)
    click.echo(f"{same} of {len(drifts)} replayed bit for bit")
    sys.exit(0 if same == len(drifts) else 1)


@matches.command("import")
@click.argument("files", metavar="FILE...", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--replace", is_flag=True,
              help="Overwrite stored matches with the same key (scenario digest, agents and versions, seed, "
                   "rounds); by default those are kept and the file's copy skipped.")
@_friendly
def matches_import(files: tuple[str, ...], replace: bool) -> None:
    """Add published matches (leaderboards/NAME.matches.jsonl.gz, or `arena matches export` output) to the store,
    and the extra control runs beside them (NAME.controls.jsonl.gz).

    A tournament then skips the imported matches and plays only what is missing, for example
    more seeds beside a published leaderboard's, and `arena leaderboard --write` refits all of them.
    Seeds are independent, so matches of new seeds need none of the imported matches' models.
    """
    from arena.results.io import read_controls_gz, read_jsonl_gz
    from arena.results.store import Store

    is_controls = [f.endswith(".controls.jsonl.gz") for f in files]
    # Each file's matches in the order of their ids in the store that wrote the file (the order it played
    # or imported them), so that this store's ids keep that order and online Elo, replayed in id order,
    # gives the published column; files keep the order they are named in, since two stores' ids are not
    # comparable.
    records = [r for f, c in zip(files, is_controls) if not c
               for r in sorted(read_jsonl_gz(Path(f)), key=lambda r: (r.id is None, r.id or 0))]
    controls = [r for f, c in zip(files, is_controls) if c for r in read_controls_gz(Path(f))]
    store = Store()
    added = kept = 0
    try:
        for c in controls:  # extra control runs (`arena controls`): the file's copy is the run
            store.save_control(c)
        for r in records:
            if not replace and store.stored_id(r) is not None:
                kept += 1
                continue
            store.save(r)  # the store gives it its own id: the file's ids are another store's
            added += 1
    finally:
        store.close()
    _say(f"stored in {_shown(store.path)}")
    click.echo(f"imported {added} match(es)" + (f", kept {kept} already stored (--replace overwrites them)"
                                                  if kept else "")
               + (f", {len(controls)} extra control run(s)" if controls else ""))


@matches.command("rescore")
@click.option("--scenario", "-s", default=None, help="Only this scenario's matches (name or .toml path).")
@click.option("--dry-run", is_flag=True, help="Say what would change; write nothing.")
@_friendly
def matches_rescore(scenario: str | None, dry_run: bool) -> None:
    """Decide stored matches again under the current outcome rule, from their stored metrics.

    For matches stored before a change of the rule (0.2: the model-level false-positive gate moved
    from each match to the scenario's pooled population). Only outcome, reason and gate change; every
    measured number stays. Each match is judged with its scenario's budgets (the scenario file must
    be loadable by the stored name, or given with --scenario).
    """
    from arena.results.store import Store
    from arena.run.rescore import rescore

    store = Store(readonly=dry_run)
    try:
        name = None if scenario is None else _stored_name(store, scenario)
        records = store.matches(scenario=name, status="ok")
        changed = []
        for sc_name in sorted({r.scenario for r in records}):
            budgets = _load(scenario if scenario is not None else sc_name).budgets
            changed += rescore([r for r in records if r.scenario == sc_name], budgets)
        for r in changed:
            _say(f"  #{r.id} {r.attacker} vs {r.defender} seed {r.seed}: {r.outcome:.3f} ({r.reason})")
            if not dry_run:
                store.save(r)
    finally:
        store.close()
    click.echo(f"{'would change' if dry_run else 'changed'} {len(changed)} of {len(records)} match(es)")


@matches.command("export")
@click.option("--scenario", "-s", default=None, help="Only this scenario (name, stored name, or .toml path).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True,
              help="jsonl: one JSON object per match; csv: one row per match, metrics as columns.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default="-",
              help="File (default stdout); a name ending in .gz is written gzip'd.")
@click.option("--seed", "seeds", type=SEED, multiple=True,
              help="Only this seed's matches (repeat for several). With `arena matches import` elsewhere, "
                   "finished seeds of a long tournament carry over to another home, which plays the rest.")
@click.option("--controls", "controls", is_flag=True,
              help="Export the extra control runs of `arena controls` instead of matches; as jsonl to a file, "
                   "name it NAME.controls.jsonl.gz, the name `arena matches import` reads control runs from.")
@_friendly
def matches_export(scenario: str | None, fmt: str, output: str, seeds: tuple[int, ...], controls: bool) -> None:
    """Every stored match with all its metrics (csv: metrics flattened into columns; lists, tables and the
    per-round records as JSON text in their cells, so every cell reads back as plain JSON or a number),
    or with --controls every extra control run."""
    import pandas as pd

    from arena.results.store import Store

    target = None if output == "-" else Path(output)
    if target is not None and not target.parent.is_dir():  # before reading the store: fail fast
        raise ArenaError(f"cannot write {output}: the folder {target.parent} does not exist",
                         hint="create the folder first, or choose another --output")
    if controls and fmt == "jsonl" and target is not None and not output.endswith(".controls.jsonl.gz"):
        # `arena matches import` tells control runs from matches by this name; any other would not read back
        raise ArenaError(f"cannot write control runs to {output}: `arena matches import` reads them only "
                         "from a file named NAME.controls.jsonl.gz",
                         hint=f"use --output {Path(output).with_name(Path(output).name.split('.')[0] + '.controls.jsonl.gz')}")
    store = Store(readonly=True)
    name = None if scenario is None else _stored_name(store, scenario)
    rows = store.controls(scenario=name) if controls else store.matches(scenario=name)
    recs = [r.to_dict() for r in rows if not seeds or r.seed in seeds]
    store.close()
    if fmt == "jsonl":
        text = "".join(_json(r) + "\n" for r in recs)
    else:
        def plain(v: object) -> object:  # never a Python repr: lists and tables as JSON, booleans as JSON
            if isinstance(v, (list, dict)):
                return json.dumps(_finite(v), separators=(",", ":"))
            if isinstance(v, bool):
                return "true" if v else "false"
            return v

        flat = pd.json_normalize([{**{k: v for k, v in r.items() if k != "round_records"},
                                   "round_records": json.dumps(_finite(r["round_records"]), separators=(",", ":"))}
                                  if "round_records" in r else r for r in recs])
        text = flat.apply(lambda col: col.map(plain)).to_csv(index=False)
    if target is None:
        click.echo(text, nl=False)
        return
    try:
        if target.suffix == ".gz":  # compressed, as the files beside a leaderboard (`arena matches import` reads both)
            from arena.results.io import write_gz_text

            write_gz_text(text, target)
        else:
            target.write_text(text)
    except OSError as exc:
        raise ArenaError(f"cannot write {output}: {exc.strerror or exc}") from None
