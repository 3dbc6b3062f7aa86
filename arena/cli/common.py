"""What every command shares: the error boundary, output helpers, scenario loading and options."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
from collections.abc import Callable, Iterator
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from arena.core.errors import ArenaError, DatasetNotFound, ScenarioError
from arena.config.splits import bind_data
from arena.config.scenario import (
    DEFAULT_SCENARIO,
    MAX_SEED,
    Scenario,
    available_scenarios,
    load_scenario,
    looks_like_path,
)
from arena.plugins import check_agent_tables

if TYPE_CHECKING:
    from arena.results.store import Store


def _friendly(fn: Callable) -> Callable:
    """The commands' one error boundary: an ArenaError becomes a one-paragraph message and exit code
    2, never a traceback; Ctrl-C or a SIGTERM (a scheduler's, `kill`'s) a line saying so and exit
    code 130, never a silent end."""

    def terminated(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        previous = signal.signal(signal.SIGTERM, terminated)
        try:
            return fn(*args, **kwargs)
        except ArenaError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: the unfinished work was not stored", err=True)
            sys.exit(130)
        finally:
            signal.signal(signal.SIGTERM, previous)

    return wrapper


def _shown(path: Path) -> str:
    """A path as the user should read it: absolute, since ARENA_HOME may be relative."""
    return str(path.absolute())


def _say(msg: str) -> None:
    """A note on stderr: stdout carries only the command's result (a report, a table, JSON)."""
    click.echo(msg, err=True)


_TRACEBACK = "Traceback (most recent call last):"


def _error_line(text: str | None) -> str:
    """The line of a stored error that says what went wrong ("Type: message").

    Errors are stored as "Type: message" followed by the traceback; a store
    written by an older arena may hold a bare traceback, whose exception line
    is its last unindented line.
    """
    lines = [ln.rstrip() for ln in (text or "").splitlines() if ln.strip()]
    if not lines:
        return ""
    if not lines[0].endswith(_TRACEBACK):
        return lines[0]
    tail = [ln for ln in lines[1:] if not ln[0].isspace() and not ln.endswith(_TRACEBACK)]
    return tail[-1] if tail else lines[0]


def _finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None: JSON has no such numbers."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _json(obj: Any) -> str:
    """One strict JSON document (no NaN tokens, which most JSON parsers reject)."""
    return json.dumps(_finite(obj), default=str, allow_nan=False)


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send everything written to stdout while agents play to stderr, so stdout holds only the result.

    ``redirect_stdout`` catches Python prints in this process; the file
    descriptor is redirected too (when stdout is fd 1), for C code and for
    agent processes started meanwhile, which inherit this process's fd 1.
    """
    saved = None
    try:
        if sys.stdout.fileno() == 1:
            sys.stdout.flush()
            saved = os.dup(1)
            os.dup2(2, 1)
    except (AttributeError, OSError, ValueError):  # not a real file (a test runner's buffer): Python-level only
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


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


def _setting(store: Store, scenario: str, doing: str) -> tuple[str, str, Scenario | None]:
    """The scenario name and digest whose stored matches a command reads, and the scenario when its file loads.

    A name with no scenario file but with stored matches means its most recent
    setting (settings are told apart by digest); the note says so.
    """
    try:
        sc = load_scenario(scenario)
        try:  # matches played on other data under the dataset's name carry that data's digest
            sc = bind_data(sc, write=False)
        except DatasetNotFound:  # no data here: the matches of the standard data, e.g. shipped ones
            pass
        return sc.name, sc.digest, sc
    except ScenarioError:
        latest = None if looks_like_path(scenario) else store.latest_digest(scenario)
        if latest is None or scenario in available_scenarios():
            raise
        # The file is gone or renamed, but its matches are stored.
        _say(f"note: no scenario file '{scenario}'; {doing} its stored matches of the most recent "
             f"setting (digest {latest})")
        return scenario, latest, None


# Seeds go to torch and numpy generators: keep them in a range both accept everywhere.
SEED = click.IntRange(0, MAX_SEED)

scenario_option = click.option("--scenario", "-s", default=DEFAULT_SCENARIO, show_default=True,
                               help="Scenario name (see `arena scenarios list`) or path to a .toml file.")
device_option = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                             show_default=True, help="Where to train and score.")


def _split(values: tuple[str, ...]) -> list[str] | None:
    out = [v for item in values for v in item.split(",") if v]
    return out or None


SHIPPED_MATCHES = Path(__file__).resolve().parents[2] / "leaderboards"  # a checkout's published matches
