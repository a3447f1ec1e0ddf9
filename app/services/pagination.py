"""Opaque cursors for keyset pagination: the last id seen, base64-encoded."""

from __future__ import annotations

import base64
import binascii

from app.errors import ValidationError


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id a cursor stands for. Only a cursor this module made is accepted: base64 decoding
    skips characters outside its alphabet, so without the round trip below text such as
    ``'" OR ""="'`` would decode to some id and answer an empty page instead of 422."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = int(base64.urlsafe_b64decode(padded.encode()).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValidationError("Invalid cursor.", loc=["query", "cursor"]) from exc
    if not 1 <= value < 2**63 or encode_cursor(value) != cursor:
        raise ValidationError("Invalid cursor.", loc=["query", "cursor"])
    return value
