"""The ceiling: the fastest an asyncio + h11 server answers the benchmarked request.

An `asyncio.Protocol` feeding `h11`, answering every request with the same
canned response as the apps (status, content-type, body), after reading and
discarding its body. No routing, no handler, no background work, no date
header. Keep-alive, pipelined requests (h11 buffers them; they are answered in
order) and ``Connection: close`` are handled by h11's state machine.

``python -m benchmarks.ceiling --port 0`` prints ``ceiling serving on
http://127.0.0.1:PORT`` once it listens, and stops on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

import h11

from .apps import MESSAGE

BODY = json.dumps(MESSAGE, separators=(",", ":")).encode()
HEADERS = [("content-type", "application/json"), ("content-length", str(len(BODY)))]


class CannedProtocol(asyncio.Protocol):
    """One connection: every complete request gets the canned 200."""

    def __init__(self) -> None:
        self.conn = h11.Connection(h11.SERVER)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self._answer_complete_requests()

    def eof_received(self) -> bool:
        self.conn.receive_data(b"")
        self._answer_complete_requests()
        return False  # close our side too

    def _answer_complete_requests(self) -> None:
        assert self.transport is not None
        conn = self.conn
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    return
                if isinstance(event, h11.EndOfMessage):
                    out = conn.send(h11.Response(status_code=200, headers=HEADERS))
                    out += conn.send(h11.Data(data=BODY))
                    out += conn.send(h11.EndOfMessage())
                    self.transport.write(out)
                    if conn.our_state is h11.MUST_CLOSE:
                        self.transport.close()
                        return
                    conn.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    self.transport.close()
                    return
                # h11.Request and h11.Data: nothing to do, the body is discarded
        except h11.ProtocolError:
            self.transport.close()


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(CannedProtocol, host, port, backlog=2048)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    bound = server.sockets[0].getsockname()[1]
    print(f"ceiling serving on http://{host}:{bound}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ceiling", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
