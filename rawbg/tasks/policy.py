"""Per-task policy, declared on the task function: ``@rawbg.task(retries=3, backoff=1.0)``.

The policy lives on the function, not at the call site, so that FastAPI's
``background_tasks.add_task(write_notification, email, message="...")`` stays
as it is. `task` returns the function itself (with the policy attached), so
the function is still importable by its qualified name, which is what the
task journal stores.

* ``retries``: how many more attempts after a failing one (0: one attempt).
* ``backoff``: seconds before the first retry, doubled for each next one
  (1.0 -> 1 s, 2 s, 4 s ...). Retries work with or without a journal.
* ``durable``: with a task journal (``--task-journal``), whether the task is
  journaled. A durable task must be journalable (`journal_record` says why
  not); ``durable=False`` opts a task out explicitly: it runs, but a crash
  loses it, as without a journal.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

POLICY_ATTRIBUTE = "__rawbg_task__"


@dataclass(frozen=True, slots=True)
class TaskPolicy:
    """How a task function is run: its retries, their backoff, and whether it is journaled."""

    retries: int = 0
    backoff: float = 1.0
    durable: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"retries must be a non-negative integer, got {self.retries!r}")
        if not self.backoff >= 0:
            raise ValueError(f"backoff must be non-negative seconds, got {self.backoff!r}")

    @property
    def attempts(self) -> int:
        return self.retries + 1

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before attempt number `attempt` (2 for the first retry)."""
        return float(self.backoff * 2 ** (attempt - 2))


DEFAULT_POLICY = TaskPolicy()


def task(*, retries: int = 0, backoff: float = 1.0, durable: bool = True) -> Callable[[F], F]:
    """Declare how a background task function runs: ``@rawbg.task(retries=3, backoff=1.0)``."""
    policy = TaskPolicy(retries=retries, backoff=backoff, durable=durable)

    def attach(func: F) -> F:
        try:
            setattr(func, POLICY_ATTRIBUTE, policy)
        except AttributeError:
            raise TypeError(
                f"@rawbg.task cannot be put on {func!r}: it takes no attributes"
            ) from None
        return func

    return attach


def policy_of(func: Callable[..., Any]) -> TaskPolicy:
    policy = getattr(func, POLICY_ATTRIBUTE, DEFAULT_POLICY)
    return policy if isinstance(policy, TaskPolicy) else DEFAULT_POLICY


# -- what the journal stores ----------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def function_name(func: Callable[..., Any]) -> str:
    """``module:qualname`` of `func`; TypeError saying why if that does not import back to it."""
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise TypeError(f"{func!r} has no module and qualified name (a partial or an object?)")
    if "<locals>" in qualname or "<lambda>" in qualname:
        raise TypeError(f"{module}.{qualname} is defined inside a function or is a lambda")
    if resolve_function(f"{module}:{qualname}") is not func:
        raise TypeError(f"{module}.{qualname} does not import back to the same function")
    return f"{module}:{qualname}"


def resolve_function(name: str) -> Callable[..., Any]:
    """Import ``module:qualname``; raises ImportError or AttributeError if it is gone."""
    module_name, _, qualname = name.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{name} is not callable")
    return target  # type: ignore[no-any-return]


def journal_record(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> tuple[str, str]:
    """``(function name, JSON arguments)`` for the journal; TypeError saying why and what to do."""
    try:
        name = function_name(func)
    except TypeError as exc:
        raise _not_journalable(func, f"its function cannot be imported by name: {exc}") from None
    try:
        arguments = json.dumps([args, dict(kwargs)], separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _not_journalable(func, f"its arguments are not JSON-serialisable: {exc}") from None
    return name, arguments


def _not_journalable(func: Callable[..., Any], why: str) -> TypeError:
    name = getattr(func, "__qualname__", None) or repr(func)
    return TypeError(
        f"background task {name} cannot be journaled ({why}). With --task-journal, a task "
        "must be a module-level function called with JSON values (ids, strings, numbers); "
        f"or mark it @rawbg.task(durable=False) to run it without the journal "
        "(a crash then loses it)."
    )
