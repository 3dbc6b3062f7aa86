"""Frames between the referee and an agent process, moved under the referee's limits.

``multiprocessing.Connection`` blocks in ``recv_bytes`` until a whole message has arrived and in
``send_bytes`` until all of it is written. An agent process is hostile code, so neither wait may be
unbounded: an agent that sends the start of a frame and stops (or announces a frame of a terabyte), or
that stops reading while the referee sends it a batch of inputs (a process can stop itself with
SIGSTOP), would hold the referee, and the whole tournament behind it, for ever; its time limit is only
checked between messages.

The referee's side therefore reads and writes the socket itself, never blocking for longer than a
tick, and calls ``check`` (the host's deadline, liveness and memory checks) at least once a tick while
a frame is under way. The framing is ``Connection``'s own (a 4-byte big-endian length, or -1 and an
8-byte length from 2 GiB up), so the agent's side keeps its ``Connection``.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Callable

TICK = 0.05  # seconds between checks while a frame waits (the host polled at this rate before)


class FrameError(Exception):
    """A frame the referee will not read (larger than the agent may send)."""


def _checker(check: Callable[[], None], tick: float) -> Callable[[], None]:
    """``check``, run at most once a tick however often it is asked for."""
    due = time.monotonic() + tick

    def maybe() -> None:
        nonlocal due
        if time.monotonic() >= due:
            check()
            due = time.monotonic() + tick
    return maybe


def _read_into(sock: socket.socket, view: memoryview, check: Callable[[], None], tick: float) -> None:
    got = 0
    while got < len(view):
        try:
            n = sock.recv_into(view[got:], len(view) - got, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            select.select([sock], [], [], tick)
            check()
            continue
        if n == 0:
            raise EOFError("the agent closed its end of the pipe")
        got += n
        check()


def recv_frame(sock: socket.socket, check: Callable[[], None], limit: int | None = None,
               tick: float = TICK) -> bytes:
    """One message's bytes. ``check`` runs at least every ``tick`` seconds while waiting (it raises to
    give up); a frame announced larger than ``limit`` bytes raises ``FrameError`` before any of it is
    read; a closed pipe raises ``EOFError``."""
    maybe = _checker(check, tick)
    head = bytearray(4)
    # Between messages the agent is computing: the wait for the header is as checked as the rest.
    _read_into(sock, memoryview(head), maybe, tick)
    (size,) = struct.unpack("!i", head)
    if size == -1:
        big = bytearray(8)
        _read_into(sock, memoryview(big), maybe, tick)
        (size,) = struct.unpack("!Q", big)
    if size < 0 or (limit is not None and size > limit):
        raise FrameError(f"a message of {size} bytes, over the {limit}-byte limit" if size >= 0
                         else f"a message of negative length {size}")
    data = bytearray(size)
    _read_into(sock, memoryview(data), maybe, tick)
    return bytes(data)


def send_frame(sock: socket.socket, data: bytes, check: Callable[[], None], tick: float = TICK) -> None:
    """Write one message; ``check`` runs at least every ``tick`` seconds while the agent does not read."""
    maybe = _checker(check, tick)
    n = len(data)
    head = struct.pack("!i", n) if n <= 0x7FFFFFFF else struct.pack("!iQ", -1, n)
    for part in (memoryview(head), memoryview(data)):
        sent = 0
        while sent < len(part):
            try:
                sent += sock.send(part[sent:], socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                select.select([], [sock], [], tick)
                maybe()
