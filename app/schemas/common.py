"""Wire types shared by every schema module."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, StringConstraints

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

T = TypeVar("T")


class RequestModel(BaseModel):
    """Every request body refuses unknown fields, so nobody can set a balance by sending one."""

    model_config = ConfigDict(extra="forbid")


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
