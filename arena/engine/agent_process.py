"""The agent's side of an agent host: the process that runs a plugin's code, and what it runs.

``_child_main`` is the agent process: forked from the referee's forkserver
(``arena.engine.hosts``), it drops what it inherited, locks itself in
(``arena.engine.sandbox``), builds the agent and answers the referee's
commands with an ``AgentServer`` until told to stop or the referee is gone.
``AgentServer`` also serves ``InProcessHost``, in the referee's own process
(a debugger's). What it answers is in ``arena.engine.messages``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import tempfile
import threading
import time
import traceback
from typing import Any

import torch

from arena.config.specs import is_model_spec, own_file
from arena.core.cache import pid_alive
from arena.core.errors import ArenaError
from arena.engine import wire
from arena.engine.messages import AgentCard, DeploymentSummary, TrojanPayload, VerdictData, referee_types


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


class WrongDevice(TypeError):
    """An agent handed back a model whose tensors are not on the match's device."""


def check_on_device(module: torch.nn.Module, device: torch.device, what: str) -> None:
    """Raise ``WrongDevice`` if any parameter or buffer of ``module`` is off ``device``.

    Checked where a model leaves an agent: a trojan or a deployment left on the CPU
    in a CUDA match (or the reverse) would otherwise fail later, inside the
    referee's scoring, with torch's "Expected all tensors to be on the same device"
    and no word of whose model it was."""
    found = {t.device for t in (*module.parameters(), *module.buffers())}
    wrong = sorted(str(d) for d in found
                   if d.type != device.type or (device.index is not None and d.index != device.index))
    if wrong:
        raise WrongDevice(f"{what} is on {', '.join(wrong)}, but the match runs on {device}: "
                          "build it on ctx.device or move it there with .to(ctx.device)")


def gpu_peak_mb(device: torch.device) -> float | None:
    """This process's peak CUDA memory on ``device`` so far, in MiB (None off CUDA): with several
    matches sharing one GPU (``--workers N``) it says what each process needs."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def _cpu_copy(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to("cpu", copy=True).contiguous()


def _class_digest(cls: type) -> str | None:
    """sha256 (16 hex) of an agent class's source, for agent *objects* handed to the referee (tests,
    notebooks): two classes with the same name and version but other code (two test files'
    ``Paranoid``) must not share cached trojans or control runs. None where the source cannot be read."""
    import hashlib
    import inspect

    try:
        return hashlib.sha256(inspect.getsource(cls).encode()).hexdigest()[:16]
    except (OSError, TypeError):
        return None


class AgentServer:
    """Runs one agent's calls; lives in the host process (child, or the referee for InProcessHost)."""

    def __init__(self, role: str, spec: str, params: dict[str, Any], device: str, agent: Any = None) -> None:
        from arena.plugins import load_agent

        self.role, self.device = role, torch.device(device)
        if agent is None:
            loaded = load_agent(role, spec, params)
            self.agent, name, digest = loaded.agent, loaded.name, loaded.code_digest
        else:  # an object handed to the referee (tests, notebooks): named by its class
            self.agent, name, digest = agent, type(agent).name, _class_digest(type(agent))
        cls = type(self.agent)
        self.card = AgentCard(
            role=role, name=name, version=str(cls.version), params=_plain(self.agent.get_params()),
            category=getattr(cls, "category", None) if role == "defender" else None,
            adaptive=bool(getattr(cls, "adaptive", False)) if role == "attacker" else False,
            code_digest=digest,
            names_crafts=role == "attacker" and _overrides_craft_key(cls),
        )
        self.trojan: Any = None
        self.deployment: Any = None
        # Questions to the referee while crafting (the revealed defender, ``arena.engine.revealed``):
        # set by the host; None where nobody answers.
        self.ask: Any = None
        self.predictor: Any = None  # the deployed model as predictions are asked of it (``_predictor``)

    def handle(self, cmd: str, payload: Any) -> Any:
        return getattr(self, "cmd_" + cmd)(payload)

    def cmd_card(self, _: Any) -> AgentCard:
        return self.card

    def _craft_context(self, ctx: Any) -> Any:
        from arena.api.training import stderr_progress

        ctx = to_device(ctx, self.device)
        ctx.device = self.device
        ctx.progress = stderr_progress
        if ctx.revealed is not None and getattr(self.agent, "adaptive", False) and self.ask is not None:
            # Only an adaptive attacker reads the defender, and never its code: a proxy that asks the
            # referee, which runs the defender in a sandboxed process of its own (arena.engine.revealed).
            # A defender the referee was handed as an object (a test's or a notebook's) is not offered:
            # the attacker then sees the revealed data (name, category, version, parameters) alone.
            from arena.engine.revealed import RevealedProxy

            ctx.defender = RevealedProxy(ctx.revealed, self.ask)
        return ctx

    def cmd_craft_key(self, ctx: Any) -> dict[str, Any] | None:
        named = self.agent.craft_key(self._craft_context(ctx))
        if named is None:
            return None
        if not (isinstance(named, tuple) and len(named) == 2 and isinstance(named[1], dict)):
            raise TypeError(f"craft_key() returned {type(named).__name__}: it must return (name, notes) or None")
        return {"name": named[0], "notes": _plain(named[1])}

    def cmd_craft(self, ctx: Any) -> TrojanPayload:
        from arena.api.protocol import Trojan

        ctx = self._craft_context(ctx)
        trojan = self.agent.craft(ctx)
        if not isinstance(trojan, Trojan):
            raise TypeError(f"craft() returned {type(trojan).__name__}, not arena.api.protocol.Trojan")
        spec = getattr(trojan.model, "spec", None)
        if spec is None or not hasattr(spec, "to_dict"):
            raise TypeError("the trojan's model has no .spec (an arena.api.models.ArchSpec): the referee rebuilds "
                            "models from their architecture spec; build it with arena.api.models.build_model or "
                            "register an architecture under the arena.architectures entry point")
        if trojan.trigger is None and trojan.stamp_fn is None:
            raise TypeError("the Trojan has neither a trigger nor a stamp_fn")
        check_on_device(trojan.model, self.device, "the trojan's model")
        trojan.model.eval()
        self.trojan = trojan
        return TrojanPayload(
            arch=spec.to_dict(), state={k: _cpu_copy(v) for k, v in trojan.model.state_dict().items()},
            trigger=trojan.trigger.state() if trojan.trigger is not None and trojan.stamp_fn is None else None,
            has_stamp_fn=trojan.stamp_fn is not None, notes=_plain(trojan.notes or {}),
            gpu_peak_mb=gpu_peak_mb(self.device),
        )

    @torch.no_grad()
    def cmd_stamp(self, x: torch.Tensor) -> torch.Tensor:
        out = self.trojan.stamp(x.to(self.device))
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            raise TypeError(f"stamp_fn returned {getattr(out, 'shape', type(out).__name__)} for inputs of "
                            f"shape {tuple(x.shape)}: it must return a tensor of the same shape")
        return _cpu_copy(out.float())

    def cmd_deploy(self, args: tuple[dict[str, Any], Any]) -> DeploymentSummary:
        from arena.api.protocol import Deployment
        from arena.api.training import stderr_progress

        payload, ctx = args
        ctx = to_device(ctx, self.device)
        ctx.device = self.device
        ctx.progress = stderr_progress
        model = model_from_payload(payload, self.device)
        modules = [(name, type(m)) for name, m in model.named_modules()]
        dep = self.agent.deploy(model, ctx)
        if not isinstance(dep, Deployment):
            raise TypeError(f"deploy() returned {type(dep).__name__}, not arena.api.protocol.Deployment")
        if not isinstance(dep.model, torch.nn.Module):
            raise TypeError(f"Deployment.model is {type(dep.model).__name__}, not a torch.nn.Module")
        check_on_device(dep.model, self.device, "the deployed model")
        if dep.score is not None and dep.threshold is None:
            raise TypeError("the Deployment has a score function but no threshold")
        if dep.threshold is not None and not math.isfinite(float(dep.threshold)):
            raise ValueError(f"the Deployment's threshold is {dep.threshold}, not a finite number")
        if int(dep.passes_per_input) < 1:
            raise ValueError(f"passes_per_input must be at least 1, got {dep.passes_per_input}")
        dep.model.eval()
        self.deployment = dep
        self.predictor = _predictor(dep.model, self.device)
        v = dep.verdict
        verdict = None
        if v is not None:
            ai = [float(a) for a in v.anomaly_index] if v.anomaly_index is not None else None
            if ai is not None and not all(math.isfinite(a) for a in ai):
                raise ValueError("the verdict's anomaly index holds non-finite values")
            verdict = VerdictData(bool(v.is_trojan), None if v.target is None else int(v.target), ai,
                                  None if v.mask is None else _cpu_copy(v.mask.float()),
                                  None if v.pattern is None else _cpu_copy(v.pattern.float()))
        return DeploymentSummary(
            threshold=None if dep.threshold is None else float(dep.threshold),
            has_transform=dep.transform is not None, has_score=dep.score is not None,
            passes_per_input=int(dep.passes_per_input), verdict=verdict, notes=_plain(dep.notes or {}),
            batch_aware=bool(dep.batch_aware), gpu_peak_mb=gpu_peak_mb(self.device),
            model_unchanged=dep.transform is None and _untouched(dep.model, model, modules, payload["state"]),
        )

    @torch.no_grad()
    def cmd_predict(self, x: torch.Tensor) -> torch.Tensor:
        from arena.api.training import predict_proba

        dep = self.deployment
        x = x.to(self.device)
        xin = dep.transform(x) if dep.transform is not None else x
        return _cpu_copy(predict_proba(self.predictor, xin).float())

    @torch.no_grad()
    def cmd_transform(self, x: torch.Tensor) -> torch.Tensor:
        """The deployment's input transform (identity without one): for an adaptive attacker's surrogate."""
        dep = self.deployment
        out = dep.transform(x.to(self.device)) if dep.transform is not None else x
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            raise TypeError(f"the transform returned {type(out).__name__} of shape {tuple(getattr(out, 'shape', ()))} "
                            f"for inputs of shape {tuple(x.shape)}")
        return _cpu_copy(out.float())

    def cmd_score(self, x: torch.Tensor) -> torch.Tensor:
        out = self.deployment.score(x.to(self.device))
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"the score function returned {type(out).__name__}, not a tensor")
        return _cpu_copy(out.float())


def _predictor(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The deployed model as the referee's questions are answered with: a channels-last copy on the CPU
    (faster for randomized smoothing's 100 noisy passes per input, with the same answers up to float
    rounding; docs/measurements.md), or the model itself where it cannot be copied (a plugin's) and on
    CUDA."""
    from arena.api.defenses import inference_copy

    try:
        return inference_copy(model, device).eval()
    except Exception:  # noqa: BLE001 - a model that cannot be deep-copied is asked as it is
        return model


def _untouched(deployed: torch.nn.Module, given: torch.nn.Module, modules: list[tuple[str, type]],
               state: dict[str, torch.Tensor]) -> bool:
    """Is ``deployed`` the model ``given`` to deploy, as it was built from ``state``: the same object,
    the same named modules of the same types, no hooks or per-instance ``forward``, equal tensors?"""
    if deployed is not given or [(n, type(m)) for n, m in given.named_modules()] != modules:
        return False
    for m in given.modules():
        if (m._forward_hooks or m._forward_pre_hooks or "forward" in vars(m)
                or getattr(m, "_forward_hooks_with_kwargs", None)):
            return False
    from torch.nn.modules import module as torch_module

    if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
        return False
    now = given.state_dict()
    return now.keys() == state.keys() and all(torch.equal(now[k].detach().cpu(), state[k]) for k in state)


def model_from_payload(payload: dict[str, Any], device: torch.device) -> torch.nn.Module:
    from arena.plugins import rebuild_model

    return rebuild_model(payload["arch"], payload["state"]).to(device).eval()


def _exit_with_referee(referee: int, every_s: float = 1.0) -> None:
    """End this agent process within ``every_s`` of its referee's death.

    An agent computing (not reading its pipe) would not notice that the referee is gone: a
    tournament worker killed mid-match, or an interrupted tournament, would leave it running on
    as an orphan for as long as its work takes. The parent is no help: it is the forkserver,
    which lives as long as any process it forked."""
    def watch() -> None:
        while pid_alive(referee):
            time.sleep(every_s)
        os._exit(1)

    threading.Thread(target=watch, name="arena-referee-watch", daemon=True).start()


def _only_own_descriptors(keep: int) -> None:
    """Leave this agent process no open descriptor but stdin (/dev/null), stdout and stderr (the pipe the
    referee relays, ``_relay``) and ``keep`` (its pipe to the referee); every other one it inherited is
    pointed at /dev/null.

    A forkserver child inherits more than it needs: the write end of the forkserver's "alive" pipe
    (one byte written there ends the forkserver, and with it, through the parent-death signal, every
    agent it forked: the opponent mid-deployment too) and the write end of the resource tracker's
    pipe (an unsandboxed process that unlinks whatever shared-memory names are registered with it).
    Landlock judges paths when they are opened, not descriptors already open, so these are closed
    here, before the sandbox. /dev/null keeps their numbers valid for the library objects that still
    hold them (multiprocessing's resource tracker probes its pipe before use)."""
    null = os.open(os.devnull, os.O_RDWR)
    try:
        os.dup2(null, 0)
        listed = os.path.isdir("/proc/self/fd")  # Linux; elsewhere every number up to the usual limit
        for fd in (int(n) for n in os.listdir("/proc/self/fd")) if listed else range(3, 1024):
            if fd in (0, 1, 2, keep, null):
                continue
            try:
                os.fstat(fd)
            except OSError:  # the listing's own descriptor, closed since
                continue
            os.dup2(null, fd, inheritable=False)
    finally:
        os.close(null)
AGENT_DESCRIPTORS = 1024  # open files, pipes and sockets an agent process may hold at once


def _child_main(conn: Any, output: Any, role: str, spec: str, params: dict[str, Any], device: str, threads: int,
                referee: int, scratch: str, secret: list[str], file_mb: int | None = None) -> None:
    """The agent process: lock itself in (``arena.engine.sandbox``), build the agent, then answer
    commands until told to stop (or the ``referee`` process is gone). ``output`` is the pipe the
    referee relays its prints from (``_relay``)."""
    from arena.engine import sandbox

    _exit_with_referee(referee)
    for std in (1, 2):  # what the agent prints goes through the referee, never straight to the terminal
        os.dup2(output.fileno(), std)
    output.close()
    _only_own_descriptors(conn.fileno())
    # Nothing of the referee's surroundings: the scratch folder (the referee made it and deletes it)
    # as cwd and temporary folder, no ARENA_* variable in the environment.
    os.chdir(scratch)
    for var in [v for v in os.environ if v.startswith("ARENA_")]:
        os.environ.pop(var, None)
    os.environ["ARENA_HOME"] = os.environ["TMPDIR"] = scratch
    tempfile.tempdir = scratch
    if file_mb is not None and sys.platform != "win32":
        import resource

        # No one file over the disk budget (the referee polls the folder's total once a second; this
        # stops the fastest way past it between two polls). Python ignores SIGXFSZ: the write fails.
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_mb * 2**20, file_mb * 2**20))
        # Pipe buffers are kernel memory that no poll of the process sees; the kernel caps them per user
        # (capabilities are dropped, so for root too), and this caps how many a process holds. torch and
        # Python need a few dozen descriptors.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        cap = AGENT_DESCRIPTORS if hard == resource.RLIM_INFINITY else min(hard, AGENT_DESCRIPTORS)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, cap), cap))
    torch.set_num_threads(threads)
    sys.stdout = sys.stderr  # an agent's prints never reach the referee's stdout (JSON output)
    plugin_file = own_file(spec)  # a plugin's source or a model's weights: the one user file it reads
    # ... and a model's suspected trigger (``arena scan --trigger``), which its agent reads too.
    trigger = params.get("trigger") if is_model_spec(spec) else None
    extra = [str(trigger)] if isinstance(trigger, str) and trigger else []
    try:
        # Agents never compile: ARENA_* is gone from their environment, so ``compile_wanted`` is false in
        # them, and the compiler's subprocesses stay forbidden (``torch.compile`` is the referee's own).
        level = sandbox.enter(scratch, plugin_file, secret, extra_files=extra)
    except OSError as exc:  # a kernel that offers a layer and then refuses it: play on, and say so
        print(f"arena: the agent sandbox could not be entered ({exc}); playing at level 'process'", file=sys.stderr)
        level = "process"
    try:
        server = AgentServer(role, spec, params, device)
        server.card = dataclasses.replace(server.card, sandbox=level)
        server.ask = _asker(conn)
    except ArenaError as exc:  # unknown agent, failed import, rejected parameters: the user's to fix
        _send(conn, "plugin_error", str(exc))
        return
    except BaseException as exc:  # noqa: BLE001 - reported to the referee, which decides
        _send(conn, "error", _describe(exc))
        return
    _send(conn, "ok", server.card)
    while True:
        try:
            message = wire.decode(conn.recv_bytes(), referee_types(), build_model=_rebuild_cpu)
        except EOFError:
            return
        cmd, payload = message["c"], message["p"]
        if cmd == "close":
            return
        try:
            try:
                _send(conn, "ok", server.handle(cmd, payload))
            except (BrokenPipeError, ConnectionResetError):
                raise
            except BaseException as exc:  # noqa: BLE001
                _send(conn, "error", _describe(exc))
        except (BrokenPipeError, ConnectionResetError):
            return  # the referee is gone (an interrupted tournament): no one to answer, nothing to print


def _asker(conn: Any) -> Any:
    """A question to the referee from inside a command (the revealed defender): send, then wait for the
    answer on the same pipe. The referee answers between the command's start and its result."""
    def ask(cmd: str, payload: Any) -> Any:
        _send(conn, "ask", {"c": cmd, "p": payload})
        message = wire.decode(conn.recv_bytes(), referee_types(), build_model=_rebuild_cpu)
        if not isinstance(message, dict) or message.get("c") not in ("answer", "refused"):
            raise RuntimeError("the referee's answer is not one of the protocol")
        if message["c"] == "refused":
            raise RuntimeError(str(message["p"]))
        return message["p"]

    return ask


def _send(conn: Any, status: str, value: Any) -> None:
    """An answer to the referee, as a wire frame (``arena.engine.wire``): never a pickle."""
    try:
        frame = wire.encode({"s": status, "v": value})
    except TypeError as exc:  # something the format does not carry: the agent's answer is garbage
        frame = wire.encode({"s": "error", "v": f"TypeError: its answer cannot be sent to the referee ({exc})"})
    conn.send_bytes(frame)


def _rebuild_cpu(arch: dict[str, Any], state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A model the referee sent (the benign copy in a view): rebuilt here from its architecture."""
    return model_from_payload({"arch": arch, "state": state}, torch.device("cpu"))


def _describe(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {os.path.basename(tb[-1].filename)}:{tb[-1].lineno})" if tb else ""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}{where}"


def to_device(obj: Any, device: torch.device) -> Any:
    """``obj`` with every tensor, model, trigger and data split inside it (dataclasses, tuples, lists,
    dicts) moved to ``device``; other values unchanged."""
    from arena.config.datasets import Tensors
    from arena.api.triggers import Trigger

    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, torch.nn.Module):
        return obj.to(device)
    if isinstance(obj, (Tensors, Trigger)):
        return obj.to(device)
    if isinstance(obj, torch.Generator) or obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {f.name: to_device(getattr(obj, f.name), device) for f in dataclasses.fields(obj) if f.init}
        try:
            return dataclasses.replace(obj, **changes)
        except (TypeError, ValueError):
            return obj
    if isinstance(obj, tuple):
        return tuple(to_device(v, device) for v in obj)
    if isinstance(obj, list):
        return [to_device(v, device) for v in obj]
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    return obj


def _overrides_craft_key(cls: type) -> bool:
    from arena.api.protocol import Attacker

    return callable(getattr(cls, "craft_key", None)) and getattr(cls, "craft_key") is not Attacker.craft_key
