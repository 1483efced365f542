"""Names for the shapes of callables that rawbg accepts, declared once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

#: a route handler: ``def`` or ``async def``, with parameters the dependency graph supplies
Handler = Callable[..., Any]
#: a dependency: a function, ``async def``, a (sync or async) generator, or a class
Dependency = Callable[..., Any]
#: the clean-up of a request's generator dependencies, run after its background tasks
Cleanup = Callable[[], Awaitable[None]]

HandlerT = TypeVar("HandlerT", bound=Handler)
