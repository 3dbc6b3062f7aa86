"""Artifacts that can be trusted: verified cache reads, file-plugin identity, worker deaths, and
byte-identical models whatever the number of tournament workers."""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from arena.run import tournament
from arena.core.cache import ArtifactCache, sweep_temp_files
from arena.core.keys import referee_key
from arena.plugins import canonical_spec, load_agent
from arena.config.scenario import load_scenario
from arena.results.store import Store
from conftest import copy_benign, share_key, TINY_TOML, requires_fmnist

pytestmark = pytest.mark.slow  # trains models: not in the fast lane (README)

PLUGIN = """
import os, signal, time
from pathlib import Path
from arena.api.protocol import Attacker, Trojan


def tournament_worker():
    # The agent may run in the worker or in a process below it (the referee's agent host):
    # the worker is the ancestor-or-self whose parent is the test process.
    pid = os.getpid()
    while pid > 1:
        ppid = int(Path(f"/proc/{{pid}}/stat").read_text().rsplit(")", 1)[1].split()[1])
        if ppid == int(os.environ.get("ARENA_TEST_PID", "-1")):
            return pid
        pid = ppid
    return None


class {cls}(Attacker):
    name = "{name}"
    version = "1"

    def craft(self, ctx):
        markers = Path(os.environ.get("ARENA_TEST_KILL_MARKERS", "/nonexistent"))
        marker = markers / self.name
        worker = tournament_worker()
        if {always}:
            # Let a "once" agent in flight beside this one die first: killing the shared pool before it
            # reached craft would make it a bystander, replayed alone, dying there for the first time.
            deadline = time.monotonic() + 20
            while worker is not None and not (markers / "kill-once").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
        if worker is not None and ({always} or not marker.exists()):
            marker.touch()
            os.kill(worker, signal.SIGKILL)
        return Trojan(model=ctx.benign, trigger=ctx.trigger, notes={{}})
"""


def plugin(folder: Path, name: str, always: bool) -> str:
    cls = "".join(p.capitalize() for p in name.split("-"))
    f = folder / f"{name}.py"
    f.write_text(PLUGIN.format(cls=cls, name=name, always=always))
    return f"{f}:{cls}"


# --- the cache verifies what it serves ------------------------------------------------------------

def _cache(tmp_path: Path) -> tuple[ArtifactCache, list[str]]:
    events: list[str] = []
    return ArtifactCache(tmp_path, on_event=events.append), events


def test_roundtrip_and_hash_header(tmp_path):
    cache, events = _cache(tmp_path)
    cache.put("benign", "k1", {"w": torch.arange(5.0)})
    assert torch.equal(cache.get("benign", "k1")["w"], torch.arange(5.0))
    assert cache.path("benign", "k1").read_bytes().startswith(b"ARENA-HMAC:")
    assert cache.get("benign", "missing") is None and events == []


def test_corrupt_bytes_are_rebuilt_not_served(tmp_path):
    cache, events = _cache(tmp_path)
    cache.put("trojan", "k2", {"w": torch.ones(64)})
    p = cache.path("trojan", "k2")
    blob = bytearray(p.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # one flipped byte in the middle of the payload
    p.write_bytes(bytes(blob))
    value, hit = cache.get_or_make("trojan", "k2", lambda: {"w": torch.full((64,), 2.0)})
    assert not hit and torch.equal(value["w"], torch.full((64,), 2.0))
    assert len(events) == 1 and "trojan" in events[0] and "k2" in events[0] and "rebuilt" in events[0]
    assert p.with_name(p.name + ".corrupt").is_file()  # kept aside for a post-mortem
    assert torch.equal(cache.get("trojan", "k2")["w"], torch.full((64,), 2.0))  # the rebuilt one is served


def test_truncated_and_headerless_files_are_rebuilt(tmp_path):
    cache, events = _cache(tmp_path)
    cache.put("benign", "cut", {"w": torch.ones(1000)})
    p = cache.path("benign", "cut")
    p.write_bytes(p.read_bytes()[:300])
    assert cache.get_or_make("benign", "cut", lambda: {"w": torch.zeros(3)})[1] is False
    torch.save({"w": torch.ones(2)}, cache.path("benign", "old"))  # a plain torch file (older arena)
    assert cache.get("benign", "old") is None and not cache.path("benign", "old").exists()
    junk = b"not a torch file"  # a correct MAC of bytes torch.load cannot read
    header = b"ARENA-HMAC:" + hmac.new(referee_key(tmp_path), junk, hashlib.sha256).hexdigest().encode() + b"\n"
    cache.path("benign", "junk").write_bytes(header + junk)
    assert cache.get("benign", "junk") is None
    assert len(events) == 3 and all("rebuilt" in e for e in events) and "torch.load failed" in events[2]


def test_an_entry_rewritten_without_the_homes_key_is_not_served(tmp_path):
    """Whoever can write a cache file but not read the key (an agent, were it to reach the cache)
    cannot make an entry the referee serves: neither a plain hash nor a MAC under another key passes."""
    cache, events = _cache(tmp_path)
    cache.put("control", "k", {"flagged": torch.tensor(False)})
    forged = io.BytesIO()
    torch.save({"flagged": torch.tensor(True)}, forged)
    payload = forged.getvalue()
    for digest in (hashlib.sha256(payload).hexdigest(),
                   hmac.new(b"\0" * 32, payload, hashlib.sha256).hexdigest()):
        cache.path("control", "k").write_bytes(b"ARENA-HMAC:" + digest.encode() + b"\n" + payload)
        assert cache.get("control", "k") is None
    assert len(events) == 2 and all("MAC mismatch" in e for e in events)
    other_home = ArtifactCache(tmp_path / "other")  # another home's key: its entries do not pass here
    other_home.put("control", "k", {"flagged": torch.tensor(True)})
    cache.path("control", "k").write_bytes(other_home.path("control", "k").read_bytes())
    assert cache.get("control", "k") is None


def test_without_on_event_a_warning_is_issued(tmp_path):
    cache = ArtifactCache(tmp_path)
    cache.put("control", "k", {"a": torch.ones(1)})
    cache.path("control", "k").write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning, match="control entry k is corrupt"):
        assert cache.get("control", "k") is None


def test_stale_temp_files_are_removed(tmp_path):
    root = tmp_path / "cache"
    (root / "trojan").mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    stale_old = root / "trojan" / f"a.tmp{os.getpid()}"
    stale_dead = root / "trojan" / f"b.tmp{dead.pid}"
    fresh_live = root / "trojan" / f"c.tmp{os.getpid()}"  # a write in progress: left alone
    keep = root / "trojan" / "d.pt"
    for f in (stale_old, stale_dead, fresh_live, keep):
        f.write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    os.utime(stale_old, (two_hours_ago, two_hours_ago))
    os.utime(stale_dead, (time.time() - 120, time.time() - 120))
    removed = sweep_temp_files(root)
    assert sorted(removed) == sorted([stale_old, stale_dead])
    assert fresh_live.exists() and keep.exists()
    # Opening a cache sweeps (once per process and root).
    os.utime(fresh_live, (two_hours_ago, two_hours_ago))
    ArtifactCache(tmp_path)
    assert not fresh_live.exists()


# --- file plugins: one name per file, a digest of its code -----------------------------------------

def test_file_agent_spec_is_canonical_and_digest_tracks_edits(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    plugin(tmp_path, "edit-me", always=True)
    names = {load_agent("attacker", spec).name
             for spec in ("./edit-me.py:EditMe", "edit-me.py:EditMe", f"{tmp_path}/edit-me.py:EditMe",
                          "sub/../edit-me.py:EditMe")}
    assert names == {"edit-me.py:EditMe"}
    assert canonical_spec("none") == "none"
    assert canonical_spec("/elsewhere/x.py:A") == "/elsewhere/x.py:A"

    before = load_agent("attacker", "edit-me.py:EditMe").code_digest
    assert before is not None and len(before) == 16
    with open(tmp_path / "edit-me.py", "a") as f:
        f.write("\n# an edit\n")
    assert load_agent("attacker", "./edit-me.py:EditMe").code_digest != before
    assert load_agent("attacker", "none").code_digest is None


# --- tournaments: a killed worker, and workers that make the same bytes -------------------------------

@requires_fmnist
def test_sigkilled_worker_costs_only_its_match(tiny, referee, tmp_path, monkeypatch):
    referee.benign(0)  # cached here; the workers read it
    monkeypatch.setenv("ARENA_TEST_KILL_MARKERS", str(tmp_path))  # a plugin that killed leaves a file here
    monkeypatch.setenv("ARENA_TEST_PID", str(os.getpid()))
    always = plugin(tmp_path, "kill-always", always=True)
    once = plugin(tmp_path, "kill-once", always=False)  # dies the first time only: replayed and played
    store = Store(tmp_path / "kill.sqlite")
    # In-process agents: the plugin kills the worker it runs in (an agent process's sandbox forbids
    # signalling anything outside it, so there a plugin cannot take its worker down at all).
    report = tournament.run(tiny, attackers=["none", always, once], defenders=["none"], seeds=[0],
                            workers=2, store=store, isolation="inprocess")
    assert report.played == 2
    assert [(a, d) for a, d, _, _ in report.failed] == [(always, "none")]
    assert "worker process died (signal SIGKILL)" in report.failed[0][3]
    assert sorted(r.attacker for r in store.matches(status="ok")) == sorted(["none", once])
    assert [r.attacker for r in store.matches(status="error")] == [always]


def _trojan_hashes(home: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (home / "cache" / "trojan").glob("*.pt")}


@requires_fmnist
def test_same_trojan_bytes_with_one_or_two_workers(referee, arena_home, tmp_path, monkeypatch):
    """CPU training bytes depend on the thread count; a tournament pins it per match, so the
    in-process run (which would use every core) and a worker agree."""
    referee.benign(0)
    monkeypatch.delenv("ARENA_THREADS", raising=False)
    # One re-training epoch is enough to tell thread counts apart; the benign key ignores retrain_*.
    (tmp_path / "tiny1.toml").write_text(TINY_TOML + "\n[attackers.badnet]\nepochs = 1\n")
    tiny = load_scenario(str(tmp_path / "tiny1.toml"))
    trojans = {}
    for workers in (1, 2):
        home = tmp_path / f"home{workers}"
        # The same benign model in both homes; each crafts its own trojan.
        copy_benign(arena_home, home)
        share_key(arena_home, home)
        monkeypatch.setenv("ARENA_HOME", str(home))
        report = tournament.run(tiny, attackers=["badnet"], defenders=["none"], seeds=[0], workers=workers,
                                store=Store(home / "arena.sqlite"))
        assert report.failed == [] and report.played == 1
        trojans[workers] = _trojan_hashes(home)
    assert len(trojans[1]) == 1 and trojans[1] == trojans[2]


@requires_fmnist
def test_a_trojan_is_measured_once_and_a_cached_measurement_is_exact(tiny, tmp_path):
    """The referee's attack metrics are cached by the content of what they read: every defender of a
    seed meets the same trojan, so it is measured once, and a hit gives the same match to the bit."""
    from arena.engine.referee import Referee

    ref = Referee(tiny, device="cpu", cache=ArtifactCache(tmp_path))
    measured = tmp_path / "cache" / "measure"

    def strip_timing(rec):  # wall times differ between any two plays
        m = {k: v for k, v in rec.metrics.items() if k not in ("timing", "environment")}
        m["defense"] = {k: v for k, v in m["defense"].items() if k not in ("art_model_s", "art_input_ms")}
        return m

    fresh = ref.play("badnet", "down-upsampling", seed=0).record
    assert len(list(measured.glob("*.pt"))) == 1
    ref.play("badnet", "none", seed=0)
    assert len(list(measured.glob("*.pt"))) == 1  # the second defender met the measured trojan
    hit = ref.play("badnet", "down-upsampling", seed=0).record
    assert strip_timing(hit) == strip_timing(fresh) and hit.outcome == fresh.outcome

    # Other bytes, another measurement: a trojan rebuilt differently is never served the old one.
    for f in (tmp_path / "cache" / "trojan").glob("*.pt"):
        payload = ArtifactCache(tmp_path).get("trojan", f.stem)
        name = next(k for k, v in payload["state"].items() if v.is_floating_point())
        payload["state"][name] = payload["state"][name] + 1e-3
        ArtifactCache(tmp_path).put("trojan", f.stem, payload)
    ref.play("badnet", "none", seed=0)
    assert len(list(measured.glob("*.pt"))) == 2


@requires_fmnist
def test_the_defense_reference_handed_over_equals_the_one_measured_in_place(referee, tiny):
    import dataclasses

    from arena.engine.metrics import LocalDeployment, defense_metrics, measure_attack
    from arena.api.protocol import Deployment

    benign, _ = referee.benign(0)
    trojan = referee.craft("badnet", 0)
    clean_x, clean_y, trig_x = referee._scoring_inputs(0)
    target = tiny.attack.target_class
    am, ok, probs = measure_attack(benign, trojan.model, trig_x, trojan.stamped, clean_x, clean_y, target)
    assert ok is not None and ok.dtype == torch.bool and len(ok) == len(clean_x)
    # The trojan's answers on clean then stamped inputs: what an untouched deployment is served from.
    assert probs.shape == (len(clean_x) + len(trojan.stamped), 10)
    assert torch.equal(probs[: len(clean_x)].argmax(1) == clean_y, ok)
    # A "sanitizer" that serves the benign model: a real CAD and a real paired error to get right.
    for passes in (None, 300):  # the whole test split (the reference is used), a prefix (it is not)
        got = [dataclasses.asdict(defense_metrics(LocalDeployment(Deployment(model=benign)), "model_sanitization",
                                                  trojan.model, trojan.trigger, am, clean_x, clean_y, trojan.stamped,
                                                  target, 0.0, max_passes=passes, ref_clean_ok=ref))
               for ref in (ok, None)]
        for g in got:
            g.pop("art_input_ms")  # wall time
        assert got[0] == got[1] and got[0]["cad"] != 0.0 and got[0]["cad_se"] > 0.0
