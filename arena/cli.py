"""The ``arena`` command line."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click
from tabulate import tabulate

from arena.errors import ArenaError
from arena.scenario import DEFAULT_SCENARIO, available_scenarios, load_scenario
from arena.training import stderr_progress


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
    if rec.rounds > 1:
        lines.append("")
        lines.append(tabulate([(r["round"], f"{r['outcome']:.3f}", r["reason"]) for r in rec.round_records],
                              headers=["round", "outcome", "reason"]))
    return "\n".join(lines)


scenario_option = click.option("--scenario", "-s", default=DEFAULT_SCENARIO, show_default=True,
                               help="Scenario name (scenarios/NAME.toml) or path to a .toml file.")
device_option = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                             show_default=True, help="Where to train and score.")


@main.command()
@click.argument("attacker")
@click.argument("defender")
@scenario_option
@click.option("--seed", type=int, default=None, help="Seed (default: the scenario's first seed).")
@click.option("--rounds", type=click.IntRange(min=1), default=None, help="Rounds (default: the scenario's).")
@device_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the report.")
@click.option("--no-store", is_flag=True, help="Do not record the match in the store.")
@_friendly
def match(attacker: str, defender: str, scenario: str, seed: int | None, rounds: int | None, device: str,
          as_json: bool, no_store: bool) -> None:
    """Play ATTACKER against DEFENDER (names, or path/file.py:Class)."""
    from arena.referee import Referee
    from arena.store import Store

    sc = load_scenario(scenario)
    referee = Referee(sc, device=device, progress=None if as_json else stderr_progress)
    result = referee.play(attacker, defender, seed=sc.seeds[0] if seed is None else seed, rounds=rounds)
    if not no_store:
        store = Store()
        result.record.id = store.save(result.record)
        store.close()
    if as_json:
        click.echo(json.dumps(result.record.to_dict(), default=str))
    else:
        click.echo(_report(result.record))


@main.group()
def scenarios() -> None:
    """List and show scenarios."""


@scenarios.command("list")
@_friendly
def scenarios_list() -> None:
    rows = []
    for name, path in available_scenarios().items():
        try:
            s = load_scenario(str(path))
            rows.append((name, s.dataset, s.architecture, s.description, str(path)))
        except ArenaError as exc:
            rows.append((name, "-", "-", f"INVALID: {str(exc).splitlines()[0]}", str(path)))
    click.echo(tabulate(rows, headers=["scenario", "dataset", "architecture", "description", "file"]))


@scenarios.command("show")
@click.argument("name", default=DEFAULT_SCENARIO)
@_friendly
def scenarios_show(name: str) -> None:
    s = load_scenario(name)
    click.echo(f"# {s.source} (digest {s.digest})")
    click.echo(json.dumps(s.to_dict(), indent=2))


@main.group()
def agents() -> None:
    """List and check installed agents."""


@agents.command("list")
@_friendly
def agents_list() -> None:
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
