"""Checkout: holds, orders, refunds and the release of pending order points."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    LargeBinary,
    String,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class Hold(Base):
    """Points reserved at checkout: they leave ``available`` and count in ``held`` until the
    hold is captured (a redeem entry), released, or expires."""

    __tablename__ = "holds"
    __table_args__ = (
        CheckConstraint("points > 0", name="points_positive"),
        CheckConstraint(
            "status IN ('active', 'captured', 'released', 'expired')", name="status_known"
        ),
        Index(
            "ix_holds_active_expires_at", "expires_at", postgresql_where=text("status = 'active'")
        ),
        Index("ix_holds_active_member_id", "member_id", postgresql_where=text("status = 'active'")),
        ForeignKeyConstraint(
            ["member_id", "program_id"], ["members.id", "members.program_id"], ondelete="CASCADE"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    program_id: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    member_id: Mapped[int] = mapped_column(BigInteger)
    points: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    order_id: Mapped[str | None] = mapped_column(String(128))
    points_captured: Mapped[int | None] = mapped_column(BigInteger)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]


class Order(Base):
    """An order as the checkout reported it, with what it earned and redeemed. ``order_id`` is
    the shop's id and the natural idempotency key."""

    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("program_id", "order_id"),
        CheckConstraint("amount >= 0", name="amount_non_negative"),
        CheckConstraint("refunded_amount BETWEEN 0 AND amount", name="refunds_within_amount"),
        CheckConstraint("status IN ('pending', 'available')", name="status_known"),
        Index("ix_orders_member_id_occurred_at", "member_id", "occurred_at"),
        ForeignKeyConstraint(
            ["member_id", "program_id"], ["members.id", "members.program_id"], ondelete="CASCADE"
        ),
        # Room on each page, so that the release job's update of ``status`` (in no index; the
        # due orders are found through ``order_release_queue``) stays on the page: HOT.
        {"postgresql_with": {"fillfactor": 90}},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    program_id: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    order_id: Mapped[str] = mapped_column(String(128))
    member_id: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    items: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    occurred_at: Mapped[datetime]
    points_earned: Mapped[int] = mapped_column(BigInteger)
    points_redeemed: Mapped[int] = mapped_column(BigInteger)
    breakdown: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    # 'pending' until the return window has passed and the points were released.
    status: Mapped[str] = mapped_column(String(16))
    available_at: Mapped[datetime]
    redeem_hold_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # The coupons the order used, as its reply shows them ([{code, discount_amount}]); null
    # for an order that named none. Kept after a full refund frees the coupons again.
    coupons: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    refunded_amount: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    points_reversed: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    points_restored: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    # SHA-256 of the request body: the same order_id with another body is a conflict.
    request_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime]
    released_at: Mapped[datetime | None]


class QueuedOrderRelease(Base):
    """An order whose points are still pending, waiting for the release job. Inserted with the
    order, deleted when the job releases it: the job finds due orders here, not through an
    index on ``orders.status``, so that releasing an order updates no indexed column."""

    __tablename__ = "order_release_queue"
    __table_args__ = (
        Index(
            "ix_order_release_queue_available_at",
            "available_at",
            postgresql_include=["member_id"],
        ),
    )

    # The job deletes a member's due rows through this key, under the member's lock. No
    # foreign keys: rows are written from the order row in the statement that inserts it.
    member_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_pk: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    program_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    available_at: Mapped[datetime]
    # The order's pending ``order`` entry (none when it earned no points), so the release
    # need not look it up in the ledger.
    entry_id: Mapped[int | None] = mapped_column(BigInteger)


class Refund(Base):
    __tablename__ = "refunds"
    __table_args__ = (
        UniqueConstraint("program_id", "refund_id"),
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("ix_refunds_order_pk", "order_pk"),
        ForeignKeyConstraint(
            ["order_pk", "program_id"], ["orders.id", "orders.program_id"], ondelete="CASCADE"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    program_id: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    order_pk: Mapped[int] = mapped_column(BigInteger)
    refund_id: Mapped[str] = mapped_column(String(128))
    amount: Mapped[int] = mapped_column(BigInteger)
    points_reversed: Mapped[int] = mapped_column(BigInteger)
    points_restored: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]


class PointRelease(Base):
    """The moment a pending entry became available. Append-only, like the entries: the entry
    keeps the status it was written with, and this row says it has since been released."""

    __tablename__ = "point_releases"

    # No foreign keys, like the other append-only ledger tables (docs/ledger.md): rows are
    # written by the release job from the entries it has just read under the member's lock.
    entry_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    program_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    member_id: Mapped[int] = mapped_column(BigInteger)
    released_at: Mapped[datetime]


class EarnRule(Base):
    """A campaign: extra points on orders that meet its conditions while it runs."""

    __tablename__ = "earn_rules"
    __table_args__ = (Index("ix_earn_rules_program_id_id", "program_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    program_id: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool]
    starts_at: Mapped[datetime | None]
    ends_at: Mapped[datetime | None]
    conditions: Mapped[dict[str, Any]] = mapped_column(JSONB)
    effect: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
