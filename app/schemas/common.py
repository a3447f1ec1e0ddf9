"""Wire types shared by every schema module."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    model_validator,
)

MAX_POINTS = 1_000_000_000
MAX_AMOUNT = 10**12

# Strict: "10", 10.0 and true are refused, so a client can never send a point count by accident.
Points = Annotated[int, Field(strict=True, ge=1, le=MAX_POINTS)]
SignedPoints = Annotated[int, Field(strict=True, ge=-MAX_POINTS, le=MAX_POINTS)]
# PostgreSQL text cannot hold U+0000; refusing it here turns a 500 into a 422.
NO_NUL = r"^[^\x00]*$"
Reason = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=NO_NUL)]
ExternalId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:@\-]{1,128}$")]
EXTERNAL_ID_PATTERN = r"^[A-Za-z0-9_.:@\-]{1,128}$"

# Every time on the wire is RFC 3339 with a numeric offset ("+00:00"), the form PostgreSQL
# also writes, so times built in SQL and in Python look alike.
Timestamp = Annotated[
    datetime, PlainSerializer(lambda value: value.isoformat(), return_type=str, when_used="json")
]

# Times a client sends: RFC 3339 text with an offset, in years 1970-9999 (in UTC as well as
# as written), so that every time stored converts to UTC and back to RFC 3339 text.
# Pydantic alone would read a bare number as Unix seconds, and would accept years that
# PostgreSQL stores as -infinity or that overflow when shifted to UTC.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")
FIRST_YEAR = 1970
LAST_YEAR = 9999


def _rfc3339_text(value: object) -> object:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2026-05-01T10:00:00Z")
    return value


def _within_years(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("needs a time zone offset")
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        in_utc = None
    if in_utc is None or not all(
        FIRST_YEAR <= year <= LAST_YEAR for year in (value.year, in_utc.year)
    ):
        raise ValueError(f"must be in the years {FIRST_YEAR}-{LAST_YEAR}")
    return value


RequestTime = Annotated[
    datetime,
    BeforeValidator(_rfc3339_text),
    AfterValidator(_within_years),
    Field(description="RFC 3339 with an offset, years 1970-9999."),
]

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_date_text(value: object) -> object:
    # Pydantic would read a number as Unix seconds (0 is 1970-01-01).
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise ValueError("must be a date as YYYY-MM-DD")
    return value


RequestDate = Annotated[date, BeforeValidator(_iso_date_text)]

T = TypeVar("T")

# JSON nesting a request may have (api.md): deeper bodies are refused before anything stores
# or re-encodes them (orjson, and so every response, stops at 255 levels).
MAX_JSON_DEPTH = 64


# Values that hold no string and nest nothing: most of a body's fields. Checked by exact type
# first, because this check runs on every field of every request body and of every line of
# an import file, and a type lookup costs a fraction of the isinstance calls below.
_FLAT_TYPES = frozenset({int, bool, float, type(None), datetime, date})


def _check_json_value(value: Any, depth: int) -> None:
    """Raise ValueError when ``value`` nests deeper than allowed or holds a NUL character,
    which PostgreSQL text and jsonb cannot store."""
    if type(value) in _FLAT_TYPES:
        return
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("strings may not contain the NUL character (U+0000)")
        return
    if isinstance(value, dict | list):
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"JSON may nest at most {MAX_JSON_DEPTH} levels")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            _check_json_value(key, depth)
            _check_json_value(item, depth + 1)


class RequestModel(BaseModel):
    """Every request body refuses unknown fields, so nobody can set a balance by sending one.
    No string in it may hold a NUL character, and no free-form value may nest deeper than
    ``MAX_JSON_DEPTH`` (a nested model checks its own fields)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _storable(self) -> RequestModel:
        for value in self.__dict__.values():
            if type(value) in _FLAT_TYPES:
                continue
            if not isinstance(value, BaseModel):
                # The body is level 1, its fields' values level 2.
                _check_json_value(value, 2)
        return self


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = Field(description="Pass as ?cursor= to get the next page.")


class Problem(BaseModel):
    """RFC 9457 problem details, with the machine-readable ``code`` of the API contract."""

    type: str = Field(examples=["https://patron.dev/problems/insufficient_points"])
    title: str
    status: int
    detail: str
    code: str = Field(examples=["insufficient_points"])
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="For validation_error: what was wrong, field by field."
    )
