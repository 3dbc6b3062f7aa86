"""The ``arena`` command line."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from tabulate import tabulate

from arena import __version__
from arena.cache import arena_home
from arena.errors import ArenaError, ScenarioError
from arena.scenario import (
    DEFAULT_SCENARIO,
    MAX_SEED,
    Scenario,
    available_scenarios,
    check_agent_tables,
    load_scenario,
    looks_like_path,
)
from arena.training import stderr_progress

if TYPE_CHECKING:
    from arena.store import Store


def _friendly(fn: Callable) -> Callable:
    """Turn ArenaErrors into a one-paragraph message and exit code 2, never a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ArenaError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="arena")
def main() -> None:
    """Backdoor Arena: backdoor attacks and defenses play each other."""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.4f}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return "-" if v is None else str(v)


def _report(rec) -> str:
    m = rec.metrics
    lines = [
        f"{rec.attacker} vs {rec.defender} on {rec.scenario} (seed {rec.seed}, {rec.rounds} round(s), "
        f"{rec.device}, {rec.duration_s:.1f} s)",
        f"outcome: attacker scores {rec.outcome:.3f}  ->  "
        + ("attacker wins" if rec.outcome > 0.5 else "defender wins" if rec.outcome < 0.5 else "draw"),
        f"reason:  {rec.reason}",
        "",
    ]
    rows = [("attack", k, _fmt(v)) for k, v in m["attack"].items()]
    rows += [("defense", k, _fmt(v)) for k, v in m["defense"].items() if v is not None and k != "category"]
    rows += [("control", k, _fmt(v)) for k, v in m["control"].items()]
    lines.append(tabulate(rows, headers=["side", "metric", "value"], tablefmt="simple"))
    notes = {**m.get("attacker_notes", {}), **{f"defender.{k}": v for k, v in m.get("defender_notes", {}).items()}}
    if notes:
        lines.append("")
        lines.append("notes: " + json.dumps(notes, default=str))
    for name, path in m.get("artifacts", {}).items():
        if path.endswith(".png"):
            lines.append(f"{name.replace('_png', '')}: {arena_home() / path}")
    if rec.rounds > 1:
        lines.append("")
        lines.append(tabulate([(r["round"], f"{r['outcome']:.3f}", r["reason"]) for r in rec.round_records],
                              headers=["round", "outcome", "reason"]))
    return "\n".join(lines)


def _load(scenario: str) -> Scenario:
    """A scenario to play: loaded by name or path, and its agent tables naming installed agents."""
    sc = load_scenario(scenario)
    check_agent_tables(sc)
    return sc


def _stored_name(store: Store, value: str) -> str:
    """The name stored matches carry for a --scenario value: a scenario's name or path, or a stored name.

    A stored name whose file is gone (or was renamed) still selects its
    matches; a value that is neither is an error, not an empty listing.
    """
    try:
        return load_scenario(value).name
    except ScenarioError:
        stored = store.scenario_names()
        if value in stored:
            return value
        if looks_like_path(value) or value in available_scenarios():
            raise  # a file that does not load: its own error says why
        raise ScenarioError(
            f"unknown scenario '{value}': no scenario file of that name and no stored matches under it",
            hint=f"stored scenarios: {', '.join(stored) or '(none)'}; "
                 f"scenario files: {', '.join(available_scenarios()) or '(none)'}",
        ) from None


# Seeds go to torch and numpy generators: keep them in a range both accept everywhere.
SEED = click.IntRange(0, MAX_SEED)

scenario_option = click.option("--scenario", "-s", default=DEFAULT_SCENARIO, show_default=True,
                               help="Scenario name (see `arena scenarios list`) or path to a .toml file.")
device_option = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                             show_default=True, help="Where to train and score.")


@main.command()
@click.argument("attacker")
@click.argument("defender")
@scenario_option
@click.option("--seed", type=SEED, default=None, help="Seed (default: the scenario's first seed).")
@click.option("--rounds", type=click.IntRange(min=1), default=None, help="Rounds (default: the scenario's).")
@device_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the report.")
@click.option("--no-store", is_flag=True, help="Do not record the match in the store.")
@_friendly
def match(attacker: str, defender: str, scenario: str, seed: int | None, rounds: int | None, device: str,
          as_json: bool, no_store: bool) -> None:
    """Play ATTACKER against DEFENDER (names, or path/file.py:Class)."""
    from arena.referee import Referee
    from arena.store import Store, require_writable_home

    sc = _load(scenario)
    require_writable_home()  # the model cache is written even with --no-store
    store = None if no_store else Store()  # a broken store fails now, not after training
    referee = Referee(sc, device=device, progress=None if as_json else stderr_progress)
    result = referee.play(attacker, defender, seed=sc.seeds[0] if seed is None else seed, rounds=rounds)
    if store is not None:
        result.record.id = store.save(result.record)
        store.close()
    if as_json:
        click.echo(json.dumps(result.record.to_dict(), default=str))
    else:
        click.echo(_report(result.record))


@main.command()
@click.argument("attacker")
@scenario_option
@click.option("--seed", type=SEED, default=None, help="Seed (default: the scenario's first seed).")
@click.option("--fractions", default="0.005,0.01,0.02,0.05,0.1", show_default=True,
              help="Comma-separated poison fractions to craft the attack at.")
@device_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@_friendly
def sweep(attacker: str, scenario: str, seed: int | None, fractions: str, device: str, as_json: bool) -> None:
    """Efficacy-specificity AUC of ATTACKER: ASR and CAD over poison fractions (paper Figure 5)."""
    import dataclasses

    from arena.store import Store
    from arena.sweep import run_sweep

    sc = _load(scenario)
    try:
        fr = tuple(float(v) for v in fractions.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"'{fractions}' is not a comma-separated list of numbers", param_hint="--fractions")
    store = Store()  # a broken or read-only store fails now, not after training
    try:
        result = run_sweep(sc, attacker, fr, seed=sc.seeds[0] if seed is None else seed, device=device,
                           progress=None if as_json else stderr_progress)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--fractions")
    store.save_sweep(result)
    store.close()
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(result)))
        return
    rows = [(f"{p.fraction:g}", f"{p.asr:.4f}", f"{100 * p.cad:.2f}", "yes" if p.within_budget else "no")
            for p in result.points]
    click.echo(tabulate(rows, headers=["poison fraction", "ASR", "CAD (points)", "within budget"]))
    auc = "-" if result.auc is None else f"{result.auc:.3f}"
    click.echo(f"efficacy-specificity AUC: {auc}  (normalized CAD over normalized ASR; smaller = stronger leverage)")


def _split(values: tuple[str, ...]) -> list[str] | None:
    out = [v for item in values for v in item.split(",") if v]
    return out or None


@main.command()
@scenario_option
@click.option("--seeds", type=click.IntRange(min=1), default=None,
              help="Play the scenario's first N seeds (default: all of them).")
@click.option("--attackers", "-a", multiple=True, help="Attackers to include (repeat or comma-separate; default all).")
@click.option("--defenders", "-d", multiple=True, help="Defenders to include (repeat or comma-separate; default all).")
@click.option("--rounds", type=click.IntRange(min=1), default=None, help="Rounds per match (default: the scenario's).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Matches played in parallel processes.")
@device_option
@_friendly
def tournament(scenario: str, seeds: int | None, attackers: tuple[str, ...], defenders: tuple[str, ...],
               rounds: int | None, workers: int, device: str) -> None:
    """Play all attacker x defender pairs; stored matches are skipped, so a re-run resumes."""
    from arena import tournament as tour
    from arena.plugins import resolve
    from arena.store import require_writable_home

    sc = _load(scenario)
    att, dfn = _split(attackers), _split(defenders)
    for role, names in (("attacker", att), ("defender", dfn)):
        for n in names or []:
            resolve(role, n)  # unknown names fail here, before any training
    require_writable_home()
    seed_list = list(sc.seeds[:seeds]) if seeds else list(sc.seeds)
    try:
        report = tour.run(sc, attackers=att, defenders=dfn, seeds=seed_list, rounds=rounds, device=device,
                          workers=workers, progress=stderr_progress)
    except KeyboardInterrupt:
        click.echo("interrupted: every finished match is stored; run the same command again to resume", err=True)
        sys.exit(130)
    click.echo(f"played {report.played}, skipped {report.skipped} (already stored), failed {len(report.failed)}")
    for a, d, seed, err in report.failed:
        click.echo(f"  FAILED {a} vs {d} seed {seed}: {err.splitlines()[0] if err else ''}")
    sys.exit(1 if report.failed else 0)


@main.command()
@click.argument("scenario", default=DEFAULT_SCENARIO)
@click.option("--write", is_flag=True, help="Write leaderboards/SCENARIO.md and .csv (SCENARIO: the scenario's name).")
@click.option("--out", type=click.Path(file_okay=False), default="leaderboards", show_default=True,
              help="Folder for --write.")
@click.option("--bootstrap", type=click.IntRange(min=10), default=200, show_default=True,
              help="Bootstrap rounds for the 95% intervals.")
@_friendly
def leaderboard(scenario: str, write: bool, out: str, bootstrap: int) -> None:
    """Bradley-Terry ratings (95% bootstrap CI), Elo, and the outcome matrix of a scenario.

    SCENARIO is a scenario name or .toml path; a name with no scenario file
    but with stored matches rates the matches of its most recent setting.
    """
    from arena.leaderboard import games_from_records, outcome_matrix, render_markdown, write_leaderboard
    from arena.ratings import rate
    from arena.store import Store

    store = Store(readonly=True)
    try:
        sc = load_scenario(scenario)
        name, digest = sc.name, sc.digest
    except ScenarioError:
        latest = None if looks_like_path(scenario) else store.latest_digest(scenario)
        if latest is None or scenario in available_scenarios():
            raise
        # The file is gone or renamed, but its matches are stored: settings are told apart by digest.
        name, digest = scenario, latest
        click.echo(f"note: no scenario file '{scenario}'; rating its stored matches of the most recent "
                   f"setting (digest {digest})", err=True)
    records = store.matches(digest=digest, status="ok")
    store.close()
    if not records:
        raise ArenaError(f"no stored matches for scenario '{name}' (digest {digest})",
                         hint=f"play some first: arena tournament --scenario {scenario}")
    if write:
        md, csv = write_leaderboard(name, records, Path(out), bootstrap_rounds=bootstrap)
        click.echo(f"wrote {md} and {csv}")
    ratings = rate(games_from_records(records), bootstrap_rounds=bootstrap)
    click.echo(render_markdown(name, ratings, outcome_matrix(records), len(records)))


@main.group()
def matches() -> None:
    """List and export stored matches."""


def _first_line(text: str | None) -> str:
    # A match may carry no reason at all (an empty string splits into no lines).
    return ((text or "").splitlines() or [""])[0][:70]


@matches.command("list")
@click.option("--scenario", "-s", default=None, help="Only this scenario (name, stored name, or .toml path).")
@click.option("--errors", is_flag=True, help="Only failed matches.")
@_friendly
def matches_list(scenario: str | None, errors: bool) -> None:
    """One line per stored match: agents, seed, status, outcome and its reason (or error)."""
    from arena.store import Store

    store = Store(readonly=True)
    name = None if scenario is None else _stored_name(store, scenario)
    recs = store.matches(scenario=name, status="error" if errors else None)
    store.close()
    rows = [(r.id, r.scenario, r.attacker, r.defender, r.seed, r.rounds, r.status,
             "-" if r.outcome is None else f"{r.outcome:.3f}", _first_line(r.reason or r.error))
            for r in recs]
    click.echo(tabulate(rows, headers=["id", "scenario", "attacker", "defender", "seed", "rounds", "status",
                                       "outcome", "reason / error"]))


@matches.command("export")
@click.option("--scenario", "-s", default=None, help="Only this scenario (name, stored name, or .toml path).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default="-", help="File (default stdout).")
@_friendly
def matches_export(scenario: str | None, fmt: str, output: str) -> None:
    """Every stored match with all its metrics (csv: metrics flattened into columns)."""
    import pandas as pd

    from arena.store import Store

    target = None if output == "-" else Path(output)
    if target is not None and not target.parent.is_dir():  # before reading the store: fail fast
        raise ArenaError(f"cannot write {output}: the folder {target.parent} does not exist",
                         hint="create the folder first, or choose another --output")
    store = Store(readonly=True)
    name = None if scenario is None else _stored_name(store, scenario)
    recs = [r.to_dict() for r in store.matches(scenario=name)]
    store.close()
    if fmt == "jsonl":
        text = "".join(json.dumps(r, default=str) + "\n" for r in recs)
    else:
        flat = pd.json_normalize([{k: v for k, v in r.items() if k != "round_records"} for r in recs])
        text = flat.to_csv(index=False)
    if target is None:
        click.echo(text, nl=False)
        return
    try:
        target.write_text(text)
    except OSError as exc:
        raise ArenaError(f"cannot write {output}: {exc.strerror or exc}") from None


@main.group()
def scenarios() -> None:
    """List and show scenarios."""


@scenarios.command("list")
@_friendly
def scenarios_list() -> None:
    """Every scenario found by name (ARENA_SCENARIO_PATH, ./scenarios, the built-ins), and its file."""
    rows = []
    for name, path in available_scenarios().items():
        try:
            s = _load(str(path))
            rows.append((name, s.dataset, s.architecture, s.description, str(path)))
        except ArenaError as exc:
            rows.append((name, "-", "-", f"INVALID: {str(exc).splitlines()[0]}", str(path)))
    click.echo(tabulate(rows, headers=["scenario", "dataset", "architecture", "description", "file"]))


@scenarios.command("show")
@click.argument("name", default=DEFAULT_SCENARIO)
@_friendly
def scenarios_show(name: str) -> None:
    """Every setting of scenario NAME (a name or .toml path), with its digest."""
    s = _load(name)
    click.echo(f"# {s.source} (digest {s.digest})")
    click.echo(json.dumps(s.to_dict(), indent=2))


@main.group()
def agents() -> None:
    """List and check installed agents."""


@agents.command("list")
@_friendly
def agents_list() -> None:
    """Installed attackers and defenders (entry points), and the distribution each comes from."""
    from arena.plugins import discover

    rows = []
    for role in ("attacker", "defender"):
        for name, ref in discover(role).items():
            rows.append((role, name, ref.source))
    click.echo(tabulate(rows, headers=["role", "name", "source"]))


def _file_role(spec: str) -> str:
    """A file agent's role follows from its base class (defender unless it subclasses Attacker)."""
    from arena.plugins import _load_file
    from arena.protocol import Attacker

    try:
        cls = _load_file(spec, "agent")
    except ArenaError:
        return "attacker"  # load_class will report the import error
    return "attacker" if isinstance(cls, type) and issubclass(cls, Attacker) else "defender"


@agents.command("check")
@click.argument("specs", nargs=-1)
@_friendly
def agents_check(specs: tuple[str, ...]) -> None:
    """Import and validate agents (all installed ones, or the given names/file specs)."""
    from arena.plugins import discover, is_file_spec, load_class, resolve

    todo: list[tuple[str, str]] = []
    if specs:
        for spec in specs:
            roles = [r for r in ("attacker", "defender") if spec in discover(r)]
            if is_file_spec(spec):
                roles = [_file_role(spec)]
            if not roles:
                raise ArenaError(f"unknown agent '{spec}'", hint="see `arena agents list`")
            todo += [(r, spec) for r in roles]
    else:
        todo = [(r, n) for r in ("attacker", "defender") for n in discover(r)]
    bad = 0
    for role, spec in todo:
        try:
            ref = resolve(role, spec)
            cls = load_class(ref)
            click.echo(f"ok    {role:8s} {spec} ({cls.__module__}.{cls.__name__} v{cls.version})")
        except ArenaError as exc:
            bad += 1
            click.echo(f"FAIL  {role:8s} {spec}: {exc}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
