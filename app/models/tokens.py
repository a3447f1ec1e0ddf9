"""The keys that sign member tokens (docs/member-tokens.md).

Member tokens themselves are stateless and have no table. The signing keys belong to the
deployment, not to a program: a token's payload names its program and is covered by the
signature, so one key set serves every tenant without letting a token cross between them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Identity, LargeBinary
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class MemberTokenKey(Base):
    """An HMAC-SHA256 key. The newest key that is not retired signs; every key that is not
    retired verifies. ``kid`` grows with each key, so "newest" never depends on clocks."""

    __tablename__ = "member_token_keys"

    kid: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # Stored as is: signing needs the key itself (like webhook secrets), so it cannot be hashed.
    secret: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime]
    retired_at: Mapped[datetime | None]
