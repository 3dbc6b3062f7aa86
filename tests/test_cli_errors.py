"""The CLI's answer to user mistakes: one 'error: ...' paragraph, exit code 2, never a traceback.

None of these trains a model: every error is raised before any training starts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import arena.config.datasets
from arena.cli import main
from conftest import TINY_TOML


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("ARENA_HOME", str(h))
    return h


def invoke(*args: str):
    # click >= 8.2: result.output holds stdout and stderr as the user sees them.
    return CliRunner().invoke(main, list(args), catch_exceptions=True)


def assert_user_error(result, *needles: str, code: int = 2) -> str:
    out = result.output
    assert result.exit_code == code, (result.exit_code, out, result.exception)
    assert "Traceback" not in out
    # A clean exit: click's own exit, not an exception escaping the command.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert out.startswith("error: "), out
    for n in needles:
        assert n in out, f"{n!r} not in:\n{out}"
    return out


def write_scenario(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# --- agents and scenarios by name --------------------------------------------------------------

def test_unknown_attacker(home, tiny_path):
    r = invoke("match", "no-such-attack", "none", "--scenario", str(tiny_path), "--no-store")
    assert_user_error(r, "unknown attacker 'no-such-attack'", "installed attackers:", "badnet", "file.py:ClassName")


def test_unknown_defender(home, tiny_path):
    r = invoke("match", "none", "no-such-defense", "--scenario", str(tiny_path), "--no-store")
    assert_user_error(r, "unknown defender 'no-such-defense'", "installed defenders:", "strip")


def test_unknown_agent_in_tournament_fails_before_training(home, tiny_path):
    r = invoke("tournament", "--scenario", str(tiny_path), "-a", "none,no-such-attack", "-d", "none")
    assert_user_error(r, "unknown attacker 'no-such-attack'")
    assert not (home / "cache").exists()  # nothing was trained


def test_unknown_scenario(home):
    r = invoke("match", "none", "none", "--scenario", "no-such-scenario")
    assert_user_error(r, "unknown scenario 'no-such-scenario'", "known scenarios:", "fmnist-cnn")


def test_scenario_file_not_found(home, tmp_path):
    r = invoke("scenarios", "show", str(tmp_path / "missing.toml"))
    assert_user_error(r, "scenario file not found", "missing.toml")


# --- malformed scenario files ------------------------------------------------------------------

def test_scenario_bad_toml(home, tmp_path):
    p = write_scenario(tmp_path, 'name = "broken"\n[training\nepochs = 3\n')
    out = assert_user_error(invoke("scenarios", "show", str(p)), str(p), "not valid TOML")
    assert len(out.strip().splitlines()) <= 3


def test_scenario_unknown_key_names_file_key_and_allowed_keys(home, tmp_path):
    p = write_scenario(tmp_path, TINY_TOML.replace("epochs = 3", "epoch = 3"))
    assert_user_error(invoke("match", "none", "none", "--scenario", str(p)),
                      str(p), "unknown key 'training.epoch'", "allowed keys in [training]:", "epochs",
                      "retrain_lr")


def test_scenario_unknown_top_level_key(home, tmp_path):
    p = write_scenario(tmp_path, 'colour = "blue"\n' + TINY_TOML)
    assert_user_error(invoke("scenarios", "show", str(p)), str(p), "unknown key 'colour'",
                      "allowed top-level keys", "dataset")


def test_scenario_bad_value_lists_allowed_values(home, tmp_path):
    p = write_scenario(tmp_path, TINY_TOML + '\n[threat]\nreveal = "maybe"\n')
    assert_user_error(invoke("scenarios", "show", str(p)), str(p), "'threat.reveal' = 'maybe'",
                      "allowed values: full, category, none")


def test_scenario_wrong_type(home, tmp_path):
    p = write_scenario(tmp_path, TINY_TOML.replace("epochs = 3", 'epochs = "three"'))
    assert_user_error(invoke("scenarios", "show", str(p)), str(p), "'training.epochs' must be int")


def test_scenario_zero_scoring_budget(home, tmp_path):
    p = write_scenario(tmp_path, TINY_TOML.replace("inputs = 600", "inputs = 600\npasses = 0"))
    assert_user_error(invoke("scenarios", "show", str(p)), str(p), "'scoring.passes' must be at least 1")


# --- environment: device and data --------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_device_cuda_without_cuda(home, tiny_path):
    r = invoke("match", "none", "none", "--scenario", str(tiny_path), "--device", "cuda", "--no-store")
    assert_user_error(r, "device 'cuda'", "CUDA is not available", "--device cpu")


def test_missing_dataset_says_where_it_looked(home, tmp_path, monkeypatch):
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("ARENA_DATA_DIR", str(empty))
    monkeypatch.setenv("ARENA_OFFLINE", "1")  # an offline machine: no download is tried
    arena.config.datasets.load_dataset.cache_clear()
    p = write_scenario(tmp_path, TINY_TOML.replace('dataset = "fashion-mnist"', 'dataset = "mnist"'))
    try:
        r = invoke("match", "none", "none", "--scenario", str(p), "--no-store")
    finally:
        arena.config.datasets.load_dataset.cache_clear()  # nothing of the empty folder outlives the test
    assert_user_error(r, "dataset 'mnist'", "not found", "looked in", str(empty / "mnist" / "train.npz"),
                      "downloads are off (ARENA_OFFLINE is set)", "ARENA_DATA_DIR")


def test_leaderboard_without_matches(home):
    r = invoke("leaderboard")
    assert_user_error(r, "no stored matches for scenario 'fmnist-cnn'", "arena tournament")


def test_matches_list_on_empty_store(home):
    r = invoke("matches", "list")
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output


# --- the listing commands work ----------------------------------------------------------------

def test_agents_list_shows_builtins(home):
    r = invoke("agents", "list")
    assert r.exit_code == 0, r.output
    for role, name in [("attacker", "none"), ("attacker", "badnet"), ("attacker", "imc"),
                       ("defender", "none"), ("defender", "strip")]:
        assert any(line.split()[:2] == [role, name] for line in r.output.splitlines()), (role, name, r.output)
    assert "backdoor-arena==" in r.output


def test_agents_check_all_ok(home):
    r = invoke("agents", "check")
    assert r.exit_code == 0, r.output
    assert "FAIL" not in r.output
    assert "ok    attacker badnet" in r.output and "ok    defender strip" in r.output


def test_agents_check_unknown(home):
    assert_user_error(invoke("agents", "check", "no-such-agent"), "unknown agent 'no-such-agent'")


def test_scenarios_list_and_show(home):
    from arena.config.scenario import load_scenario

    r = invoke("scenarios", "list")
    assert r.exit_code == 0, r.output
    assert any(line.startswith("fmnist-cnn ") for line in r.output.splitlines()), r.output
    r = invoke("scenarios", "show", "fmnist-cnn")
    assert r.exit_code == 0, r.output
    assert f"(digest {load_scenario('fmnist-cnn').digest})" in r.output.splitlines()[0]
    assert '"dataset": "fashion-mnist"' in r.output
