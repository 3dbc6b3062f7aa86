"""The referee's side of the agent pipe (arena.engine.frames): never blocked beyond a tick, framing
compatible with multiprocessing's Connection on the agent's side. No agent process: a socketpair."""

from __future__ import annotations

import multiprocessing
import socket
import struct
import threading

import pytest

from arena.engine.frames import FrameError, recv_frame, send_frame


class GaveUp(Exception):
    pass


def give_up_after(n: int):
    calls = {"n": 0}

    def check() -> None:
        calls["n"] += 1
        if calls["n"] >= n:
            raise GaveUp
    return check, calls


@pytest.fixture
def pair():
    """(referee's socket, the agent's Connection)."""
    mine, theirs = socket.socketpair()
    conn = multiprocessing.connection.Connection(theirs.detach())
    yield mine, conn
    mine.close()
    conn.close()


def test_messages_cross_both_ways_in_connections_framing(pair):
    mine, conn = pair
    conn.send_bytes(b"hello")
    assert recv_frame(mine, lambda: None) == b"hello"
    big = bytes(range(256)) * 8000  # 2 MB: more than the socket buffer, so the writer waits for the reader
    reader = threading.Thread(target=lambda: got.append(conn.recv_bytes()))
    got: list[bytes] = []
    reader.start()
    send_frame(mine, big, lambda: None)
    reader.join(10)
    assert got == [big]
    raw = socket.socket(fileno=conn.fileno())
    raw.sendall(struct.pack("!iQ", -1, 5) + b"12345")  # the long form Connection uses from 2 GiB up
    raw.detach()
    assert recv_frame(mine, lambda: None) == b"12345"


def test_a_half_sent_frame_leaves_the_waiting_to_the_check(pair):
    mine, conn = pair
    raw = socket.socket(fileno=conn.fileno())  # raw bytes, as a hostile agent writes them
    raw.sendall(struct.pack("!i", 1000) + b"x" * 10)
    check, calls = give_up_after(3)
    with pytest.raises(GaveUp):
        recv_frame(mine, check, tick=0.01)
    assert calls["n"] == 3
    raw.detach()


def test_a_frame_over_the_limit_is_refused_before_it_is_read(pair):
    mine, conn = pair
    raw = socket.socket(fileno=conn.fileno())
    raw.sendall(struct.pack("!iQ", -1, 2**40))
    with pytest.raises(FrameError, match="over the 1048576-byte limit"):
        recv_frame(mine, lambda: None, limit=2**20)
    raw.detach()


def test_a_reader_that_stops_reading_leaves_the_waiting_to_the_check(pair):
    mine, _ = pair  # nobody reads the other end
    check, calls = give_up_after(3)
    with pytest.raises(GaveUp):
        send_frame(mine, b"x" * (8 * 2**20), check, tick=0.01)
    assert calls["n"] == 3


def test_a_closed_pipe_is_an_eof(pair):
    mine, conn = pair
    conn.close()
    with pytest.raises(EOFError):
        recv_frame(mine, lambda: None)
