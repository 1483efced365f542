"""A client that stops reading cannot hold a connection forever."""

import asyncio
import socket

from tests.support.wire import Firehose


async def test_a_client_that_never_reads_is_cut_off_after_the_keep_alive_timeout(serve):
    firehose = Firehose()
    async with serve(firehose.app, timeout_keep_alive=0.3) as server:
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        loop = asyncio.get_running_loop()
        # From before the request: the server's wait for a reader starts later,
        # so the time to the cut-off can only be longer than what it waited.
        started = loop.time()
        sock.sendall(b"GET /firehose HTTP/1.1\r\nhost: x\r\n\r\n")
        async with asyncio.timeout(5):
            while firehose.produced == 0:  # the response has started streaming
                await asyncio.sleep(0.01)
        async with asyncio.timeout(5):
            while server.connection_tasks:  # the connection task ends once the server gives up
                await asyncio.sleep(0.05)
        elapsed = loop.time() - started
        sock.close()
    assert 0.3 <= elapsed < 3
    # flow control: the producer was not drained far ahead of the socket
    assert firehose.produced < 200
