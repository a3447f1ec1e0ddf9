"""Referrals: who brought whom, what the referee's qualifying order was, and the payout; and
the fixed-window counters behind per-key rate limits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base

REFERRAL_STATUSES = ("pending", "qualified", "rewarded", "rejected", "capped")


class Referral(Base):
    __tablename__ = "referrals"
    __table_args__ = (
        # A member is referred at most once.
        UniqueConstraint("program_id", "referee_id"),
        CheckConstraint(
            "status IN ('pending', 'qualified', 'rewarded', 'rejected', 'capped')",
            name="status_known",
        ),
        CheckConstraint("referrer_id <> referee_id", name="not_self"),
        Index("ix_referrals_referrer_id_id", "referrer_id", "id"),
        Index("ix_referrals_program_id_id", "program_id", "id"),
        Index("ix_referrals_order_pk", "order_pk"),
        ForeignKeyConstraint(
            ["referrer_id", "program_id"], ["members.id", "members.program_id"], ondelete="CASCADE"
        ),
        ForeignKeyConstraint(
            ["referee_id", "program_id"], ["members.id", "members.program_id"], ondelete="CASCADE"
        ),
        ForeignKeyConstraint(["order_pk", "program_id"], ["orders.id", "orders.program_id"]),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    program_id: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    referrer_id: Mapped[int] = mapped_column(BigInteger)
    referee_id: Mapped[int] = mapped_column(BigInteger)
    code: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    order_pk: Mapped[int | None] = mapped_column(BigInteger)
    referrer_points: Mapped[int | None] = mapped_column(BigInteger)
    referee_points: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime]
    qualified_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]


class RateLimitWindow(Base):
    """Requests counted per subject (e.g. an API key and a route) and fixed window; shared by
    every worker of a deployment because it lives in the database."""

    __tablename__ = "rate_limit_windows"
    __table_args__ = (Index("ix_rate_limit_windows_window_start", "window_start"),)

    subject: Mapped[str] = mapped_column(String(120), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
