"""Generator handlers: what a handler that ``yield``s streams, planned at registration.

As in FastAPI, a handler written as a generator (``async def`` or ``def``,
with ``yield``) streams its items, and the route's ``response_class`` says how:

* none given: JSON Lines (``application/jsonl``), one item's JSON per line;
* `EventSourceResponse`: server-sent events, with keep-alive pings
  (`rawbg.sse`);
* any other `StreamingResponse` class: the items as they are (``bytes`` or
  ``str``), in that class (its media type).

For JSON Lines and events, the item type of the return annotation
(``-> AsyncIterable[Item]``) validates and dumps each item, as a response
model does (`ResponseSerializer`, with pydantic); without one, an item is
``json.dumps`` of its JSON types, FastAPI's spelling byte for byte. A plain
``def`` generator is advanced, and its items dumped, in the thread pool. The
connection streams the body (`StreamingResponse`), closes the generator if the
client leaves, and runs the request's background tasks once the last byte is
flushed: those queued before the stream began as any request's, and those the
generator queued while it ran after them (`run_tasks_added_while_streaming`).
"""

from __future__ import annotations

import collections.abc
import enum
import logging
import typing
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from rawbg.app.pydantic_support import ResponseOptions, ResponseSerializer, load_pydantic
from rawbg.errors import RouteDefinitionError
from rawbg.responses import Response, StreamingResponse, encode_json, iterate_in_thread
from rawbg.sse import EventSourceResponse, ServerSentEvent, format_sse_event, json_text, with_pings
from rawbg.tasks.calls import BackgroundTasks
from rawbg.tasks.policy import task

logger = logging.getLogger("rawbg.background")

#: the return annotations whose argument is the item type
_STREAM_ORIGINS = frozenset(
    {
        collections.abc.AsyncIterable,
        collections.abc.AsyncIterator,
        collections.abc.AsyncGenerator,
        collections.abc.Iterable,
        collections.abc.Iterator,
        collections.abc.Generator,
    }
)


class StreamKind(enum.Enum):
    JSON_LINES = "JSON Lines"
    EVENTS = "server-sent events"
    RAW = "the items as they are"


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """How a generator handler's items become a streamed response."""

    kind: StreamKind
    response_class: type[StreamingResponse]
    #: validates and dumps each item (the annotation's item type), or None
    serialize_item: ResponseSerializer | None
    #: events: seconds without one before a keep-alive comment
    ping_interval: float = 0.0

    def response(self, generator: Any, *, status_code: int | None) -> StreamingResponse:
        """The response that streams what `generator` (just made, not started) yields."""
        is_async = isinstance(generator, collections.abc.AsyncIterator)
        body: Any
        if self.kind is StreamKind.RAW:
            body = generator
        elif self.kind is StreamKind.JSON_LINES:
            body = _mapped(generator, is_async, self._json_line)
        else:
            events = _mapped(generator, is_async, self._event)
            if not is_async:
                events = iterate_in_thread(events)
            body = with_pings(events, self.ping_interval)
        options: dict[str, Any] = {} if status_code is None else {"status_code": status_code}
        response = self.response_class(body, **options)
        if self.kind is StreamKind.JSON_LINES:
            response.media_type = "application/jsonl"
        elif self.kind is StreamKind.EVENTS:
            response.headers["cache-control"] = "no-cache"
            response.headers["x-accel-buffering"] = "no"  # nginx: pass each event on at once
        return response

    def _data(self, item: Any) -> str:
        if self.serialize_item is not None:
            return encode_json(self.serialize_item(item)).decode("utf-8")
        return json_text(item)

    def _json_line(self, item: Any) -> bytes:
        return self._data(item).encode("utf-8") + b"\n"

    def _event(self, item: Any) -> bytes:
        if isinstance(item, ServerSentEvent):
            return item.encode()  # the app shapes the event; its data is not validated
        return format_sse_event(data_str=self._data(item))


def _mapped(generator: Any, is_async: bool, encode: Callable[[Any], bytes]) -> Any:
    if is_async:
        return _amap(generator, encode)
    return _map(generator, encode)


async def _amap(items: AsyncIterator[Any], encode: Callable[[Any], bytes]) -> AsyncGenerator[bytes]:
    try:
        async for item in items:
            yield encode(item)
    finally:
        aclose = getattr(items, "aclose", None)  # the handler's `finally` runs now
        if aclose is not None:
            await aclose()


def _map(items: Iterator[Any], encode: Callable[[Any], bytes]) -> Iterator[bytes]:
    try:
        for item in items:
            yield encode(item)
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()


def stream_item_type(return_annotation: Any) -> Any:
    """``AsyncIterable[Item]`` -> ``Item``; None when the annotation names no item type."""
    if typing.get_origin(return_annotation) in _STREAM_ORIGINS:
        args = typing.get_args(return_annotation)
        if args and args[0] is not Any:
            return args[0]
    return None


def plan_stream(
    handler: Callable[..., Any],
    *,
    response_class: type[Response] | None,
    response_model_given: bool,
    options: ResponseOptions,
    where: str,
) -> StreamPlan:
    """Plan a generator handler's stream; `response_class` is the route's, None if not given."""
    if response_model_given:
        raise RouteDefinitionError(
            f"handler {where} is a generator: response_model= does not apply to a stream; "
            "annotate its return as AsyncIterable[Item] to validate each item"
        )
    ping_interval = 0.0
    if response_class is None:
        kind, cls = StreamKind.JSON_LINES, StreamingResponse
    elif issubclass(response_class, EventSourceResponse):
        kind, cls = StreamKind.EVENTS, response_class
        ping_interval = response_class.ping_interval
    elif issubclass(response_class, StreamingResponse):
        kind, cls = StreamKind.RAW, response_class
    else:
        raise RouteDefinitionError(
            f"handler {where} is a generator, and {response_class.__name__} cannot stream: "
            "give no response_class (JSON Lines), EventSourceResponse, or a StreamingResponse"
        )
    serializer = None
    if kind is not StreamKind.RAW:
        try:
            annotation = typing.get_type_hints(handler).get("return")
        except (NameError, TypeError):
            annotation = None
        item = stream_item_type(annotation)
        wanted = item is not None and not (
            isinstance(item, type) and issubclass(item, ServerSentEvent)
        )
        pydantic = load_pydantic() if wanted else None
        if pydantic is not None:
            try:
                serializer = ResponseSerializer(pydantic, item, options)
            except Exception as exc:  # pydantic cannot make a schema of it
                raise RouteDefinitionError(f"stream item type {item!r}: {exc}") from exc
    return StreamPlan(kind, cls, serializer, ping_interval)


@task(durable=False)  # the tasks it runs were queued after the journal could record them
async def run_tasks_added_while_streaming(tasks: BackgroundTasks, first: int, label: str) -> None:
    """Run the tasks queued from the `first` on (by the generator, while it streamed).

    The response's own work was counted and journaled before its first byte,
    when these did not exist yet; they run here, after it, in order, one
    failure never stopping the next (without the retries of `rawbg.task`).
    """
    for queued in tasks.tasks[first:]:
        try:
            await queued.start()
        except Exception:
            logger.exception("background task %s of %s failed", queued.name, label)
