"""The ``arena`` command line."""

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
from tabulate import tabulate

from arena import __version__
from arena.core.errors import ArenaError, DatasetNotFound, ScenarioError
from arena.config.splits import bind_data
from arena.present.match_text import fmt_value as _fmt
from arena.present.match_text import match_report as _report
from arena.config.scenario import (
    DEFAULT_SCENARIO,
    MAX_SEED,
    Scenario,
    available_scenarios,
    load_scenario,
    looks_like_path,
)
from arena.api.training import stderr_progress
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="arena")
def main() -> None:
    """Backdoor Arena: backdoor attacks and defenses play each other.

    Matches and trained models are kept in the arena home, whatever the
    current folder: $ARENA_HOME, else $XDG_DATA_HOME/backdoor-arena, else
    ~/.local/share/backdoor-arena.
    """


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
    """Play ATTACKER against DEFENDER (names, or path/file.py:Class).

    The match is stored in the arena home (replacing the same match played
    before); stderr says under which id. See it again with `arena matches show ID`.
    """
    from arena.engine.referee import Referee
    from arena.results.store import Store, require_writable_home

    sc = _load(scenario)
    require_writable_home()  # the model cache is written even with --no-store
    store = None if no_store else Store()  # a broken store fails now, not after training
    referee = Referee(sc, device=device, progress=stderr_progress)
    # An agent that prints must not break the report, least of all --json's one object.
    with _stdout_to_stderr():
        result = referee.play(attacker, defender, seed=sc.seeds[0] if seed is None else seed, rounds=rounds)
    record = result.record
    if store is not None:
        replaced = store.stored_id(record)  # before saving: afterwards the row is this match's
        if replaced is not None:
            _say(f"note: this match was stored before; it replaces stored match #{replaced}")
        record.id = store.save(record)
        store.close()
        _say(f"stored as match #{record.id} in {_shown(store.path)}")
    else:
        _say("not stored (--no-store)")
    click.echo(_json(record.to_dict()) if as_json else _report(record))


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

    from arena.results.store import Store
    from arena.run.sweep import run_sweep

    sc = _load(scenario)
    try:
        fr = tuple(float(v) for v in fractions.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"'{fractions}' is not a comma-separated list of numbers", param_hint="--fractions")
    store = Store()  # a broken or read-only store fails now, not after training
    try:
        result = run_sweep(sc, attacker, fr, seed=sc.seeds[0] if seed is None else seed, device=device,
                           progress=stderr_progress)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--fractions")
    store.save_sweep(result)
    store.close()
    _say(f"stored the sweep of {attacker} in {_shown(store.path)}")
    if as_json:
        click.echo(_json(dataclasses.asdict(result)))
        return
    rows = [(f"{p.fraction:g}", f"{p.asr:.4f}", f"{100 * p.cad:.2f}", "yes" if p.within_budget else "no")
            for p in result.points]
    click.echo(tabulate(rows, headers=["poison fraction", "ASR", "CAD (points)", "within budget"]))
    auc = "-" if result.auc is None else f"{result.auc:.3f}"
    click.echo(f"efficacy-specificity AUC: {auc}  (normalized CAD over normalized ASR; smaller = stronger leverage)")


def _split(values: tuple[str, ...]) -> list[str] | None:
    out = [v for item in values for v in item.split(",") if v]
    return out or None


SHIPPED_MATCHES = Path(__file__).resolve().parents[2] / "leaderboards"  # a checkout's published matches


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@scenario_option
@click.option("--seed", type=SEED, default=None, help="Seed of the benign models (default: the scenario's first).")
@click.option("--defenders", "-d", multiple=True,
              help="Inspectors to run (repeat or comma-separate; default every model inspector).")
@click.option("--trigger", type=click.Path(dir_okay=False, exists=True), default=None,
              help="An .npz (mask 1xHxW, pattern CxHxW) the model is suspected to answer to.")
@click.option("--population", type=click.IntRange(1, 100), default=None,
              help="Benign models per inspector (default: the scenario's controls.population); "
                   "n floors each p-value at 1/(n+1).")
@click.option("--calibration", "calibration", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="Played matches (.matches.jsonl.gz) to calibrate the probability on, besides the store's "
                   "(default: also leaderboards/SCENARIO.matches.jsonl.gz where it exists).")
@click.option("--html", "html_dir", type=click.Path(file_okay=False), default=None,
              help="Also write the scan as a page with the recovered triggers: DIR/index.html.")
@device_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the report.")
@_friendly
def scan(model: str, scenario: str, seed: int | None, defenders: tuple[str, ...], trigger: str | None,
         population: int | None, calibration: tuple[str, ...], html_dir: str | None, device: str,
         as_json: bool) -> None:
    """Is MODEL (a state dict for the scenario's architecture) backdoored?

    Plays it, inside the agent sandbox, against every model inspector, each
    calibrated on the scenario's benign models (p-values), then combines them:
    Fisher's method, and a probability fitted on the scenario's played trojans
    and benign models where there are any. Nothing is stored but the cache.
    """
    from arena.present.scan_text import scan_text
    from arena.results.store import Store, require_writable_home
    from arena.run.scan import calibration_matches, scan as run_scan

    sc = bind_data(_load(scenario))
    require_writable_home()
    files = [Path(f) for f in calibration]
    shipped = SHIPPED_MATCHES / f"{sc.name}.matches.jsonl.gz"
    if not files and shipped.is_file():
        files.append(shipped)
    store = Store()
    try:
        records, source = calibration_matches(sc, files, store)
    finally:
        store.close()
    with _stdout_to_stderr():
        report = run_scan(sc, Path(model), seed=seed, defenders=_split(defenders),
                          trigger=Path(trigger) if trigger else None,
                          population=population, calibration_records=records, calibration_source=source,
                          device=device, progress=stderr_progress)
    if html_dir:
        from arena.present.scan_page import write_scan_page

        _say(f"scan page written to {write_scan_page(report, Path(html_dir))}")
    click.echo(_json(report.to_dict()) if as_json else scan_text(report))


@main.command()
@scenario_option
@click.option("--seeds", type=click.IntRange(min=1), default=None,
              help="Play the scenario's first N seeds (default: all of them).")
@click.option("--development", is_flag=True,
              help="Play the scenario's development seeds instead of its test seeds (for tuning and timing; "
                   "published tables use the test seeds).")
@click.option("--attackers", "-a", multiple=True, help="Attackers to include (repeat or comma-separate; default all).")
@click.option("--defenders", "-d", multiple=True, help="Defenders to include (repeat or comma-separate; default all).")
@click.option("--rounds", type=click.IntRange(min=1), default=None, help="Rounds per match (default: the scenario's).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Matches played in parallel processes (local backend).")
@device_option
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where matches run: here (local), or as tasks on a Ray cluster (ray; "
                   "pip install 'backdoor-arena[ray]').")
@click.option("--address", default=None,
              help="Ray cluster to use (HOST:6379 as `ray start --head` prints it, or auto); "
                   "default: $RAY_ADDRESS, else Ray started on this machine. Needs --backend ray.")
@click.option("--gpus-per-match", type=click.FloatRange(min=0), default=None,
              help="GPUs each match reserves on Ray; a fraction shares one GPU (0.25: four matches). "
                   "Default: 1 with --device cuda, else 0. Needs --backend ray.")
@click.option("--cpus-per-match", type=click.FloatRange(min=0, min_open=True), default=None,
              help="CPUs each match reserves on Ray (default: its thread count, ARENA_THREADS or 1). "
                   "Needs --backend ray.")
@_friendly
def tournament(scenario: str, seeds: int | None, development: bool, attackers: tuple[str, ...], defenders: tuple[str, ...],
               rounds: int | None, workers: int, device: str, backend: str, address: str | None,
               gpus_per_match: float | None, cpus_per_match: float | None) -> None:
    """Play all attacker x defender pairs; stored matches are skipped, so a re-run resumes.

    With --backend ray each match is a Ray task; this process plans, shows progress and is the
    only one that writes the store. Every node must see ARENA_HOME at the same path (README:
    "Tournaments on a Ray cluster").
    """
    from arena.run import tournament as tour
    from arena.plugins import resolve
    from arena.results.store import Store

    ray_options = None
    if backend == "ray":
        if workers != 1:
            raise ArenaError("--workers is for the local backend; on Ray, as many matches run at once as the "
                             "cluster's resources allow",
                             hint="leave --workers out, and size each match with --cpus-per-match / "
                                  "--gpus-per-match")
        from arena.run.backends.ray import RayOptions

        ray_options = RayOptions(address=address, cpus_per_match=cpus_per_match, gpus_per_match=gpus_per_match)
    else:
        given = [flag for flag, value in (("--address", address), ("--gpus-per-match", gpus_per_match),
                                          ("--cpus-per-match", cpus_per_match)) if value is not None]
        if given:
            raise ArenaError(f"{', '.join(given)} only apply to Ray tournaments",
                             hint="add --backend ray (or leave them out to play here)")
    sc = _load(scenario)
    att, dfn = _split(attackers), _split(defenders)
    for role, names in (("attacker", att), ("defender", dfn)):
        for n in names or []:
            resolve(role, n)  # unknown names fail here, before any training
    store = Store()  # a read-only home or a broken store fails now, before any training
    pool = list(sc.development_seeds if development else sc.seeds)
    if not pool:
        raise ArenaError(f"scenario '{sc.name}' lists no {'development' if development else 'test'} seeds",
                         hint="add them to its .toml file (development_seeds = [0, 1, 2])")
    seed_list = pool[:seeds] if seeds else pool

    try:  # a SIGTERM stops the tournament as Ctrl-C does (``_friendly``)
        report = tour.run(sc, attackers=att, defenders=dfn, seeds=seed_list, rounds=rounds, device=device,
                          workers=workers, store=store, progress=stderr_progress, backend=backend,
                          ray_options=ray_options)
    except KeyboardInterrupt:
        _say(f"interrupted: every finished match is stored in {_shown(store.path)}; "
             "run the same command again to resume")
        sys.exit(130)
    finally:
        store.close()
    stored = report.played + len(report.failed)
    _say(f"stored {stored} match(es) in {_shown(store.path)} (see `arena matches list`)")
    click.echo(f"played {report.played}, skipped {report.skipped} (already stored), failed {len(report.failed)}")
    for a, d, seed, err in report.failed:
        click.echo(f"  FAILED {a} vs {d} seed {seed}: {_error_line(err)}")
    sys.exit(1 if report.failed else 0)


@main.command()
@click.argument("scenario", default=DEFAULT_SCENARIO)
@click.option("--write", is_flag=True, help="Write leaderboards/SCENARIO.md and .csv (SCENARIO: the scenario's name).")
@click.option("--out", type=click.Path(file_okay=False), default="leaderboards", show_default=True,
              help="Folder for --write.")
@click.option("--bootstrap", type=click.IntRange(min=10), default=200, show_default=True,
              help="Bootstrap rounds for the 95% intervals over matches (one seed, or --unit match).")
@click.option("--unit", type=click.Choice(["seed", "match"]), default="seed", show_default=True,
              help="Unit of the 95% intervals: seeds (each fitted on its own, Student's t over them; the "
                   "matches of one seed share trojans and control runs) or single matches (a bootstrap; "
                   "narrower, understates the uncertainty).")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object (ratings with intervals, ordering claims, usability, equilibrium) instead "
                   "of the Markdown.")
@_friendly
def leaderboard(scenario: str, write: bool, out: str, bootstrap: int, unit: str, as_json: bool) -> None:
    """Bradley-Terry ratings (95% CI over seeds), Elo, usability and the outcome matrix of a scenario.

    SCENARIO is a scenario name or .toml path; a name with no scenario file
    but with stored matches rates the matches of its most recent setting.
    """
    from arena.results.leaderboard import render_leaderboard, write_leaderboard
    from arena.results.store import Store

    store = Store(readonly=True)
    name, digest, _ = _setting(store, scenario, "rating")
    records = store.matches(digest=digest, status="ok")
    store.close()
    if not records:
        raise ArenaError(f"no stored matches for scenario '{name}' (digest {digest})",
                         hint=f"play some first: arena tournament --scenario {scenario}")
    try:  # the scenario's own model-level budget, when its file is at hand
        budget = _load(scenario).budgets.model_fpr
    except ArenaError:
        from arena.results.leaderboard import DEFAULT_MODEL_FPR as budget
    if write:
        from arena.results.io import write_jsonl_gz

        # Published tables stand on matches whose agents ran under the full sandbox (README, "Agents run
        # apart"). Matches stored before levels were recorded (0.1.x: built-in agents only) carry none.
        published = [r for r in records if (r.metrics or {}).get("sandbox") in (None, "full")]
        if len(published) < len(records):
            levels = sorted({str(r.metrics.get("sandbox")) for r in records} - {"None", "full"})
            _say(f"note: {len(records) - len(published)} match(es) played under sandbox level {', '.join(levels)} "
                 "are left out: a written leaderboard publishes 'full' only")
            records = published
            if not records:
                raise ArenaError("no match of this scenario was played under the full sandbox: nothing to publish",
                                 hint="play on a Linux 6.12+ machine with Landlock (README, sandbox levels)")
        md, csv = write_leaderboard(name, records, Path(out), bootstrap_rounds=bootstrap, unit=unit,
                                    model_fpr=budget)
        # The matches behind it, so anyone can refit it or replay a sample (`arena matches replay --from`).
        jsonl = write_jsonl_gz(records, Path(md).with_name(f"{name}.matches.jsonl.gz"))
        _say(f"wrote {_shown(Path(md))}, {_shown(Path(csv))} and {_shown(jsonl)}")
    if as_json:
        from arena.results.leaderboard import leaderboard_data

        click.echo(_json(leaderboard_data(name, records, bootstrap_rounds=bootstrap, unit=unit, model_fpr=budget)))
        return
    md_text, _ = render_leaderboard(name, records, bootstrap_rounds=bootstrap, unit=unit, model_fpr=budget)
    click.echo(md_text)


@main.command()
@click.argument("scenario", default=DEFAULT_SCENARIO)
@click.option("--variant", "variants", multiple=True,
              help="A scenario that changes one knob of SCENARIO (trigger alpha 0.8, trigger size 1, trigger shape "
                   "random, attack.mixing, attack.from_scratch): its matches test the remarks that compare two "
                   "settings. Name or .toml path; repeat for several.")
@click.option("--matches", "sources", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="Published matches (leaderboards/NAME.matches.jsonl.gz) instead of the store; repeat to add the "
                   "variants' files.")
@click.option("--development", is_flag=True,
              help="Also use matches on the scenario's development seeds (rules were tuned on them; the page says so).")
@click.option("--out", type=click.Path(dir_okay=False), default="docs/paper.md", show_default=True,
              help="Markdown file to write.")
@_friendly
def paper(scenario: str, variants: tuple[str, ...], sources: tuple[str, ...], development: bool, out: str) -> None:
    """Check the TrojanZoo paper's Remarks 1-16 and its Tables 5, 8 and 11 against stored matches.

    Writes one Markdown page (per claim: the paper's numbers, our matched
    condition, our number with its 95% interval over seeds, and a verdict)
    and prints its path. Claims whose matches are missing are marked untested,
    naming what to play.
    """
    from arena.results import paper as pp
    from arena.results.store import Store

    target = Path(out)
    if not target.parent.is_dir():  # before reading anything: fail fast
        raise ArenaError(f"cannot write {out}: the folder {target.parent} does not exist",
                         hint="create the folder first, or choose another --out")
    var_sc = [load_scenario(v) for v in variants]  # a variant's knobs come from its file
    pool = []
    if sources:
        from arena.results.io import read_jsonl_gz

        pool = [r for src in sources for r in read_jsonl_gz(Path(src))]
        try:
            sc: Scenario | None = load_scenario(scenario)
            name = sc.name
        except ScenarioError:
            if looks_like_path(scenario):
                raise
            sc, name = None, scenario
        main_recs = [r for r in pool if (r.scenario_digest == sc.digest if sc else r.scenario == name)]
        var_recs = [[r for r in pool if r.scenario_digest == v.digest] for v in var_sc]
        where = ", ".join(f"`{Path(s).name}`" for s in sources)
    else:
        store = Store(readonly=True)
        try:
            name, digest, sc = _setting(store, scenario, "checking")
            main_recs = store.matches(digest=digest)
            var_recs = [store.matches(digest=v.digest) for v in var_sc]
        finally:
            store.close()
        where = "the match store"
    if not any(r.status == "ok" for r in main_recs):
        other = sum(r.scenario == name for r in pool) if sources else 0
        _say(f"note: no finished matches of '{name}'" + (f" of this setting ({other} in the files were played "
             "under another digest)" if other else "") + ": every claim that needs them is marked untested "
             f"(play them with `arena tournament --scenario {scenario}`)")
    command = " ".join(["arena paper", scenario] + [f"--variant {v}" for v in variants]
                       + [f"--matches {s}" for s in sources] + (["--development"] if development else [])
                       + ([f"--out {out}"] if out != "docs/paper.md" else []))
    text = pp.render(main_recs, name, scenario=sc, variants=list(zip(var_sc, var_recs)), development=development,
                     command=command, source=where, variant_specs=variants)
    try:
        target.write_text(text)
    except OSError as exc:
        raise ArenaError(f"cannot write {out}: {exc.strerror or exc}", hint="choose another --out") from None
    click.echo(_shown(target))


@main.command()
@click.argument("scenario", default=DEFAULT_SCENARIO)
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder to write (default: <arena home>/reports/SCENARIO).")
@click.option("--seed", type=SEED, default=None,
              help="Seed of the galleries and front-page recovered triggers (default: the lowest stored).")
@click.option("--galleries/--no-galleries", default=True, show_default=True,
              help="Draw each attacker's gallery (its trojan comes from the cache; crafted once if missing).")
@click.option("--inputs", type=click.IntRange(1, 10), default=4, show_default=True,
              help="Test inputs per gallery.")
@click.option("--bootstrap", type=click.IntRange(min=10), default=200, show_default=True,
              help="Bootstrap rounds for the 95% intervals.")
@click.option("--unit", type=click.Choice(["seed", "match"]), default="seed", show_default=True,
              help="Bootstrap unit for the 95% intervals (as for `arena leaderboard`).")
@device_option
@_friendly
def report(scenario: str, out: str | None, seed: int | None, galleries: bool, inputs: int, bootstrap: int,
           unit: str, device: str) -> None:
    """Write a static HTML report of a scenario's stored matches and print where.

    Ratings with intervals, the attacker x defender heatmap (each cell links
    to its match's page), ASR against CAD, a gallery per attacker (clean,
    stamped, difference, magnified) and the triggers inspectors recovered.
    The folder is self-contained: open index.html in any browser.
    """
    from arena.present.report import default_folder, write_report
    from arena.results.store import Store

    store = Store(readonly=True)
    try:
        name, digest, sc = _setting(store, scenario, "reporting")
        records = store.matches(digest=digest)
    finally:
        store.close()
    if not any(r.status == "ok" for r in records):
        from arena.present.report import ReportError

        raise ReportError(f"no stored matches for scenario '{name}': run `arena tournament --scenario {scenario}` "
                          "first" + (f" ({len(records)} stored match(es) failed)" if records else ""),
                          hint="see what is stored with `arena matches list`")
    folder = Path(out) if out else default_folder(name)
    if galleries and sc is not None:
        from arena.results.store import require_writable_home

        require_writable_home()  # a trojan missing from the cache is crafted and cached
    with _stdout_to_stderr():
        summary = write_report(name, digest, records, folder, scenario=sc, seed=seed, galleries=galleries,
                               inputs=inputs, device=device, bootstrap_rounds=bootstrap, unit=unit,
                               progress=stderr_progress)
    for note in summary.notes:
        _say(f"note: {note}")
    _say(f"report of {summary.matches} match(es), {len(summary.galleries)} attacker galleries, "
         f"{summary.recovered} recovered trigger(s)")
    click.echo(_shown(summary.index))


@main.group()
def trigger() -> None:
    """Pictures of an attacker's trigger."""


@trigger.command("show")
@click.argument("attacker")
@scenario_option
@click.option("--seed", type=SEED, default=None, help="Seed (default: the scenario's first seed).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="PNG file to write (default: <arena home>/triggers/SCENARIO/ATTACKER-seedN.png).")
@click.option("--inputs", type=click.IntRange(1, 10), default=4, show_default=True,
              help="Test inputs to show (one per class).")
@device_option
@_friendly
def trigger_show(attacker: str, scenario: str, seed: int | None, out: str | None, inputs: int, device: str) -> None:
    """Save the gallery of ATTACKER as a PNG and print its path.

    For a few test inputs: clean, stamped with the attacker's trigger, their
    difference, and the difference magnified. The trojan comes from the cache
    when a match crafted it before; otherwise it is crafted (and cached) now.
    """
    from arena.present.gallery import collect_gallery, save_gallery
    from arena.plugins import resolve
    from arena.engine.referee import Referee
    from arena.present.report import ReportError, slug
    from arena.results.store import require_writable_home

    sc = _load(scenario)
    resolve("attacker", attacker)  # an unknown name fails here, before any training
    if out is not None and not out.lower().endswith(".png"):
        raise click.BadParameter(f"'{out}' does not end in .png (the gallery is written as a PNG)",
                                 param_hint="--out")
    seed = sc.seeds[0] if seed is None else seed
    home = require_writable_home()  # the trojan is cached there
    target = Path(out) if out else home / "triggers" / slug(sc.name) / f"{slug(attacker)}-seed{seed}.png"
    referee = Referee(sc, device=device, progress=stderr_progress)
    with _stdout_to_stderr():  # craft() pins threads as a match does: the trojan a match would cache
        g = collect_gallery(referee, attacker, seed, inputs)
    try:
        save_gallery(g, target)
    except OSError as exc:
        raise ReportError(f"cannot write {target}: {exc.strerror or exc}",
                          hint="choose another file with --out") from None
    click.echo(_shown(target))


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
    """Add published matches (leaderboards/NAME.matches.jsonl.gz, or `arena matches export` output) to the store.

    A tournament then skips the imported matches and plays only what is missing, for example
    more seeds beside a published leaderboard's, and `arena leaderboard --write` refits all of them.
    Seeds are independent, so matches of new seeds need none of the imported matches' models.
    """
    from arena.results.io import read_jsonl_gz
    from arena.results.store import Store

    records = [r for f in files for r in read_jsonl_gz(Path(f))]
    store = Store()
    added = kept = 0
    try:
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
                                                  if kept else ""))


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
@_friendly
def matches_export(scenario: str | None, fmt: str, output: str) -> None:
    """Every stored match with all its metrics (csv: metrics flattened into columns)."""
    import pandas as pd

    from arena.results.store import Store

    target = None if output == "-" else Path(output)
    if target is not None and not target.parent.is_dir():  # before reading the store: fail fast
        raise ArenaError(f"cannot write {output}: the folder {target.parent} does not exist",
                         hint="create the folder first, or choose another --output")
    store = Store(readonly=True)
    name = None if scenario is None else _stored_name(store, scenario)
    recs = [r.to_dict() for r in store.matches(scenario=name)]
    store.close()
    if fmt == "jsonl":
        text = "".join(_json(r) + "\n" for r in recs)
    else:
        flat = pd.json_normalize([{k: v for k, v in r.items() if k != "round_records"} for r in recs])
        text = flat.to_csv(index=False)
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
