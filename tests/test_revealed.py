"""The revealed defender runs in a sandboxed process of its own, never in the adaptive attacker's
(arena.engine.revealed): a hostile defender file cannot make the attacker forfeit, and a reformer is
still trained through."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest
import torch

from arena.engine.referee import Referee
from arena.engine.revealed import RevealedDefenderError, RevealedProxy, RevealedRelay

from conftest import requires_fmnist

PLUGINS = '''
import inspect
import os

import torch
import torch.nn.functional as F

from arena.api import InputReformer

# Imported while an attacker crafts (where 0.1 built the revealed defender), this file ends that process.
if any(frame.function == "cmd_craft" for frame in inspect.stack()):
    os._exit(3)


class KillsImporter(InputReformer):
    """A plain blur otherwise."""
    name = "kills-importer"

    def reform(self, x):
        return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class FailsWhenAsked(InputReformer):
    """Crashes on deploy: as the attacker's surrogate, and in its own match."""
    name = "fails-when-asked"

    def reform(self, x):
        return x

    def prepare(self, model, ctx):
        raise RuntimeError("no surrogate for you")
'''


@pytest.fixture(scope="module")
def plugins(tmp_path_factory) -> str:
    p = tmp_path_factory.mktemp("revealed") / "revealed_plugins.py"
    p.write_text(textwrap.dedent(PLUGINS))
    return str(p)


@pytest.fixture(scope="module")
def full(tiny) -> Referee:
    return Referee(dataclasses.replace(tiny, threat=dataclasses.replace(tiny.threat, reveal="full")), device="cpu")


@requires_fmnist
@pytest.mark.slow
def test_a_defender_that_kills_its_importer_does_not_reach_the_attacker(full, plugins):
    rec = full.play("imc-adaptive", f"{plugins}:KillsImporter", seed=0).record
    assert rec.status == "ok" and "forfeit" not in rec.metrics, rec.reason
    notes = rec.metrics["attacker_notes"]
    # The relay answered: the attacker trained through the defender's transform, asked remotely.
    assert notes["countermeasure"] == "train-through-reformer", notes


@requires_fmnist
@pytest.mark.slow
def test_a_revealed_defender_that_fails_leaves_the_attacker_plain_imc(full, plugins):
    rec = full.play("imc-adaptive", f"{plugins}:FailsWhenAsked", seed=0).record
    assert rec.metrics.get("forfeit", {}).get("side") != "attacker", rec.reason
    notes = rec.metrics["attacker_notes"]
    assert notes["countermeasure"] is None and "revealed defender failed" in notes["reason"], notes
    assert "no surrogate for you" in notes["reason"]


class _Described:
    name, category, version, params = "magnet", "input_reformation", "1", {"steps": 3, "eps": 0.5}


def test_the_proxy_is_a_description_and_a_handle_and_no_code():
    asked: list[str] = []

    def ask(cmd, payload):
        asked.append(cmd)
        raise RuntimeError("refused by the relay")

    d = RevealedProxy(_Described(), ask)
    assert (d.name, d.category, d.eps, d.get_params()) == ("magnet", "input_reformation", 0.5,
                                                            {"steps": 3, "eps": 0.5})
    assert not hasattr(d, "mix_weight")  # a parameter the defender does not have
    d.threshold = 1e9  # the attacker's own copy: nothing of it reaches the match
    assert d.threshold == 1e9 and "threshold" not in _Described.params
    from arena.api.models import ArchSpec, build_model
    from arena.api.protocol import DefenseContext
    from arena.config.datasets import Tensors

    model = build_model(ArchSpec("small-cnn", 1, 28, 10, (0.5,), (0.5,)))
    ctx = DefenseContext(scenario=None, clean=Tensors(torch.rand(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)),
                         info=None, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))
    with pytest.raises(RevealedDefenderError, match="refused by the relay"):
        d.deploy(model, ctx)
    assert asked == ["deploy"]


def test_the_relay_checks_questions_and_answers_transform_only_after_deploy():
    relay = RevealedRelay(open_host=lambda: None, context=lambda c, s: None,
                          check=lambda cmd, p: "bad inputs" if p is None else None, seconds=5.0)
    with pytest.raises(RevealedDefenderError, match="unknown question"):
        relay("predict", torch.zeros(1))
    with pytest.raises(RevealedDefenderError, match="malformed: bad inputs"):
        relay("score", None)
    with pytest.raises(RevealedDefenderError, match="before 'deploy'"):
        relay("transform", torch.zeros(1, 1, 28, 28))


def test_bpda_passes_the_gradient_through_a_remote_transform():
    from arena.engine.revealed import _bpda

    remote = _bpda(lambda x: (x * 0.5).round())  # a transform without a usable gradient
    x = torch.rand(3, 1, 4, 4, requires_grad=True)
    remote(x).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_an_agent_that_asks_without_end_still_runs_out_of_time(tiny, tmp_path):
    """Questions do not stop the clock: a craft that only asks the referee is stopped at its limit."""
    import dataclasses as dc

    plugin = tmp_path / "asker.py"
    plugin.write_text(textwrap.dedent("""
        from arena.api import Attacker

        class Asker(Attacker):
            name = "asker"
            adaptive = True

            def craft(self, ctx):
                while True:  # the proxy's handle, asked forever with a question the relay refuses
                    try:
                        ctx.defender._call("score", None)
                    except Exception:
                        pass
    """))
    sc = dc.replace(tiny, threat=dc.replace(tiny.threat, reveal="full"),
                    budgets=dc.replace(tiny.budgets, craft_seconds=3.0))
    rec = Referee(sc, device="cpu").play(f"{plugin}:Asker", "strip", seed=0).record
    forfeit = rec.metrics.get("forfeit") or {}
    assert forfeit.get("side") == "attacker" and forfeit.get("kind") == "ran out of time", forfeit


SPINNER = '''
import threading
import time

import torch

from arena.api import Attacker, DefenseContext, DefenderScenario, InputReformer, Trojan


class Spinner(InputReformer):
    """Leaves a thread counting in its process once deployed; its transform tells the count."""
    name = "spinner"

    def prepare(self, model, ctx):
        self.ticks = 0

        def spin():
            while True:
                self.ticks += 1
                time.sleep(0.005)

        threading.Thread(target=spin, daemon=True).start()
        return {}

    def reform(self, x):
        return torch.full_like(x, min(self.ticks, 1000) / 1000)


class Timer(Attacker):
    """Deploys the revealed defender, waits a second, and reads how far its thread counted meanwhile."""
    name = "timer"
    adaptive = True

    def craft(self, ctx):
        surrogate = DefenseContext(scenario=DefenderScenario(budgets=ctx.scenario.budgets, dataset=ctx.info.name),
                                   clean=ctx.data.subset(torch.arange(64)), info=ctx.info, device=ctx.device,
                                   generator=torch.Generator().manual_seed(0))
        deployed = ctx.defender.deploy(ctx.benign, surrogate)
        x = ctx.data.x[:2]
        before = float(deployed.transform(x).flatten()[0])
        time.sleep(1.0)
        after = float(deployed.transform(x).flatten()[0])
        return Trojan(ctx.benign, ctx.trigger, notes={"ticks_while_waiting": round((after - before) * 1000)})
'''


@requires_fmnist
def test_a_revealed_defender_runs_nothing_between_the_attackers_questions(full, tmp_path):
    """A defender that leaves threads running after it answers would spend the CPU the adaptive attacker
    crafts with (and its craft time): between questions the defender's process is held."""
    p = tmp_path / "spinner.py"
    p.write_text(textwrap.dedent(SPINNER))
    rec = full.play(f"{p}:Timer", f"{p}:Spinner", seed=0).record
    assert "attacker_notes" in rec.metrics, (rec.reason, rec.metrics.get("forfeit"))
    ticks = rec.metrics["attacker_notes"]["ticks_while_waiting"]
    assert 0 <= ticks < 40, ticks  # unheld: about 200 in the attacker's one-second wait
