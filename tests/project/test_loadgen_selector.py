"""loadgen.py's selector: epoll for any descriptor, select()'s fine timeouts.

The Python generator's new-connection mode holds more than a thousand sockets
at high rates; with select() it stopped at descriptor 1023 ("filedescriptor
out of range in select()"). Its selector must watch a socket past that number
and still wake up to the sub-millisecond, not at epoll's next whole millisecond.
"""

from __future__ import annotations

import os
import selectors
import socket
import time
from collections.abc import Iterator

import pytest

from benchmarks.loadgen import FineEpollSelector

HIGH_FD = 1500


@pytest.fixture
def pair_past_1023() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair()
    fd = os.dup2(left.fileno(), HIGH_FD)
    high = socket.socket(fileno=fd)
    left.close()
    try:
        yield high, right
    finally:
        high.close()
        right.close()


def test_a_socket_past_descriptor_1023_is_watched(
    pair_past_1023: tuple[socket.socket, socket.socket],
) -> None:
    high, right = pair_past_1023
    selector = FineEpollSelector()
    selector.register(high, selectors.EVENT_READ)
    assert selector.select(0.002) == []
    right.send(b"x")
    ready = selector.select(1.0)
    assert [(key.fd, events) for key, events in ready] == [(HIGH_FD, selectors.EVENT_READ)]


def test_a_sub_millisecond_timeout_is_slept_out_not_cut_short(
    pair_past_1023: tuple[socket.socket, socket.socket],
) -> None:
    high, _ = pair_past_1023
    selector = FineEpollSelector()
    selector.register(high, selectors.EVENT_READ)
    for timeout in (0.0003, 0.0017):
        start = time.monotonic()
        assert selector.select(timeout) == []
        assert time.monotonic() - start >= timeout
