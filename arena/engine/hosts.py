"""How an agent's code runs: in its own process (default) or in the referee's (debugging).

This module is the referee's side of an agent host: it starts the process, enforces its limits
and reads its answers. The process itself (``AgentServer`` and the sandboxed child) is
``arena.engine.agent_process``; what crosses the pipe between them is ``arena.engine.messages``.

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

import dataclasses
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
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from arena.config.specs import own_file
from arena.core.cache import pid_alive
from arena.core.errors import ArenaError, PluginError
from arena.engine import frames, wire
from arena.engine.agent_process import AgentServer, _child_main, _describe, to_device
from arena.engine.messages import AGENT_TYPES, AgentCard, check_answer

ISOLATIONS = ("process", "inprocess")


class AgentFault(ArenaError):
    """An agent crashed, overran a limit, was killed, or returned something the referee rejects."""

    def __init__(self, role: str, name: str, kind: str, message: str) -> None:
        super().__init__(f"{role} '{name}' {kind}: {message}")
        self.role, self.name, self.kind, self.detail = role, name, kind, message


QUERIES = ("predict", "score", "transform", "stamp")  # commands on a batch of inputs
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


_CONTEXT = None


def _mp_context():
    """One forkserver per referee process, with torch and the agent plumbing preloaded."""
    global _CONTEXT
    if _CONTEXT is None:
        import torch.multiprocessing as tmp

        ctx = tmp.get_context("forkserver")
        # agent_env first: the user's environment is gone before anything else is loaded or forked.
        ctx.set_forkserver_preload(["arena.engine.agent_env", "torch", "arena.engine.agent_process",
                                    "arena.api.protocol", "arena.api.models", "arena.api.training",
                                    "arena.api.views", "arena.engine.agent_preload"])
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
