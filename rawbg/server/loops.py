"""Which event loop runs the server: asyncio's own, or uvloop when asked or installed.

``--loop auto`` (the default) picks uvloop when it can be imported and
asyncio's loop otherwise, as uvicorn does; ``--loop asyncio`` and
``--loop uvloop`` insist. uvloop replaces only the loop (epoll, timers,
transports, written in C on libuv); h11 still parses every request, so the
server behaves the same on both and the test suite runs on both
(``RAWBG_TEST_LOOP=uvloop``). What it buys is in benchmarks/README.md.

`loop_factory` is what `rawbg.run` and ``python -m rawbg`` hand to
`asyncio.Runner`; `check_running_loop` is what `rawbg.serving` does, since
there the caller has already chosen the loop.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable

LOOPS = ("auto", "asyncio", "uvloop")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def uvloop_installed() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def resolve(loop: str) -> str:
    """``"asyncio"`` or ``"uvloop"``: what `loop` (one of `LOOPS`) means on this install."""
    if loop not in LOOPS:
        raise ValueError(f"loop must be one of {', '.join(LOOPS)}, got {loop!r}")
    if loop == "auto":
        return "uvloop" if uvloop_installed() else "asyncio"
    if loop == "uvloop" and not uvloop_installed():
        raise RuntimeError(
            "loop 'uvloop' asked for, but uvloop is not installed: pip install 'rawbg[speed]'"
        )
    return loop


def loop_factory(loop: str) -> LoopFactory:
    """A function that makes a new event loop of the kind `loop` names."""
    if resolve(loop) == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def running_loop_name() -> str:
    """``"uvloop"`` or ``"asyncio"``: the kind of the loop running now."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.partition(".")[0] == "uvloop" else "asyncio"


def check_running_loop(loop: str) -> None:
    """Raise if `loop` asks for a kind other than the running loop (``auto`` takes either)."""
    if loop == "auto":
        return
    wanted, running = resolve(loop), running_loop_name()
    if wanted != running:
        raise RuntimeError(
            f"loop={loop!r} but the running loop is {running}'s: the caller of "
            "serving() chooses the loop (e.g. asyncio.Runner(loop_factory=uvloop.new_event_loop))"
        )
