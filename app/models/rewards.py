"""Rewards and coupons: the catalog a member spends points on, each redemption, and the
coupons that redemptions (and campaigns) issue."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base

REWARD_KINDS = ("fixed_discount", "percent_discount", "free_shipping", "gift", "custom")
COUPON_STATUSES = ("active", "used", "void", "expired")
COUPON_SOURCES = ("reward", "campaign")


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


class Reward(Base):
    """Something a member can buy with points. ``redeemed_count`` counts the redemptions that
    stand (not voided); the stock left is ``stock - redeemed_count``."""

    __tablename__ = "rewards"
    __table_args__ = (
        CheckConstraint(f"kind IN ({_quoted(REWARD_KINDS)})", name="kind_known"),
        CheckConstraint("points_cost > 0", name="points_cost_positive"),
        CheckConstraint(
            "(kind = 'fixed_discount' AND value > 0)"
            " OR (kind = 'percent_discount' AND value BETWEEN 1 AND 100)"
            " OR (kind NOT IN ('fixed_discount', 'percent_discount') AND value IS NULL)",
            name="value_fits_kind",
        ),
        CheckConstraint(
            "redeemed_count >= 0 AND (stock IS NULL OR redeemed_count <= stock)",
            name="within_stock",
        ),
        Index("ix_rewards_program_id_id", "program_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    program_id: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(32))
    points_cost: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[int | None] = mapped_column(BigInteger)
    min_order_amount: Mapped[int | None] = mapped_column(BigInteger)
    stock: Mapped[int | None] = mapped_column(BigInteger)
    per_member_limit: Mapped[int | None] = mapped_column(Integer)
    tiers: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    starts_at: Mapped[datetime | None]
    ends_at: Mapped[datetime | None]
    coupon_ttl_days: Mapped[int] = mapped_column(Integer, server_default=text("90"))
    redeemed_count: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class RewardRedemption(Base):
    """One member's purchase of a reward: the points it cost (a ``redeem`` entry carries this
    id) and the coupon it issued. ``voided_at`` is set when the coupon was voided and the
    points and stock went back (a ``restore`` entry carries this id too)."""

    __tablename__ = "reward_redemptions"
    __table_args__ = (
        Index("ix_reward_redemptions_member_id_reward_id", "member_id", "reward_id"),
        Index("ix_reward_redemptions_reward_id", "reward_id"),
        ForeignKeyConstraint(
            ["reward_id", "program_id"], ["rewards.id", "rewards.program_id"], ondelete="CASCADE"
        ),
        ForeignKeyConstraint(
            ["member_id", "program_id"], ["members.id", "members.program_id"], ondelete="CASCADE"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    program_id: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    reward_id: Mapped[int] = mapped_column(BigInteger)
    member_id: Mapped[int] = mapped_column(BigInteger)
    points_spent: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]
    voided_at: Mapped[datetime | None]


class Coupon(Base):
    """A code a checkout can use once. From a reward (bought with points: ``redemption_id``)
    or from a campaign (free: ``campaign_id``). The kind, value and minimum are copied from
    the reward when issued, so a later catalog edit never changes a coupon already held."""

    __tablename__ = "coupons"
    __table_args__ = (
        UniqueConstraint("program_id", "code"),
        CheckConstraint(f"status IN ({_quoted(COUPON_STATUSES)})", name="status_known"),
        CheckConstraint(f"source IN ({_quoted(COUPON_SOURCES)})", name="source_known"),
        CheckConstraint(
            "(source = 'reward' AND redemption_id IS NOT NULL)"
            " OR (source = 'campaign' AND redemption_id IS NULL)",
            name="source_links",
        ),
        CheckConstraint("(status = 'used') = (order_id IS NOT NULL)", name="used_with_order"),
        Index("ix_coupons_member_id_id", "member_id", "id"),
        Index("ix_coupons_order_pk", "order_pk", postgresql_where=text("order_pk IS NOT NULL")),
        Index(
            "ix_coupons_active_expires_at",
            "expires_at",
            postgresql_where=text("status = 'active'"),
        ),
        ForeignKeyConstraint(
            ["member_id", "program_id"], ["members.id", "members.program_id"], ondelete="CASCADE"
        ),
        # No ON DELETE SET NULL on the reward and the order: it would null program_id too, and
        # Citus refuses it. Neither is ever deleted but with its program (a reward's DELETE
        # deactivates it), which deletes its coupons as well.
        ForeignKeyConstraint(["reward_id", "program_id"], ["rewards.id", "rewards.program_id"]),
        ForeignKeyConstraint(
            ["redemption_id", "program_id"],
            ["reward_redemptions.id", "reward_redemptions.program_id"],
            ondelete="CASCADE",
        ),
        ForeignKeyConstraint(["order_pk", "program_id"], ["orders.id", "orders.program_id"]),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    program_id: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    # Upper-case Crockford base32; lookups normalise what the client sends.
    code: Mapped[str] = mapped_column(String(12))
    member_id: Mapped[int | None] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(16))
    reward_id: Mapped[int | None] = mapped_column(BigInteger)
    redemption_id: Mapped[int | None] = mapped_column(BigInteger)
    # The campaign's own id; the campaigns tables are not this package's to reference.
    campaign_id: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    value: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    min_order_amount: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    order_pk: Mapped[int | None] = mapped_column(BigInteger)
    order_id: Mapped[str | None] = mapped_column(String(128))
    discount_amount: Mapped[int | None] = mapped_column(BigInteger)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    voided_at: Mapped[datetime | None]
