"""Rewards and coupons: the reward catalog, redemptions, coupons (from rewards and from
campaigns), and ``point_entries.redemption_id`` linking a reward's redeem and restore entries.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rewards",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("points_cost", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=True),
        sa.Column("min_order_amount", sa.BigInteger(), nullable=True),
        sa.Column("stock", sa.BigInteger(), nullable=True),
        sa.Column("per_member_limit", sa.Integer(), nullable=True),
        sa.Column("tiers", sa.ARRAY(sa.Text()), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("coupon_ttl_days", sa.Integer(), server_default=sa.text("90"), nullable=False),
        sa.Column("redeemed_count", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(kind = 'fixed_discount' AND value > 0) OR (kind = 'percent_discount' AND value BETWEEN 1 AND 100) OR (kind NOT IN ('fixed_discount', 'percent_discount') AND value IS NULL)",
            name=op.f("ck_rewards_value_fits_kind"),
        ),
        sa.CheckConstraint(
            "kind IN ('fixed_discount', 'percent_discount', 'free_shipping', 'gift', 'custom')",
            name=op.f("ck_rewards_kind_known"),
        ),
        sa.CheckConstraint("points_cost > 0", name=op.f("ck_rewards_points_cost_positive")),
        sa.CheckConstraint(
            "redeemed_count >= 0 AND (stock IS NULL OR redeemed_count <= stock)",
            name=op.f("ck_rewards_within_stock"),
        ),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_rewards_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rewards")),
    )
    op.create_index("ix_rewards_program_id_id", "rewards", ["program_id", "id"], unique=False)
    op.create_table(
        "reward_redemptions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("reward_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("points_spent", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_reward_redemptions_member_id_members"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_reward_redemptions_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reward_id"],
            ["rewards.id"],
            name=op.f("fk_reward_redemptions_reward_id_rewards"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reward_redemptions")),
    )
    op.create_index(
        "ix_reward_redemptions_member_id_reward_id",
        "reward_redemptions",
        ["member_id", "reward_id"],
        unique=False,
    )
    op.create_index(
        "ix_reward_redemptions_reward_id", "reward_redemptions", ["reward_id"], unique=False
    )
    op.create_table(
        "coupons",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=12), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("reward_id", sa.BigInteger(), nullable=True),
        sa.Column("redemption_id", sa.BigInteger(), nullable=True),
        sa.Column("campaign_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("min_order_amount", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("order_pk", sa.BigInteger(), nullable=True),
        sa.Column("order_id", sa.String(length=128), nullable=True),
        sa.Column("discount_amount", sa.BigInteger(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(source = 'reward' AND redemption_id IS NOT NULL) OR (source = 'campaign' AND redemption_id IS NULL)",
            name=op.f("ck_coupons_source_links"),
        ),
        sa.CheckConstraint(
            "(status = 'used') = (order_id IS NOT NULL)", name=op.f("ck_coupons_used_with_order")
        ),
        sa.CheckConstraint(
            "source IN ('reward', 'campaign')", name=op.f("ck_coupons_source_known")
        ),
        sa.CheckConstraint(
            "status IN ('active', 'used', 'void', 'expired')", name=op.f("ck_coupons_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_coupons_member_id_members"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["order_pk"],
            ["orders.id"],
            name=op.f("fk_coupons_order_pk_orders"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_coupons_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["redemption_id"],
            ["reward_redemptions.id"],
            name=op.f("fk_coupons_redemption_id_reward_redemptions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reward_id"],
            ["rewards.id"],
            name=op.f("fk_coupons_reward_id_rewards"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupons")),
        sa.UniqueConstraint("program_id", "code", name=op.f("uq_coupons_program_id_code")),
    )
    op.create_index(
        "ix_coupons_active_expires_at",
        "coupons",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_index("ix_coupons_member_id_id", "coupons", ["member_id", "id"], unique=False)
    op.create_index(
        "ix_coupons_order_pk",
        "coupons",
        ["order_pk"],
        unique=False,
        postgresql_where=sa.text("order_pk IS NOT NULL"),
    )
    op.add_column("point_entries", sa.Column("redemption_id", sa.BigInteger(), nullable=True))
    op.add_column(
        "orders",
        sa.Column("coupons", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.create_index(
        "ix_point_entries_redemption_id",
        "point_entries",
        ["redemption_id"],
        unique=False,
        postgresql_where=sa.text("redemption_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_column("orders", "coupons")
    op.drop_index(
        "ix_point_entries_redemption_id",
        table_name="point_entries",
        postgresql_where=sa.text("redemption_id IS NOT NULL"),
    )
    op.drop_column("point_entries", "redemption_id")
    op.drop_index(
        "ix_coupons_order_pk",
        table_name="coupons",
        postgresql_where=sa.text("order_pk IS NOT NULL"),
    )
    op.drop_index("ix_coupons_member_id_id", table_name="coupons")
    op.drop_index(
        "ix_coupons_active_expires_at",
        table_name="coupons",
        postgresql_where=sa.text("status = 'active'"),
    )
    op.drop_table("coupons")
    op.drop_index("ix_reward_redemptions_reward_id", table_name="reward_redemptions")
    op.drop_index("ix_reward_redemptions_member_id_reward_id", table_name="reward_redemptions")
    op.drop_table("reward_redemptions")
    op.drop_index("ix_rewards_program_id_id", table_name="rewards")
    op.drop_table("rewards")
