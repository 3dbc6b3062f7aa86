"""Commands that publish: leaderboard, paper, report, trigger."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import click

from arena.core.errors import ArenaError, ScenarioError
from arena.core.home import arena_home
from arena.config.scenario import (
    DEFAULT_SCENARIO,
    Scenario,
    load_scenario,
    looks_like_path,
)
from arena.api.training import stderr_progress
from arena.cli.common import (_friendly, _shown, _say, _json, _stdout_to_stderr, _load, _setting, SEED,
                              scenario_option, device_option)
from arena.cli.group import main


@main.command()
@click.argument("scenario", default=DEFAULT_SCENARIO)
@click.option("--write", is_flag=True,
              help="Write SCENARIO.md, .csv and .matches.jsonl.gz (SCENARIO: the scenario's name) into --out, "
                   "and .controls.jsonl.gz when `arena controls` stored extra control runs.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for --write (default: <arena home>/leaderboards; a checkout publishes to leaderboards).")
@click.option("--bootstrap", type=click.IntRange(min=10), default=200, show_default=True,
              help="Bootstrap rounds for the 95% intervals over matches (one seed, or --unit match).")
@click.option("--unit", type=click.Choice(["seed", "match"]), default="seed", show_default=True,
              help="Unit of the 95% intervals: seeds (each fitted on its own, Student's t over them; the "
                   "matches of one seed share trojans and control runs) or single matches (a bootstrap; "
                   "narrower, understates the uncertainty).")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object (ratings with intervals, ordering claims, usability, equilibrium) instead "
                   "of the Markdown.")
@click.option("--baseline-seeds", "baseline", default=None, metavar="SEEDS",
              help="Also say what the other seeds added to these (e.g. 10-14): orderings kept, gained, lost or "
                   "reversed, adjacent ranks still tied, usability verdicts that moved, interval widths.")
@_friendly
def leaderboard(scenario: str, write: bool, out: str | None, bootstrap: int, unit: str, as_json: bool,
                baseline: str | None) -> None:
    """Bradley-Terry ratings (95% CI over seeds), Elo, usability and the outcome matrix of a scenario.

    SCENARIO is a scenario name or .toml path; a name with no scenario file
    but with stored matches rates the matches of its most recent setting.
    """
    from arena.results.leaderboard import latest_matches, render_leaderboard, write_leaderboard
    from arena.results.store import Store

    store = Store(readonly=True)
    name, digest, _ = _setting(store, scenario, "rating")
    records = store.matches(digest=digest, status="ok")
    controls = store.controls(digest)  # extra benign models for the usability gate (`arena controls`)
    store.close()
    if not records:
        raise ArenaError(f"no stored matches for scenario '{name}' (digest {digest})",
                         hint=f"play some first: arena tournament --scenario {scenario}")
    records, superseded = latest_matches(records)
    if superseded:
        _say(f"note: {superseded} match(es) replayed since by a newer version of an agent are left out "
             "(one match per pair, seed and rounds: the last stored)")
    # Agents draw their randomness from the home's secret key (arena.core.keys), and a seed's matches
    # share its control runs: one seed's matches from two homes are not one draw of that seed. Whole
    # seeds from different homes are independent draws, as seeds are; a long tournament may carry its
    # finished seeds to another home (`arena matches export --seed`, then `arena matches import`).
    per_seed: dict[int, Counter] = {}
    for r in records:
        per_seed.setdefault(r.seed, Counter())[str((r.metrics or {}).get("key_id") or "not recorded")] += 1
    mixed = {seed: keys for seed, keys in sorted(per_seed.items()) if len(keys) > 1}
    if mixed:
        _say("warning: " + "; ".join(f"seed {seed} was played under more than one referee key ("
                                     + ", ".join(f"{k}: {n}" for k, n in sorted(keys.items())) + ")"
                                     for seed, keys in mixed.items())
             + ": matches of one seed from different arena homes (or from before keys were recorded) drew "
               "different randomness; replay such a seed in one home before publishing")
    from arena.results.leaderboard import games_from_records, partial_seeds

    if partial := partial_seeds(games_from_records(records)):
        _say(f"warning: {partial}")
    try:  # the scenario's own model-level budget, when its file is at hand
        budget = _load(scenario).budgets.model_fpr
    except ArenaError:
        from arena.results.leaderboard import DEFAULT_MODEL_FPR as budget
    gain, extra = None, []
    if baseline is not None:
        from arena.results.seed_gain import parse_seeds, render_seed_gain, seed_gain

        gain = seed_gain(records, parse_seeds(baseline), budget, controls)
        extra = render_seed_gain(gain)
    if write:
        from arena.results.io import write_jsonl_gz

        # Published tables stand on matches whose agents ran under the full sandbox (docs/sandbox.md).
        # Matches stored before levels were recorded (0.1.x: built-in agents only) carry none.
        published = [r for r in records if (r.metrics or {}).get("sandbox") in (None, "full")]
        if len(published) < len(records):
            levels = sorted({str(r.metrics.get("sandbox")) for r in records} - {"None", "full"})
            _say(f"note: {len(records) - len(published)} match(es) played under sandbox level {', '.join(levels)} "
                 "are left out: a written leaderboard publishes 'full' only")
            records = published
            if not records:
                raise ArenaError("no match of this scenario was played under the full sandbox: nothing to publish",
                                 hint="play on a Linux 6.12+ machine with Landlock (docs/sandbox.md, sandbox levels)")
        folder = Path(out) if out else arena_home() / "leaderboards"  # never a folder of the checkout by default
        md, csv = write_leaderboard(name, records, folder, bootstrap_rounds=bootstrap, unit=unit,
                                    model_fpr=budget, controls=controls, extra=extra)
        # The matches behind it, so anyone can refit it or replay a sample (`arena matches replay --from`).
        jsonl = write_jsonl_gz(records, Path(md).with_name(f"{name}.matches.jsonl.gz"))
        _say(f"wrote {_shown(Path(md))}, {_shown(Path(csv))} and {_shown(jsonl)}")
        if controls:
            from arena.results.io import write_controls_gz

            controls_file = write_controls_gz(controls, Path(md).with_name(f"{name}.controls.jsonl.gz"))
            _say(f"wrote {_shown(controls_file)} ({len(controls)} extra control run(s))")
    if as_json:
        from arena.results.leaderboard import leaderboard_data

        data = leaderboard_data(name, records, bootstrap_rounds=bootstrap, unit=unit, model_fpr=budget,
                                controls=controls)
        if gain is not None:
            data["seed_gain"] = dataclasses.asdict(gain)
        click.echo(_json(data))
        return
    md_text, _ = render_leaderboard(name, records, bootstrap_rounds=bootstrap, unit=unit, model_fpr=budget,
                                    controls=controls, extra=extra)
    click.echo(md_text)


@main.command()
@click.argument("scenario", default=DEFAULT_SCENARIO)
@click.option("--variant", "variants", multiple=True,
              help="A scenario that changes one knob of SCENARIO (trigger alpha 0.8, trigger size 1, trigger shape "
                   "random, attack.mixing, attack.from_scratch): its matches test the remarks that compare two "
                   "settings. Name or .toml path; repeat for several.")
@click.option("--matches", "sources", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="Published matches (leaderboards/NAME.matches.jsonl.gz) instead of the store; repeat to add the "
                   "variants' files and the extra control runs beside them (NAME.controls.jsonl.gz).")
@click.option("--development", is_flag=True,
              help="Also use matches on the scenario's development seeds (rules were tuned on them; the page says so).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Markdown file to write (default: <arena home>/paper/SCENARIO.md; the checkout's is docs/paper.md).")
@_friendly
def paper(scenario: str, variants: tuple[str, ...], sources: tuple[str, ...], development: bool,
          out: str | None) -> None:
    """Check the TrojanZoo paper's Remarks 1-16 and its Tables 5, 8 and 11 against stored matches.

    Writes one Markdown page (per claim: the paper's numbers, our matched
    condition, our number with its 95% interval over seeds, and a verdict)
    and prints its path. Claims whose matches are missing are marked untested,
    naming what to play.
    """
    from arena.results import paper as pp
    from arena.results.leaderboard import latest_matches
    from arena.results.store import Store

    target = Path(out) if out else None
    if target is not None and not target.parent.is_dir():  # before reading anything: fail fast
        raise ArenaError(f"cannot write {out}: the folder {target.parent} does not exist",
                         hint="create the folder first, or choose another --out")
    var_sc = [load_scenario(v) for v in variants]  # a variant's knobs come from its file
    pool = []
    if sources:
        from arena.results.io import read_controls_gz, read_jsonl_gz

        pool = [r for src in sources if not src.endswith(".controls.jsonl.gz")
                for r in read_jsonl_gz(Path(src), known=var_sc)]
        control_pool = [c for src in sources if src.endswith(".controls.jsonl.gz") for c in read_controls_gz(Path(src))]
        try:
            sc: Scenario | None = load_scenario(scenario)
            name = sc.name
        except ScenarioError:
            if looks_like_path(scenario):
                raise
            sc, name = None, scenario
        main_recs = [r for r in pool if (r.scenario_digest == sc.digest if sc else r.scenario == name)]
        controls = [c for c in control_pool if (c.scenario_digest == sc.digest if sc else c.scenario == name)]
        var_recs = [[r for r in pool if r.scenario_digest == v.digest] for v in var_sc]
        where = ", ".join(f"`{Path(s).name}`" for s in sources)
    else:
        store = Store(readonly=True)
        try:
            name, digest, sc = _setting(store, scenario, "checking")
            main_recs = store.matches(digest=digest)
            var_recs = [store.matches(digest=v.digest) for v in var_sc]
            controls = store.controls(digest)
        finally:
            store.close()
        where = "the match store"
    # One match per pair, seed and rounds (the last stored), in the main setting and each variant.
    main_recs = latest_matches(main_recs)[0]
    var_recs = [latest_matches(v)[0] for v in var_recs]
    if not any(r.status == "ok" for r in main_recs):
        other = sum(r.scenario == name for r in pool) if sources else 0
        _say(f"note: no finished matches of '{name}'" + (f" of this setting ({other} in the files were played "
             "under another digest)" if other else "") + ": every claim that needs them is marked untested "
             f"(play them with `arena tournament --scenario {scenario}`)")
    command = " ".join(["arena paper", scenario] + [f"--variant {v}" for v in variants]
                       + [f"--matches {s}" for s in sources] + (["--development"] if development else [])
                       + ([f"--out {out}"] if out else []))
    text = pp.render(main_recs, name, scenario=sc, variants=list(zip(var_sc, var_recs)), development=development,
                     command=command, source=where, variant_specs=variants, controls=controls)
    if target is None:  # the default: in the arena home, never a folder of the checkout
        from arena.present.report import slug

        target = arena_home() / "paper" / f"{slug(name)}.md"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
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
              help="Draw each attacker's gallery from its cached trojan (one not in the cache is left out).")
@click.option("--craft", is_flag=True,
              help="Train and craft what a gallery needs and the cache lacks (after `matches import`, say).")
@click.option("--inputs", type=click.IntRange(1, 10), default=4, show_default=True,
              help="Test inputs per gallery.")
@click.option("--bootstrap", type=click.IntRange(min=10), default=200, show_default=True,
              help="Bootstrap rounds for the 95% intervals.")
@click.option("--unit", type=click.Choice(["seed", "match"]), default="seed", show_default=True,
              help="Bootstrap unit for the 95% intervals (as for `arena leaderboard`).")
@device_option
@_friendly
def report(scenario: str, out: str | None, seed: int | None, galleries: bool, craft: bool, inputs: int,
           bootstrap: int, unit: str, device: str) -> None:
    """Write a static HTML report of a scenario's stored matches and print where.

    Ratings with intervals, the attacker x defender heatmap (each cell links
    to its match's page), ASR against CAD, a gallery per attacker (clean,
    stamped, difference, magnified) and the triggers inspectors recovered.
    The folder is self-contained: open index.html in any browser.
    """
    from arena.present.report import default_folder, write_report
    from arena.results.leaderboard import latest_matches
    from arena.results.store import Store

    store = Store(readonly=True)
    try:
        name, digest, sc = _setting(store, scenario, "reporting")
        records = latest_matches(store.matches(digest=digest))[0]  # as the leaderboard rates them
    finally:
        store.close()
    if not any(r.status == "ok" for r in records):
        from arena.present.report import ReportError

        raise ReportError(f"no stored matches for scenario '{name}': run `arena tournament --scenario {scenario}` "
                          "first" + (f" ({len(records)} stored match(es) failed)" if records else ""),
                          hint="see what is stored with `arena matches list`")
    folder = Path(out) if out else default_folder(name)
    if galleries and craft and sc is not None:
        from arena.results.store import require_writable_home

        require_writable_home()  # a trojan missing from the cache is crafted and cached
    with _stdout_to_stderr():
        summary = write_report(name, digest, records, folder, scenario=sc, seed=seed, galleries=galleries,
                               craft=craft, inputs=inputs, device=device, bootstrap_rounds=bootstrap, unit=unit,
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
