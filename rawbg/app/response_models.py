"""``response_model=``: what a handler returns, validated and filtered through a type.

A route's response model is its ``response_model=`` keyword, or else the
handler's return annotation (unless that is a `Response`, or ``None``);
``response_model=None`` turns it off. It needs pydantic: the handler's value
is validated against the model (a mismatch is the app's bug: a 500 with the
reason in the log) and dumped to JSON types with the route's
``response_model_include``/``_exclude``/``_by_alias``/``_exclude_unset``/
``_exclude_defaults``/``_exclude_none``. Planned once, at registration, by
`plan_response_model`; a route without a model pays nothing per request.

Without pydantic, a return annotation that needs it (a model) is a
registration error naming the extra; other return annotations are not
checked (the value is encoded as it is).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

from rawbg.app.pydantic_support import (
    ResponseOptions,
    ResponseSerializer,
    load_pydantic,
    missing_pydantic,
)
from rawbg.app.validation import Refusal, Unsupported, build, is_union
from rawbg.errors import RouteDefinitionError
from rawbg.responses import Response


class _Default:
    def __repr__(self) -> str:
        return "<the return annotation>"


#: `response_model`'s default: the handler's return annotation
DEFAULT: Any = _Default()

ResponseModel = Any


def _is_response_type(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, Response):
        return True
    if is_union(annotation):
        return any(_is_response_type(a) for a in typing.get_args(annotation))
    return False


def _shown(annotation: Any) -> str:
    shown = (
        "None" if a is type(None) else getattr(a, "__name__", repr(a))
        for a in typing.get_args(annotation)
    )
    return " | ".join(shown)


def resolve_response_model(handler: Callable[..., Any], model: ResponseModel) -> Any:
    """The type a route's response is described as: `model`, or the return annotation.

    None when there is none: ``response_model=None``, no return annotation,
    ``Any``, ``None`` or a `Response` class. A union of a `Response` class with
    anything else (``-> Response | dict``) is a `RouteDefinitionError`, as in
    FastAPI, unless the route says ``response_model=None``.
    """
    if model is DEFAULT:
        try:
            model = typing.get_type_hints(handler).get("return", None)
        except (NameError, TypeError):
            model = inspect.signature(handler).return_annotation
        if model is inspect.Parameter.empty or model is Any:
            model = None
        elif _is_response_type(model):
            if is_union(model):
                # FastAPI makes the union a response model, which pydantic refuses
                # (tutorial response_model/tutorial003_04): say so, with its way out
                raise RouteDefinitionError(
                    f"return annotation {_shown(model)} mixes a Response class into a union, "
                    "which cannot be a response model; add response_model=None to the "
                    "route to return either without one"
                )
            model = None
    if model is None or model is type(None):
        return None
    return model


def plan_response_model(
    handler: Callable[..., Any], model: ResponseModel, *, options: ResponseOptions
) -> ResponseSerializer | None:
    """The function that turns `handler`'s return value into JSON types, or None for as-is.

    `model` is the route's ``response_model=``; `DEFAULT` means the return annotation.
    """
    explicit = model is not DEFAULT
    model = resolve_response_model(handler, model)
    if model is None:
        return None
    pydantic = load_pydantic()
    if pydantic is None:
        try:
            build(model)
        except Unsupported as exc:
            if exc.refusal in (Refusal.NEEDS_PYDANTIC, Refusal.DATACLASS) or explicit:
                raise RouteDefinitionError(
                    f"response model {model!r}: {missing_pydantic('response_model')}"
                ) from None
        if explicit:
            raise RouteDefinitionError(
                f"response_model={model!r} {missing_pydantic('validating the response')}"
            )
        return None  # a plain return annotation, not checked without pydantic
    try:
        return ResponseSerializer(pydantic, model, options)
    except Exception as exc:  # pydantic cannot make a schema of it: the route's mistake
        raise RouteDefinitionError(f"response model {model!r}: {exc}") from exc
