"""Tournaments on Ray: the same records as the local backend, worker deaths, the arena-home check.

One local Ray instance (2 CPUs, no dashboard) serves the whole module, and
its Ray tournaments share one arena home (``ray_home``, holding only the
session's benign model at first) and one log folder: the driver hands its
ARENA_* variables to the workers, and the same variables let Ray reuse warm
workers from one test to the next instead of starting new ones.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from arena.run import jobs, tournament
from conftest import copy_benign, share_key
from arena.config.scenario import load_scenario
from arena.results.store import MatchRecord, Store
from conftest import TINY_TOML, requires_fmnist

pytestmark = pytest.mark.slow  # trains models: not in the fast lane (README)

# An attacker that logs each craft and, by its mode, SIGKILLs the Ray worker playing its match:
# "once" the first time only (Ray's retry then plays it), "always" every time, "" never.
PLUGIN = """
import os, signal
from pathlib import Path
from arena.api.protocol import Attacker, Trojan


def ray_worker():
    # The Ray worker is this process (isolation "inprocess") or an ancestor (the referee's agent
    # host): the first one up whose title Ray set to "ray::...".
    pid = os.getpid()
    while pid > 1:
        if Path(f"/proc/{{pid}}/cmdline").read_bytes().startswith(b"ray::"):
            return pid
        pid = int(Path(f"/proc/{{pid}}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return None


class {cls}(Attacker):
    name = "{name}"
    version = "1"

    def craft(self, ctx):
        log = Path(os.environ["ARENA_TEST_LOG"])
        with open(log / "{name}.crafts", "a") as f:
            f.write("craft\\n")
        marker = log / "{name}.killed"
        if "{mode}" == "always" or ("{mode}" == "once" and not marker.exists()):
            worker = ray_worker()
            assert worker is not None, "not in a Ray worker"
            marker.touch()
            os.kill(worker, signal.SIGKILL)
        return Trojan(model=ctx.benign, trigger=ctx.trigger, notes={{}})
"""


def plugin(folder: Path, name: str, mode: str) -> str:
    cls = "".join(p.capitalize() for p in name.split("-"))
    f = folder / f"{name}.py"
    f.write_text(PLUGIN.format(cls=cls, name=name, mode=mode))
    return f"{f}:{cls}"


def crafts(log: Path, name: str) -> int:
    f = log / f"{name}.crafts"
    return len(f.read_text().splitlines()) if f.exists() else 0


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="ray is not installed (bash scripts/setup.sh installs it)")
    # address="local": a new instance, whatever `ray start` may have left on this machine.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING, object_store_memory=100 * 2**20)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny1(tmp_path_factory):
    """The tiny scenario with a one-epoch badnet (cheap to craft; same benign model as `tiny`)."""
    p = tmp_path_factory.mktemp("ray-scenario") / "tiny1.toml"
    p.write_text(TINY_TOML + "\n[attackers.badnet]\nepochs = 1\n")
    return load_scenario(str(p))


def fresh_home(folder: Path, session_home: Path) -> Path:
    """A home holding only the session's benign model: every other artifact is made by the run."""
    copy_benign(session_home, folder)
    share_key(session_home, folder)
    (folder / "log").mkdir()
    return folder


@pytest.fixture(scope="module")
def ray_home(referee, arena_home, tmp_path_factory) -> Path:
    referee.benign(0)  # the session's benign model, trained (or cached) here
    return fresh_home(tmp_path_factory.mktemp("ray-home"), arena_home)


@pytest.fixture
def use_home(monkeypatch):
    def use(home: Path, store: str = "arena.db") -> Store:
        monkeypatch.setenv("ARENA_HOME", str(home))
        monkeypatch.setenv("ARENA_TEST_LOG", str(home / "log"))  # ARENA_*: the driver hands it to its workers
        return Store(home / store)
    return use


def untimed(obj):
    """Metrics without seconds, milliseconds and memory peaks (``timing.trojan_cached`` stays: who crafted)."""
    if isinstance(obj, dict):
        return {k: untimed(v) for k, v in obj.items() if not k.endswith(("_s", "_ms", "_mb"))}
    if isinstance(obj, list):
        return [untimed(v) for v in obj]
    return obj


def comparable(r: MatchRecord) -> tuple:
    """A record without what differs between two plays of one match: its id, start and timings."""
    return (r.attacker, r.attacker_version, r.defender, r.defender_version, r.seed, r.rounds, r.status,
            r.outcome, r.reason, untimed(r.metrics), untimed(r.round_records), r.device, r.code_version)


def trojans(home: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (home / "cache" / "trojan").glob("*.pt")}


@requires_fmnist
def test_ray_stores_what_the_local_backend_stores(ray_cluster, ray_home, tiny1, arena_home, tmp_path, use_home):
    """badnet against two defenders: the two matches share one trojan, so on two CPUs the queue
    must hold the second back until the first has crafted it, as the local backend's order does."""
    pairs = dict(attackers=["badnet"], defenders=["none", "down-upsampling"], seeds=[0], device="cpu")

    store = use_home(ray_home, "equal.db")
    lines: list[str] = []
    report = tournament.run(tiny1, store=store, backend="ray", progress=lines.append, **pairs)
    assert report.failed == [] and report.played == 2
    on_ray = sorted(comparable(r) for r in store.matches())
    assert len(on_ray) == 2
    # Crafted once, by the first match in plan order, in a Ray worker and into the driver's home.
    assert [(r.defender, r.metrics["timing"]["trojan_cached"]) for r in store.matches()] == \
        [("none", False), ("down-upsampling", True)]
    crafted_on_ray = trojans(ray_home)
    assert len(crafted_on_ray) == 1
    assert lines[-1].startswith("[2/2] ") and lines[-1].endswith("| done 2, running 0, failed 0"), lines

    again = tournament.run(tiny1, store=store, backend="ray", **pairs)  # a re-run plays nothing
    assert again.played == 0 and again.skipped == 2 and len(store.matches()) == 2

    store = use_home(fresh_home(tmp_path / "local-home", arena_home))
    report = tournament.run(tiny1, store=store, **pairs)
    assert report.failed == [] and report.played == 2
    assert sorted(comparable(r) for r in store.matches()) == on_ray  # timings aside
    assert trojans(tmp_path / "local-home") == crafted_on_ray  # the same bytes


@requires_fmnist
def test_dead_workers_are_retried_once_and_never_duplicate_a_record(ray_cluster, ray_home, tiny1, tmp_path,
                                                                     use_home):
    """Two matches at once on two CPUs, each killing its worker mid-match: one the first time only,
    one every time. Each is the other's bystander. Agents run in the worker's own process here
    (``isolation="inprocess"``): a worker that replaces a dead one then starts in about 5 s instead
    of 13 (no forkserver to preload torch into), and the death being tested is the worker's."""
    once, always = plugin(tmp_path, "kill-once", "once"), plugin(tmp_path, "kill-always", "always")
    store = use_home(ray_home, "kill.db")
    report = tournament.run(tiny1, attackers=[once, always], defenders=["none"], seeds=[0], device="cpu",
                            store=store, backend="ray", isolation="inprocess")
    log = ray_home / "log"
    assert crafts(log, "kill-once") == 2  # killed, then replayed by Ray and played
    assert crafts(log, "kill-always") == 2  # killed, retried once, killed again: no third try
    assert report.played == 1
    assert [(a, d) for a, d, _, _ in report.failed] == [(always, "none")]
    assert "worker process died" in report.failed[0][3] and "twice" in report.failed[0][3]
    rows = store.matches()  # one row per match: none lost, none twice
    assert sorted((r.attacker, r.status) for r in rows) == sorted([(once, "ok"), (always, "error")])


def test_a_worker_that_does_not_see_the_home_stops_the_tournament(ray_cluster, tiny, tmp_path, use_home,
                                                                  monkeypatch):
    from arena.run.backends import ray as ray_backend
    store = use_home(tmp_path / "driver-home")
    real = ray_backend.worker_env

    def elsewhere(threads: int) -> dict[str, str]:  # workers told another home: as if no shared filesystem
        return {**real(threads), "ARENA_HOME": str(tmp_path / "worker-home")}

    monkeypatch.setattr(ray_backend, "worker_env", elsewhere)
    with pytest.raises(ray_backend.HomeNotShared) as err:
        tournament.run(tiny, attackers=["none"], defenders=["none"], seeds=[0], device="cpu", store=store,
                       backend="ray")
    assert str(tmp_path / "driver-home") in str(err.value) and str(tmp_path / "worker-home") in str(err.value)
    assert "shared filesystem" in str(err.value.hint)
    assert store.matches() == []  # nothing played
    assert not list((tmp_path / "driver-home" / ".ray-drivers").iterdir())  # the marker is cleaned up


# --- without Ray, and options that do not fit ----------------------------------------------------------

def test_without_ray_one_clear_error(tiny, tiny_path, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    from arena.run.backends import ray as ray_backend
    with pytest.raises(ray_backend.RayNotInstalled, match="not installed") as err:
        tournament.run(tiny, attackers=["none"], defenders=["none"], seeds=[0], store=Store(tmp_path / "x.db"),
                       backend="ray")
    assert "pip install 'backdoor-arena[ray]'" in str(err.value)

    from arena.cli import main

    r = CliRunner().invoke(main, ["tournament", "-s", str(tiny_path), "-a", "none", "-d", "none", "--backend", "ray"])
    assert r.exit_code == 2, r.output
    assert "pip install 'backdoor-arena[ray]'" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("args, says", [
    (["--address", "localhost:6379"], "--backend ray"),
    (["--gpus-per-match", "0.5"], "--backend ray"),
    (["--backend", "ray", "--workers", "2"], "--cpus-per-match"),
    (["--backend", "ray", "--device", "cuda", "--gpus-per-match", "0"], "--gpus-per-match"),
])
def test_cli_refuses_options_that_do_not_fit_the_backend(tiny_path, args, says):
    from arena.cli import main

    r = CliRunner().invoke(main, ["tournament", "-s", str(tiny_path), "-a", "none", "-d", "none", *args])
    assert r.exit_code == 2, r.output
    assert says in r.output and "Traceback" not in r.output


def test_tally_counts_and_eta():
    now = [100.0]
    lines: list[str] = []
    tally = jobs.Tally(4, lines.append, clock=lambda: now[0])
    tally.start(2)
    rec = MatchRecord(scenario="s", scenario_digest="d", attacker="a", attacker_version="1", defender="d",
                      defender_version="1", seed=0, rounds=1, status="ok", outcome=0.25, duration_s=3.0)
    now[0] = 130.0
    tally.finish(rec)
    assert lines[-1] == "[1/4] a vs d seed 0: 0.250 (3.0 s) | done 1, running 1, failed 0, ETA 1:30"
    tally.start()
    now[0] = 160.0
    tally.finish(MatchRecord(**{**rec.to_dict(), "status": "error", "outcome": None,
                                "error": "WorkerDied: worker process died\ntraceback"}))
    assert lines[-1] == ("[2/4] a vs d seed 0: FAILED WorkerDied: worker process died | "
                         "done 1, running 1, failed 1, ETA 1:00")


def test_job_queue_holds_back_matches_of_a_trojan_being_crafted(tiny, monkeypatch):
    plan = [jobs.Job(tiny, a, d, s, 1, "cpu") for a in ("x", "ad") for s in (0, 1) for d in ("d1", "d2")]
    q = jobs.JobQueue(plan, group=lambda j: None if j.attacker == "ad" else (j.attacker, j.seed))
    names = lambda idx: [(plan[i].attacker, plan[i].seed, plan[i].defender) for i in idx]  # noqa: E731
    first = [q.pop() for _ in range(5)]
    # x seed 0 and x seed 1 each start one match; the adaptive attacker's run freely.
    assert names(first) == [("x", 0, "d1"), ("x", 1, "d1"), ("ad", 0, "d1"), ("ad", 0, "d2"), ("ad", 1, "d1")]
    q.pop()  # ad seed 1 d2
    assert q.pop() is None and len(q) == 2
    q.finish(first[0], ok=False)  # a failed match leaves no trojan: the next one of its group may craft it
    nxt = q.pop()
    assert names([nxt]) == [("x", 0, "d2")]
    q.finish(first[1], ok=True)  # ok: the trojan is cached, the group is open
    assert names([q.pop()]) == [("x", 1, "d2")] and len(q) == 0


def test_matches_of_an_attacker_that_names_its_crafts_wait_for_the_first(tiny):
    """imc-adaptive shares its plain craft between defenders: two of its matches must not make it at once."""
    assert jobs.trojan_group(jobs.Job(tiny, "imc-adaptive", "strip", 3, 1, "cpu")) == ("imc-adaptive", 3)
    assert jobs.trojan_group(jobs.Job(tiny, "badnet", "strip", 3, 1, "cpu")) == ("badnet", 3)
