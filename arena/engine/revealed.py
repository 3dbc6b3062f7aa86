"""The revealed defender, for an adaptive attacker, without its code in the attacker's process.

Under ``threat.reveal = "full"`` an adaptive attacker learns the defender's
name, category and parameters, and may *use* it: deploy it on a model and data
of its own (a surrogate) and look at what the deployment does to inputs. Until
0.2 the attacker's process imported the defender's code for that, so a hostile
defender file ran inside the attacker (a defender that killed its importer
made IMC-adaptive forfeit). Now:

- in the attacker's process, ``ctx.defender`` is a ``RevealedProxy``: the
  plain description (``name``, ``category``, ``version``, its parameters as
  attributes) and a ``deploy(model, ctx)`` that asks the referee;
- the referee (``RevealedRelay``) runs the defender in a sandboxed process of
  its own, deploys it on the model and the clean data the attacker sent (in a
  context the referee builds: the scenario's budgets and data description),
  and answers ``transform`` and ``score`` questions on inputs the attacker
  sends, all within the attacker's craft time;
- the proxy's deployment answers with tensors. A remote function has no
  gradient, so its ``transform`` is differentiated as the identity (BPDA,
  Athalye et al., ICML 2018: the standard way to attack a preprocessing
  defence one cannot differentiate) and its ``score`` not at all.

A revealed defender that fails (crashes, times out, returns garbage) raises
``RevealedDefenderError`` in the attacker, which may play on without it: a
defender cannot make its attacker forfeit this way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

Ask = Callable[[str, Any], Any]
QUESTIONS = ("deploy", "transform", "score")


class RevealedDefenderError(RuntimeError):
    """The revealed defender could not answer (it failed in its own process); the message says how."""


class _Bpda(torch.autograd.Function):
    """Forward through the remote transform, backward as the identity."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        return fn(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def _bpda(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: _Bpda.apply(x, fn)


class RevealedProxy:
    """What an adaptive attacker holds as ``ctx.defender``: a description and a handle, no code."""

    def __init__(self, revealed: Any, ask: Ask) -> None:
        self.__dict__.update(_revealed=revealed, _ask=ask, _own={})
        self.name = revealed.name
        self.category = revealed.category
        self.version = revealed.version

    def __getattr__(self, key: str) -> Any:  # the defender's parameters: eps, mix_weight, ...
        params = self.__dict__["_revealed"].params
        if key in params:
            return params[key]
        raise AttributeError(f"the revealed defender '{self.__dict__['_revealed'].name}' has no parameter '{key}'")

    def __setattr__(self, key: str, value: Any) -> None:  # the attacker's own copy: nothing reaches the match
        self.__dict__[key] = value

    def get_params(self) -> dict[str, Any]:
        return dict(self.__dict__["_revealed"].params)

    def _call(self, cmd: str, payload: Any) -> Any:
        try:
            return self.__dict__["_ask"](cmd, payload)
        except RevealedDefenderError:
            raise
        except Exception as exc:  # the relay's refusal, as the attacker's process receives it
            raise RevealedDefenderError(str(exc)) from None

    def deploy(self, model: nn.Module, ctx: Any) -> Any:
        """The defender deployed, in its own process, on ``model`` and ``ctx.clean`` (the attacker's data)."""
        from arena.api.protocol import Deployment, Verdict

        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator)) if ctx.generator is not None else 0
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        summary = self._call("deploy", ({"arch": model.spec.to_dict(), "state": state},
                                        ctx.clean.to("cpu"), seed))
        device = next(iter(model.parameters()), torch.zeros(())).device

        def remote(cmd: str) -> Callable[[torch.Tensor], torch.Tensor]:
            def fn(x: torch.Tensor) -> torch.Tensor:
                return self._call(cmd, x.detach().float().cpu()).to(x.device, x.dtype)
            return fn

        transform = _bpda(remote("transform")) if summary.has_transform else None
        score = remote("score") if summary.has_score else None
        v = summary.verdict
        verdict = None if v is None else Verdict(v.is_trojan, v.target, v.anomaly_index,
                                                 None if v.mask is None else v.mask.to(device),
                                                 None if v.pattern is None else v.pattern.to(device))
        return Deployment(model=model, transform=transform, score=score, threshold=summary.threshold,
                          verdict=verdict, notes=dict(summary.notes), passes_per_input=summary.passes_per_input,
                          batch_aware=summary.batch_aware)


class RevealedRelay:
    """The referee's side: one sandboxed process of the revealed defender per craft, answering the
    attacker's questions. ``open_host`` opens it (the referee's ``_host``), ``context`` builds the
    defender's view around the attacker's clean data, ``check`` validates what the attacker sent."""

    def __init__(self, open_host: Callable[[], Any], context: Callable[[Any, int], Any],
                 check: Callable[[str, Any], str | None], seconds: float) -> None:
        self._open, self._context, self._check, self.seconds = open_host, context, check, seconds
        self._host: Any = None
        self.asked = 0

    def __call__(self, cmd: str, payload: Any) -> Any:
        if cmd not in QUESTIONS:
            raise RevealedDefenderError(f"unknown question '{cmd}' (asked: {', '.join(QUESTIONS)})")
        problem = self._check(cmd, payload)
        if problem:
            raise RevealedDefenderError(f"the attacker's {cmd} question is malformed: {problem}")
        self.asked += 1
        if cmd == "deploy":
            self.close()  # a new surrogate: a fresh process
            model, clean, seed = payload
            self._host = self._open()
            return self._held_after(lambda: self._host.call("deploy", (model, self._context(clean, seed)),
                                                             self.seconds))
        if self._host is None:
            raise RevealedDefenderError(f"'{cmd}' before 'deploy'")
        return self._held_after(lambda: self._host.call(cmd, payload, self.seconds))

    def _held_after(self, answer: Callable[[], Any]) -> Any:
        """Run the defender for one answer only: between the attacker's questions its process is held
        (``ProcessHost.hold``), so threads it left running cannot take the attacker's CPU and craft
        time. An in-process host (a debugger's) has nothing to hold."""
        hold = getattr(self._host, "hold", lambda held: None)
        hold(False)
        try:
            return answer()
        finally:
            if self._host is not None:
                hold(True)

    def close(self) -> None:
        if self._host is not None:
            self._host.close()
            self._host = None
