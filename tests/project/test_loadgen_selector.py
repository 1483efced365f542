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
def watching() -> Iterator[tuple[FineEpollSelector, socket.socket]]:
    """The selector, watching a socket at descriptor `HIGH_FD`; and the socket's peer."""
    left, right = socket.socketpair()
    high = socket.socket(fileno=os.dup2(left.fileno(), HIGH_FD))
    left.close()
    selector = FineEpollSelector()
    selector.register(high, selectors.EVENT_READ)
    try:
        yield selector, right
    finally:
        selector.close()
        high.close()
        right.close()


def test_a_socket_past_descriptor_1023_is_watched(
    watching: tuple[FineEpollSelector, socket.socket],
) -> None:
    selector, peer = watching
    assert selector.select(0.002) == []
    peer.send(b"x")
    ready = selector.select(1.0)
    assert [(key.fd, events) for key, events in ready] == [(HIGH_FD, selectors.EVENT_READ)]


def test_a_sub_millisecond_timeout_is_slept_out_not_cut_short(
    watching: tuple[FineEpollSelector, socket.socket],
) -> None:
    selector, _ = watching
    for timeout in (0.0003, 0.0017):
        start = time.monotonic()
        assert selector.select(timeout) == []
        assert time.monotonic() - start >= timeout
