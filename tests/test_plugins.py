"""Plugins (installed entry points and files) and resumable tournaments.

The tournaments here play on the tiny scenario; the benign model, and any
trojan, is trained once per session and then served from the artifact cache.
"""

from __future__ import annotations

import importlib
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint, PackageNotFoundError, distribution
from pathlib import Path

import pytest

import arena.plugins
import arena.run.tournament
from arena.run.backends.local import LocalBackend
from arena.run.jobs import play_job
from arena.core.errors import PluginError
from arena.plugins import discover, make_agent
from arena.results.store import Store
from conftest import TINY_TOML, requires_fmnist

REPO = Path(__file__).resolve().parents[1]
BLENDED = REPO / "examples" / "blended-attacker"
BLENDED_DIST = "arena-blended-attacker"


def rows(db: Path) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT attacker, defender, seed, rounds, status FROM matches ORDER BY id").fetchall()
    finally:
        con.close()


# --- a third-party package, installed with pip -------------------------------------------------

def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def blended_installed(tmp_path_factory):
    """Install examples/blended-attacker into this interpreter (offline), uninstall afterwards.

    It is built from a copy, so build/ and *.egg-info never land in the source
    tree, and installed non-editable: an editable install's .pth finder only
    takes effect in a new interpreter, a plain install is importable at once.
    A copy the user installed themselves is used and left alone.
    """
    try:
        distribution(BLENDED_DIST)
        yield
        return
    except PackageNotFoundError:
        pass
    src = tmp_path_factory.mktemp("blended") / "blended-attacker"
    shutil.copytree(BLENDED, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    r = _pip("install", "--no-deps", "--no-build-isolation", "--no-index", "-q", str(src))
    if r.returncode != 0:
        pytest.fail(f"pip install {src} failed:\n{r.stdout}\n{r.stderr}")
    importlib.invalidate_caches()
    try:
        yield
    finally:
        r = _pip("uninstall", "-y", "-q", BLENDED_DIST)
        for mod in [m for m in sys.modules if m == "arena_blended" or m.startswith("arena_blended.")]:
            del sys.modules[mod]
        importlib.invalidate_caches()
        assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def tiny_quick_strip(tmp_path_factory):
    """The tiny scenario with STRIP at 16 overlays per input instead of 64.

    STRIP's cost is all in its mixtures (600 clean + 600 trigger inputs x
    samples, for the control run and the match); at 64 it alone would take
    a minute of a 2-core CPU. Training settings are tiny's, so the benign model
    (and any trojan) is the one the rest of the session trains and caches.
    """
    from arena.config.scenario import load_scenario

    p = tmp_path_factory.mktemp("scenarios") / "tiny-strip16.toml"
    p.write_text(TINY_TOML.replace('name = "tiny"', 'name = "tiny-strip16"') + "\n[defenders.strip]\nsamples = 16\n")
    return load_scenario(str(p))


@pytest.mark.slow
@requires_fmnist
def test_installed_plugin_plays_a_tournament(blended_installed, tiny_quick_strip, tmp_path):
    tiny = tiny_quick_strip
    # The entry point of a package installed a moment ago is visible in this process.
    ref = discover("attacker")["blended"]
    assert ref.source.startswith(f"{BLENDED_DIST}==0.1.0 (arena_blended:Blended)")
    agent = make_agent("attacker", "blended")
    assert type(agent).__module__ == "arena_blended" and agent.alpha == 0.8

    store = Store(tmp_path / "db.sqlite")
    report = arena.run.tournament.run(tiny, attackers=["blended"], defenders=["none", "strip"], seeds=[0],
                                  store=store)
    assert report.failed == [] and report.played == 2 and report.skipped == 0
    recs = store.matches(status="ok")
    assert sorted((r.attacker, r.defender) for r in recs) == [("blended", "none"), ("blended", "strip")]
    for r in recs:
        a = r.metrics["attack"]
        assert a["asr"] > 0.8 and a["asr"] > a["base_rate"] + 0.5, a  # a real backdoor, not the noise alone
        assert a["cad"] <= tiny.budgets.attack_cad, a
        assert r.metrics["attacker_notes"]["alpha"] == 0.8
    store.close()


# --- file plugins -------------------------------------------------------------------------------

def plugin_file(tmp_path: Path, body: str, name: str = "my_attack.py") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return p


GOOD = """
    from arena.api.protocol import Attacker, Trojan

    class MyAttack(Attacker):
        name = "my-attack"
        version = "3"

        def __init__(self, strength: float = 1.0):
            self.strength = strength

        def craft(self, ctx):
            return Trojan(model=ctx.benign, trigger=ctx.trigger)
"""


def test_file_plugin_loads(tmp_path):
    p = plugin_file(tmp_path, GOOD)
    spec = f"{p}:MyAttack"
    loaded = arena.plugins.load_agent("attacker", spec, {"strength": 2.0})
    agent = loaded.agent
    assert type(agent).__name__ == "MyAttack" and type(agent).version == "3" and agent.strength == 2.0
    assert loaded.name == spec  # known by its spec, never mixed with an installed name


def test_file_plugin_rejects_bad_parameters(tmp_path):
    p = plugin_file(tmp_path, GOOD)
    with pytest.raises(PluginError, match="rejects its parameters"):
        make_agent("attacker", f"{p}:MyAttack", {"strenght": 2.0})


def test_file_plugin_import_error_names_the_file(tmp_path):
    p = plugin_file(tmp_path, "raise RuntimeError('boom at import')\n", name="exploding.py")
    with pytest.raises(PluginError) as err:
        make_agent("attacker", f"{p}:Whatever")
    msg = str(err.value)
    assert str(p) in msg and "failed to import" in msg and "RuntimeError: boom at import" in msg


def test_file_plugin_syntax_error(tmp_path):
    p = plugin_file(tmp_path, "def oops(:\n", name="syntax.py")
    with pytest.raises(PluginError, match="SyntaxError"):
        make_agent("attacker", f"{p}:Oops")


def test_file_plugin_without_craft(tmp_path):
    p = plugin_file(tmp_path, """
        from arena.api.protocol import Attacker

        class Lazy(Attacker):
            name = "lazy"

        class NotEvenAnAttacker:
            name = "plain"
    """)
    with pytest.raises(PluginError, match=r"has no craft\(\) method"):
        make_agent("attacker", f"{p}:Lazy")
    with pytest.raises(PluginError, match=r"has no craft\(\) method"):
        make_agent("attacker", f"{p}:NotEvenAnAttacker")


def test_file_plugin_missing_class(tmp_path):
    p = plugin_file(tmp_path, GOOD)
    with pytest.raises(PluginError) as err:
        make_agent("attacker", f"{p}:Missing")
    assert "defines no 'Missing'" in str(err.value) and str(p) in str(err.value)


def test_file_plugin_missing_file(tmp_path):
    with pytest.raises(PluginError, match="file not found"):
        make_agent("attacker", f"{tmp_path / 'nope.py'}:X")


def test_unknown_installed_name_lists_installed(tmp_path):
    with pytest.raises(PluginError) as err:
        make_agent("attacker", "no-such-attack")
    msg = str(err.value)
    assert "unknown attacker 'no-such-attack'" in msg
    assert "installed attackers:" in msg and "badnet" in msg and "none" in msg


# --- two distributions claiming one name --------------------------------------------------------

@pytest.fixture
def twin_entry_points(monkeypatch):
    real = arena.plugins.entry_points

    def fake(**kw):
        eps = list(real(**kw))
        if kw.get("group") == "arena.attackers":
            eps += [EntryPoint("twin", "pkg_one.attack:Twin", "arena.attackers"),
                    EntryPoint("twin", "pkg_two.attack:Twin", "arena.attackers")]
        return eps

    monkeypatch.setattr(arena.plugins, "entry_points", fake)


def test_duplicate_name_is_an_error_only_for_that_name(twin_entry_points):
    assert "twin" in discover("attacker")  # listed without importing anything
    with pytest.raises(PluginError) as err:
        make_agent("attacker", "twin")
    msg = str(err.value)
    assert "more than one" in msg and "pkg_one.attack:Twin" in msg and "pkg_two.attack:Twin" in msg
    # unrelated agents still resolve
    assert type(make_agent("attacker", "badnet")).__name__ == "BadNet"
    assert type(make_agent("defender", "strip")).__name__ == "STRIP"


@pytest.mark.slow
@requires_fmnist
def test_duplicate_name_fails_only_its_own_match(twin_entry_points, tiny, tmp_path):
    store = Store(tmp_path / "db.sqlite")
    # In process: the faked entry points exist in this process only, not in an agent's own.
    report = arena.run.tournament.run(tiny, attackers=["none", "twin"], defenders=["none"], seeds=[0], store=store,
                                  isolation="inprocess")
    assert report.played == 1 and [f[0] for f in report.failed] == ["twin"]
    (bad,) = store.matches(status="error")
    assert bad.attacker == "twin" and "more than one" in bad.error
    store.close()


# --- tournaments ----------------------------------------------------------------------------------

@requires_fmnist
def test_broken_file_plugin_fails_only_its_match(tiny, tmp_path):
    p = plugin_file(tmp_path, "import no_such_module_anywhere\n", name="broken_attack.py")
    spec = f"{p}:Broken"
    store = Store(tmp_path / "db.sqlite")
    report = arena.run.tournament.run(tiny, attackers=["none", spec], defenders=["none"], seeds=[0], store=store)
    assert report.played == 1 and len(report.failed) == 1
    assert {(a, d, s, st) for a, d, s, _, st in rows(store.path)} == {("none", "none", 0, "ok"),
                                                                      (spec, "none", 0, "error")}
    (bad,) = store.matches(status="error")
    assert bad.attacker == spec and bad.outcome is None
    assert "PluginError" in bad.error and "no_such_module_anywhere" in bad.error and str(p) in bad.error
    (good,) = store.matches(status="ok")
    assert good.attacker == "none" and good.outcome is not None
    store.close()


@pytest.mark.slow
@requires_fmnist
def test_tournament_resumes_and_never_duplicates(tiny, tmp_path, monkeypatch):
    kw = dict(attackers=["none", "badnet"], defenders=["none"], seeds=[0])

    # A finished tournament: a re-run only reads the store.
    store = Store(tmp_path / "full.sqlite")
    first = arena.run.tournament.run(tiny, store=store, **kw)
    assert (first.played, first.skipped, first.failed) == (2, 0, [])
    again = arena.run.tournament.run(tiny, store=store, **kw)
    assert (again.played, again.skipped, again.failed) == (0, 2, [])
    assert len(rows(store.path)) == 2
    store.close()

    # An interrupted one (Ctrl-C during the second match): the first match is stored, the re-run plays the rest.
    store = Store(tmp_path / "interrupted.sqlite")
    calls = []

    def interrupted(job, progress=None):
        calls.append(job)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return play_job(job, progress)

    with pytest.raises(KeyboardInterrupt):
        arena.run.tournament.run(tiny, store=store, backend=LocalBackend(player=interrupted), **kw)
    assert rows(store.path) == [("none", "none", 0, 1, "ok")]

    resumed = arena.run.tournament.run(tiny, store=store, **kw)
    assert (resumed.played, resumed.skipped, resumed.failed) == (1, 1, [])
    got = rows(store.path)
    assert sorted(got) == [("badnet", "none", 0, 1, "ok"), ("none", "none", 0, 1, "ok")]
    assert len(got) == len(set(got))  # no duplicate rows
    assert [r.attacker for r in store.matches()] == ["none", "badnet"]
    store.close()


def test_a_method_with_the_wrong_signature_fails_when_loaded(tmp_path):
    p = plugin_file(tmp_path, """
from arena.api import Attacker, Trojan

class NoCtx(Attacker):
    name = "no-ctx"
    def craft(self):
        return None
""")
    with pytest.raises(PluginError, match=r"craft\(self\) cannot be called as craft\(ctx\)"):
        make_agent("attacker", f"{p}:NoCtx")
