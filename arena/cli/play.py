"""Commands that play: match, sweep, scan, tournament, controls."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from tabulate import tabulate

from arena.core.errors import ArenaError
from arena.config.splits import bind_data
from arena.present.match_text import match_report as _report
from arena.api.training import stderr_progress
from arena.cli.common import (_friendly, _shown, _say, _error_line, _json, _stdout_to_stderr, _load, SEED,
                              scenario_option, device_option, _split, SHIPPED_MATCHES)
from arena.cli.group import main


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


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@scenario_option
@click.option("--seed", type=SEED, default=None, help="Seed of the benign models (default: the scenario's first).")
@click.option("--defenders", "-d", multiple=True,
              help="Defenders to run (repeat or comma-separate; default every model inspector, and with "
                   "--trigger every input filter and mitigation too).")
@click.option("--trigger", type=click.Path(dir_okay=False, exists=True), default=None,
              help="An .npz (mask 1xHxW, pattern CxHxW) the model is suspected to answer to: its ASR, and the "
                   "input filters and mitigations play the model with it.")
@click.option("--target", type=click.IntRange(min=0), default=None,
              help="The class the trigger is suspected to send inputs to, which ASRs are measured towards "
                   "(default: the scenario's attack.target_class).")
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
         target: int | None, population: int | None, calibration: tuple[str, ...], html_dir: str | None, device: str,
         as_json: bool) -> None:
    """Is MODEL (a state dict for the scenario's architecture, or a torch.export .pt2) backdoored?

    Plays it, inside the agent sandbox, against every model inspector, each
    calibrated on the scenario's benign models (p-values), then combines them:
    Fisher's method, and a probability fitted on the scenario's played trojans
    and benign models where there are any. Given --trigger, the input filters
    (their TPR on stamped inputs) and mitigations (the share of the trigger's
    ASR they remove) play it too. Nothing is stored but the cache.
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
                          trigger=Path(trigger) if trigger else None, target=target,
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
    only one that writes the store. Every node must see ARENA_HOME at the same path (docs/cluster.md).
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
@scenario_option
@click.option("--population", type=click.IntRange(min=1), required=True,
              help="Benign models per seed to run each defender on (members 0 .. N-1; the matches ran the "
                   "scenario's `controls.population` of them, which come from the cache).")
@click.option("--seeds", type=click.IntRange(min=1), default=None,
              help="The scenario's first N test seeds (default: all of them).")
@click.option("--defenders", "-d", multiple=True, help="Defenders to include (repeat or comma-separate; default all).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="(seed, defender) groups run in parallel processes.")
@device_option
@_friendly
def controls(scenario: str, population: int, seeds: int | None, defenders: tuple[str, ...], workers: int,
             device: str) -> None:
    """Run defenders on more benign models, for the usability gate's power; stored runs are skipped.

    A defender is judged usable on every benign model it was run on, pooled over seeds (docs/match.md);
    this adds models without replaying any match. `arena leaderboard` counts them.
    """
    from arena.plugins import resolve
    from arena.results.store import Store
    from arena.results.usability import power
    from arena.run.controls import extend

    sc = _load(scenario)
    dfn = _split(defenders)
    for n in dfn or []:
        resolve("defender", n)  # unknown names fail here, before any training
    store = Store()
    seed_list = list(sc.seeds)[:seeds] if seeds else list(sc.seeds)
    try:
        report = extend(sc, population, defenders=dfn, seeds=seed_list, device=device, store=store,
                        progress=stderr_progress, workers=workers)
    except KeyboardInterrupt:
        _say(f"interrupted: every finished run is stored in {_shown(store.path)}; run the same command again "
             "to resume")
        sys.exit(130)
    finally:
        store.close()
    n = population * len(seed_list)
    click.echo(f"ran {report.played}, skipped {report.skipped} (already stored), faults {len(report.faults)}; "
               f"{n} benign models per defender: {power(n, sc.budgets.model_fpr):.0%} power to fail a defender "
               f"that flags at twice the {sc.budgets.model_fpr:.0%} budget")
    for d, seed, member, err in report.faults:
        click.echo(f"  FAULT {d} seed {seed} benign model {member}: {_error_line(err)}")
    sys.exit(1 if report.faults else 0)
