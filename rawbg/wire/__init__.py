"""The wire: bytes in and out of one connection, through h11. It never imports the app.

* `protocol`: `HttpProtocol`, the asyncio protocol of one socket: feeds h11,
  flow control both ways, the head's clock, deadlines, lingering close.
* `connection_io`: `ConnectionIO`, what the connection task asks of its
  transport (the seam the server layer talks to), and `ConnectionOwner`, what
  the protocol asks of whoever serves it.
* `response_bytes`: from h11 events to bytes; the common whole response in one join.
* `conformance`: the RFC 9112 rules h11 leaves to the server, and the one
  translation of h11's parse errors into refusals.
* `proxy`: which peers may set ``X-Forwarded-For``/``-Proto``, and what they say.
* `memory_transport`: a connection with no socket, for tests and instruction counts.
"""
