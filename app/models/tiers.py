"""VIP tiers, the history of every member's tier changes, and birthday bonuses granted."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class Tier(Base):
    __tablename__ = "tiers"
    __table_args__ = (
        UniqueConstraint("program_id", "key"),
        UniqueConstraint("program_id", "threshold"),
        CheckConstraint("threshold >= 0", name="threshold_non_negative"),
        CheckConstraint("earn_multiplier BETWEEN 1 AND 10", name="multiplier_range"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    program_id: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    threshold: Mapped[int] = mapped_column(BigInteger)
    earn_multiplier: Mapped[Decimal] = mapped_column(Numeric(6, 3))
    benefits: Mapped[list[str]] = mapped_column(ARRAY(Text))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class TierChange(Base):
    """Every tier a member moved to: from, to, why and when (kept for explanations)."""

    __tablename__ = "tier_changes"
    __table_args__ = (
        Index("ix_tier_changes_member_id_id", "member_id", "id"),
        ForeignKeyConstraint(
            ["member_id", "program_id"], ["members.id", "members.program_id"], ondelete="CASCADE"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    program_id: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    member_id: Mapped[int] = mapped_column(BigInteger)
    from_key: Mapped[str | None] = mapped_column(String(32))
    to_key: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(40))
    qualifying_value: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]


class BirthdayBonus(Base):
    """One row per member and year: the birthday bonus is granted at most once a year."""

    __tablename__ = "birthday_bonuses"
    __table_args__ = (
        ForeignKeyConstraint(
            ["member_id", "program_id"], ["members.id", "members.program_id"], ondelete="CASCADE"
        ),
        ForeignKeyConstraint(
            ["entry_id", "program_id"],
            ["point_entries.id", "point_entries.program_id"],
            ondelete="CASCADE",
        ),
    )

    member_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    program_id: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    entry_id: Mapped[int] = mapped_column(BigInteger)
    granted_at: Mapped[datetime]
