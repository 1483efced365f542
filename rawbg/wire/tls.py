"""`TlsTransport`: TLS between a socket's transport and the connection's `HttpProtocol`.

rawbg does its own TLS over the plain socket transport (with the standard
library's `ssl.SSLObject` and two memory buffers) instead of handing the
socket to the loop's TLS (``connect_accepted_socket(ssl=...)``), because the
loop's TLS hides the one thing rawbg promises about a response: when it has
been handed to the kernel. asyncio's (and uvloop's) TLS transport reports as
its write buffer only what it has not yet encrypted and passed on; what the
socket transport beneath it still holds (up to its high-water mark, 64 KiB) it
does not count, and that transport cannot be reached through a public API. So
`HttpProtocol.flushed` would return, and background tasks start, with up to
64 KiB of the response still in user space (asyncio/sslproto.py: its
`_get_write_buffer_size` is the outgoing memory buffer plus its own backlog).
Here the encrypted bytes go straight into the socket transport, whose buffer
is then the only one, and its size, its flow control (`pause_writing` and
`resume_writing`, passed up unchanged) and `flushed` mean what they mean
without TLS, on both loops.

The life of one TLS connection:

1. **Accept.** The server's `Acceptor` accepts as for plain HTTP and the loop
   makes the socket transport; its protocol is a `TlsTransport`, which starts
   the handshake and its deadline (the server's head timeout: a client that
   connects and sends nothing, or stalls mid-handshake, is cut then). The
   connection is not counted or served yet: it is one of the server's
   `handshakes`.
2. **Handshake.** Bytes from the client go into the incoming buffer, and the
   handshake takes what it needs; its answer goes out. If it fails on bytes
   that are a plain HTTP request, the client gets a plain ``400`` saying the
   port speaks HTTPS (as nginx answers), then the connection closes; any other
   failure closes it (logged at debug level: scanners cause them all day).
3. **Connected.** The `HttpProtocol` gets this object as its transport
   (`connection_made`), and the connection is served like any other. Records
   that arrived with the handshake's last flight are decrypted at once.
4. **Bytes in.** Each chunk from the socket is decrypted, record by record,
   and handed to `HttpProtocol.data_received`. Pausing reading pauses the
   socket and stops decrypting; resuming goes on with what was already there.
   The client's ``close_notify``, or its TCP FIN, is the protocol's EOF.
5. **Bytes out.** `write` encrypts into the outgoing buffer and passes every
   encrypted byte to the socket transport at once.
6. **Close.** `close` sends ``close_notify`` and closes the socket transport
   (which sends what it still holds first); `abort` drops it all.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import ssl
from collections.abc import MutableSet
from typing import Any, cast

from rawbg.wire.protocol import drop_transport_self_reference

logger = logging.getLogger("rawbg.tls")

# One TLS record holds at most 16 KiB of plaintext; a read asks for up to four,
# so that a burst of pipelined requests takes a few calls, not one per record.
READ_SIZE = 64 * 1024

#: the answer to plain HTTP on the TLS port (nginx answers 400 too)
PLAIN_HTTP_BODY = b"This port speaks HTTPS: send the request to https:// instead of http://\n"
PLAIN_HTTP_RESPONSE = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: " + str(len(PLAIN_HTTP_BODY)).encode() + b"\r\n"
    b"connection: close\r\n"
    b"\r\n" + PLAIN_HTTP_BODY
)

#: the context the handshake timers run in (they read no context variable)
_TIMER_CONTEXT = contextvars.Context()


def looks_like_plain_http(first_bytes: bytes) -> bool:
    """True when a connection began with an HTTP request line, not a TLS record.

    A TLS handshake begins with the record type 22 (0x16); an HTTP/1.x request
    with its method, upper-case letters then a space.
    """
    method, space, _ = first_bytes[:16].partition(b" ")
    return bool(space) and method.isalpha() and method.isupper()


class TlsTransport(asyncio.Protocol, asyncio.Transport):
    """The protocol of one accepted socket, and the transport of its `HttpProtocol`.

    `app` is the connection's protocol, told of the connection once the
    handshake is done; `handshake_timeout` bounds the handshake; while it runs
    the connection is in `handshakes` (the server's, so that shutdown can wait
    for them, and tests can count them).
    """

    def __init__(
        self,
        context: ssl.SSLContext,
        app: asyncio.Protocol,
        *,
        handshake_timeout: float,
        handshakes: MutableSet[TlsTransport],
    ) -> None:
        super().__init__()
        self._context = context
        self._app: asyncio.Protocol | None = app
        self._handshake_timeout = handshake_timeout
        self._handshakes = handshakes
        self._loop = asyncio.get_running_loop()
        # The socket's transport and the TLS state
        self._raw: asyncio.Transport | None = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        # The handshake
        self._handshaking = True
        self._timer: asyncio.TimerHandle | None = None
        self._first_bytes = b""  # what began the connection, to tell plain HTTP
        # After the handshake
        self._reading_paused = False
        self._closing = False
        self._lost = False

    # -- the socket's side (we are its protocol) ----------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._raw = cast(asyncio.Transport, transport)
        self._handshakes.add(self)
        self._timer = self._loop.call_later(
            self._handshake_timeout, self._handshake_too_slow, context=_TIMER_CONTEXT
        )

    def data_received(self, data: bytes) -> None:
        self._incoming.write(data)
        if self._handshaking:
            if len(self._first_bytes) < 16:
                self._first_bytes += data[: 16 - len(self._first_bytes)]
            self._handshake()
        elif not self._reading_paused:
            self._read()

    def eof_received(self) -> bool:
        if self._handshaking:
            self._handshake_failed("the client closed the connection during the handshake")
            return False
        self._incoming.write_eof()
        app = self._app
        if app is None or self._reading_paused:  # the rest is read when reading resumes
            return True
        self._read()
        return True  # HttpProtocol keeps its write side open for a half-closed client

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._end_handshake()
        app, self._app = self._app, None  # our cycle with the app protocol ends here
        if app is not None and not self._handshaking:
            app.connection_lost(exc)
        if self._raw is not None:
            drop_transport_self_reference(self._raw)

    def pause_writing(self) -> None:  # the socket's buffer is over its high-water mark
        if self._app is not None and not self._handshaking:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        if self._app is not None and not self._handshaking:
            self._app.resume_writing()

    # -- the handshake --------------------------------------------------------------

    def _handshake(self) -> None:
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            self._send_encrypted()
            return
        except ssl.SSLError as exc:
            self._send_encrypted()  # the alert that says why, if any
            if looks_like_plain_http(self._first_bytes):
                logger.debug("plain HTTP on the TLS port: answered 400")
                raw = self._raw
                assert raw is not None
                self._end_handshake()
                raw.write(PLAIN_HTTP_RESPONSE)
                raw.close()
                return
            self._handshake_failed(f"TLS handshake failed: {exc.reason or exc}")
            return
        self._send_encrypted()
        self._end_handshake()
        self._handshaking = False
        self._first_bytes = b""
        app = self._app
        assert app is not None
        app.connection_made(self)
        if not self._closing and not self._reading_paused:
            self._read()  # records that came with the client's last flight

    def hurry(self, within: float) -> None:
        """Cut the handshake `within` seconds from now if it is not done by then
        (and its own deadline is later): shutdown does not wait long for it."""
        timer = self._timer
        if timer is None or timer.when() <= self._loop.time() + within:
            return
        timer.cancel()
        self._timer = self._loop.call_later(
            within, self._handshake_too_slow, context=_TIMER_CONTEXT
        )

    def _handshake_too_slow(self) -> None:
        self._timer = None
        if self._handshaking and not self._lost:
            self._handshake_failed("TLS handshake not finished in time")

    def _handshake_failed(self, why: str) -> None:
        peer = self._raw.get_extra_info("peername") if self._raw is not None else None
        logger.debug("%s: %s", peer, why)
        self._end_handshake()
        if self._raw is not None:
            self._raw.abort()

    def _end_handshake(self) -> None:
        self._handshakes.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- bytes in and out ---------------------------------------------------------------

    def _read(self) -> None:
        """Decrypt what has arrived and hand it to the app, until it pauses or closes."""
        tls = self._tls
        while not self._reading_paused and not self._lost:
            try:
                data = tls.read(READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # close_notify: the client's EOF
                data = b""
            except ssl.SSLError as exc:
                logger.debug("TLS error on a connection: %s", exc.reason or exc)
                self._send_encrypted()
                self.abort()
                return
            app = self._app
            if app is None:
                return
            if not data:
                if not app.eof_received():
                    self.close()
                break
            app.data_received(data)
        self._send_encrypted()  # a read may answer (a key update, an alert)

    def _send_encrypted(self) -> None:
        if self._outgoing.pending and self._raw is not None and not self._raw.is_closing():
            self._raw.write(self._outgoing.read())

    # -- the app's side (we are its transport) ------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._lost:
            return
        self._tls.write(data)
        self._send_encrypted()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def get_write_buffer_size(self) -> int:
        """What is still in user space: the socket transport's buffer (ours is
        always passed on at once)."""
        raw = self._raw
        return 0 if raw is None else raw.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if self._raw is not None:
            self._raw.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (0, 0) if self._raw is None else self._raw.get_write_buffer_limits()

    def pause_reading(self) -> None:
        self._reading_paused = True
        if self._raw is not None and not self._lost:
            self._raw.pause_reading()

    def resume_reading(self) -> None:
        if not self._reading_paused:
            return
        self._reading_paused = False
        if self._raw is not None and not self._lost:
            self._raw.resume_reading()
            # records already received wait in the TLS object: read them now
            self._loop.call_soon(self._read_if_reading)

    def _read_if_reading(self) -> None:
        if not self._reading_paused and not self._handshaking:
            self._read()

    def is_reading(self) -> bool:
        return not self._reading_paused

    def can_write_eof(self) -> bool:
        return False  # TLS has no half-close; close_notify ends both directions

    def write_eof(self) -> None:
        raise NotImplementedError("TLS has no half-close")

    def close(self) -> None:
        """Send ``close_notify``, then close the socket once what it holds is sent."""
        if self._closing:
            return
        self._closing = True
        raw = self._raw
        if raw is None or raw.is_closing():
            return
        if not self._handshaking and not self._lost:
            with contextlib.suppress(ssl.SSLError):  # the client's close_notify is not awaited
                self._tls.unwrap()
            self._send_encrypted()
        raw.close()

    def abort(self) -> None:
        self._closing = True
        if self._raw is not None:
            self._raw.abort()

    def is_closing(self) -> bool:
        return self._closing or self._raw is None or self._raw.is_closing()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._app = cast(asyncio.Protocol, protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return cast(asyncio.BaseProtocol, self._app)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The TLS details asyncio's own TLS transport gives, then the socket's."""
        tls = self._tls
        if name == "ssl_object":
            return tls
        if name == "sslcontext":
            return self._context
        if name == "peercert":
            return tls.getpeercert()
        if name == "cipher":
            return tls.cipher()
        if name == "compression":
            return tls.compression()
        if self._raw is None:
            return default
        return self._raw.get_extra_info(name, default)
