"""Members (the shop's customers) and their account row, which caches the balances."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (
        UniqueConstraint("program_id", "external_id"),
        UniqueConstraint("program_id", "referral_code"),
        Index("ix_members_program_id_id", "program_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    program_id: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    external_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(32))
    birthday: Mapped[date | None] = mapped_column(Date)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    erased_at: Mapped[datetime | None]
    # The member's own referral code (8 characters, Crockford base32), made on first request.
    referral_code: Mapped[str | None] = mapped_column(String(8))


class Account(Base):
    """One row per member; every write for a member locks this row first."""

    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint("pending >= 0", name="pending_non_negative"),
        CheckConstraint("held >= 0", name="held_non_negative"),
        ForeignKeyConstraint(
            ["program_id", "tier_key"],
            ["tiers.program_id", "tiers.key"],
            name="fk_accounts_tier",
        ),
        Index("ix_accounts_program_id_tier_key", "program_id", "tier_key"),
        ForeignKeyConstraint(
            ["member_id", "program_id"], ["members.id", "members.program_id"], ondelete="CASCADE"
        ),
    )

    member_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    program_id: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    available: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    pending: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    held: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    lifetime_earned: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    lifetime_redeemed: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    # The member's VIP tier (key within the program), when it first fell below that tier's
    # threshold (downgrades wait grace_days from then), and when it was last evaluated.
    tier_key: Mapped[str | None] = mapped_column(String(32))
    tier_below_since: Mapped[datetime | None]
    tier_checked_at: Mapped[datetime | None]
    # Bumped by every change; doubles as the member's event sequence number.
    version: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    updated_at: Mapped[datetime]
