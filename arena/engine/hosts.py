"""How an agent's code runs: in its own process (default) or in the referee's (debugging).

The referee keeps the store, the cache, the test split and the outcome rule;
an agent runs in an *agent host* that holds only its view (``arena.api.views``):

- ``ProcessHost``: a child process forked from a forkserver that has torch
  imported (a fork costs milliseconds, not a torch import). Commands and
  answers go over a pipe as ``arena.engine.wire`` frames: JSON plus raw tensor
  bytes, never pickle, in either direction; the referee builds only the
  agent protocol's own dataclasses from them and checks every field's type
  (``check_answer``), so an answer of the wrong kind is a lost match, not
  code running in the referee. Each call
  has a wall-time limit and a memory limit (resident set size, polled); a
  call that overruns, crashes, is killed or returns garbage raises
  ``AgentFault``, and the referee turns it into a lost match for that side.
- ``InProcessHost``: the same commands called directly, for a debugger. The
  views are the same; limits are not enforced and the process boundary is
  absent, so it is never used for published results.

An attacker host answers ``craft`` (a ``TrojanPayload``: weights by
architecture spec, trigger tensors, notes) and, for function triggers,
``stamp``. A defender host answers ``deploy`` (a ``DeploymentSummary``:
threshold, verdict, notes) and then serves the deployment: ``predict``
(transform + model) and ``score`` (the filter). The deployed model never
leaves the defender's process; the referee only sees its outputs, as a
user of the deployment would.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from arena.config.specs import is_model_spec, own_file
from arena.core.cache import pid_alive
from arena.engine import frames, wire
from arena.core.errors import ArenaError, PluginError

ISOLATIONS = ("process", "inprocess")


@dataclass(frozen=True)
class AgentCard:
    """Plain facts about an agent, read in its own process (the referee never imports plugin code)."""

    role: str
    name: str
    version: str
    params: dict[str, Any]
    category: str | None = None  # defenders
    adaptive: bool = False  # attackers
    code_digest: str | None = None  # file plugins: hash of the source, part of every cache key
    sandbox: str = "process"  # the level its process is locked in at (arena.engine.sandbox.LEVELS)
    names_crafts: bool = False  # attackers: it defines craft_key (crafts with one name are shared)

    def identity(self) -> dict[str, Any]:
        """What a cache key needs of the agent."""
        d = {"name": self.name, "version": self.version, "params": self.params}
        if self.code_digest:
            d["code"] = self.code_digest
        return d


class AgentFault(ArenaError):
    """An agent crashed, overran a limit, was killed, or returned something the referee rejects."""

    def __init__(self, role: str, name: str, kind: str, message: str) -> None:
        super().__init__(f"{role} '{name}' {kind}: {message}")
        self.role, self.name, self.kind, self.detail = role, name, kind, message


@dataclass
class TrojanPayload:
    arch: dict[str, Any]
    state: dict[str, torch.Tensor]
    trigger: dict[str, torch.Tensor] | None
    has_stamp_fn: bool
    notes: dict[str, Any] = field(default_factory=dict)
    gpu_peak_mb: float | None = None  # the agent process's peak CUDA memory while crafting (None on the CPU)


@dataclass
class VerdictData:
    is_trojan: bool
    target: int | None
    anomaly_index: list[float] | None
    mask: torch.Tensor | None
    pattern: torch.Tensor | None


@dataclass
class DeploymentSummary:
    threshold: float | None
    has_transform: bool
    has_score: bool
    passes_per_input: int
    verdict: VerdictData | None
    notes: dict[str, Any] = field(default_factory=dict)
    batch_aware: bool = False
    gpu_peak_mb: float | None = None  # the agent process's peak CUDA memory while deploying (None on the CPU)
    # The deployment predicts with the very model it was given: the same object, the same weights and
    # buffers, the same modules, no hooks, no transform. The referee then computes those predictions
    # itself instead of asking for them. Claiming it falsely can only cost the defender: the referee
    # would score the untouched trojan's predictions.
    model_unchanged: bool = False


# --- the agent's side ---------------------------------------------------------
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


QUERIES = ("predict", "score", "transform", "stamp")  # commands on a batch of inputs
AGENT_DESCRIPTORS = 1024  # open files, pipes and sockets an agent process may hold at once
OUTPUT_LIMIT = 10 * 2**20  # bytes of an agent process's output shown; the rest is counted, not shown


def _relay(fd: int, limit: int = OUTPUT_LIMIT) -> None:
    """Copy what an agent process prints (its stdout and stderr, one pipe) to the referee's stderr,
    line by line, with control characters shown as escapes, up to ``limit`` bytes.

    An agent's output used to reach the user's terminal directly: an escape sequence could retitle
    the terminal or rewrite the line the referee had printed, and a flood could fill a log's disk."""
    shown, dropped, pending = 0, 0, b""

    def emit(line: bytes) -> None:
        text = wire.CONTROL.sub(lambda m: ascii(m.group())[1:-1], line.decode("utf-8", "replace"))
        print(text, file=sys.stderr, flush=True)

    with open(fd, "rb", buffering=0) as pipe:
        while chunk := pipe.read(65536):
            if shown >= limit:
                dropped += len(chunk)
                continue
            shown += len(chunk)
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                emit(line)
            if len(pending) > 65536:  # a line without end is shown in pieces
                emit(pending)
                pending = b""
    if pending:
        emit(pending)
    if dropped:
        print(f"(an agent's output over {limit} bytes: {dropped} more bytes not shown)", file=sys.stderr, flush=True)


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
            message = wire.decode(conn.recv_bytes(), _referee_types(), build_model=_rebuild_cpu)
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
        message = wire.decode(conn.recv_bytes(), _referee_types(), build_model=_rebuild_cpu)
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


# --- the referee's side -------------------------------------------------------
_CONTEXT = None


def _mp_context():
    """One forkserver per referee process, with torch and the agent plumbing preloaded."""
    global _CONTEXT
    if _CONTEXT is None:
        import torch.multiprocessing as tmp

        ctx = tmp.get_context("forkserver")
        # agent_env first: the user's environment is gone before anything else is loaded or forked.
        ctx.set_forkserver_preload(["arena.engine.agent_env", "torch", "arena.engine.hosts", "arena.api.protocol",
                                    "arena.api.models", "arena.api.training", "arena.api.views",
                                    "arena.engine.agent_preload"])
        _CONTEXT = ctx
    return _CONTEXT


@contextmanager
def _main_not_rerun() -> Iterator[None]:
    """Start a child without re-running the caller's ``__main__``.

    A forkserver child, like a spawned one, re-imports the parent's main script unless it sits
    behind ``if __name__ == "__main__"``; a user's notebook or script that calls the referee at top
    level would then play again in every agent process. The child needs nothing from ``__main__``
    (its target lives in this module), so the main module is hidden while the child is prepared.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


# An agent may occupy as many megabytes in its scratch folder as in memory (``budgets.memory_mb``): on a
# tmpfs the folder *is* memory, and a budget of its own would change every scenario's digest.
DISK_PER_MEMORY = 1.0
MAX_SCRATCH_FILES = 100_000  # entries in an agent's scratch folder before it counts as filling the disk
SCRATCH_PREFIX = "arena-agent-"
_SWEPT = False


def sweep_scratch(folder: str | None = None) -> list[str]:
    """Delete the agent scratch folders (``arena-agent-PID-*`` in the temporary folder) whose referee,
    process PID, is gone; once per process. A referee removes its agents' folders itself, but one
    killed outright (SIGKILL, a lost machine) cannot. Returns the folders removed."""
    global _SWEPT
    if _SWEPT and folder is None:
        return []
    _SWEPT = True
    root = Path(folder or tempfile.gettempdir())
    removed = []
    for path in root.glob(f"{SCRATCH_PREFIX}*-*"):
        pid = path.name[len(SCRATCH_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and path.is_dir() and path.stat().st_uid == os.getuid() and not pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed


def scratch_mb(folder: str, max_files: int = MAX_SCRATCH_FILES) -> float:
    """Megabytes the files under ``folder`` occupy on disk (allocated blocks, so sparse files count
    what they use); ``math.inf`` past ``max_files`` entries, where the count itself would grow costly."""
    total, seen = 0, 0
    for root, dirs, files in os.walk(folder):
        for name in files + dirs:
            seen += 1
            if seen > max_files:
                return math.inf
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:  # removed meanwhile
                pass
    return total / 2**20


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _copy_for_agent(obj: Any) -> Any:
    """What an in-process agent receives: a copy on the CPU, tensors inside a context included, as a
    process agent gets through the wire (the agent must never write into the referee's own). The
    agent's side moves what it gets to the match's device (``to_device``)."""
    import copy

    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    return to_device(copy.deepcopy(obj), torch.device("cpu"))


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


def secret_paths() -> list[str]:
    """What no agent process may read or write: the arena home (store, cache, decoded data), the data
    folders (the test split) and the referee's working folder."""
    from arena.config.datasets import DEBIAN_FASHION_MNIST, data_dir
    from arena.core.cache import arena_home

    home = arena_home()
    paths = [home, data_dir(), DEBIAN_FASHION_MNIST.parent, Path.cwd()]
    if os.environ.get("ARENA_DATA_DIR"):
        paths.append(Path(os.environ["ARENA_DATA_DIR"]))
    # A part of the home may be a link to elsewhere (a cache on a larger disk, or shared by the
    # workers of a cluster or of the test suite): its target is as secret as the home.
    if home.is_dir():
        paths += [p for p in home.iterdir() if p.is_symlink()]
    return [str(p.resolve()) for p in paths]


def _answer(message: Any) -> tuple[str, Any]:
    """(status, value) of an agent's frame, or ("bad", why) when it is not one."""
    if not isinstance(message, dict) or set(message) != {"s", "v"} or \
            message["s"] not in ("ok", "error", "plugin_error", "ask"):
        return "bad", "not an answer of the agent protocol"
    if message["s"] == "ask":
        v = message["v"]
        if not (isinstance(v, dict) and set(v) == {"c", "p"} and isinstance(v["c"], str)):
            return "bad", "a question that is not one of the protocol"
        return "ask", v
    if message["s"] != "ok" and not isinstance(message["v"], str):
        return "bad", "an error without a message"
    return message["s"], message["v"]


def _is(v: Any, *types: type) -> bool:
    return any((v is None) if t is type(None) else (type(v) is t) for t in types)


def _tensor_map(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in v.items())


def _overrides_craft_key(cls: type) -> bool:
    from arena.api.protocol import Attacker

    return callable(getattr(cls, "craft_key", None)) and getattr(cls, "craft_key") is not Attacker.craft_key


def check_answer(cmd: str, value: Any) -> str | None:
    """Why an agent's answer to ``cmd`` has the wrong shape of data (None when it is right).

    The decoder only builds allowed types; this checks each field's type, so no later step of the
    referee meets, say, a list where it expects a number."""
    if cmd in ("predict", "score", "stamp"):
        return None if isinstance(value, torch.Tensor) else f"a {type(value).__name__}, not a tensor"
    if cmd == "craft_key":
        if value is None:
            return None
        if not (isinstance(value, dict) and set(value) == {"name", "notes"} and isinstance(value["notes"], dict)):
            return "not (name, notes) or None"
        name = value["name"]
        if not (isinstance(name, str) and 1 <= len(name) <= 200 and name.isprintable()):
            return "a craft name must be 1-200 printable characters"
        return _notes_problem(value["notes"])
    if cmd == "start":
        value, cmd = value, "card"
    want = {"card": AgentCard, "craft": TrojanPayload, "deploy": DeploymentSummary}.get(cmd)
    if want is None:
        return None
    if type(value) is not want:
        return f"a {type(value).__name__}, not a {want.__name__}"
    if isinstance(value, AgentCard):
        ok = (_is(value.role, str) and _is(value.name, str) and _is(value.version, str)
              and isinstance(value.params, dict) and _is(value.category, str, type(None))
              and _is(value.adaptive, bool) and _is(value.code_digest, str, type(None))
              and _is(value.names_crafts, bool)
              and value.sandbox in ("full", "landlock", "process"))
    elif isinstance(value, TrojanPayload):
        ok = (isinstance(value.arch, dict) and _tensor_map(value.state)
              and (value.trigger is None or _tensor_map(value.trigger)) and _is(value.has_stamp_fn, bool)
              and isinstance(value.notes, dict) and _is(value.gpu_peak_mb, float, int, type(None)))
    else:
        v = value.verdict
        ok = (_is(value.threshold, float, int, type(None)) and _is(value.has_transform, bool)
              and _is(value.has_score, bool) and _is(value.passes_per_input, int)
              and isinstance(value.notes, dict) and _is(value.batch_aware, bool)
              and _is(value.gpu_peak_mb, float, int, type(None)) and _is(value.model_unchanged, bool)
              and (v is None or (type(v) is VerdictData and _is(v.is_trojan, bool) and _is(v.target, int, type(None))
                                 and (v.anomaly_index is None or (isinstance(v.anomaly_index, list) and all(
                                     _is(a, float, int) for a in v.anomaly_index)))
                                 and all(m is None or isinstance(m, torch.Tensor) for m in (v.mask, v.pattern)))))
    if not ok:
        return f"a {want.__name__} with fields of the wrong types"
    return _notes_problem(getattr(value, "notes", None))


NOTES_LIMIT = 64 * 2**10  # bytes of JSON: an agent's notes are stored with every match and published


def _notes_problem(notes: Any) -> str | None:
    """Why an agent's notes are too large to store (the built-in agents' are under 1 KB)."""
    if notes is None:
        return None
    size = len(json.dumps(notes, default=str))
    return f"notes of {size} bytes of JSON, over the {NOTES_LIMIT}-byte limit" if size > NOTES_LIMIT else None


class ProcessHost:
    """An agent in its own process, with per-call limits."""

    def __init__(self, role: str, spec: str, params: dict[str, Any], device: torch.device,
                 memory_mb: int | None = None, start_seconds: float = 120.0) -> None:
        self.role, self.spec, self.memory_mb = role, spec, memory_mb
        self.disk_mb = None if memory_mb is None else max(1, int(memory_mb * DISK_PER_MEMORY))
        self.on_ask: Any = None  # answers the agent's questions during a command (arena.engine.revealed)
        ctx = _mp_context()
        self._conn, child = ctx.Pipe(duplex=True)
        output, child_output = ctx.Pipe(duplex=False)
        from arena.api.training import match_threads

        # The agent's only writable folder; made here so the referee can delete it after the process.
        # Named by this referee's pid: a referee killed outright leaves its folders to the next one.
        sweep_scratch()
        self.scratch = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-")
        # The agent trains on the match's fixed thread count: its bytes must not depend on how many
        # matches run beside it (arena.api.training.match_threads).
        self._proc = ctx.Process(target=_child_main, args=(child, child_output, role, spec, params, str(device),
                                                           match_threads(), os.getpid(), self.scratch,
                                                           secret_paths(), self.disk_mb), daemon=True)
        with _main_not_rerun():
            self._proc.start()
        child.close()
        child_output.close()
        self._relaying = threading.Thread(target=_relay, args=(os.dup(output.fileno()),), name="arena-agent-output",
                                          daemon=True)
        self._relaying.start()
        output.close()
        # The referee reads and writes the pipe itself, under its limits (arena.engine.frames); the
        # Connection stays only to be closed.
        self._sock = socket.socket(fileno=os.dup(self._conn.fileno()))
        # No message of an agent's is larger than what its process may hold.
        self._frame_limit = None if memory_mb is None else memory_mb * 2**20
        card = self._wait("start", start_seconds)
        problem = check_answer("card", card)
        if problem:
            self.kill()
            raise self._fault("returned garbage", f"start: {problem}")
        self.card: AgentCard = card

    def _fault(self, kind: str, message: str) -> AgentFault:
        name = getattr(getattr(self, "card", None), "name", self.spec)
        return AgentFault(self.role, name, kind, message)

    def _limits(self, what: str, seconds: float | None, deadline: float | None) -> Callable[[], None]:
        """The checks run while the referee waits on the agent: alive, in time, within memory, and
        within the same number of megabytes on disk (its scratch folder: on a tmpfs those are memory
        too, and elsewhere a full disk would stop the referee's store), that one checked once a second."""
        disk_due = 0.0

        def check() -> None:
            nonlocal disk_due
            if not self._proc.is_alive():
                self.kill()
                raise self._fault("was killed", f"its process died during {what} (exit code {self._proc.exitcode})")
            if deadline is not None and time.monotonic() > deadline:
                self.kill()
                raise self._fault("ran out of time", f"{what} exceeded its limit of {seconds:g} s")
            if self.memory_mb is not None:
                rss = _rss_mb(self._proc.pid)
                if rss is not None and rss > self.memory_mb:
                    self.kill()
                    raise self._fault("ran out of memory", f"{what} used {rss:.0f} MB, over its limit of "
                                                          f"{self.memory_mb} MB")
            if self.disk_mb is not None and time.monotonic() >= disk_due:
                disk_due = time.monotonic() + 1.0
                used = scratch_mb(self.scratch)
                if used > self.disk_mb:
                    self.kill()
                    raise self._fault("ran out of disk", f"{what} wrote {used:.0f} MB to its scratch folder, "
                                                        f"over its limit of {self.disk_mb} MB")
        return check

    def _send(self, message: dict[str, Any], check: Callable[[], None]) -> None:
        # Encoding copies every tensor into the frame: the agent never shares memory with the referee.
        frames.send_frame(self._sock, wire.encode(message), check)

    def _wait(self, what: str, seconds: float | None, limit: int | None = None) -> Any:
        deadline = None if seconds is None else time.monotonic() + seconds
        check = self._limits(what, seconds, deadline)
        limit = self._frame_limit if limit is None else limit
        while True:
            try:
                message = wire.decode(frames.recv_frame(self._sock, check, limit), AGENT_TYPES)
            except (EOFError, OSError):
                self.kill()
                raise self._fault("was killed", f"its process died during {what} "
                                                f"(exit code {self._proc.exitcode})") from None
            except (wire.WireError, frames.FrameError) as exc:
                self.kill()
                raise self._fault("returned garbage", f"{what}: {exc}") from None
            status, value = _answer(message)
            if status == "bad":
                self.kill()
                raise self._fault("returned garbage", f"{what}: {value}")
            if status == "plugin_error":
                self.kill()
                raise PluginError(value)
            if status == "error":
                self.kill()
                raise self._fault(f"crashed in {what}", value)
            if status != "ask":
                return value
            # A question (the revealed defender): answered under the same limits, and the limits checked
            # after each, so an agent asking without end, faster than a tick, still runs out of time.
            self._reply(value, deadline, check)
            check()

    def _reply(self, question: dict[str, Any], deadline: float | None, check: Callable[[], None]) -> None:
        """Answer an agent's question within its command's time: an answer, or a refusal saying why."""
        if self.on_ask is None:
            reply = {"c": "refused", "p": "nobody answers questions in this command"}
        else:
            if hasattr(self.on_ask, "seconds") and deadline is not None:
                self.on_ask.seconds = max(1.0, deadline - time.monotonic())
            try:
                reply = {"c": "answer", "p": self.on_ask(question["c"], question["p"])}
            except Exception as exc:  # noqa: BLE001 - the defender's failure is the attacker's to handle
                reply = {"c": "refused", "p": str(exc) or type(exc).__name__}
        try:
            self._send(reply, check)
        except OSError:
            pass  # the agent died meanwhile: the wait that follows reports it

    def call(self, cmd: str, payload: Any, seconds: float | None) -> Any:
        if not self._proc.is_alive():
            raise self._fault("was killed", f"its process is gone before {cmd}")
        deadline = None if seconds is None else time.monotonic() + seconds
        try:
            # An agent that stops reading runs out of its command's time here, not the referee's patience.
            self._send({"c": cmd, "p": payload}, self._limits(cmd, seconds, deadline))
        except OSError as exc:
            self.kill()
            raise self._fault("was killed", f"its process stopped answering ({exc})") from None
        value = self._wait(cmd, None if deadline is None else max(0.0, deadline - time.monotonic()),
                           self._answer_limit(cmd, payload))
        problem = check_answer(cmd, value)
        if problem:
            self.kill()
            raise self._fault("returned garbage", f"{cmd}: {problem}")
        return value

    def _answer_limit(self, cmd: str, payload: Any) -> int | None:
        """The largest answer the referee reads to ``cmd``: a query on inputs (predictions, scores,
        transformed or stamped inputs) is answered with at most as many values as it asked about,
        so four times the question's tensor bytes (any dtype up to float64 from as small as uint16)
        and a megabyte of slack; anything else, the agent's memory budget."""
        if cmd in QUERIES and isinstance(payload, torch.Tensor):
            asked = 4 * payload.numel() * payload.element_size() + 2**20
            return asked if self._frame_limit is None else min(asked, self._frame_limit)
        return self._frame_limit

    def hold(self, held: bool) -> None:
        """Stop the process between commands (SIGSTOP), or let it go on (SIGCONT). A process held runs
        nothing, its own threads included: a revealed defender waiting for an attacker's next question
        could otherwise spend the two of them's CPU, and the attacker's craft time with it."""
        if self._proc.is_alive() and self._proc.pid:
            try:
                os.kill(self._proc.pid, signal.SIGSTOP if held else signal.SIGCONT)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()
        self._proc.join(timeout=5)
        shutil.rmtree(self.scratch, ignore_errors=True)
        if hasattr(self, "_relaying"):
            self._relaying.join(timeout=1)  # its last lines, printed before the referee goes on

    def close(self) -> None:
        if self._proc.is_alive():
            self.hold(False)  # a held process could not read that it may go
            try:
                self._send({"c": "close", "p": None}, self._limits("close", 2.0, time.monotonic() + 2.0))
            except (OSError, AgentFault):
                pass
            self._proc.join(timeout=2)
        self.kill()
        self._sock.close()
        self._conn.close()


class InProcessHost:
    """The same commands in the referee's process (a debugger can step into the agent); no limits.

    Also the host of agent *objects* handed to ``Referee.play`` (the Python API): an object is the
    caller's own code, built in the caller's process, so it runs there."""

    def __init__(self, role: str, spec: str, params: dict[str, Any], device: torch.device,
                 memory_mb: int | None = None, agent: Any = None) -> None:
        self.role, self.spec = role, spec
        try:
            self._server = AgentServer(role, spec, params, str(device), agent=agent)
        except ArenaError:
            raise
        except Exception as exc:
            raise AgentFault(role, spec, "crashed in start", _describe(exc)) from exc
        self.card = self._server.card
        self.on_ask: Any = None
        self._server.ask = self._ask

    def _ask(self, cmd: str, payload: Any) -> Any:
        if self.on_ask is None:
            raise RuntimeError("nobody answers questions in this command")
        answer = self.on_ask(cmd, _copy_for_agent(payload))
        return answer.clone() if isinstance(answer, torch.Tensor) else answer

    def call(self, cmd: str, payload: Any, seconds: float | None) -> Any:
        try:
            value = self._server.handle(cmd, _copy_for_agent(payload))
        except Exception as exc:
            raise AgentFault(self.role, self.card.name, f"crashed in {cmd}", _describe(exc)) from exc
        return value.clone() if isinstance(value, torch.Tensor) else value

    def close(self) -> None:
        self._server = None  # type: ignore[assignment]


def open_host(role: str, spec: str, params: dict[str, Any], device: torch.device, isolation: str = "process",
              memory_mb: int | None = None) -> ProcessHost | InProcessHost:
    """Start an agent host. Plugin errors (unknown agent, bad import, bad parameters) raise their
    ``PluginError`` unchanged: they are the user's to fix, not a lost match."""
    if isolation not in ISOLATIONS:
        raise ArenaError(f"unknown isolation '{isolation}'", hint=f"use one of: {', '.join(ISOLATIONS)}")
    from arena.config.specs import absolute_spec, canonical_spec

    if isolation == "inprocess":
        return InProcessHost(role, spec, params, device, memory_mb)
    if own_file(spec) is None:
        return ProcessHost(role, spec, params, device, memory_mb)
    # The agent keeps the name the referee's side gives it; its process gets the absolute path.
    host = ProcessHost(role, absolute_spec(spec), params, device, memory_mb)
    host.card = dataclasses.replace(host.card, name=canonical_spec(spec))
    return host


_CARDS: dict[tuple[str, str, str], AgentCard] = {}


def describe(role: str, spec: str, params: dict[str, Any], isolation: str = "process") -> AgentCard:
    """An agent's card (name, version, category, adaptive, parameters), read in a throw-away host and
    remembered for this process."""
    key = (role, spec, json.dumps(params, sort_keys=True, default=str))
    if key not in _CARDS:
        host = open_host(role, spec, params, torch.device("cpu"), isolation)
        try:
            _CARDS[key] = host.card
        finally:
            host.close()
    return _CARDS[key]


# --- what may cross the wire (arena.engine.wire) ----------------------------------------------------

def _types(*classes: type) -> dict[str, type]:
    return {c.__name__: c for c in classes}


# From an agent to the referee: its card and the plain summaries of its work; nothing else is built.
def _agent_types() -> dict[str, type]:
    """From an agent to the referee: its answers, and (an adaptive attacker's questions about the
    revealed defender) the clean data it deploys a surrogate on."""
    from arena.config.datasets import Tensors

    return _types(AgentCard, TrojanPayload, VerdictData, DeploymentSummary, Tensors)


AGENT_TYPES = _agent_types()


def _referee_types() -> dict[str, type]:
    """From the referee to an agent: the views (``arena.api.views``) and what they hold."""
    from arena.api.protocol import AttackContext, DefenseContext, RoundRecord
    from arena.api.triggers import Trigger
    from arena.api.views import AttackerScenario, DefenderScenario, RevealedDefender
    from arena.config.datasets import DatasetInfo, Tensors
    from arena.config.scenario import AttackSpec, Budgets, DataSpec, Training, TriggerSpec

    return _types(AttackContext, DefenseContext, RoundRecord, Trigger, AttackerScenario, DefenderScenario,
                  RevealedDefender, DatasetInfo, Tensors, AttackSpec, Budgets, DataSpec, Training, TriggerSpec,
                  DeploymentSummary, VerdictData)  # the last two: the revealed defender's answers
