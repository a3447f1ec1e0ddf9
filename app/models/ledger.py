"""The append-only ledger: signed point entries, and the lots that positive entries create."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKeyConstraint,
    Identity,
    Index,
    String,
    Text,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base

ENTRY_KINDS = (
    "earn",
    "order",
    "redeem",
    "refund",
    "restore",
    "adjust",
    "expire",
    "referral",
    "bonus",
    "import",
)
_KIND_LIST = ", ".join(f"'{kind}'" for kind in ENTRY_KINDS)


class PointEntry(Base):
    """One signed change to a member's points. Never updated, never deleted."""

    __tablename__ = "point_entries"
    __table_args__ = (
        CheckConstraint(f"kind IN ({_KIND_LIST})", name="kind_known"),
        CheckConstraint("status IN ('available', 'pending')", name="status_known"),
        CheckConstraint("points <> 0", name="points_non_zero"),
        Index("ix_point_entries_member_id_id", "member_id", "id"),
        Index(
            "ix_point_entries_program_id_order_id",
            "program_id",
            "order_id",
            postgresql_where=text("order_id IS NOT NULL"),
        ),
        Index(
            "ix_point_entries_redemption_id",
            "redemption_id",
            postgresql_where=text("redemption_id IS NOT NULL"),
        ),
        ForeignKeyConstraint(["hold_id", "program_id"], ["holds.id", "holds.program_id"]),
        ForeignKeyConstraint(
            ["referral_id", "program_id"], ["referrals.id", "referrals.program_id"]
        ),
        # An opening balance is imported once per member (app/services/ledger/imports.py).
        Index(
            "ix_point_entries_one_import",
            "program_id",
            "member_id",
            unique=True,
            postgresql_where=text("kind = 'import'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # No foreign keys on the hot ledger tables (see docs/ledger.md, "Foreign keys"): every
    # row takes these ids from the member's locked account row in the same statement.
    program_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    member_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    points: Mapped[int] = mapped_column(BigInteger)
    # The status the entry was written with; a pending entry that later became available
    # is recorded in a separate release row, so the entry itself stays untouched.
    status: Mapped[str] = mapped_column(String(16), server_default=text("'available'"))
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(80))
    order_id: Mapped[str | None] = mapped_column(String(128))
    hold_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    referral_id: Mapped[int | None] = mapped_column(BigInteger)
    # The campaign whose bonus this entry is (campaign_targetings keeps the details).
    campaign_id: Mapped[int | None] = mapped_column(BigInteger)
    # The reward redemption a ``redeem`` (or, after a void, ``restore``) entry belongs to.
    redemption_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime]
    available_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]


class PointLot(Base):
    """What is left to spend of one positive entry; spent soonest-expiring first."""

    __tablename__ = "point_lots"
    __table_args__ = (
        CheckConstraint("remaining >= 0 AND remaining <= points", name="remaining_in_range"),
        Index(
            "ix_point_lots_spendable",
            "member_id",
            "expires_at",
            "id",
            postgresql_where=text("remaining > 0"),
        ),
        Index("ix_point_lots_expiring", "expires_at", postgresql_where=text("remaining > 0")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    program_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    member_id: Mapped[int] = mapped_column(BigInteger)
    entry_id: Mapped[int] = mapped_column(BigInteger)
    points: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
