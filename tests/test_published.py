"""The published leaderboards and the README's sentences about them are the computation's, not hand-written."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from arena.results.io import read_controls_gz, read_jsonl_gz
from arena.config.scenario import load_scenario
from arena.results.leaderboard import games_from_records, rated_records, render_leaderboard
from arena.results.ratings import pair_claims, rate
from arena.results.store import MatchRecord

ROOT = Path(__file__).resolve().parents[1]


def shipped(name: str) -> list[MatchRecord]:
    return read_jsonl_gz(ROOT / "leaderboards" / f"{name}.matches.jsonl.gz")


def shipped_controls(name: str) -> list:
    """The extra control runs published beside the matches (`arena controls`), if any."""
    f = ROOT / "leaderboards" / f"{name}.controls.jsonl.gz"
    return read_controls_gz(f) if f.exists() else []


# Re-rendering the 20-seed fmnist-cnn board (3000 matches, fitted twice for its seed-gain section)
# takes about 16 s: the full suite's, not the fast lane's.
@pytest.mark.parametrize("name", [pytest.param("fmnist-cnn", marks=pytest.mark.slow), "cifar10-cnn"])
def test_the_shipped_leaderboard_is_what_its_matches_give(name):
    from arena.results.seed_gain import parse_seeds, render_seed_gain, seed_gain

    budget, records, controls = load_scenario(name).budgets.model_fpr, shipped(name), shipped_controls(name)
    page = (ROOT / "leaderboards" / f"{name}.md").read_text()
    extra = []  # written with --baseline-seeds: the section on what the later seeds added, computed again
    if (baseline := re.search(r"^## What seeds .+ added to seeds ([0-9, -]+)$", page, re.M)) is not None:
        extra = render_seed_gain(seed_gain(records, parse_seeds(baseline.group(1)), budget, controls))
    md, csv = render_leaderboard(name, records, model_fpr=budget, controls=controls, extra=extra)
    assert page == md
    assert (ROOT / "leaderboards" / f"{name}.csv").read_text() == csv
    # No ordering sentence without its interval and its corrected p-value.
    for line in md.splitlines():
        if "ranks above" in line:
            assert re.search(r"95% interval \[-?\d+, -?\d+\], Holm-adjusted p = ", line), line


@pytest.mark.parametrize("name", ["fmnist-cnn", "cifar10-cnn"])
def test_the_readme_counts_the_orderings_that_the_computation_finds(name):
    readme = (ROOT / "README.md").read_text()
    assert "ranks above" not in readme  # orderings live in the generated leaderboards only
    rated, _ = rated_records(shipped(name), load_scenario(name).budgets.model_fpr, shipped_controls(name))
    claims = pair_claims(rate(games_from_records(rated)))
    counted = {role: (sum(c.ordered for c in cs), sum(not math.isnan(c.p) for c in cs)) for role, cs in claims.items()}
    # The first count after the scenario's own paragraph opens ("`NAME`: ...") is that scenario's.
    text = " ".join(readme.split())
    opening = text.find(f"`{name}`: ")
    assert opening >= 0, f"the README has no paragraph on {name}'s published board"
    stated = re.search(r"(\d+) of (\d+) attacker pairs and (\d+) of the (\d+) defender pairs that can be tested",
                       text[opening:])
    assert stated, f"the README no longer states how many of {name}'s pairs are ordered"
    assert tuple(map(int, stated.groups())) == (*counted["attacker"], *counted["defender"])


def test_leaderboard_and_matches_speak_json(tmp_path, monkeypatch):
    import json

    from click.testing import CliRunner

    from arena.cli import main

    monkeypatch.setenv("ARENA_HOME", str(tmp_path))
    run = CliRunner().invoke
    shipped_files = [str(ROOT / "leaderboards" / f"cifar10-cnn.{kind}.jsonl.gz") for kind in ("matches", "controls")]
    assert run(main, ["matches", "import", *shipped_files]).exit_code == 0
    listed = json.loads(run(main, ["matches", "list", "--json"]).stdout)
    assert len(listed) == 750 and {"attacker", "defender", "outcome", "metrics"} <= set(listed[0])
    shown = json.loads(run(main, ["matches", "show", str(listed[0]["id"]), "--json"]).stdout)
    assert shown == listed[0]
    board = json.loads(run(main, ["leaderboard", "cifar10-cnn", "--json"]).stdout)
    assert board["interval_unit"] == "seed" and board["seeds"] == [0, 1, 2, 3, 4]
    # Every ordering the JSON claims carries an interval that excludes a tie and a corrected p under 5%.
    assert board["orderings"] and all(o["ci_low"] > 0 and o["p_holm"] < 0.05 for o in board["orderings"])
    assert [u["defender"] for u in board["usability"] if not u["usable"]] == ["deep-inspect", "neuron-inspect"]
    assert {r["name"] for r in board["ratings"]} >= {"none", "badnet", "strip"}
    # Imported, the board is the published page to the byte, Elo included: the import keeps the matches'
    # order in the store that wrote the file, and online Elo is replayed in that order.
    baseline = re.search(r"^## What seeds .+ added to seeds ([0-9, -]+)$", (ROOT / "leaderboards" / "cifar10-cnn.md")
                         .read_text(), re.M).group(1)
    page = run(main, ["leaderboard", "cifar10-cnn", "--baseline-seeds", baseline]).stdout
    assert page.rstrip("\n") == (ROOT / "leaderboards" / "cifar10-cnn.md").read_text().rstrip("\n")


def test_the_paper_page_is_what_its_shipped_matches_give(tmp_path, monkeypatch):
    """docs/paper.md regenerates byte for byte from the shipped match files, with the command it names."""
    import shlex

    from click.testing import CliRunner

    from arena.cli import main

    page = (ROOT / "docs" / "paper.md").read_text()
    command = re.search(r": `(arena paper [^`]+ --out docs/paper\.md)`", page).group(1)
    out = tmp_path / "paper.md"
    monkeypatch.chdir(ROOT)  # the command's paths are the checkout's
    monkeypatch.setenv("ARENA_HOME", str(tmp_path / "home"))
    args = shlex.split(command)[1:-1] + [str(out)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert out.read_text().replace(f"--out {out}", "--out docs/paper.md") == page
