"""The one table of reason phrases: ``404`` -> ``Not Found``.

A status line carries one (h11 sends none unless told), and an
`HTTPException` without a ``detail`` uses it as its detail, as FastAPI does.
"""

from __future__ import annotations

from http import HTTPStatus

_PHRASES = {status.value: status.phrase for status in HTTPStatus}
_PHRASE_BYTES = {code: phrase.encode("ascii") for code, phrase in _PHRASES.items()}


def reason_phrase(status_code: int, *, unknown: str = "") -> str:
    """The phrase of `status_code`, or `unknown` for a code HTTPStatus does not name."""
    return _PHRASES.get(status_code, unknown)


def reason(status_code: int) -> bytes:
    """The phrase of `status_code` as the status line carries it (b"" if unknown)."""
    return _PHRASE_BYTES.get(status_code, b"")
