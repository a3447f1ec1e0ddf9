"""Checkout: holds, orders, refunds, pending-point releases and earn rules.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 07:49:50.157328
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "earn_rules",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("conditions", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("effect", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_earn_rules_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_earn_rules")),
    )
    op.create_index("ix_earn_rules_program_id_id", "earn_rules", ["program_id", "id"], unique=False)
    op.create_table(
        "holds",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.String(length=128), nullable=True),
        sa.Column("points_captured", sa.BigInteger(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('active', 'captured', 'released', 'expired')",
            name=op.f("ck_holds_status_known"),
        ),
        sa.CheckConstraint("points > 0", name=op.f("ck_holds_points_positive")),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_holds_member_id_members"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_holds_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holds")),
    )
    op.create_index(
        "ix_holds_active_expires_at",
        "holds",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_index(
        "ix_holds_active_member_id",
        "holds",
        ["member_id"],
        unique=False,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.String(length=128), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("items", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("points_earned", sa.BigInteger(), nullable=False),
        sa.Column("points_redeemed", sa.BigInteger(), nullable=False),
        sa.Column("breakdown", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("redeem_hold_id", sa.Uuid(), nullable=True),
        sa.Column("refunded_amount", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("points_reversed", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("points_restored", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("request_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'available')", name=op.f("ck_orders_status_known")
        ),
        sa.CheckConstraint("amount >= 0", name=op.f("ck_orders_amount_non_negative")),
        sa.CheckConstraint(
            "refunded_amount BETWEEN 0 AND amount", name=op.f("ck_orders_refunds_within_amount")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_orders_member_id_members"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_orders_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("program_id", "order_id", name=op.f("uq_orders_program_id_order_id")),
    )
    op.create_index(
        "ix_orders_member_id_occurred_at", "orders", ["member_id", "occurred_at"], unique=False
    )
    op.create_index(
        "ix_orders_pending_available_at",
        "orders",
        ["available_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "refunds",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("order_pk", sa.BigInteger(), nullable=False),
        sa.Column("refund_id", sa.String(length=128), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("points_reversed", sa.BigInteger(), nullable=False),
        sa.Column("points_restored", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_refunds_amount_positive")),
        sa.ForeignKeyConstraint(
            ["order_pk"], ["orders.id"], name=op.f("fk_refunds_order_pk_orders"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_refunds_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
        sa.UniqueConstraint(
            "program_id", "refund_id", name=op.f("uq_refunds_program_id_refund_id")
        ),
    )
    op.create_index("ix_refunds_order_pk", "refunds", ["order_pk"], unique=False)
    op.create_table(
        "point_releases",
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["point_entries.id"],
            name=op.f("fk_point_releases_entry_id_point_entries"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_point_releases_member_id_members"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_point_releases_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("entry_id", name=op.f("pk_point_releases")),
    )
    op.create_index(
        "ix_point_entries_program_id_order_id",
        "point_entries",
        ["program_id", "order_id"],
        unique=False,
        postgresql_where=sa.text("order_id IS NOT NULL"),
    )
    op.create_foreign_key(
        op.f("fk_point_entries_hold_id_holds"), "point_entries", "holds", ["hold_id"], ["id"]
    )


def downgrade() -> None:
    op.drop_constraint(op.f("fk_point_entries_hold_id_holds"), "point_entries", type_="foreignkey")
    op.drop_index(
        "ix_point_entries_program_id_order_id",
        table_name="point_entries",
        postgresql_where=sa.text("order_id IS NOT NULL"),
    )
    op.drop_table("point_releases")
    op.drop_index("ix_refunds_order_pk", table_name="refunds")
    op.drop_table("refunds")
    op.drop_index(
        "ix_orders_pending_available_at",
        table_name="orders",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index("ix_orders_member_id_occurred_at", table_name="orders")
    op.drop_table("orders")
    op.drop_index(
        "ix_holds_active_member_id",
        table_name="holds",
        postgresql_where=sa.text("status = 'active'"),
    )
    op.drop_index(
        "ix_holds_active_expires_at",
        table_name="holds",
        postgresql_where=sa.text("status = 'active'"),
    )
    op.drop_table("holds")
    op.drop_index("ix_earn_rules_program_id_id", table_name="earn_rules")
    op.drop_table("earn_rules")
