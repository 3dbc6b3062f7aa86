"""Where results go and how the CLI shows them: the arena home, match ids, `matches show`,
strict `--json`, and stored errors shown by their message, not their traceback.

Only the `--json` test plays real matches (one match, then twice from the cache).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import arena.run.tournament
from arena.core.cache import arena_home
from arena.cli import main
from arena.cli.common import _error_line, _json
from arena.results.store import MatchRecord, Store
from conftest import requires_fmnist


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("ARENA_HOME", str(h))
    return h


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def record(attacker: str = "badnet", defender: str = "strip", **kw) -> MatchRecord:
    fields = dict(scenario="tiny", scenario_digest="d" * 16, attacker=attacker, attacker_version="1",
                  defender=defender, defender_version="1", seed=0, rounds=1, status="ok", outcome=0.5,
                  reason="a reason")
    return MatchRecord(**{**fields, **kw})


# --- 1. one home, whatever the current folder ---------------------------------------------------

def test_arena_home_ignores_the_current_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("ARENA_HOME", str(tmp_path / "explicit"))
    assert arena_home() == tmp_path / "explicit"
    monkeypatch.delenv("ARENA_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert arena_home() == tmp_path / "xdg" / "backdoor-arena"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/xdg")  # invalid per the XDG spec: ignored
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert arena_home() == tmp_path / "user" / ".local" / "share" / "backdoor-arena"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.chdir(tmp_path)
    assert arena_home() == tmp_path / "user" / ".local" / "share" / "backdoor-arena"
    assert not arena_home().exists()  # asking creates nothing


# --- 2. match ids -------------------------------------------------------------------------------

def test_save_returns_the_stored_id_when_it_replaces_a_row(home):
    store = Store()
    first = store.save(record("badnet", "strip"))
    other = store.save(record("badnet", "none"))
    assert store.stored_id(record("badnet", "strip")) == first
    again = store.save(record("badnet", "strip", outcome=0.9))  # same natural key: an update
    assert again == first != other
    assert store.get(first).outcome == 0.9 and store.get(first).id == first
    assert store.stored_id(record("imc", "strip")) is None and store.get(999) is None
    store.close()


# --- 3. matches show ------------------------------------------------------------------------------

def test_matches_show_reports_rounds_and_forfeits(home):
    store = Store()
    rounds = [{"round": 1, "outcome": 0.75, "reason": "first round's reason", "metrics": {}},
              {"round": 2, "outcome": 1.0, "reason": "defender forfeits: it crashed", "metrics": {}}]
    forfeited = record("imc-adaptive", "strip", rounds=2, outcome=1.0, reason="defender forfeits: it crashed",
                       round_records=rounds, device="cpu",
                       metrics={"attack": {"asr": 0.97, "cad": float("nan")}, "attacker_notes": {},
                                "forfeit": {"side": "defender", "kind": "crashed in deploy",
                                            "message": "RuntimeError: out of cheese (at strip.py:7)"}})
    mid = store.save(forfeited)
    failed = store.save(record("badnet", "abs", status="error", outcome=None, reason="",
                               error="ValueError: boom\nTraceback (most recent call last):\n  File \"x\"\n"))
    store.close()

    r = invoke("matches", "show", str(mid))
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert out.startswith(f"match #{mid}: imc-adaptive vs strip on tiny (seed 0, 2 round(s)"), out
    assert "attacker scores 1.000" in out and "attacker wins" in out, out
    assert "forfeit: the defender crashed in deploy: RuntimeError: out of cheese (at strip.py:7)" in out, out
    assert "first round's reason" in out and "defender forfeits: it crashed" in out, out  # every round
    assert "asr" in out and "0.9700" in out, out

    r = invoke("matches", "show", str(failed))
    assert r.exit_code == 0 and "status:  error" in r.stdout and "ValueError: boom" in r.stdout, r.output

    r = invoke("matches", "show", "4242")
    assert r.exit_code == 2 and r.output.startswith("error: no stored match #4242 in "), r.output
    assert f"stored ids go up to {failed}" in r.output and "arena matches list" in r.output, r.output


# --- 6. errors shown by their message ------------------------------------------------------------

OLD_TRACEBACK = 'Traceback (most recent call last):\n  File "a.py", line 3, in f\n    g()\nKeyError: \'seed\'\n'


def test_error_line_skips_the_traceback():
    assert _error_line("ValueError: boom\nTraceback (most recent call last):\n  File x\nValueError: boom") == \
        "ValueError: boom"
    assert _error_line(OLD_TRACEBACK) == "KeyError: 'seed'"
    assert _error_line("\n\nWorkerDied: worker process died (signal SIGKILL)") == \
        "WorkerDied: worker process died (signal SIGKILL)"
    assert _error_line(None) == "" and _error_line("") == ""


def test_matches_list_errors_and_tournament_summary_show_the_message(home, tiny_path, monkeypatch):
    store = Store()
    store.save(record("badnet", "strip", status="error", outcome=None, reason="",
                      error="ValueError: boom\nTraceback (most recent call last):\n  File \"x\", line 1\n"))
    store.save(record("imc", "strip", status="error", outcome=None, reason="", error=OLD_TRACEBACK))
    store.save(record("imc", "none"))
    store.close()
    r = invoke("matches", "list", "--errors")
    assert r.exit_code == 0, r.output
    assert "ValueError: boom" in r.stdout and "KeyError: 'seed'" in r.stdout, r.stdout
    assert "Traceback" not in r.stdout and " none " not in r.stdout, r.stdout

    def fake_run(*args, **kwargs):  # a tournament whose one match failed, without playing it
        return arena.run.tournament.TournamentReport(played=1, failed=[("badnet", "strip", 0, OLD_TRACEBACK)])

    monkeypatch.setattr(arena.run.tournament, "run", fake_run)
    r = invoke("tournament", "-s", str(tiny_path))
    assert r.exit_code == 1, r.output
    assert "FAILED badnet vs strip seed 0: KeyError: 'seed'" in r.stdout and "Traceback" not in r.stdout, r.stdout
    assert f"stored 2 match(es) in {home / 'arena.db'}" in r.stderr, r.stderr


def test_json_has_no_nan_tokens():
    text = _json({"a": float("nan"), "b": [1.0, float("inf"), {"c": -float("inf")}], "d": (2.5,)})
    assert json.loads(text) == {"a": None, "b": [1.0, None, {"c": None}], "d": [2.5]}


# --- 2 and 4. a real match: --json stays one object, ids, replacement ----------------------------

LOUD = """
    import os
    from arena.api.protocol import Attacker, Trojan

    class Loud(Attacker):
        # Prints while it crafts (Python and the raw file descriptor) and leaves a NaN in its notes.
        name = "loud"

        def craft(self, ctx):
            print("hello from craft")
            os.write(1, b"raw bytes on fd 1\\n")
            return Trojan(model=ctx.benign, trigger=ctx.trigger, notes={"score": float("nan")})
"""


def _arena(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # A real process: agents' writes to file descriptor 1 reach its stdout unless the CLI stops them.
    return subprocess.run([sys.executable, "-m", "arena.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ), timeout=600)


def _strict(text: str) -> dict:
    def no_constant(name: str):
        raise AssertionError(f"{name} in JSON output")

    return json.loads(text, parse_constant=no_constant)


@pytest.mark.slow
@requires_fmnist
def test_match_json_is_one_object_with_its_stored_id(tiny_path, tmp_path):
    plugin = tmp_path / "loud.py"
    plugin.write_text(textwrap.dedent(LOUD))
    args = ["match", f"{plugin}:Loud", "none", "-s", str(tiny_path), "--device", "cpu", "--json"]
    db = (arena_home() / "arena.db").absolute()

    first = _arena(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    doc = _strict(first.stdout)  # the whole of stdout is one JSON document
    assert isinstance(doc["id"], int) and doc["attacker"].endswith("loud.py:Loud"), doc
    assert doc["metrics"]["attacker_notes"]["score"] is None, doc["metrics"]["attacker_notes"]
    assert "hello from craft" in first.stderr and "raw bytes on fd 1" in first.stderr, first.stderr
    assert f"stored as match #{doc['id']} in {db}" in first.stderr, first.stderr

    again = _arena(*args, cwd=tmp_path)  # the trojan from the cache: a replay of the same match
    assert again.returncode == 0, again.stderr
    assert _strict(again.stdout)["id"] == doc["id"]
    assert f"replaces stored match #{doc['id']}" in again.stderr, again.stderr

    unstored = _arena(*args, "--no-store", cwd=tmp_path)
    assert unstored.returncode == 0, unstored.stderr
    assert _strict(unstored.stdout)["id"] is None and "not stored" in unstored.stderr

    shown = invoke("matches", "show", str(doc["id"]))
    assert shown.exit_code == 0 and shown.stdout.startswith(f"match #{doc['id']}: "), shown.output


# --- published matches go back into a store -------------------------------------------------------

def test_matches_import_adds_published_matches_once_and_a_tournament_skips_them(home, tmp_path, monkeypatch):
    from arena.results.io import write_jsonl_gz

    published = write_jsonl_gz([record(seed=s, id=40 + s) for s in (0, 1)] + [record(defender="neo", id=7)],
                               tmp_path / "tiny.matches.jsonl.gz")
    out = invoke("matches", "import", str(published))
    assert out.exit_code == 0 and "imported 3 match(es)" in out.output
    store = Store(readonly=True)
    assert len(store.matches()) == 3
    assert store.has_ok("d" * 16, "badnet", "1", "strip", "1", 1, 1)  # what the tournament's plan asks
    store.close()
    # Importing again keeps what is stored; --replace overwrites it with the file's copy.
    changed = write_jsonl_gz([record(seed=0, outcome=0.25)], tmp_path / "changed.jsonl.gz")
    again = invoke("matches", "import", str(published), str(changed))
    assert "imported 0 match(es), kept 4 already stored" in again.output
    invoke("matches", "import", "--replace", str(changed))
    store = Store(readonly=True)
    assert len(store.matches()) == 3
    assert [r.outcome for r in store.matches() if r.seed == 0 and r.defender == "strip"] == [0.25]
    store.close()
    # `arena matches export` output (plain JSON lines) round-trips too.
    exported, packed = tmp_path / "all.jsonl", tmp_path / "all.jsonl.gz"
    invoke("matches", "export", "-o", str(exported))
    invoke("matches", "export", "-o", str(packed))
    assert packed.read_bytes()[:2] == b"\x1f\x8b"
    for i, f in enumerate((exported, packed)):
        monkeypatch.setenv("ARENA_HOME", str(tmp_path / f"other-home-{i}"))
        assert "imported 3 match(es)" in invoke("matches", "import", str(f)).output


def test_matches_import_of_a_file_that_is_not_matches_says_what_to_pass(home, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\n")
    out = CliRunner().invoke(main, ["matches", "import", str(bad)])
    assert out.exit_code != 0 and "not a file of published matches" in out.output
    assert "arena leaderboard --write" in out.output


def test_a_replayed_pair_counts_once_on_the_leaderboard(home):
    """A new version of an agent replays its matches beside the old ones; the board rates the last stored."""
    store = Store()
    store.save(record("imc", "strip", outcome=1.0, seed=0))
    store.save(record("imc", "strip", outcome=0.0, seed=0, defender_version="2"))  # stored after: the newest
    store.save(record("imc", "strip", outcome=1.0, seed=1))
    store.save(record("badnet", "strip", outcome=0.0, seed=0))
    store.close()
    r = CliRunner().invoke(main, ["leaderboard", "tiny", "--json"])
    assert r.exit_code == 0, r.output
    board = json.loads(r.stdout)
    assert board["matches"] == 3 and "1 match(es) replayed since by a newer version" in r.stderr
    imc = next(x for x in board["ratings"] if x["name"] == "imc")
    assert imc["matches"] == 2 and imc["mean_score"] == 0.5  # the old 1.0 at seed 0 is not counted


def test_a_seed_played_in_two_homes_is_flagged_but_whole_seeds_from_two_homes_are_not(home):
    """Agents draw from the home's secret key: one seed's matches from two homes are not one draw of it.
    Whole seeds from two homes are independent draws, as seeds are (a tournament carried across homes)."""
    store = Store()
    store.save(record("imc", "strip", seed=0, metrics={"key_id": "aaaa1111"}))
    store.save(record("badnet", "strip", seed=0, metrics={"key_id": "bbbb2222"}))
    store.save(record("imc", "strip", seed=1, metrics={"key_id": "bbbb2222"}))
    store.close()
    r = CliRunner().invoke(main, ["leaderboard", "tiny", "--json"])
    assert r.exit_code == 0 and "seed 0 was played under more than one referee key (aaaa1111: 1, bbbb2222: 1)" \
        in r.stderr
    assert "seed 1 was played" not in r.stderr
    store = Store()
    store.save(record("badnet", "strip", seed=0, metrics={"key_id": "aaaa1111"}))  # seed 0 in one home now
    store.close()
    assert "referee key" not in CliRunner().invoke(main, ["leaderboard", "tiny", "--json"]).stderr


def test_export_of_chosen_seeds_carries_them_to_another_home(home, tmp_path, monkeypatch):
    """Finished seeds move to a new home, whose tournament then skips them."""
    store = Store()
    store.save(record("imc", "strip", seed=0))
    store.save(record("imc", "strip", seed=1))
    store.save(record("badnet", "strip", seed=2))
    store.close()
    out = tmp_path / "done.jsonl.gz"
    r = CliRunner().invoke(main, ["matches", "export", "--seed", "0", "--seed", "2", "-o", str(out)])
    assert r.exit_code == 0, r.output
    monkeypatch.setenv("ARENA_HOME", str(tmp_path / "other-home"))
    r = CliRunner().invoke(main, ["matches", "import", str(out)])
    assert r.exit_code == 0 and "imported 2 match(es)" in r.output, r.output
    assert sorted((m.attacker, m.seed) for m in Store(readonly=True).matches()) == [("badnet", 2), ("imc", 0)]


def test_a_partly_played_seed_is_named_on_the_board(home):
    """Every pair met on some seed, but seed 1 is still being played: its fit rests on what it reached."""
    store = Store()
    for seed in (0, 1):
        for a in ("imc", "badnet"):
            for d in ("strip", "none"):
                if seed == 1 and (a, d) != ("imc", "strip"):
                    continue  # seed 1 has reached one pair so far
                store.save(record(a, d, seed=seed, outcome=0.5 if d == "strip" else 0.9))
    store.close()
    r = CliRunner().invoke(main, ["leaderboard", "tiny", "--json"])
    assert r.exit_code == 0, r.output
    assert "partly played seeds: seed 1 has 1 of 4 pairs" in r.stderr
    out = CliRunner().invoke(main, ["leaderboard", "tiny", "--write", "--out", str(home / "boards")])
    assert out.exit_code == 0, out.output
    assert "**Incomplete:** partly played seeds: seed 1 has 1 of 4 pairs" in (home / "boards" / "tiny.md").read_text()
    store = Store()
    for a, d in (("imc", "none"), ("badnet", "strip"), ("badnet", "none")):
        store.save(record(a, d, seed=1, outcome=0.5 if d == "strip" else 0.9))
    store.close()
    assert "partly played" not in CliRunner().invoke(main, ["leaderboard", "tiny", "--json"]).stderr
