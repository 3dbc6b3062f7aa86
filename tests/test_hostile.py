"""Hostile plugins against the sealed referee.

Each cheat below once changed a stored outcome (tiny Fashion-MNIST scenario).
Played through the referee as a file plugin (its own process, its own view),
each must now fail to change the outcome it would otherwise get, or lose its
match with the reason stored.
"""

from __future__ import annotations

import dataclasses
import os
import textwrap

import pytest

from arena.engine.referee import Referee
from conftest import requires_fmnist

pytestmark = [pytest.mark.slow, requires_fmnist]  # plays matches: not in the fast lane (README)

PLUGINS = '''
import gc, os, sys, time
import torch
import arena.engine.outcome, arena.engine.referee
from arena.api.protocol import Attacker, Defender, Deployment, Trojan
from arena.engine.outcome import Outcome
from arena_agents.attackers.badnet import BadNet

REFEREE_TYPES = ("Referee", "Splits", "Store", "ArtifactCache")


def referee_object(o):
    return type(o).__name__ in REFEREE_TYPES and str(getattr(type(o), "__module__", "")).startswith("arena.")


class BlindThreshold(BadNet):
    """Sets the revealed defender's threshold sky-high, hoping the referee's object is shared."""
    name = "blind-threshold"
    adaptive = True  # only adaptive attackers are handed the defender instance

    def craft(self, ctx):
        if ctx.defender is not None:
            ctx.defender.threshold = 1e9
            ctx.defender.mix_weight = 0.0
        trojan = super().craft(ctx)
        trojan.notes = {**(trojan.notes or {}), "saw_defender": ctx.defender is not None}
        return trojan


class FrameWalker(Attacker):
    """Looks for the defender (or any referee object) through stack frames and the heap."""
    name = "frame-walker"

    def craft(self, ctx):
        found = []
        frame = sys._getframe()
        while frame is not None:
            for v in frame.f_locals.values():
                if isinstance(v, Defender) or referee_object(v):
                    found.append(type(v).__name__)
            frame = frame.f_back
        found += [type(o).__name__ for o in gc.get_objects()
                  if isinstance(o, Defender) or referee_object(o)]
        return Trojan(ctx.benign, ctx.trigger, notes={"found": found})


class OutcomePatcher(Attacker):
    """Returns the untouched benign model and patches the outcome rule to say it won."""
    name = "outcome-patcher"

    def craft(self, ctx):
        win = lambda *a, **k: Outcome(1.0, "patched", "play")
        arena.engine.outcome.decide = win
        arena.engine.referee.decide = win
        return Trojan(ctx.benign, ctx.trigger)


class SplitThief(Attacker):
    """Tries to rebuild the splits (the test split, the defender's clean set) from its view."""
    name = "split-thief"

    def craft(self, ctx):
        from arena.config.splits import make_splits
        try:
            make_splits(ctx.scenario, 0)
            got = "splits"
        except Exception as exc:
            got = "error: " + type(exc).__name__
        return Trojan(ctx.benign, ctx.trigger, notes={"splits": got, "home": os.environ.get("ARENA_HOME", "")})


class Scribbler(Attacker):
    """Writes into the tensors it was handed, hoping they are the referee's own."""
    name = "scribbler"

    def craft(self, ctx):
        ctx.data.x.fill_(0.5)
        ctx.validation.x.fill_(0.5)
        return Trojan(ctx.benign, ctx.trigger)


class TargetPaster(Attacker):
    """A "trigger" that replaces every input with a target-class image (no backdoor at all)."""
    name = "target-paster"

    def craft(self, ctx):
        image = ctx.data.x[ctx.data.y == ctx.target][0].clone()
        return Trojan(ctx.benign, stamp_fn=lambda x: image.to(x.device).expand_as(x).clone())


class Diverged(Attacker):
    """A trojan whose training diverged (lr = nan): argmax of NaN is class 0, the target."""
    name = "diverged"

    def craft(self, ctx):
        with torch.no_grad():
            for p in ctx.benign.parameters():
                p.fill_(float("nan"))
        return Trojan(ctx.benign, ctx.trigger)


class Sleeper(Attacker):
    name = "sleeper"

    def craft(self, ctx):
        time.sleep(3600)


class Crasher(Attacker):
    name = "crasher"

    def craft(self, ctx):
        raise RuntimeError("the attacker broke")


class Hog(Attacker):
    name = "hog"

    def craft(self, ctx):
        hoard = []
        for _ in range(40):  # up to 10 GB, far over the test's limit
            hoard.append(torch.ones(64, 1024, 1024))
            time.sleep(0.05)
        return Trojan(ctx.benign, ctx.trigger)


class Garbage(Attacker):
    name = "garbage"

    def craft(self, ctx):
        return {"model": ctx.benign}


class BadName(Attacker):
    """Names its craft with something no cache key should hold."""
    name = "bad-name"

    def craft_key(self, ctx):
        return "x" * 10_000, {}

    def craft(self, ctx):
        raise AssertionError("never asked: the name was refused")


class OffDevice(Attacker):
    """Hands back its trojan on another device than the match's (the meta device: there is no GPU here)."""
    name = "off-device"

    def craft(self, ctx):
        return Trojan(ctx.benign.to("meta"), ctx.trigger)


class OffDeviceDefender(Defender):
    name = "off-device-defender"
    category = "model_sanitization"

    def deploy(self, model, ctx):
        return Deployment(model=model.to("meta"))


class TriggerReader(Defender):
    """Rebuilds the attack from its view: the scenario's trigger and target class."""
    name = "trigger-reader"
    category = "input_filtering"

    def deploy(self, model, ctx):
        trig = ctx.scenario.trigger  # not in the defender's view
        return Deployment(model=model, score=lambda x: torch.zeros(len(x)), threshold=0.0)


class Snoop(Defender):
    """Looks for the benign model in the cache on disk and the referee's objects on the heap."""
    name = "snoop"
    category = "model_inspection"

    def deploy(self, model, ctx):
        home = os.environ.get("ARENA_HOME", ".arena")
        files = [f for _, _, fs in os.walk(home) for f in fs if f.endswith(".pt")]
        heap = [type(o).__name__ for o in gc.get_objects() if referee_object(o)]
        return Deployment(model=model, notes={"cache_files": len(files), "heap": heap,
                                              "scenario": sorted(f for f in dir(ctx.scenario)
                                                                 if not f.startswith("_"))})


class NaNScores(Defender):
    name = "nan-scores"
    category = "input_filtering"

    def deploy(self, model, ctx):
        return Deployment(model=model, score=lambda x: torch.full((len(x),), float("nan")), threshold=0.5)


PWNED = os.environ.get("ARENA_TEST_PWNED", "/nonexistent/pwned")


class Boom:
    """Unpickling this creates the file PWNED: proof that code of the agent's choice ran."""
    def __reduce__(self):
        return (open, (PWNED, "w"))


class BoomSpec:
    def __init__(self, spec):
        self.spec = spec

    def to_dict(self):
        return {**self.spec.to_dict(), "options": {"boom": Boom()}}


class PickleBomb(Attacker):
    """Hides an object with __reduce__ in its model's architecture spec."""
    name = "pickle-bomb"

    def craft(self, ctx):
        ctx.benign.spec = BoomSpec(ctx.benign.spec)
        return Trojan(ctx.benign, ctx.trigger)


class RawPickler(Attacker):
    """Writes a pickle straight onto its pipe to the referee, then answers as usual."""
    name = "raw-pickler"

    def craft(self, ctx):
        for o in gc.get_objects():
            if type(o).__name__ == "Connection" and hasattr(o, "send"):
                try:
                    o.send(("ok", Boom()))
                except Exception:
                    pass
        return Trojan(ctx.benign, ctx.trigger)


class EvilStr(str):
    def __reduce__(self):
        return (open, (PWNED, "w"))


class SneakyCategory(Defender):
    """A category that is a str subclass with __reduce__."""
    name = "sneaky-category"
    category = EvilStr("model_inspection")

    def deploy(self, model, ctx):
        return Deployment(model=model)


class ElevenClasses(Attacker):
    """A model with one class more than the scenario: its eleventh output never wins."""
    name = "eleven-classes"

    def craft(self, ctx):
        import dataclasses
        from arena.api import build_model
        model = build_model(dataclasses.replace(ctx.benign.spec, num_classes=ctx.info.num_classes + 1))
        return Trojan(model.to(ctx.device), ctx.trigger)


class WrongChannels(Attacker):
    """A 3-channel trigger for 1-channel data."""
    name = "wrong-channels"

    def craft(self, ctx):
        from arena.api import Trigger
        h = ctx.trigger.mask.shape[-1]
        return Trojan(ctx.benign, Trigger(ctx.trigger.mask, torch.ones(3, h, h, device=ctx.device)))


class MajorityRefuser(torch.nn.Module):
    """Counts the referee's questions; on the second, pushes down the class most inputs fall in:
    under a fixed order (clean inputs asked first, stamped ones second) that is the attack's target."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, x):
        out = self.model(x)
        self.calls += 1
        if self.calls == 2:
            major = out.argmax(1).mode().values
            out = out.clone()
            out[:, major] -= 1e4
        return out


class SecondCallRefuser(Defender):
    name = "second-call-refuser"
    category = "model_sanitization"

    def deploy(self, model, ctx):
        return Deployment(model=MajorityRefuser(model))


class Hanger(Defender):
    name = "hanger"
    category = "model_sanitization"

    def deploy(self, model, ctx):
        time.sleep(3600)


def own_pipe():
    """This process's pipe to the referee: its one socket."""
    import stat
    for n in os.listdir("/proc/self/fd"):
        try:
            if stat.S_ISSOCK(os.fstat(int(n)).st_mode):
                return int(n)
        except OSError:
            pass


class Escaper(Attacker):
    """Crashes with a terminal escape in its message (it would retitle the user's terminal, or rewrite
    the line the referee prints)."""
    name = "escaper"

    def craft(self, ctx):
        raise RuntimeError("\\x1b]0;pwned\\x07\\rthe defender forfeits")


class Shouter(Attacker):
    """Prints a terminal escape (it would retitle the user's terminal) and then 11 MB on a line without end."""
    name = "shouter"

    def craft(self, ctx):
        print("\\x1b]0;pwned\\x07 hello", flush=True)
        os.write(2, b"y" * (11 * 2**20))
        return Trojan(ctx.benign, ctx.trigger)


class DiskFiller(Attacker):
    """Fills its scratch folder (on a tmpfs that is memory its resident-set limit never sees)."""
    name = "disk-filler"

    def craft(self, ctx):
        chunk = os.urandom(2**20) * 64
        for i in range(40):
            with open(f"fill-{i}", "wb") as f:
                f.write(chunk)
        time.sleep(3600)


class BigFile(Attacker):
    """Writes one file past the disk budget in 16 MB steps; reports where the system stopped it."""
    name = "big-file"

    def craft(self, ctx):
        import errno
        chunk, written, error = os.urandom(2**20) * 16, 0, None
        try:
            with open("big", "wb") as f:
                while written < 400 * 2**20:
                    f.write(chunk)
                    f.flush()
                    written += len(chunk)
        except OSError as exc:
            error = errno.errorcode.get(exc.errno, str(exc.errno))
        os.truncate("big", 0)  # scratch is append-only (no removing); truncating gives the space back
        return Trojan(ctx.benign, ctx.trigger, notes={"written_mb": written // 2**20, "error": error})


class Diarist(Attacker):
    """Returns 10 MB of notes (stored with the match and published with the leaderboard)."""
    name = "diarist"

    def craft(self, ctx):
        return Trojan(ctx.benign, ctx.trigger, notes={f"page-{i}": "x" * 1_000_000 for i in range(10)})


class HalfFrame(Attacker):
    """Announces a 1000-byte answer, sends 10 bytes of it and stops: a referee reading whole messages
    waited for the rest for ever, its time limit never checked."""
    name = "half-frame"

    def craft(self, ctx):
        import struct
        os.write(own_pipe(), struct.pack("!i", 1000) + b"x" * 10)
        time.sleep(3600)


class HugeFrame(Attacker):
    """Announces a 1 TiB answer (the referee would allocate it before reading)."""
    name = "huge-frame"

    def craft(self, ctx):
        import struct
        os.write(own_pipe(), struct.pack("!iQ", -1, 2**40))
        time.sleep(3600)


class Bloated(torch.nn.Module):
    """Answers each batch of inputs with 100,000 scores per input."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return torch.zeros(x.shape[0], 100_000)


class Bloater(Defender):
    """Deploys a model whose answers are far larger than the questions (the referee allocated
    whatever length the agent announced, up to its whole memory budget)."""
    name = "bloater"
    category = "model_sanitization"

    def deploy(self, model, ctx):
        return Deployment(model=Bloated(model))


class SoreLoser(Defender):
    """About to lose, writes one frame by hand whose integer Python's JSON parser refuses (a ValueError,
    not a format error): that ended the match as the referee's error, which no rating counts."""
    name = "sore-loser"
    category = "model_sanitization"

    def deploy(self, model, ctx):
        header = b'{"v":{"s":"ok","v":' + b"1" * 5000 + b'},"b":[]}'
        for o in gc.get_objects():
            if type(o).__name__ == "Connection" and hasattr(o, "send_bytes"):
                try:
                    o.send_bytes(len(header).to_bytes(8, "little") + header)
                except Exception:
                    pass
        time.sleep(30)


class Deaf(Defender):
    """Deploys a model the referee must query, then stops reading its pipe: the referee's batch of
    inputs, larger than the pipe's buffer, waited to be written for ever."""
    name = "deaf"
    category = "model_sanitization"

    def deploy(self, model, ctx):
        import multiprocessing.connection
        multiprocessing.connection.Connection.recv_bytes = lambda self, maxlength=None: time.sleep(3600)
        return Deployment(model=MajorityRefuser(model))
'''


@pytest.fixture(scope="module")
def pwned(tmp_path_factory):
    """The file a hostile plugin's unpickled object would create (set before the plugin is imported)."""
    path = tmp_path_factory.mktemp("pwned") / "pwned"
    old = os.environ.get("ARENA_TEST_PWNED")
    os.environ["ARENA_TEST_PWNED"] = str(path)
    yield path
    if old is None:
        os.environ.pop("ARENA_TEST_PWNED", None)
    else:
        os.environ["ARENA_TEST_PWNED"] = old


@pytest.fixture(scope="module")
def plugins(tmp_path_factory, pwned) -> str:
    p = tmp_path_factory.mktemp("hostile") / "hostile.py"
    p.write_text(textwrap.dedent(PLUGINS))
    return str(p)


def limited(tiny, seconds: float) -> Referee:
    """The tiny scenario under limits (its benign model is the session's cached one)."""
    budgets = dataclasses.replace(tiny.budgets, craft_seconds=seconds, deploy_seconds=seconds, memory_mb=3000)
    return Referee(dataclasses.replace(tiny, budgets=budgets), device="cpu")


@pytest.fixture(scope="module")
def sealed(tiny) -> Referee:
    return limited(tiny, 300.0)  # room for a BadNet re-training on a busy 2-core machine


@pytest.fixture(scope="module")
def strict(tiny) -> Referee:
    return limited(tiny, 6.0)  # for agents that never return


def play(referee: Referee, attacker: str, defender: str, reveal: str | None = None):
    if reveal is not None:
        s = referee.scenario
        referee = Referee(dataclasses.replace(s, threat=dataclasses.replace(s.threat, reveal=reveal)), device="cpu")
    return referee.play(attacker, defender, seed=0).record


def test_changing_the_revealed_defender_changes_nothing(sealed, plugins):
    honest = play(sealed, "badnet", "strip")
    cheat = play(sealed, f"{plugins}:BlindThreshold", "strip")
    assert cheat.status == honest.status == "ok", (cheat.reason, honest.reason)
    assert cheat.metrics["attacker_notes"]["saw_defender"] is True  # it had an instance to tamper with
    # STRIP deploys with the threshold it calibrated, and still filters the cheat's trigger inputs
    # as it does the honest BadNet's (with the threshold at 1e9 it would catch none).
    assert cheat.metrics["defense"]["threshold"] < 10 and honest.metrics["defense"]["threshold"] < 10
    # (With the threshold at 1e9 it would be 0. The plugin's draws no longer depend on the temporary
    # folder its file lies in: a file agent's generator label is its file name and content digest,
    # arena.engine.referee.draw_label; before, its path made this TPR vary by run, 0.12-0.6 seen.)
    assert cheat.metrics["defense"]["tpr"] > 0.2 and honest.metrics["defense"]["tpr"] > 0.2


@pytest.mark.parametrize("reveal", ["none", "full"])
def test_no_referee_object_is_within_reach(sealed, plugins, reveal):
    rec = play(sealed, f"{plugins}:FrameWalker", "none", reveal=reveal)
    found = set(rec.metrics["attacker_notes"]["found"])
    # Under "full" the attacker holds the fresh defender instance built for it, nothing else.
    assert found <= ({"NoDefense"} if reveal == "full" else set()), found


def test_patching_the_outcome_rule_in_the_agent_process_changes_nothing(sealed, plugins):
    import arena.engine.outcome

    rec = play(sealed, f"{plugins}:OutcomePatcher", "none")
    assert rec.outcome < 0.05 and "patched" not in rec.reason  # the benign model: no backdoor, score ~0
    assert arena.engine.outcome.decide.__module__ == "arena.engine.outcome"


def test_the_view_holds_no_handle_to_the_splits(sealed, plugins):
    rec = play(sealed, f"{plugins}:SplitThief", "none")
    notes = rec.metrics["attacker_notes"]
    assert notes["splits"].startswith("error")
    assert notes["home"] != os.environ["ARENA_HOME"]


def test_writing_into_handed_tensors_does_not_reach_the_referee(sealed, plugins):
    sp = sealed.splits(0)
    before = sp.attacker.x.sum().item(), sp.validation.x.sum().item()
    play(sealed, f"{plugins}:Scribbler", "none")
    assert (sp.attacker.x.sum().item(), sp.validation.x.sum().item()) == before


def test_a_target_image_trigger_scores_nothing(sealed, plugins):
    rec = play(sealed, f"{plugins}:TargetPaster", "none")
    assert rec.metrics["attack"]["trigger_area"] > 0.5
    assert rec.outcome == 0.0 and "perturbation budget" in rec.reason


def test_the_score_counts_only_what_the_trigger_adds():
    from arena.engine.outcome import above_base_rate

    assert above_base_rate(0.9, 0.0) == 0.9
    assert above_base_rate(1.0, 1.0) == 0.0  # a trigger that works on the benign model adds nothing
    assert above_base_rate(0.6, 0.2) == pytest.approx(0.5)
    assert above_base_rate(0.1, 0.2) == 0.0


def test_a_diverged_trojan_loses_at_the_attacker_gate(sealed, plugins):
    rec = play(sealed, f"{plugins}:Diverged", "none")
    assert rec.status == "ok" and rec.outcome == 0.0 and "not finite" in rec.reason


@pytest.mark.parametrize("cls,needle", [("Sleeper", "ran out of time"), ("Crasher", "the attacker broke"),
                                        ("HalfFrame", "ran out of time"), ("Escaper", "control character"),
                                        ("Diarist", "over the 65536-byte limit"), ("HugeFrame", "over the"),
                                        ("Hog", "ran out of memory"), ("Garbage", "not arena.api.protocol.Trojan"),
                                        ("BadName", "a craft name must be 1-200 printable characters"),
                                        ("OffDevice", "the trojan's model is on meta, but the match runs on cpu")])
def test_a_failing_attacker_forfeits(strict, sealed, plugins, cls, needle):
    # The hog gets the roomy time limit: on a busy machine filling 3 GB took longer than the strict 6 s,
    # and it is the memory limit (the same in both) that must stop it.
    rec = play(sealed if cls == "Hog" else strict, f"{plugins}:{cls}", "none")
    assert rec.status == "ok" and rec.outcome == 0.0  # counted as a lost match, not an error row
    assert rec.reason.startswith("attacker forfeits") and needle in rec.reason
    assert rec.metrics["forfeit"]["side"] == "attacker"


@pytest.mark.parametrize("cls,needle", [("TriggerReader", "AttributeError"), ("NaNScores", "non-finite"),
                                        ("Hanger", "ran out of time"), ("Deaf", "ran out of time"),
                                        ("Bloater", "over the"), ("SoreLoser", "unreadable message"),
                                        ("OffDeviceDefender", "the deployed model is on meta, but the match runs on cpu")])
def test_a_failing_defender_forfeits(sealed, strict, plugins, cls, needle):
    sealed.craft("badnet", 0)  # the trojan in the cache: the strict limits apply to the defender alone
    rec = play(strict, "badnet", f"{plugins}:{cls}")
    assert rec.status == "ok" and rec.outcome == 1.0
    assert rec.reason.startswith("defender forfeits") and needle in rec.reason


def test_what_an_agent_prints_reaches_the_terminal_defused_and_bounded(sealed, plugins, capfd):
    rec = play(sealed, f"{plugins}:Shouter", "none")
    assert rec.status == "ok"
    err = capfd.readouterr().err
    assert "\x1b" not in err and "\\x1b]0;pwned\\x07 hello" in err  # shown as an escape, not obeyed
    assert "more bytes not shown" in err and err.count("y") < 11 * 2**20


@pytest.fixture
def small_disk(monkeypatch):
    """A disk budget of 150 MB (5% of the 3000 MB memory budget) instead of one as large as memory."""
    import arena.engine.hosts

    monkeypatch.setattr(arena.engine.hosts, "DISK_PER_MEMORY", 0.05)
    return 150


def test_an_agent_filling_its_scratch_folder_runs_out_of_disk(sealed, plugins, small_disk):
    rec = play(sealed, f"{plugins}:DiskFiller", "none")
    assert rec.reason.startswith("attacker forfeits") and "ran out of disk" in rec.reason, rec.reason


def test_no_one_file_grows_past_the_disk_budget(sealed, plugins, small_disk):
    rec = play(sealed, f"{plugins}:BigFile", "none")
    notes = rec.metrics["attacker_notes"]
    assert notes["error"] == "EFBIG" and notes["written_mb"] <= small_disk, notes


def test_the_defender_sees_neither_the_cache_nor_the_attack(sealed, plugins):
    rec = play(sealed, "badnet", f"{plugins}:Snoop")
    notes = rec.metrics["defender_notes"]
    assert notes["cache_files"] == 0 and notes["heap"] == []
    assert notes["scenario"] == ["budgets", "dataset"]


def test_a_forfeit_counts_in_the_ratings(sealed, plugins, tmp_path):
    from arena.results.leaderboard import games_from_records
    from arena.results.store import Store

    store = Store(tmp_path / "db.sqlite")
    store.save(play(sealed, f"{plugins}:Crasher", "none"))
    assert len(games_from_records(store.matches(status="ok"))) == 1
    store.close()


def test_an_edited_file_plugin_is_crafted_again(sealed, tmp_path):
    p = tmp_path / "edited.py"
    src = ("from arena.api.protocol import Attacker, Trojan\n\n\nclass Edited(Attacker):\n    name = 'edited'\n\n"
           "    def craft(self, ctx):\n        return Trojan(ctx.benign, ctx.trigger, notes={'v': VERSION})\n")
    p.write_text(src.replace("VERSION", "1"))
    first = play(sealed, f"{p}:Edited", "none")
    again = play(sealed, f"{p}:Edited", "none")
    p.write_text(src.replace("VERSION", "2"))
    edited = play(sealed, f"{p}:Edited", "none")
    assert again.metrics["timing"]["trojan_cached"] and first.metrics["attacker_notes"] == {"v": 1}
    assert not edited.metrics["timing"]["trojan_cached"] and edited.metrics["attacker_notes"] == {"v": 2}


# --- nothing an agent sends is unpickled; every answer is checked before use -----------------------

@pytest.mark.parametrize("cls,needle", [("PickleBomb", "cannot be sent to the referee"),
                                        ("RawPickler", "returned garbage")])
def test_no_pickle_from_an_agent_runs_in_the_referee(sealed, plugins, pwned, cls, needle):
    rec = play(sealed, f"{plugins}:{cls}", "none")
    assert not pwned.exists()
    assert rec.status == "ok" and rec.outcome == 0.0
    assert rec.reason.startswith("attacker forfeits") and needle in rec.reason, rec.reason


def test_a_str_subclass_category_arrives_as_a_plain_string(sealed, plugins, pwned):
    rec = play(sealed, "none", f"{plugins}:SneakyCategory")
    assert not pwned.exists()
    assert rec.status == "ok" and not rec.reason.startswith("defender forfeits"), rec.reason
    card = sealed.card("defender", f"{plugins}:SneakyCategory")
    assert type(card.category) is str and card.category == "model_inspection"


@pytest.mark.parametrize("cls,needle", [("ElevenClasses", "the scenario has 10 classes"),
                                        ("WrongChannels", "for 1x28x28 inputs")])
def test_a_trojan_that_does_not_fit_the_scenario_forfeits_its_attacker(sealed, plugins, cls, needle):
    rec = play(sealed, f"{plugins}:{cls}", "strip")
    assert rec.status == "ok" and rec.outcome == 0.0
    assert rec.reason.startswith("attacker forfeits") and needle in rec.reason, rec.reason


def test_the_order_of_the_questions_gives_nothing_away(sealed, plugins):
    # Against the old fixed order (clean, then stamped) this held badnet to 0.0 at full clean accuracy.
    rec = play(sealed, "badnet", f"{plugins}:SecondCallRefuser")
    assert rec.status == "ok" and rec.outcome > 0.5, rec.reason
