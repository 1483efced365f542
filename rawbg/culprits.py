"""Naming what blocked the event loop: each function that runs user code says how to name its frame.

The loop-block watchdog (`rawbg.server.watchdog`) reads the loop thread's
stack while the loop is blocked and walks it outwards, from the line that
blocks. To say *what* blocked ("the handler hello of GET /hello", "the
background task send_email of POST /signup"), it needs to recognise the frames
of the functions through which rawbg runs user code, and to read from each
frame what it was running.

Those functions live in the app and tasks layers, which the watchdog must not
import; so each registers itself here, beside its own definition::

    @names_frames(lambda frame: Part(f"the handler {frame.f_locals['endpoint'].name}", ...))
    async def _call_endpoint(self, endpoint, resolution): ...

The namer reads the frame's local variables by name, and it sits next to the
code that binds them: renaming a local there means reading the namer above
it. The registration costs nothing per call: the decorator returns the
function itself, and only its code object is recorded.

A frame's `Part` is either whole (a handler, a task: the watchdog reports it)
or `inner`, a part of what an outer frame names (a dependency, reported as
"the dependency d of GET /hello" once the handler's frame further out says
which route it belongs to). `STOP` ends the walk: beyond that frame nothing
runs user code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Part:
    """What one frame says it is running."""

    #: "the handler hello", "the background task send_email"
    what: str
    #: what it belongs to, "GET /hello"; None when `what` says it all
    of: str | None = None
    #: the request's trace (`rawbg.trace.RequestTrace`), to put the block on it
    trace: Any = None
    #: a part of something an outer frame names: keep walking outwards
    inner: bool = False

    def describe(self, inner: Part | None = None) -> str:
        """The sentence for the log: this part, or the `inner` part of it."""
        what = inner.what if inner is not None else self.what
        return what if self.of is None else f"{what} of {self.of}"


#: a namer: from a frame of a registered function, what it runs (None: nothing to say)
Namer = Callable[[FrameType], "Part | None"]

#: what a namer returns for a frame beyond which no user code runs
STOP = Part("rawbg's own code")

_NAMERS: dict[CodeType, Namer] = {}


def names_frames(namer: Namer) -> Callable[[F], F]:
    """Decorator: the frames of the decorated function are named by `namer`."""

    def register(func: F) -> F:
        _NAMERS[_code_of(func)] = namer
        return func

    return register


def name_every_method(cls: type, namer: Namer) -> None:
    """Register `namer` for every function defined in the body of `cls`."""
    for value in vars(cls).values():
        func = getattr(value, "__func__", value)  # staticmethod, classmethod
        code = getattr(func, "__code__", None)
        if isinstance(code, CodeType):
            _NAMERS.setdefault(code, namer)


def namer_of(code: CodeType) -> Namer | None:
    """The namer registered for the function whose code this is, if any."""
    return _NAMERS.get(code)


def _code_of(func: Callable[..., Any]) -> CodeType:
    code = getattr(func, "__code__", None)
    if not isinstance(code, CodeType):
        raise TypeError(f"names_frames needs a Python function, not {func!r}")
    return code
