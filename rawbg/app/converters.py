"""One value to one typed value, as leniently as pydantic v2's lax mode, with its wording.

Each ``to_*`` function takes a value as it arrives (a string from the path, the
query, a header or a cookie, or a JSON value from the body) and returns the
typed value, or raises `Invalid` with one 422 entry worded as pydantic words
it (``int_parsing``: "Input should be a valid integer, unable to parse string
as an integer"), so that a client sees what FastAPI would have answered.
`rawbg.app.validation` composes them into validators for whole annotations.
"""

from __future__ import annotations

import datetime
import decimal
import re
import uuid
from typing import Any


class Invalid(Exception):
    """Raised by a validator: the 422 entries, each with a ``loc`` relative to the value."""

    __slots__ = ("errors",)

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors

    def under(self, *path: Any) -> list[dict[str, Any]]:
        """The entries, each ``loc`` put under `path` (the field or index that held the value)."""
        return [{**error, "loc": [*path, *error["loc"]]} for error in self.errors]


def invalid(type_: str, msg: str, value: Any, ctx: dict[str, Any] | None = None) -> Invalid:
    """One 422 entry about `value` itself (an empty ``loc``), as an exception to raise."""
    entry: dict[str, Any] = {"type": type_, "loc": [], "msg": msg, "input": value}
    if ctx is not None:
        entry["ctx"] = ctx
    return Invalid([entry])


def unparsable(type_: str, expected: str, value: Any, problem: str) -> Invalid:
    """`invalid` for a value that does not parse: "`expected`, `problem`" (pydantic's wording).

    The `problem` is also the entry's ``ctx["error"]``, as pydantic gives it.
    """
    return invalid(type_, f"{expected}, {problem}", value, {"error": problem})


def to_str(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, str):  # a str Enum member, for one
        return str.__str__(value)
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise invalid(
                "string_unicode",
                "Input should be a valid string, unable to parse raw data as a unicode string",
                value,
            ) from None
    raise invalid("string_type", "Input should be a valid string", value)


_INT_MSG = "Input should be a valid integer, unable to parse string as an integer"
_INT_SIZE_MSG = "Unable to parse input string as an integer, exceeded maximum size"
# Python's own limit on int(str) (sys.int_info.default_max_str_digits); pydantic's too
_MAX_INT_DIGITS = 4300
# pydantic reads a float as a 64-bit integer
_I64_LIMIT = 2**63
_ZERO_FRACTION = re.compile(r"\s*([+-]?[0-9_]+)\.0+\s*")


def to_int(value: Any) -> int:
    if type(value) is int:
        return value
    if isinstance(value, str):
        try:
            return int(value)  # also takes surrounding spaces and 1_000, as pydantic does
        except ValueError:
            whole = _ZERO_FRACTION.fullmatch(value)
            if whole is not None:
                return to_int(whole.group(1))
            if len(value) > _MAX_INT_DIGITS and value.strip().lstrip("+-").isdigit():
                raise invalid("int_parsing_size", _INT_SIZE_MSG, value) from None
            raise invalid("int_parsing", _INT_MSG, value) from None
    if isinstance(value, int):  # bool
        return int(value)
    if isinstance(value, (float, decimal.Decimal)):
        if value != value or value in (float("inf"), float("-inf")):
            raise invalid("finite_number", "Input should be a finite number", value)
        if value != int(value):
            raise invalid(
                "int_from_float",
                "Input should be a valid integer, got a number with a fractional part",
                value,
            )
        if isinstance(value, float) and abs(value) >= _I64_LIMIT:
            raise invalid("int_parsing_size", _INT_SIZE_MSG, value)
        return int(value)
    raise invalid("int_type", "Input should be a valid integer", value)


def to_float(value: Any) -> float:
    if type(value) is float:
        return value
    if isinstance(value, str):
        try:
            if "_" in value and value != value.strip():  # pydantic: "1_0" yes, " 1_0" no
                raise ValueError(value)
            return float(value)
        except ValueError:
            raise invalid(
                "float_parsing",
                "Input should be a valid number, unable to parse string as a number",
                value,
            ) from None
    if isinstance(value, (int, float, decimal.Decimal)):
        return float(value)
    raise invalid("float_type", "Input should be a valid number", value)


_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})
_BOOL_MSG = "Input should be a valid boolean, unable to interpret input"


def to_bool(value: Any) -> bool:
    if value is True or value is False:
        return value
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise invalid("bool_parsing", _BOOL_MSG, value)
    if isinstance(value, (int, float, decimal.Decimal)):
        if value in (0, 1):
            return bool(value)
        if isinstance(value, int) or value == int(value):  # 2 or 2.0; 1.5 is not even that
            raise invalid("bool_parsing", _BOOL_MSG, value)
    raise invalid("bool_type", "Input should be a valid boolean", value)


def to_decimal(value: Any) -> decimal.Decimal:
    if isinstance(value, decimal.Decimal):
        return value
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        try:
            number = decimal.Decimal(value.strip() if isinstance(value, str) else str(value))
        except decimal.InvalidOperation:
            raise invalid("decimal_parsing", "Input should be a valid decimal", value) from None
        if not number.is_finite():
            raise invalid("finite_number", "Input should be a finite number", value)
        return number
    raise invalid(
        "decimal_type", "Decimal input should be an integer, float, string or Decimal object", value
    )


_HEX = frozenset("0123456789abcdefABCDEF")


def _uuid_problem(text: str) -> str:
    """Why `text` is not a UUID, in pydantic's words (from the `uuid` crate)."""
    offset = 9 if text.lower().startswith("urn:uuid:") else 0
    body = text[offset:]
    if body.startswith("{") and body.endswith("}"):
        body, offset = body[1:-1], offset + 1
    for index, char in enumerate(body):
        if char not in _HEX and char != "-":
            return f"invalid character: found `{char}` at {index + offset}"
    groups = body.split("-")
    if len(groups) == 1:
        return f"invalid length: found {len(body)}"
    if len(groups) != 5:
        return f"invalid group count: expected 5, found {len(groups)}"
    for index, (group, size) in enumerate(zip(groups, (8, 4, 4, 4, 12), strict=True)):
        if len(group) != size:
            return f"invalid group length in group {index}: expected {size}, found {len(group)}"
    return "invalid format"


def to_uuid(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            raise unparsable(
                "uuid_parsing", "Input should be a valid UUID", value, _uuid_problem(value)
            ) from None
    raise invalid("uuid_type", "UUID input should be a string, bytes or UUID object", value)


# --- dates and times ----------------------------------------------------------

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
# pydantic reads a number above this as milliseconds since the epoch
_MILLISECONDS_ABOVE = 2e10


def _from_timestamp(seconds: float) -> datetime.datetime:
    if abs(seconds) > _MILLISECONDS_ABOVE:
        seconds /= 1000
    try:
        return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    except (OverflowError, OSError, ValueError):
        raise invalid(
            "datetime_parsing",
            "Input should be a valid datetime, "
            "dates after 9999 are not supported as unix timestamps",
            seconds,
        ) from None


def _date_problem(text: str) -> str:
    """Why `text` is not a date, in pydantic's words (it uses the `speedate` crate)."""
    if len(text) < 10:
        return "input is too short"
    for position, part in ((0, "year"), (5, "month"), (8, "day")):
        width = 4 if part == "year" else 2
        if not text[position : position + width].isdigit():
            return f"invalid character in {part}"
        if part != "day" and text[position + width] != "-":
            return "invalid date separator, expected `-`"
    if not 1 <= int(text[5:7]) <= 12:
        return "month value is outside expected range of 1-12"
    return "day value is outside expected range"


def to_datetime(value: Any) -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        return value
    if isinstance(value, datetime.date):
        return datetime.datetime(value.year, value.month, value.day)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _from_timestamp(value)
    if isinstance(value, str):
        if _NUMBER.fullmatch(value):
            return _from_timestamp(float(value))
        try:
            return datetime.datetime.fromisoformat(value)
        except ValueError:
            problem = _date_problem(value)
            if len(value) > 10 and problem == "day value is outside expected range":
                problem = "invalid datetime format"
            raise unparsable(
                "datetime_from_date_parsing",
                "Input should be a valid datetime or date",
                value,
                problem,
            ) from None
    raise invalid("datetime_type", "Input should be a valid datetime", value)


_DATE_EXPECTED = "Input should be a valid date or datetime"


def to_date(value: Any) -> datetime.date:
    if isinstance(value, datetime.datetime):
        moment = value
    elif isinstance(value, datetime.date):
        return value
    elif isinstance(value, str) and len(value.strip()) == 10 and not _NUMBER.fullmatch(value):
        try:
            return datetime.date.fromisoformat(value.strip())
        except ValueError:
            raise unparsable(
                "date_from_datetime_parsing", _DATE_EXPECTED, value, _date_problem(value.strip())
            ) from None
    else:
        try:
            moment = to_datetime(value)
        except Invalid:
            if not isinstance(value, str):
                raise invalid("date_type", "Input should be a valid date", value) from None
            raise unparsable(
                "date_from_datetime_parsing", _DATE_EXPECTED, value, _date_problem(value)
            ) from None
    if moment.time() != datetime.time(0):
        raise invalid(
            "date_from_datetime_inexact",
            "Datetimes provided to dates should have zero time - e.g. be exact dates",
            value,
        )
    return moment.date()


def _time_problem(text: str) -> str:
    """Why `text` is not a time, in pydantic's words, for the common mistakes."""
    if len(text) < 5:
        return "input is too short"
    fields = (("hour", 0, 23), ("minute", 3, 59), ("second", 6, 59))
    for name, start, highest in fields:
        if name == "second" and len(text) < 8:
            break
        if not text[start : start + 2].isdigit():
            return f"invalid character in {name}"
        if int(text[start : start + 2]) > highest:
            return f"{name} value is outside expected range of 0-{highest}"
        if name == "hour" and text[2] != ":":
            return "invalid time separator, expected `:`"
    return "invalid time format"


_TIME_EXPECTED = "Input should be in a valid time format"


def to_time(value: Any) -> datetime.time:
    if isinstance(value, datetime.time):
        return value
    if isinstance(value, str):
        try:
            if ":" not in value:  # Python would read "1030" as 10:30; pydantic would not
                raise ValueError(value)
            return datetime.time.fromisoformat(value)
        except ValueError:
            raise unparsable("time_parsing", _TIME_EXPECTED, value, _time_problem(value)) from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not 0 <= value < 86400:
            problem = (
                "time in seconds should be positive"
                if value < 0
                else "numeric times may not exceed 86,399 seconds"
            )
            raise unparsable("time_parsing", _TIME_EXPECTED, value, problem)
        moment = datetime.datetime.min + datetime.timedelta(seconds=value)
        return moment.time().replace(tzinfo=datetime.UTC)
    raise invalid("time_type", "Input should be a valid time", value)


_ISO_DURATION = re.compile(
    r"(?P<sign>[-+]?)P(?:(?P<years>\d+(?:\.\d+)?)Y)?(?:(?P<months>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?"
)
_CLOCK_DURATION = re.compile(
    r"(?P<sign>[-+]?)(?:(?P<days>\d+) days?,? ?)?(?P<hours>\d{1,2}):(?P<minutes>\d{2})"
    r"(?::(?P<seconds>\d{2}(?:\.\d+)?))?"
)
_UNIT_SECONDS = {
    "years": 365 * 86400,
    "months": 30 * 86400,
    "weeks": 7 * 86400,
    "days": 86400,
    "hours": 3600,
    "minutes": 60,
    "seconds": 1,
}


_TIMEDELTA_EXPECTED = "Input should be a valid timedelta"


def to_timedelta(value: Any) -> datetime.timedelta:
    if isinstance(value, datetime.timedelta):
        return value
    if isinstance(value, (int, float)):
        try:
            return datetime.timedelta(seconds=value)
        except OverflowError:
            raise unparsable(
                "time_delta_parsing",
                _TIMEDELTA_EXPECTED,
                value,
                "durations may not exceed 999,999,999 hours",
            ) from None
    if isinstance(value, str):
        text = value
        found = _ISO_DURATION.fullmatch(text) or _CLOCK_DURATION.fullmatch(text)
        if found is not None and text not in ("P", "-P", "+P"):
            parts = found.groupdict()
            seconds = sum(
                float(parts[unit]) * size for unit, size in _UNIT_SECONDS.items() if parts.get(unit)
            )
            try:
                return datetime.timedelta(seconds=-seconds if parts["sign"] == "-" else seconds)
            except OverflowError:
                pass
        problem = "invalid digit in duration" if text[:1].isalpha() else "invalid duration format"
        raise unparsable("time_delta_parsing", _TIMEDELTA_EXPECTED, value, problem)
    raise invalid("time_delta_type", "Input should be a valid timedelta", value)
