"""Programs (tenants) and their API keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class Program(Base):
    __tablename__ = "programs"
    __table_args__ = (
        CheckConstraint("pending_days BETWEEN 0 AND 365", name="pending_days_range"),
        CheckConstraint(
            "points_expiry_days IS NULL OR points_expiry_days BETWEEN 1 AND 3650",
            name="points_expiry_days_range",
        ),
        CheckConstraint("hold_ttl_seconds BETWEEN 1 AND 86400", name="hold_ttl_range"),
        CheckConstraint("earn_rate >= 0", name="earn_rate_non_negative"),
        CheckConstraint("birthday_bonus_points >= 0", name="birthday_bonus_non_negative"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    earn_rate: Mapped[Decimal] = mapped_column(Numeric(18, 6), server_default=text("1"))
    pending_days: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    points_expiry_days: Mapped[int | None] = mapped_column(Integer)
    hold_ttl_seconds: Mapped[int] = mapped_column(Integer, server_default=text("900"))
    timezone: Mapped[str] = mapped_column(String(64), server_default=text("'UTC'"))
    birthday_bonus_points: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    webhooks_allow_private_hosts: Mapped[bool] = mapped_column(
        Boolean, server_default=text("false")
    )
    referral: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_program_id_created_at", "program_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    # SHA-256 of the whole key; the key itself is shown once and never stored.
    key_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
