"""Every limit and timeout of the server, with the reason for its default.

`ServerConfig` is the one object the CLI, `rawbg.run` and the tests build; the
server, the protocol and the connection task only read it. The module-level
constants below are the knobs we do not expose as flags, each with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass

KiB = 1024
MiB = 1024 * KiB

# --- Exposed defaults -------------------------------------------------------

# 64 KiB: nginx accepts 4 x 8 KiB of headers, Apache 8 KiB a line x 100 lines,
# h11 defaults to 16 KiB. Large cookies and bearer tokens exceed 16 KiB in the
# wild; 64 KiB leaves room for them while keeping a head well below one read.
DEFAULT_MAX_HEAD_SIZE = 64 * KiB

# 1 MiB: the same default as nginx's client_max_body_size. The body is read into
# memory before the handler runs, so this bounds memory per request.
DEFAULT_MAX_BODY_SIZE = 1 * MiB

# 5 s: uvicorn's default keep-alive, long enough for a browser to reuse the
# connection for the next click of a page load, short enough that idle
# connections do not pile up. It also bounds how long a request head may take.
DEFAULT_TIMEOUT_KEEP_ALIVE = 5.0

# 1000 connections: each costs a file descriptor and ~10 KiB; the common
# `ulimit -n` of 1024 leaves room for the log files and the listening socket.
DEFAULT_LIMIT_CONCURRENCY = 1000

# 10 000 tasks: at under 2 KiB each (benchmarks/README.md) that is under 20 MiB
# of pending work, yet it absorbs 10 s of 1000 req/s bursts without pausing.
DEFAULT_MAX_PENDING_TASKS = 10_000

# 30 s: Kubernetes' default terminationGracePeriodSeconds, so a pod's pending
# notifications get the whole grace period before they are cancelled.
DEFAULT_TIMEOUT_GRACEFUL_SHUTDOWN = 30.0

# --- Internal constants ------------------------------------------------------

# Pause reading when this much unprocessed input has piled up while the
# connection task was busy: 64 KiB is asyncio's own default write high-water
# mark, and more than enough for a few pipelined requests.
INPUT_HIGH_WATER = 64 * KiB

# Write-side flow control: asyncio's defaults (64 KiB / 16 KiB). A slow reader
# makes the writer wait once this much is queued in user space.
OUTPUT_HIGH_WATER = 64 * KiB
OUTPUT_LOW_WATER = 16 * KiB

# After an error response we shut down our write side and keep discarding what
# the client still sends for this long before closing, so that closing with
# unread input does not make the kernel send a reset that destroys the response
# before the client has read it. One second covers a loopback or LAN round trip
# many times over; Apache's lingering close uses 2 s.
LINGER_SECONDS = 1.0

# Host header values remembered as valid, so that the RFC 3986 check costs a set
# lookup for the few values a server sees over and over; 64 covers a server's
# names, ports and addresses many times, and the set is emptied when full.
MAX_REMEMBERED_HOSTS = 64

# A failing background task logs its traceback once per site (task, route,
# exception type, raising line) per this many seconds, then a count of the
# repeats: a task failing on every request at 1000 req/s writes two lines a
# minute, not 570 kB/s, and an operator still sees each new failure at once.
FAILURE_LOG_INTERVAL = 60.0

# Distinct failure sites tracked at once; past it every count is written out
# and tracking starts over. Sites are bounded by the code's raise statements,
# so 1000 is never reached by a real app, only bounds memory if it were.
MAX_FAILURE_SITES = 1000

# How deeply a JSON request body may nest arrays and objects. json.loads
# recurses once per level and fails with RecursionError near Python's
# recursion limit (1000 frames, shared with the handler's own stack), so the
# real limit would depend on where it is called from; a documented bound well
# below it is checked first. 256: real documents nest a dozen levels; orjson
# stops at 1024, serde_json at 128.
MAX_JSON_DEPTH = 256


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerConfig:
    """What the server listens on, and the limits it enforces."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_head_size: int = DEFAULT_MAX_HEAD_SIZE
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    timeout_keep_alive: float = DEFAULT_TIMEOUT_KEEP_ALIVE
    limit_concurrency: int = DEFAULT_LIMIT_CONCURRENCY
    max_pending_tasks: int = DEFAULT_MAX_PENDING_TASKS
    timeout_graceful_shutdown: float = DEFAULT_TIMEOUT_GRACEFUL_SHUTDOWN
    access_log: bool = True
    trace: bool = False

    def __post_init__(self) -> None:
        positive = {
            "max_head_size": self.max_head_size,
            "max_body_size": self.max_body_size,
            "timeout_keep_alive": self.timeout_keep_alive,
            "limit_concurrency": self.limit_concurrency,
            "max_pending_tasks": self.max_pending_tasks,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if self.timeout_graceful_shutdown < 0:
            value = self.timeout_graceful_shutdown
            raise ValueError(f"timeout_graceful_shutdown must not be negative, got {value!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port!r}")
