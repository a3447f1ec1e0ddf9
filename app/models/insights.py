"""Insights: each member's RFM segment and lifecycle stage as of the last refresh, when each
program was last refreshed, and the feedback (NPS) scores members gave.

The refresh job rewrites ``member_insights`` from the orders
(app/services/insights/insights.py); the table exists so that ``GET /v1/members?segment=``
and ``?lifecycle=`` are index lookups.
"""

from __future__ import annotations

from datetime import datetime
from typing import get_args

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base
from app.models.checkout import Order
from app.schemas.insights import Lifecycle, Segment

# The vocabularies are the wire contract's (app/schemas/insights.py); the checks follow them.
SEGMENTS: tuple[str, ...] = get_args(Segment)
LIFECYCLES: tuple[str, ...] = get_args(Lifecycle)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class MemberInsight(Base):
    """One row per member: the member's segment, lifecycle and the figures they came from."""

    __tablename__ = "member_insights"
    __table_args__ = (
        CheckConstraint(_one_of("segment", SEGMENTS), name="segment_known"),
        CheckConstraint(_one_of("lifecycle", LIFECYCLES), name="lifecycle_known"),
        CheckConstraint(
            "(recency_score IS NULL AND frequency_score IS NULL AND monetary_score IS NULL) OR "
            "(recency_score BETWEEN 1 AND 5 AND frequency_score BETWEEN 1 AND 5 "
            "AND monetary_score BETWEEN 1 AND 5)",
            name="scores_in_range",
        ),
        # member_id last, so a filtered member list walks the index newest member first.
        Index("ix_member_insights_program_id_segment", "program_id", "segment", "member_id"),
        Index("ix_member_insights_program_id_lifecycle", "program_id", "lifecycle", "member_id"),
        ForeignKeyConstraint(
            ["member_id", "program_id"], ["members.id", "members.program_id"], ondelete="CASCADE"
        ),
    )

    member_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    program_id: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    segment: Mapped[str] = mapped_column(String(32))
    lifecycle: Mapped[str] = mapped_column(String(16))
    # Quintile scores 1-5 within the program; null for members with no counted order.
    recency_score: Mapped[int | None] = mapped_column(SmallInteger)
    frequency_score: Mapped[int | None] = mapped_column(SmallInteger)
    monetary_score: Mapped[int | None] = mapped_column(SmallInteger)
    # Counted orders are those not fully refunded; net_spend is amount - refunded_amount.
    orders_count: Mapped[int] = mapped_column(Integer)
    net_spend: Mapped[int] = mapped_column(BigInteger)
    first_order_at: Mapped[datetime | None]
    last_order_at: Mapped[datetime | None]
    # When the member churns unless they buy again: last order + max(churn days, multiple x
    # their average interval), under the program's settings at the refresh.
    churns_at: Mapped[datetime | None]
    # When this row last changed (not when it was last checked: see insight_refreshes).
    changed_at: Mapped[datetime]


class InsightRefresh(Base):
    """When each program's insights were last recomputed."""

    __tablename__ = "insight_refreshes"

    program_id: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    refreshed_at: Mapped[datetime]
    members: Mapped[int] = mapped_column(BigInteger)
    duration_ms: Mapped[int] = mapped_column(Integer)


class MemberFeedback(Base):
    """A satisfaction score (0-10, "how likely are you to recommend us") a member gave."""

    __tablename__ = "member_feedback"
    __table_args__ = (
        CheckConstraint("score BETWEEN 0 AND 10", name="score_range"),
        Index("ix_member_feedback_member_id_created_at", "member_id", "created_at", "id"),
        Index("ix_member_feedback_program_id_created_at", "program_id", "created_at"),
        ForeignKeyConstraint(
            ["member_id", "program_id"], ["members.id", "members.program_id"], ondelete="CASCADE"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    program_id: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    member_id: Mapped[int] = mapped_column(BigInteger)
    score: Mapped[int] = mapped_column(SmallInteger)
    comment: Mapped[str | None] = mapped_column(Text)
    channel: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime]


# Two covering indexes on orders, so that insights read the index alone: the overview scans
# a period's orders of one program (by time), the refresh aggregates a program's orders member
# by member (in member order, so the aggregation streams instead of hashing a million
# groups). Declared here, beside the queries that need them, so the checkout model stays as
# its owners wrote it.
ORDERS_PERIOD_INDEX = Index(
    "ix_orders_program_id_occurred_at",
    Order.program_id,
    Order.occurred_at,
    postgresql_include=["member_id", "amount", "refunded_amount"],
)
ORDERS_MEMBER_INDEX = Index(
    "ix_orders_program_id_member_id",
    Order.program_id,
    Order.member_id,
    postgresql_include=["occurred_at", "amount", "refunded_amount"],
)
