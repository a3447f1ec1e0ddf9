"""Authentication at the HTTP edge: API keys with scopes, and member tokens.

API keys (``ptr_...``) are looked up by ``services/programs/api_keys.py``. Member tokens
(``mt_...``, ``services/members/member_tokens.py``) are the other credential: they reach only
the ``/v1/me`` routes (``require_member_token``), and every other route refuses them with 403,
as the ``/v1/me`` routes refuse API keys: the caller is known, but holds the wrong kind of
credential.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from app.errors import ForbiddenError, UnauthorizedError
from app.services.members.member_tokens import TOKEN_PREFIX, MemberPrincipal, verify_member_token
from app.services.programs.api_keys import KEY_PREFIX, Principal, principal_for_key

__all__ = ["Principal", "authenticate", "bearer_token", "require_member_token", "require_scope"]


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header."""
    if not authorization:
        raise UnauthorizedError("Send 'Authorization: Bearer <API key>'.")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise UnauthorizedError("Send 'Authorization: Bearer <API key>'.")
    return token


async def authenticate(authorization: str | None, scope: str) -> Principal:
    """The API key's principal, which must hold ``scope`` (or ``admin``)."""
    token = bearer_token(authorization)
    if token.startswith(TOKEN_PREFIX):
        await verify_member_token(token)
        raise ForbiddenError("A member token may call only the /v1/me endpoints.")
    if not token.startswith(KEY_PREFIX):
        raise UnauthorizedError("Unknown or revoked API key.")
    principal = await principal_for_key(token)
    if not principal.allows(scope):
        raise ForbiddenError(f"This key lacks the '{scope}' scope.")
    return principal


def require_scope(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: the caller must hold ``scope`` (or ``admin``)."""

    async def dependency(request: Request) -> Principal:
        return await authenticate(request.headers.get("authorization"), scope)

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return dependency


async def require_member_token(request: Request) -> MemberPrincipal:
    """A FastAPI dependency for the ``/v1/me`` routes: the caller must send a valid member
    token; an API key, even a valid one, is the wrong credential here (403)."""
    token = bearer_token(request.headers.get("authorization"))
    if token.startswith(KEY_PREFIX):
        await principal_for_key(token)
        raise ForbiddenError("The /v1/me endpoints take a member token, not an API key.")
    if not token.startswith(TOKEN_PREFIX):
        raise UnauthorizedError("Send 'Authorization: Bearer <member token>'.")
    return await verify_member_token(token)
