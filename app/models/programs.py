"""Programs (tenants) and their API keys."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
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
        CheckConstraint("lifecycle_mature_days BETWEEN 1 AND 3650", name="lifecycle_mature_range"),
        CheckConstraint("lifecycle_churn_days BETWEEN 1 AND 3650", name="lifecycle_churn_range"),
        CheckConstraint(
            "lifecycle_churn_interval_multiple BETWEEN 1 AND 100",
            name="lifecycle_churn_multiple_range",
        ),
        CheckConstraint("point_value_minor >= 0", name="point_value_non_negative"),
        CheckConstraint("tier_metric IN ('points', 'spend')", name="tier_metric_known"),
        CheckConstraint(
            "tier_window_days IS NULL OR tier_window_days BETWEEN 1 AND 3650",
            name="tier_window_range",
        ),
        CheckConstraint("tier_grace_days BETWEEN 0 AND 3650", name="tier_grace_range"),
        CheckConstraint(
            "expiry_reminder_days IS NULL OR expiry_reminder_days BETWEEN 1 AND 365",
            name="expiry_reminder_days_range",
        ),
        CheckConstraint(
            "birthday_reminder_days IS NULL OR birthday_reminder_days BETWEEN 0 AND 60",
            name="birthday_reminder_days_range",
        ),
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
    # Insights (docs/insights.md): a repeat customer is "mature" once their first order is this
    # many days old; "churned" after this many days without an order, or after this multiple
    # of their own average interval between orders when that is longer.
    lifecycle_mature_days: Mapped[int] = mapped_column(Integer, server_default=text("365"))
    lifecycle_churn_days: Mapped[int] = mapped_column(Integer, server_default=text("180"))
    lifecycle_churn_interval_multiple: Mapped[int] = mapped_column(
        Integer, server_default=text("3")
    )
    # What one point is worth in minor currency units, for the points liability.
    point_value_minor: Mapped[Decimal] = mapped_column(Numeric(18, 6), server_default=text("1"))
    # Tier policy: what qualifies ('points' or 'spend'), over how many days (NULL: lifetime),
    # and how long a member keeps a tier after falling below its threshold.
    tier_metric: Mapped[str] = mapped_column(String(8), server_default=text("'points'"))
    tier_window_days: Mapped[int | None] = mapped_column(Integer)
    tier_grace_days: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # Set when tiers or the policy changed and members still need re-evaluating (in the
    # background for large programs); the cursor makes that work resumable.
    tiers_dirty_since: Mapped[datetime | None]
    tiers_reevaluated_through: Mapped[int | None] = mapped_column(BigInteger)
    # The last local date whose birthdays have been given their bonus.
    birthday_bonus_through: Mapped[date | None] = mapped_column(Date)
    # Changes whenever what an order earns could change: currency, earn rate, time zone, any
    # earn rule or tier (kept by triggers, migration 0011). The checkout's cache checks it.
    config_version: Mapped[int] = mapped_column(BigInteger, server_default=text("1"))
    # Reminder events (docs/campaigns.md): how many days ahead members hear that points
    # expire or that their birthday comes (NULL: off), and when reminders were last looked for.
    expiry_reminder_days: Mapped[int | None] = mapped_column(Integer, server_default=text("14"))
    birthday_reminder_days: Mapped[int | None] = mapped_column(Integer, server_default=text("7"))
    reminders_checked_at: Mapped[datetime | None]
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
