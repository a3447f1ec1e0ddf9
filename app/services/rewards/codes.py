"""Coupon codes: 12 Crockford base32 characters from ``secrets`` (60 random bits, so a code
cannot be found by guessing), shown upper-case and read case-insensitively."""

from __future__ import annotations

import secrets

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 12
# Crockford decoding: case-insensitive, I and L read as 1, O as 0, hyphens ignored.
_READ_AS = str.maketrans({"I": "1", "L": "1", "O": "0", "-": None})


def new_code() -> str:
    return "".join(secrets.choice(CROCKFORD) for _ in range(CODE_LENGTH))


def normalize_code(code: str) -> str | None:
    """The canonical form of a code as someone typed it, or None if it cannot be one."""
    canonical = code.upper().translate(_READ_AS)
    if len(canonical) != CODE_LENGTH or any(c not in CROCKFORD for c in canonical):
        return None
    return canonical
