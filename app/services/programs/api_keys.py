"""API keys: generation, hashing and the per-process lookup cache.

A key is ``ptr_`` plus 32 random bytes (base64url). It is shown once; the database keeps its
SHA-256 and a short display prefix. Looking a key up costs a round trip, so each process caches
lookups for ``api_key_cache_seconds``: revoking through a process clears that process's cache
at once; other processes drop the key when their cache entry ages out.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import text

from app import db
from app.config import get_settings
from app.errors import UnauthorizedError

KEY_PREFIX = "ptr_"
DISPLAY_PREFIX_LENGTH = 12
ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the program they act for and what they may do."""

    program_id: int
    key_id: uuid.UUID
    scopes: frozenset[str]

    @property
    def actor(self) -> str:
        return f"key:{self.key_id}"

    def allows(self, scope: str) -> bool:
        return ADMIN in self.scopes or scope in self.scopes


def generate_api_key() -> tuple[str, bytes, str]:
    """A new key: (the secret to show once, its hash to store, its display prefix)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, hash_key(key), key[:DISPLAY_PREFIX_LENGTH]


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


_cache: dict[bytes, tuple[Principal, float]] = {}
_CACHE_LIMIT = 10_000

_LOOKUP = text(
    "SELECT id, program_id, scopes FROM api_keys WHERE key_hash = :hash AND revoked_at IS NULL"
)


def forget_key(key_id: uuid.UUID) -> None:
    """Drop a revoked key from this process's cache."""
    for hashed, (principal, _) in list(_cache.items()):
        if principal.key_id == key_id:
            del _cache[hashed]


def clear_cache() -> None:
    _cache.clear()


async def principal_for_key(key: str) -> Principal:
    hashed = hash_key(key)
    cached = _cache.get(hashed)
    now = time.monotonic()
    if cached is not None and cached[1] > now:
        return cached[0]
    async with db.read_only() as conn:
        row = (await conn.execute(_LOOKUP, {"hash": hashed})).first()
    if row is None:
        _cache.pop(hashed, None)
        raise UnauthorizedError("Unknown or revoked API key.")
    principal = Principal(row.program_id, row.id, frozenset(row.scopes))
    ttl = get_settings().api_key_cache_seconds
    if ttl > 0:
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        _cache[hashed] = (principal, now + ttl)
    return principal
