"""Referrals, members' referral codes, and rate-limit windows.

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-22 08:22:11.867396
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_windows",
        sa.Column("subject", sa.String(length=120), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("subject", "window_start", name=op.f("pk_rate_limit_windows")),
    )
    op.create_index(
        "ix_rate_limit_windows_window_start", "rate_limit_windows", ["window_start"], unique=False
    )
    op.create_table(
        "referrals",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("referrer_id", sa.BigInteger(), nullable=False),
        sa.Column("referee_id", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("order_pk", sa.BigInteger(), nullable=True),
        sa.Column("referrer_points", sa.BigInteger(), nullable=True),
        sa.Column("referee_points", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("qualified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'qualified', 'rewarded', 'rejected', 'capped')",
            name=op.f("ck_referrals_status_known"),
        ),
        sa.CheckConstraint("referrer_id <> referee_id", name=op.f("ck_referrals_not_self")),
        sa.ForeignKeyConstraint(
            ["order_pk"],
            ["orders.id"],
            name=op.f("fk_referrals_order_pk_orders"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_referrals_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["referee_id"],
            ["members.id"],
            name=op.f("fk_referrals_referee_id_members"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["referrer_id"],
            ["members.id"],
            name=op.f("fk_referrals_referrer_id_members"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referrals")),
        sa.UniqueConstraint(
            "program_id", "referee_id", name=op.f("uq_referrals_program_id_referee_id")
        ),
    )
    op.create_index("ix_referrals_order_pk", "referrals", ["order_pk"], unique=False)
    op.create_index("ix_referrals_program_id_id", "referrals", ["program_id", "id"], unique=False)
    op.create_index("ix_referrals_referrer_id_id", "referrals", ["referrer_id", "id"], unique=False)
    op.add_column("members", sa.Column("referral_code", sa.String(length=8), nullable=True))
    op.add_column("point_entries", sa.Column("referral_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_point_entries_referral_id_referrals"),
        "point_entries",
        "referrals",
        ["referral_id"],
        ["id"],
    )
    op.create_unique_constraint(
        op.f("uq_members_program_id_referral_code"), "members", ["program_id", "referral_code"]
    )


def downgrade() -> None:
    op.drop_constraint(op.f("uq_members_program_id_referral_code"), "members", type_="unique")
    op.drop_column("members", "referral_code")
    op.drop_constraint(
        op.f("fk_point_entries_referral_id_referrals"), "point_entries", type_="foreignkey"
    )
    op.drop_column("point_entries", "referral_id")
    op.drop_index("ix_referrals_referrer_id_id", table_name="referrals")
    op.drop_index("ix_referrals_program_id_id", table_name="referrals")
    op.drop_index("ix_referrals_order_pk", table_name="referrals")
    op.drop_table("referrals")
    op.drop_index("ix_rate_limit_windows_window_start", table_name="rate_limit_windows")
    op.drop_table("rate_limit_windows")
