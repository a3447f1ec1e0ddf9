"""One line of an import file: parsed, validated against its type's model, and reduced to
its natural key and the JSON to stage, or to the code and message of its rejection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import Field, ValidationError

from app.schemas.common import ExternalId, Points, RequestModel, Timestamp
from app.schemas.members import MemberUpsert
from app.schemas.orders import OrderCreate
from app.services.checkout.orders import dumped_order_fingerprint

# A longer line is rejected without being held in memory whole.
MAX_LINE_BYTES = 1_048_576


class MemberLine(MemberUpsert):
    """As ``PUT /v1/members/{member}``, plus the member's id and when it joined."""

    external_id: ExternalId
    created_at: Timestamp | None = None


class BalanceLine(RequestModel):
    external_id: ExternalId
    points: Points
    expires_at: Timestamp | None = None


class OrderLine(OrderCreate):
    """As ``POST /v1/orders``, plus whether the order earns points now."""

    earn_points: bool = Field(default=False, strict=True)


_MODELS: dict[str, type[RequestModel]] = {
    "members": MemberLine,
    "balances": BalanceLine,
    "orders": OrderLine,
}
# Fields of the HTTP request bodies that make no sense for history (docs/imports.md).
_UNSUPPORTED = {"members": ("referral_code",), "orders": ("redeem_hold_id",)}


@dataclass(frozen=True, slots=True)
class ParsedLine:
    """A staged line: ``key`` and ``payload`` when valid, else ``error_code``; an order line
    also carries its request hash."""

    line: int
    key: str | None = None
    payload: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    request_hash: bytes | None = None


def rejected(line: int, code: str, message: str) -> ParsedLine:
    return ParsedLine(line, error_code=code, error_message=message[:500])


def _key(kind: str, model: Any) -> str:
    return str(model.order_id if kind == "orders" else model.external_id)


def order_hash(payload: dict[str, Any]) -> bytes:
    """The API's request hash of an order line's dump: without ``earn_points`` it is exactly
    ``OrderCreate``'s dump, so an order imported and later re-sent by a checkout is the same
    order."""
    return dumped_order_fingerprint({k: v for k, v in payload.items() if k != "earn_points"})


def parse_line(kind: str, line: int, raw: bytes) -> ParsedLine:
    """Validate one line (without its newline) of an import of ``kind``."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return rejected(line, "malformed_json", f"not a JSON document: {exc}")
    if not isinstance(document, dict):
        return rejected(line, "malformed_json", "each line must be one JSON object")
    for field in _UNSUPPORTED.get(kind, ()):
        if field in document:
            return rejected(line, "unsupported_field", f"{field} cannot be imported")
    try:
        model = _MODELS[kind].model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "line"
        if first["type"] == "extra_forbidden":
            return rejected(line, "unknown_field", f"unknown field {where}")
        return rejected(line, "validation_error", f"{where}: {first['msg']}")
    # Members keep PUT's meaning: only the fields a line carries are set.
    payload = model.model_dump(mode="json", exclude_unset=kind == "members")
    return ParsedLine(
        line,
        key=_key(kind, model),
        payload=orjson.dumps(payload).decode(),
        request_hash=order_hash(payload) if kind == "orders" else None,
    )
