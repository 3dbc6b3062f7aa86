"""Commands that list what is installed: scenarios, agents."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from tabulate import tabulate

from arena.core.errors import ArenaError
from arena.config.scenario import (
    DEFAULT_SCENARIO,
    available_scenarios,
)
from arena.api.training import stderr_progress
from arena.cli.common import (_friendly, _load)
from arena.cli.group import main


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
    from arena.api.protocol import Attacker

    try:
        cls = _load_file(spec, "agent")
    except ArenaError:
        return "attacker"  # load_class will report the import error
    return "attacker" if isinstance(cls, type) and issubclass(cls, Attacker) else "defender"


# The micro scenario of `agents check --smoke`: big enough to exercise every call an agent answers
# (craft, deploy, predict, score, the control run), small enough to take seconds per agent on a CPU.
# Its benign model lands in the normal cache, so it is trained once.
SMOKE_SCENARIO: dict[str, Any] = {
    "name": "smoke",
    "description": "agents check --smoke: a micro Fashion-MNIST match",
    "dataset": "fashion-mnist",
    "architecture": "small-cnn",
    "device": "cpu",
    "seeds": [0],
    # One epoch in small batches: enough steps for a model that learned something, in seconds.
    "training": {"epochs": 1, "batch_size": 32, "retrain_epochs": 1, "retrain_lr": 0.03},
    "data": {"train_limit": 2000, "test_limit": 500},
    "attack": {"poison_fraction": 0.1},  # a real backdoor in one short epoch, for defenders to face
    "budgets": {"craft_seconds": 300.0, "deploy_seconds": 300.0},
    "scoring": {"inputs": 100},
    "controls": {"population": 1},  # a smoke check needs one benign model, not a population
}
# Who each side plays in a smoke match: the do-nothing defender, the classic attack.
SMOKE_OPPONENT = {"attacker": "none", "defender": "badnet"}


def _smoke_line(referee: Any, role: str, spec: str) -> tuple[bool, str]:
    """Play ``spec`` once on the smoke scenario; ok, and what to print. A forfeit of its side fails it."""
    other = SMOKE_OPPONENT[role]
    attacker, defender = (spec, other) if role == "attacker" else (other, spec)
    try:
        rec = referee.play(attacker, defender, seed=0).record
    except ArenaError as exc:
        return False, f"FAIL  {role:8s} {spec}: {str(exc).splitlines()[0]}"
    forfeit = rec.metrics.get("forfeit", {})
    if forfeit.get("side") == role:
        return False, f"FAIL  {role:8s} {spec}: {forfeit.get('kind', 'failed')}: {forfeit.get('message', '')}"
    return True, (f"ok    {role:8s} {spec} (outcome {rec.outcome:.3f} against {other}, "
                  f"{rec.duration_s:.1f} s: {rec.reason})")


@agents.command("check")
@click.argument("specs", nargs=-1)
@click.option("--smoke", is_flag=True,
              help="Also play each agent in a micro match on the CPU (an attacker against 'none', a defender "
                   "against 'badnet'): it fails if it raises, returns garbage or overruns a limit.")
@_friendly
def agents_check(specs: tuple[str, ...], smoke: bool) -> None:
    """Import and validate agents (all installed ones, or the given names/file specs).

    With --smoke each agent that imports also plays one micro match; exit
    code 1 when any agent fails.
    """
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
    loaded: list[tuple[str, str]] = []
    for role, spec in todo:
        try:
            ref = resolve(role, spec)
            cls = load_class(ref)
            click.echo(f"ok    {role:8s} {spec} ({cls.__module__}.{cls.__name__} v{cls.version})")
            loaded.append((role, spec))
        except ArenaError as exc:
            bad += 1
            click.echo(f"FAIL  {role:8s} {spec}: {exc}")
    if smoke and loaded:
        from arena.engine.referee import Referee
        from arena.config.scenario import scenario_from_dict
        from arena.results.store import require_writable_home

        require_writable_home()  # the smoke scenario's models are cached there
        referee = Referee(scenario_from_dict(SMOKE_SCENARIO, where="<agents check --smoke>"), device="cpu",
                          progress=stderr_progress)
        click.echo("smoke matches (micro Fashion-MNIST scenario, CPU):")
        for role, spec in loaded:
            ok, line = _smoke_line(referee, role, spec)
            bad += 0 if ok else 1
            click.echo(line)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
