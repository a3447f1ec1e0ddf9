"""Signing and verifying webhook deliveries (``Patron-Signature``).

A delivery carries ``Patron-Signature: t=<unix seconds>,v1=<hex>`` where the hex is
HMAC-SHA256 of ``"<t>.<raw body>"`` keyed with the endpoint's secret. For 24 hours after a
secret is rotated, the header carries two ``v1`` values, one per secret, so a receiver that
still has either secret accepts it. A receiver checks that one ``v1`` matches and that ``t`` is
recent (``tolerance``), which stops replays of an old, captured delivery.

This module has no dependency on the rest of Patron: a shop may copy it (docs/webhooks.md).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable
from datetime import datetime

HEADER = "Patron-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secrets: Iterable[str], timestamp: int, body: bytes) -> str:
    """The header value: ``t=...`` then one ``v1=...`` per secret."""
    return ",".join([f"t={timestamp}", *(f"v1={sign(s, timestamp, body)}" for s in secrets)])


def parse_header(header: str) -> tuple[int | None, list[str]]:
    """(t, the v1 values) of a header; t is None when missing, repeated or not an integer."""
    timestamps: list[str] = []
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            signatures.append(value)
    if len(timestamps) != 1 or not timestamps[0].isdigit() or len(timestamps[0]) > 12:
        return None, signatures
    return int(timestamps[0]), signatures


def verify(
    secret: str,
    header: str,
    body: bytes | str,
    now: float | datetime | None = None,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """True when ``header`` signs ``body`` (the raw request body, byte for byte) under
    ``secret``, with a timestamp within ``tolerance`` seconds of ``now`` (default: the system
    clock). Any one of several ``v1`` values may match."""
    timestamp, signatures = parse_header(header)
    if timestamp is None or not signatures:
        return False
    if now is None:
        current = time.time()
    elif isinstance(now, datetime):
        current = now.timestamp()
    else:
        current = float(now)
    if abs(current - timestamp) > tolerance:
        return False
    raw = body.encode() if isinstance(body, str) else body
    expected = sign(secret, timestamp, raw)
    # Compare with every value (no early exit), in constant time.
    matches = [hmac.compare_digest(expected, candidate) for candidate in signatures]
    return any(matches)
