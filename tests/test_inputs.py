"""Input handling: scenario lookup by name or path, values rejected at load, and a CLI that
answers bad arguments, broken stores and read-only homes with one clear error.

Nothing here trains a model: every error is raised before training starts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from arena.cli import main
from arena.core.errors import ArenaError, ScenarioError
from arena.engine.sandbox import landlock_abi
from conftest import TINY_TOML, requires_fmnist

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("ARENA_HOME", str(h))
    monkeypatch.delenv("ARENA_SCENARIO_PATH", raising=False)
    return h


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=True)


def user_error(result, *needles: str) -> str:
    """A clean exit 2 whose message starts with 'error: ' and holds every needle."""
    out = result.output
    assert result.exit_code == 2, (result.exit_code, out, result.exception)
    assert "Traceback" not in out
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert out.startswith("error: "), out
    for n in needles:
        assert n in out, f"{n!r} not in:\n{out}"
    return out


def scenario_file(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def store_matches(scenario: str, digest: str, outcomes: list[tuple[str, str, float]], reason: str = "test") -> None:
    from arena.results.store import MatchRecord, Store

    store = Store()
    for attacker, defender, outcome in outcomes:
        store.save(MatchRecord(scenario=scenario, scenario_digest=digest, attacker=attacker, attacker_version="1",
                               defender=defender, defender_version="1", seed=0, rounds=1, status="ok",
                               outcome=outcome, reason=reason))
    store.close()


GAMES = [("badnet", "none", 1.0), ("badnet", "strip", 0.0), ("imc", "none", 1.0), ("imc", "strip", 1.0)]


# --- 1. the wheel ships the scenarios ---------------------------------------------------------------

@pytest.mark.slow
def test_wheel_install_finds_builtin_scenarios(tmp_path):
    # Build from a copy, so the checkout gets no build/ folder and no rewritten egg-info.
    src = tmp_path / "src"
    src.mkdir()
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("arena", "agents", "scenarios"):
        shutil.copytree(REPO / name, src / name, ignore=junk)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    start = time.monotonic()
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
                   check=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("backdoor_arena-*.whl")
    site = tmp_path / "site"
    subprocess.run(pip + ["install", "--no-deps", "--target", str(site), str(wheel)], check=True, cwd=tmp_path)
    assert time.monotonic() - start < 60
    # Every subpackage travels: a package missing from pyproject's list would import here and fail elsewhere.
    subpackages = {p.parent.relative_to(REPO) for p in (REPO / "arena").rglob("__init__.py")}
    assert subpackages and not {p for p in subpackages if not (site / p / "__init__.py").exists()}

    elsewhere = tmp_path / "elsewhere"  # no ./scenarios here
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("ARENA_SCENARIO_PATH", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)  # ahead of the venv's editable checkout
    code = ("import json, arena, arena_scenarios; from arena.config.scenario import available_scenarios; "
            "print(arena.__file__); print(arena_scenarios.__file__); "
            "print(json.dumps({k: str(v) for k, v in available_scenarios().items()}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, check=True, capture_output=True,
                         text=True).stdout.splitlines()
    assert out[0].startswith(str(site)), out
    assert out[1].startswith(str(site)), out
    found = json.loads(out[2])
    assert found["fmnist-cnn"] == str(site / "arena_scenarios" / "fmnist-cnn.toml"), found
    assert found["cifar10-resnet18"] == str(site / "arena_scenarios" / "cifar10-resnet18.toml"), found
    # And the command the bug report ran: `arena scenarios list` outside the checkout.
    listing = subprocess.run([sys.executable, "-m", "arena.cli", "scenarios", "list"], cwd=elsewhere, env=env,
                             check=True, capture_output=True, text=True).stdout
    assert "fmnist-cnn" in listing and "cifar10-resnet18" in listing and "INVALID" not in listing, listing


def test_scenario_path_is_searched_first_and_builtins_last(home, tmp_path, monkeypatch):
    import importlib.resources

    from arena.config.scenario import scenario_dirs

    first, second = tmp_path / "first", tmp_path / "second"
    for d in (first, second):
        d.mkdir()
    (first / "fmnist-cnn.toml").write_text(TINY_TOML.replace('name = "tiny"', 'name = "fmnist-cnn"'))
    monkeypatch.setenv("ARENA_SCENARIO_PATH", os.pathsep.join([str(first), str(second)]))
    dirs = scenario_dirs()
    assert dirs[:2] == [first, second]
    assert dirs[-1] == importlib.resources.files("arena_scenarios")
    r = invoke("scenarios", "show", "fmnist-cnn")
    assert r.exit_code == 0, r.output
    assert r.output.startswith(f"# {first / 'fmnist-cnn.toml'} "), r.output


# --- 2. one scenario lookup for every command -------------------------------------------------------

def _commands(scenario: str) -> list[list[str]]:
    return [["match", "none", "none", "-s", scenario, "--no-store"], ["sweep", "none", "-s", scenario],
            ["tournament", "-s", scenario], ["leaderboard", scenario], ["scenarios", "show", scenario],
            ["matches", "list", "-s", scenario], ["matches", "export", "-s", scenario]]


def test_every_command_rejects_an_unknown_scenario_the_same_way(home):
    for args in _commands("no-such-scenario"):
        user_error(invoke(*args), "unknown scenario 'no-such-scenario'", "fmnist-cnn")
    assert not (home / "cache").exists()


def test_every_command_reports_a_bad_scenario_file_the_same_way(home, tmp_path):
    p = scenario_file(tmp_path, TINY_TOML.replace("lr = 0.05", "lr = nan"))
    for args in _commands(str(p)):
        user_error(invoke(*args), str(p), "'training.lr' = nan is not a finite number")


def test_matches_list_and_export_take_a_name_a_path_or_a_stored_name(home, tiny_path, tiny):
    store_matches(tiny.name, tiny.digest, GAMES[:2])
    store_matches("retired", "0123456789abcdef", GAMES[2:], reason="")  # no reason: still one line each
    for value in ("tiny", str(tiny_path)):  # a stored name, and the path of the file that has that name
        r = invoke("matches", "list", "-s", value)
        assert r.exit_code == 0, r.output
        assert r.output.count(" tiny ") == 2 and "retired" not in r.output, r.output
    r = invoke("matches", "export", "-s", str(tiny_path))
    assert r.exit_code == 0 and len(r.output.splitlines()) == 2, r.output
    r = invoke("matches", "list", "-s", "retired")  # no file any more: its stored matches still list
    assert r.exit_code == 0 and r.output.count(" retired ") == 2, r.output
    r = invoke("matches", "list", "-s", "fmnist-cnn")  # a known scenario with nothing stored: empty, no error
    assert r.exit_code == 0 and "fmnist-cnn" not in r.output, r.output
    user_error(invoke("matches", "export", "-s", "retird"), "unknown scenario 'retird'",
               "stored scenarios: retired, tiny", "scenario files:", "fmnist-cnn")


def test_leaderboard_of_a_stored_name_uses_its_latest_setting(home, tmp_path):
    store_matches("retired", "00000000000old00", GAMES[:1])
    store_matches("retired", "00000000000new00", GAMES)
    r = invoke("leaderboard", "retired", "--bootstrap", "10")
    assert r.exit_code == 0, r.output
    assert "no scenario file 'retired'" in r.output and "digest 00000000000new00" in r.output, r.output
    assert "# Leaderboard: retired" in r.output and "4 matches" in r.output, r.output
    r = invoke("leaderboard", "retired", "--bootstrap", "10", "--write", "--out", str(tmp_path / "lb"))
    assert r.exit_code == 0, r.output
    assert (tmp_path / "lb" / "retired.md").is_file() and (tmp_path / "lb" / "retired.csv").is_file()


# --- 3. --version and help ---------------------------------------------------------------------------

def test_version():
    import arena

    r = invoke("--version")
    assert r.exit_code == 0 and r.output.strip() == f"arena, version {arena.__version__}", r.output


def test_every_command_has_help_text():
    def walk(cmd: click.Command, path: str) -> list[tuple[str, click.Command]]:
        out = [(path, cmd)]
        for name, sub in getattr(cmd, "commands", {}).items():
            out += walk(sub, f"{path} {name}")
        return out

    commands = walk(main, "arena")
    assert len(commands) > 10
    for path, cmd in commands:
        assert (cmd.help or "").strip(), f"`{path}` has no help text"
    r = invoke("scenarios", "list", "--help")
    assert r.exit_code == 0 and "ARENA_SCENARIO_PATH" in r.output, r.output


# --- 4. values rejected when a scenario is loaded --------------------------------------------------

# (id, [(old, new) text replacements in TINY_TOML], needles the error must hold)
BAD_VALUES = [
    ("lr-nan", [("lr = 0.05", "lr = nan")], ["'training.lr' = nan is not a finite number"]),
    ("lr-inf", [("lr = 0.05", "lr = inf")], ["'training.lr' = inf is not a finite number"]),
    ("lr-zero", [("lr = 0.05", "lr = 0")], ["'training.lr' = 0.0 must be greater than 0"]),
    ("retrain-lr-zero", [("retrain_lr = 0.03", "retrain_lr = 0.0")],
     ["'training.retrain_lr' = 0.0 must be greater than 0"]),
    ("epochs-absurd", [("epochs = 3", "epochs = 100000")], ["'training.epochs' = 100000 is more than 10000", "0..10000"]),
    ("retrain-epochs-absurd", [("retrain_epochs = 2", "retrain_epochs = 20000")],
     ["'training.retrain_epochs' = 20000 is more than 10000"]),
    ("batch-size-zero", [("batch_size = 128", "batch_size = 0")], ["'training.batch_size' = 0 must be at least 1"]),
    ("scoring-inputs-zero", [("inputs = 600", "inputs = 0")], ["'scoring.inputs' = 0 must be at least 1"]),
    ("trigger-too-big-fmnist", [("[attack]", "[trigger]\nsize = 29\n\n[attack]")],
     ["'trigger.size' = 29", "28x28", "fashion-mnist", "1..28"]),
    ("trigger-too-big-cifar10", [('"fashion-mnist"', '"cifar10"'), ("[attack]", "[trigger]\nsize = 33\n\n[attack]")],
     ["'trigger.size' = 33", "32x32", "cifar10", "1..32"]),
    ("fraction-minus-inf", [("poison_fraction = 0.1", "poison_fraction = -inf")],
     ["'attack.poison_fraction' = -inf is not a finite number"]),
    ("seed-too-big", [("seeds = [0]", "seeds = [99999999999]")],
     ["'seeds' must be a non-empty list of integers in 0..2147483647"]),
    ("name-climbs", [('name = "tiny"', 'name = "../evil"')], ["'name' = '../evil' is not allowed", "letters, digits"]),
    ("name-slash", [('name = "tiny"', 'name = "a/b"')], ["'name' = 'a/b' is not allowed"]),
    ("name-hidden", [('name = "tiny"', 'name = ".hidden"')], ["'name' = '.hidden' is not allowed"]),
    ("name-dotdot", [('name = "tiny"', 'name = "a..b"')], ["'name' = 'a..b' is not allowed"]),
    ("agent-count-negative", [("[scoring]", "[defenders.strip]\nsamples = -5\n\n[scoring]")],
     ["[defenders.strip] samples = -5 must not be negative"]),
    ("agent-list-negative", [("[scoring]", "[attackers.imc]\nsteps = [1, -2]\n\n[scoring]")],
     ["[attackers.imc] steps = [1, -2] must not be negative"]),
    ("agent-float-nan", [("[scoring]", "[defenders.strip]\nmix_weight = nan\n\n[scoring]")],
     ["[defenders.strip] mix_weight = nan is not a finite number"]),
]


@pytest.mark.parametrize("edits,needles", [b[1:] for b in BAD_VALUES], ids=[b[0] for b in BAD_VALUES])
def test_bad_scenario_value(home, tmp_path, edits, needles):
    text = TINY_TOML
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    p = scenario_file(tmp_path, text)
    out = user_error(invoke("scenarios", "show", str(p)), str(p), *needles)
    assert len(out.strip().splitlines()) <= 2, out


def test_scenario_file_not_utf8(home, tmp_path):
    p = tmp_path / "latin1.toml"
    p.write_bytes(TINY_TOML.replace("test-sized", "caf\xe9").encode("latin-1"))
    user_error(invoke("scenarios", "show", str(p)), str(p), "not UTF-8", "save the scenario file as UTF-8")


def test_a_variant_scenario_sets_only_what_differs_from_its_base(home, tmp_path):
    from arena.config.scenario import load_scenario

    scenario_file(tmp_path, TINY_TOML, "base.toml")
    v = scenario_file(tmp_path, 'based_on = "base.toml"\nname = "tiny-pixel"\n[trigger]\nsize = 1\n'
                                '[budgets]\nfpr = 0.1\n', "v.toml")
    base, var = load_scenario(str(tmp_path / "base.toml")), load_scenario(str(v))
    # Tables merge key by key: the trigger keeps its pattern and position, the budgets their other keys.
    assert (var.trigger.size, var.budgets.fpr) == (1, 0.1)
    assert var.trigger.pattern == base.trigger.pattern and var.budgets.defense_cad == base.budgets.defense_cad
    diff = {k for k, val in var.to_dict().items() if base.to_dict()[k] != val}
    assert diff == {"name", "description", "trigger", "budgets"} and var.digest != base.digest
    # The shipped variants change one knob of fmnist-cnn each (what `arena paper` needs of them).
    from arena.results.paper import classify_variant

    main_sc = load_scenario("fmnist-cnn")
    kinds = {classify_variant(main_sc, load_scenario(str(f)))[0]
             for f in (Path(__file__).parents[1] / "benchmarks" / "scenarios").glob("fmnist-cnn-*.toml")}
    assert kinds == {"transparent", "single-pixel", "random-shape", "from-scratch", "dataset-mixing", "loss-mixing"}


@pytest.mark.parametrize("text, needles", [
    ('based_on = "v.toml"\nname = "loop"\n', ["'based_on' loops back to itself"]),
    ('based_on = "fmnist-cnn"\n', ["a scenario with 'based_on' needs its own 'name'", 'add name = "v"']),
    ('based_on = "fmnist-cnm"\nname = "x"\n', ["'based_on' = 'fmnist-cnm': unknown scenario", "known scenarios:"]),
    ('based_on = 3\nname = "x"\n', ["'based_on' must be a scenario name or a .toml path"]),
])
def test_bad_based_on(home, tmp_path, text, needles):
    p = scenario_file(tmp_path, text, "v.toml")
    user_error(invoke("scenarios", "show", str(p)), str(p), *needles)


def test_agent_table_of_no_installed_agent(home, tmp_path, monkeypatch):
    p = scenario_file(tmp_path, TINY_TOML + "\n[defenders.stirp]\nsamples = 5\n")
    for args in (["scenarios", "show", str(p)], ["match", "none", "none", "-s", str(p), "--no-store"],
                 ["tournament", "-s", str(p)]):
        user_error(invoke(*args), str(p), "[defenders.stirp] names no installed defender", "did you mean 'strip'",
                   "installed defenders:", "neural-cleanse")
    assert not (home / "cache").exists()
    monkeypatch.setenv("ARENA_SCENARIO_PATH", str(tmp_path))
    r = invoke("scenarios", "list")  # the listing marks such a file rather than failing
    assert r.exit_code == 0, r.output
    assert any(line.startswith("s ") and "INVALID" in line for line in r.output.splitlines()), r.output
    # A table for a file agent is keyed by its spec and is not looked up among installed agents.
    from arena.config.scenario import load_scenario
    from arena.plugins import check_agent_tables

    q = scenario_file(tmp_path, TINY_TOML + '\n[attackers."my_attack.py:Mine"]\nsteps = 3\n', "q.toml")
    check_agent_tables(load_scenario(str(q)))


def test_validate_agent_params():
    from arena.config.scenario import validate_agent_params

    validate_agent_params("defender", "strip", {"samples": 5, "mix_weight": -0.5, "flag": True, "mode": "x",
                                                "sizes": [1, 2], "nothing": 0})
    with pytest.raises(ScenarioError, match=r"\[defenders.strip\] samples = -5 must not be negative"):
        validate_agent_params("defender", "strip", {"samples": -5})
    with pytest.raises(ScenarioError, match=r"\[attackers.imc\] lr = nan is not a finite number"):
        validate_agent_params("attacker", "imc", {"lr": float("nan")})
    with pytest.raises(ScenarioError, match=r"s.toml: \[attackers.imc\] eps = inf"):
        validate_agent_params("attacker", "imc", {"eps": float("inf")}, where="s.toml")


def test_write_leaderboard_stays_in_its_folder(tmp_path):
    from arena.results.leaderboard import write_leaderboard

    for bad in ("../escape", "a/b", "/abs", "..", ""):
        with pytest.raises(ArenaError, match="cannot name a leaderboard file"):
            write_leaderboard(bad, [], tmp_path / "lb")
    assert not (tmp_path / "lb").exists() and not (tmp_path / "escape.md").exists()
    md, _ = write_leaderboard("ok-name.v1", [], tmp_path / "lb")
    assert md == tmp_path / "lb" / "ok-name.v1.md" and md.is_file()


# --- 5. CLI robustness ------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", ["99999999999999999999", "-1", "2147483648"])
def test_seed_out_of_range_is_a_usage_error(home, tiny_path, seed):
    for cmd in (["match", "none", "none"], ["sweep", "none"]):
        r = invoke(*cmd, "-s", str(tiny_path), "--seed", seed)
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
        assert "Invalid value for '--seed'" in r.output and "0<=x<=2147483647" in r.output, r.output
    assert not (home / "cache").exists()


def test_export_into_a_missing_folder(home, tmp_path):
    target = tmp_path / "no" / "such" / "x.csv"
    user_error(invoke("matches", "export", "--format", "csv", "-o", str(target)),
               f"the folder {target.parent} does not exist")


def test_corrupt_store_is_one_clear_error(home, tiny_path):
    home.mkdir()
    db = home / "arena.db"
    db.write_bytes(b"this is not a database\n" * 200)
    for args in (["matches", "list"], ["matches", "export"], ["leaderboard", str(tiny_path)],
                 ["match", "none", "none", "-s", str(tiny_path)], ["tournament", "-s", str(tiny_path)]):
        out = user_error(invoke(*args), str(db), "not a usable SQLite database", "move it aside", f"mv {db} ")
        assert len(out.strip().splitlines()) == 2, out
    assert db.read_bytes().startswith(b"this is not")  # left as it was


def _run_read_only(home: Path, scratch: Path, *commands: list[str]) -> list[tuple[int, str]]:
    """Each ``arena COMMAND`` (exit code, output) in one process that Landlock lets read everything and
    write only ``scratch``: the home is read-only even for root, for whom permission bits do not bite."""
    code = ("import json, sys; from arena.engine.sandbox import restrict; "
            f"restrict(['/'], [{str(scratch)!r}, '/dev/null']); "
            "from click.testing import CliRunner; from arena.cli import main; "
            "runs = [CliRunner().invoke(main, args) for args in json.loads(sys.argv[1])]; "
            "print(json.dumps([(r.exit_code, r.output) for r in runs]))")
    env = {**os.environ, "ARENA_HOME": str(home), "TMPDIR": str(scratch), "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(commands)], env=env, capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    return [tuple(r) for r in json.loads(out.stdout.splitlines()[-1])]


@pytest.mark.skipif(landlock_abi() == 0, reason="needs Landlock to make a folder read-only for root")
def test_read_only_home_reads_and_refuses_to_write(home, tiny_path, tiny, tmp_path):
    store_matches(tiny.name, tiny.digest, GAMES)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    writes = [["match", "none", "none", "-s", str(tiny_path), "--no-store"], ["sweep", "none", "-s", str(tiny_path)],
              ["tournament", "-s", str(tiny_path)]]
    listed, board, scenarios, *refused = _run_read_only(
        home, scratch, ["matches", "list"], ["leaderboard", str(tiny_path), "--bootstrap", "10"], ["scenarios", "list"],
        *writes)
    assert listed[0] == 0 and listed[1].count(" tiny ") == 4, listed
    assert board[0] == 0 and "# Leaderboard: tiny" in board[1], board
    assert scenarios[0] == 0, scenarios
    for args, (code, out) in zip(writes, refused):
        assert code == 2 and "Traceback" not in out and out.startswith("error: "), (args, out)
        assert f"the arena home {home} is not writable" in out and "ARENA_HOME" in out, out
    assert not (home / "cache").exists()


def test_read_commands_create_nothing(home, tiny_path):
    for args in (["matches", "list"], ["matches", "export"], ["scenarios", "list"]):
        assert invoke(*args).exit_code == 0
    user_error(invoke("leaderboard", str(tiny_path)), "no stored matches for scenario 'tiny'")
    assert not home.exists()


def _without_root_powers() -> list[str]:
    """A command prefix under which chmod bites: nothing for a user, setpriv dropping root's file overrides."""
    if os.geteuid() != 0:
        return []
    drop = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search,-fowner"]
    if shutil.which("setpriv") is None or subprocess.run(drop + ["true"]).returncode != 0:
        pytest.skip("running as root without a way to drop its file permission overrides")
    return drop


@pytest.mark.slow
def test_really_read_only_home(home, tiny_path, tiny):
    # Real permissions, in a subprocess: sqlite cannot even create the WAL index file here.
    prefix = _without_root_powers()
    store_matches(tiny.name, tiny.digest, GAMES)
    home.chmod(0o555)
    (home / "arena.db").chmod(0o444)

    def arena(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(prefix + [sys.executable, "-m", "arena.cli", *args], capture_output=True, text=True,
                              env={**os.environ, "ARENA_HOME": str(home)}, cwd=home.parent)

    try:
        r = arena("matches", "list")
        assert r.returncode == 0 and r.stdout.count(" tiny ") == 4, r.stdout + r.stderr
        r = arena("match", "none", "none", "-s", str(tiny_path))
        assert r.returncode == 2 and r.stderr.startswith(f"error: the arena home {home} is not writable"), r.stderr
        assert sorted(p.name for p in home.iterdir()) == ["arena.db"]
    finally:
        home.chmod(0o755)


@requires_fmnist
def test_a_train_limit_too_small_for_a_side_is_a_clear_error(tmp_path):
    # train_limit = 1 used to end in a ZeroDivisionError inside fit.
    from arena.config.scenario import load_scenario
    from arena.config.splits import make_splits

    p = tmp_path / "small.toml"
    p.write_text(TINY_TOML.replace("train_limit = 8000", "train_limit = 1"))
    with pytest.raises(ScenarioError, match="attacker 0, defender 1") as err:
        make_splits(load_scenario(str(p)), 0)
    assert "train_limit" in err.value.hint


def test_a_written_leaderboard_publishes_full_sandbox_matches_only(home, tiny_path, tiny, tmp_path):
    """Matches whose agents ran under a weaker sandbox level stay out of a published leaderboard; the
    pre-level matches (no level stored) and the 'full' ones stay in."""
    from arena.results.store import Store

    store_matches(tiny.name, tiny.digest, GAMES)
    store = Store()
    recs = store.matches(digest=tiny.digest)
    weak = recs[0]
    weak.metrics = {**weak.metrics, "sandbox": "process"}
    store.save(weak)
    store.close()
    r = invoke("leaderboard", str(tiny_path), "--bootstrap", "10", "--write", "--out", str(tmp_path / "lb"))
    assert r.exit_code == 0, r.output
    assert "1 match(es) played under sandbox level process are left out" in r.output
    import gzip
    import json
    written = [json.loads(line) for line in gzip.open(tmp_path / "lb" / "tiny.matches.jsonl.gz")]
    assert len(written) == len(recs) - 1 and all(w["metrics"].get("sandbox") != "process" for w in written)


def test_leaderboard_write_defaults_to_the_arena_home(home, tiny_path, tiny, tmp_path, monkeypatch):
    store_matches(tiny.name, tiny.digest, GAMES)
    monkeypatch.chdir(tmp_path)
    r = invoke("leaderboard", str(tiny_path), "--bootstrap", "10", "--write")
    assert r.exit_code == 0, r.output
    assert (home / "leaderboards" / "tiny.md").is_file() and (home / "leaderboards" / "tiny.matches.jsonl.gz").is_file()
    assert not (tmp_path / "leaderboards").exists()


def test_csv_export_holds_plain_json_values_and_the_rounds(home, tmp_path):
    import csv
    import json

    from arena.results.store import MatchRecord, Store

    store = Store()
    store.save(MatchRecord(scenario="s", scenario_digest="d", attacker="a", attacker_version="1", defender="d",
                           defender_version="1", seed=0, rounds=2, status="ok", outcome=0.5,
                           metrics={"defense": {"aiv_per_class": [1.5, float("nan")], "flagged": False,
                                                "members": [{"member": 0, "flagged": True}]}},
                           round_records=[{"round": 1, "outcome": 0.2}, {"round": 2, "outcome": 0.5}]))
    store.close()
    target = tmp_path / "m.csv"
    r = invoke("matches", "export", "--format", "csv", "-o", str(target))
    assert r.exit_code == 0, r.output
    (row,) = list(csv.DictReader(target.open()))
    assert json.loads(row["metrics.defense.aiv_per_class"]) == [1.5, None]  # JSON, NaN as null
    assert json.loads(row["metrics.defense.members"]) == [{"member": 0, "flagged": True}]
    assert row["metrics.defense.flagged"] == "false"
    assert [rd["outcome"] for rd in json.loads(row["round_records"])] == [0.2, 0.5]  # every round, not left out
    assert "None" not in target.read_text() and "False" not in target.read_text()
