"""Member tokens: short-lived, signed, stateless credentials for a member's own mobile app.

A token is ``mt_<payload>.<signature>``:

- ``payload`` is the base64url (unpadded) compact JSON
  ``{"pid": program id, "mid": member id, "iat": issued at, "exp": expires at, "kid": key id}``
  (times in Unix seconds; ``mid`` is the member's internal id, which never changes);
- ``signature`` is the base64url (unpadded) HMAC-SHA256 of ``"mt_" + payload`` under the key
  ``kid`` of ``member_token_keys``.

Nothing is stored per token. Every request checks the signature, the expiry, that the key is
not retired and that the member exists in that program and is not erased, so erasing a member
ends their tokens at once. The signed ``pid`` keeps a token inside its program.

Keys (docs/member-tokens.md): the newest key that is not retired signs, every key that is not
retired verifies, the first key is made on first use, and ``rotate_signing_keys`` (the
``patron token-key rotate`` command) adds a key and retires the ones no live token can still
carry. Each process caches the key set for ``KEY_CACHE_SECONDS``; a token naming a key newer
than any it knows reloads the set at once, so a key made by another process verifies
everywhere straight away. Key ids only grow and keys are never un-retired, so an unknown id
below the newest known one is refused without a reload.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import text

from app import db
from app.clock import clock
from app.db import Connection
from app.errors import NotFoundError, UnauthorizedError
from app.schemas.me import MAX_TTL_SECONDS
from app.services.idempotency import IdempotencyRequest, Reply, run_once

TOKEN_PREFIX = "mt_"
# A valid token is about 150 characters; anything much longer is refused unread.
MAX_TOKEN_LENGTH = 512
KEY_CACHE_SECONDS = 30.0
# Another process may go on signing with a replaced key until its cache ages out, and hosts'
# clocks differ a little: a key is retired only this long after the longest token lifetime.
RETIREMENT_MARGIN = timedelta(minutes=5)
RETIRE_AFTER = timedelta(seconds=MAX_TTL_SECONDS) + RETIREMENT_MARGIN
# Serialises key creation and rotation across processes (two-key advisory lock space).
_LOCK_CLASS = 0x4D54  # "MT"
_CLAIMS = ("pid", "mid", "iat", "exp", "kid")

_INVALID = "Invalid or expired member token."


@dataclass(frozen=True, slots=True)
class MemberPrincipal:
    """A member calling through their app: only their own data, in their own program."""

    program_id: int
    member_id: int
    # The shop's id for the member (external_id), which the services take.
    member: str
    kid: int
    expires_at: datetime

    @property
    def actor(self) -> str:
        return f"member:{self.member_id}"


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: int
    secret: bytes
    created_at: datetime
    retired_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Rotation:
    """What ``rotate_signing_keys`` did."""

    new_kid: int
    retired: list[int]
    active: list[int]


class _KeyCache:
    """This process's copy of the keys that are not retired."""

    def __init__(self) -> None:
        self.keys: dict[int, SigningKey] = {}
        self.loaded_at: float | None = None

    def fresh(self, now: float) -> bool:
        return self.loaded_at is not None and now - self.loaded_at < KEY_CACHE_SECONDS


_cache = _KeyCache()

_ACTIVE_KEYS = text(
    "SELECT kid, secret, created_at, retired_at FROM member_token_keys "
    "WHERE retired_at IS NULL ORDER BY kid"
)
_LOCK = text(f"SELECT pg_advisory_xact_lock({_LOCK_CLASS}, 0)")
_NEW_KEY = text(
    "INSERT INTO member_token_keys (secret, created_at) VALUES (:secret, :now) "
    "RETURNING kid, secret, created_at, retired_at"
)
_RETIRE = text(
    "UPDATE member_token_keys SET retired_at = :now "
    "WHERE kid = ANY(CAST(:kids AS bigint[])) AND retired_at IS NULL"
)
_MEMBER_FOR_TOKEN = text(
    "SELECT external_id FROM members "
    "WHERE id = :member_id AND program_id = :program_id AND erased_at IS NULL"
)
_MEMBER_TO_ISSUE = text(
    "SELECT id FROM members "
    "WHERE program_id = :program_id AND external_id = :member AND erased_at IS NULL"
)


def clear_cache() -> None:
    """Forget this process's keys (tests; rotation through this process)."""
    _cache.keys = {}
    _cache.loaded_at = None


def _key(row: Any) -> SigningKey:
    return SigningKey(row.kid, bytes(row.secret), row.created_at, row.retired_at)


async def _reload() -> dict[int, SigningKey]:
    async with db.read_only() as conn:
        rows = (await conn.execute(_ACTIVE_KEYS)).all()
    _cache.keys = {row.kid: _key(row) for row in rows}
    _cache.loaded_at = time.monotonic()
    return _cache.keys


async def _active_keys() -> dict[int, SigningKey]:
    if _cache.fresh(time.monotonic()):
        return _cache.keys
    return await _reload()


async def _new_key(conn: Connection, now: datetime) -> SigningKey:
    row = (await conn.execute(_NEW_KEY, {"secret": secrets.token_bytes(32), "now": now})).one()
    return _key(row)


async def _create_first_key() -> None:
    """Make a key unless one exists; concurrent first uses make exactly one."""
    async with db.transaction() as conn:
        await conn.execute(_LOCK)
        if (await conn.execute(_ACTIVE_KEYS)).first() is None:
            await _new_key(conn, clock.now())


async def signing_key() -> SigningKey:
    """The newest key that is not retired (made on first use)."""
    keys = await _active_keys()
    if not keys:
        await _create_first_key()
        keys = await _reload()
    return keys[max(keys)]


async def _verification_key(kid: int) -> SigningKey | None:
    keys = await _active_keys()
    if kid not in keys and kid > max(keys, default=0):
        keys = await _reload()
    return keys.get(kid)


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(part: str) -> bytes:
    """Strict base64url without padding: anything but the canonical form is refused."""
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError) as exc:
        raise UnauthorizedError(_INVALID) from exc
    if _b64encode(raw) != part:
        raise UnauthorizedError(_INVALID)
    return raw


def _signature(key: SigningKey, signed: str) -> bytes:
    return hmac.new(key.secret, signed.encode("ascii"), hashlib.sha256).digest()


def encode_token(claims: dict[str, int], key: SigningKey) -> str:
    """Sign ``claims`` (the five of the module docstring) with ``key``."""
    signed = TOKEN_PREFIX + _b64encode(orjson.dumps(claims))
    return signed + "." + _b64encode(_signature(key, signed))


def _claims(token: str) -> tuple[str, dict[str, int], bytes]:
    """Split and parse a token: (the signed text, its claims, the signature). Not verified."""
    if len(token) > MAX_TOKEN_LENGTH or not token.startswith(TOKEN_PREFIX) or not token.isascii():
        raise UnauthorizedError(_INVALID)
    signed, dot, signature = token.rpartition(".")
    if not dot or "." in signed:
        raise UnauthorizedError(_INVALID)
    payload = _b64decode(signed[len(TOKEN_PREFIX) :])
    try:
        claims = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise UnauthorizedError(_INVALID) from exc
    if (
        not isinstance(claims, dict)
        or set(claims) != set(_CLAIMS)
        # bool is an int in Python; a payload with true in it is not ours.
        or not all(type(claims[name]) is int for name in _CLAIMS)
    ):
        raise UnauthorizedError(_INVALID)
    return signed, claims, _b64decode(signature)


async def verify_member_token(token: str) -> MemberPrincipal:
    """The member a token speaks for, or ``UnauthorizedError`` (malformed, tampered, signed
    by an unknown or retired key, expired, or the member is gone or erased)."""
    signed, claims, signature = _claims(token)
    key = await _verification_key(claims["kid"])
    if key is None or not hmac.compare_digest(_signature(key, signed), signature):
        raise UnauthorizedError(_INVALID)
    if claims["exp"] <= clock.now().timestamp():
        raise UnauthorizedError("The member token has expired; ask for a new one.")
    async with db.read_only() as conn:
        member = (
            await conn.execute(
                _MEMBER_FOR_TOKEN, {"member_id": claims["mid"], "program_id": claims["pid"]}
            )
        ).scalar()
    if member is None:
        raise UnauthorizedError(_INVALID)
    return MemberPrincipal(
        program_id=claims["pid"],
        member_id=claims["mid"],
        member=member,
        kid=key.kid,
        expires_at=datetime.fromtimestamp(claims["exp"], UTC),
    )


async def issue_member_token(
    program_id: int, member: str, ttl_seconds: int, request: IdempotencyRequest | None
) -> Reply:
    """A new token for a member that exists and is not erased: 201 ``{token, expires_at}``."""
    if not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
        raise ValueError("ttl_seconds out of range")
    key = await signing_key()

    async def work(conn: Connection) -> Reply:
        member_id = (
            await conn.execute(_MEMBER_TO_ISSUE, {"program_id": program_id, "member": member})
        ).scalar()
        if member_id is None:
            raise NotFoundError(f"No member {member!r} in this program.")
        issued_at = int(clock.now().timestamp())
        claims = {
            "pid": program_id,
            "mid": member_id,
            "iat": issued_at,
            "exp": issued_at + ttl_seconds,
            "kid": key.kid,
        }
        expires_at = datetime.fromtimestamp(claims["exp"], UTC).isoformat()
        body = orjson.dumps({"token": encode_token(claims, key), "expires_at": expires_at})
        return Reply(body.decode())

    return await run_once(program_id, request, work)


async def rotate_signing_keys(
    now: datetime | None = None, *, retire_all_others: bool = False
) -> Rotation:
    """Add a signing key, and retire every older key that no live token can still carry: one
    whose successor has been signing for longer than the longest token lifetime (plus
    ``RETIREMENT_MARGIN``). With ``retire_all_others`` (a leaked key), every older key is
    retired at once, which logs out every member app."""
    now = now or clock.now()
    async with db.transaction() as conn:
        await conn.execute(_LOCK)
        keys = [_key(row) for row in (await conn.execute(_ACTIVE_KEYS)).all()]
        new = await _new_key(conn, now)
        # Each key's successor: the next key, and the new one for the newest.
        successors = [*keys[1:], new] if keys else []
        retired = [
            key.kid
            for key, successor in zip(keys, successors, strict=True)
            if retire_all_others or successor.created_at <= now - RETIRE_AFTER
        ]
        if retired:
            await conn.execute(_RETIRE, {"kids": retired, "now": now})
    clear_cache()
    active = [key.kid for key in keys if key.kid not in retired] + [new.kid]
    return Rotation(new_kid=new.kid, retired=retired, active=active)


async def list_signing_keys() -> list[SigningKey]:
    """Every key, retired or not, oldest first (secrets included: never print them)."""
    async with db.read_only() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT kid, secret, created_at, retired_at FROM member_token_keys ORDER BY kid"
                )
            )
        ).all()
    return [_key(row) for row in rows]
