"""The server: listening, accepting, the connection's cycle, and the process around it.

It joins the layers below: the wire (`rawbg.wire`) gives it h11 events, the app
(`rawbg.app`) turns a request into a response and its work, the tasks
(`rawbg.tasks`) run that work after the response is flushed.

* `server`: `Server` (listening sockets, open connections, graceful shutdown),
  `serve`, `serving`, `run`.
* `connection`: the connection task, one request/response cycle after another.
* `arrival`: serving a request from ``data_received``, as the connection task.
* `config`: `ServerConfig`, every exposed limit with the reason for its default.
* `accept`, `watchdog`, `gc_clock`, `loops`: accepting that backs off, the
  loop-block warning, the GC's clock, choosing the event loop.
* `supervisor`, `worker`, `reload`: ``--workers`` and ``--reload``.
"""
