"""VIP tiers, tier history, tier policy on programs, birthday bonuses.

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-22 08:10:52.497308
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tiers",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("threshold", sa.BigInteger(), nullable=False),
        sa.Column("earn_multiplier", sa.Numeric(precision=6, scale=3), nullable=False),
        sa.Column("benefits", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "earn_multiplier BETWEEN 1 AND 10", name=op.f("ck_tiers_multiplier_range")
        ),
        sa.CheckConstraint("threshold >= 0", name=op.f("ck_tiers_threshold_non_negative")),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_tiers_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tiers")),
        sa.UniqueConstraint("program_id", "key", name=op.f("uq_tiers_program_id_key")),
        sa.UniqueConstraint("program_id", "threshold", name=op.f("uq_tiers_program_id_threshold")),
    )
    op.create_table(
        "tier_changes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("from_key", sa.String(length=32), nullable=True),
        sa.Column("to_key", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("qualifying_value", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_tier_changes_member_id_members"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_tier_changes_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tier_changes")),
    )
    op.create_index(
        "ix_tier_changes_member_id_id", "tier_changes", ["member_id", "id"], unique=False
    )
    op.create_table(
        "birthday_bonuses",
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["point_entries.id"],
            name=op.f("fk_birthday_bonuses_entry_id_point_entries"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_birthday_bonuses_member_id_members"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_birthday_bonuses_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("member_id", "year", name=op.f("pk_birthday_bonuses")),
    )
    op.add_column("accounts", sa.Column("tier_key", sa.String(length=32), nullable=True))
    op.add_column(
        "accounts", sa.Column("tier_below_since", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "accounts", sa.Column("tier_checked_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(
        "ix_accounts_program_id_tier_key", "accounts", ["program_id", "tier_key"], unique=False
    )
    op.create_foreign_key(
        "fk_accounts_tier",
        "accounts",
        "tiers",
        ["program_id", "tier_key"],
        ["program_id", "key"],
        onupdate="CASCADE",
    )
    op.add_column(
        "programs",
        sa.Column(
            "tier_metric", sa.String(length=8), server_default=sa.text("'points'"), nullable=False
        ),
    )
    op.add_column("programs", sa.Column("tier_window_days", sa.Integer(), nullable=True))
    op.add_column("programs", sa.Column("birthday_bonus_through", sa.Date(), nullable=True))
    op.add_column(
        "programs",
        sa.Column("tier_grace_days", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "programs", sa.Column("tiers_dirty_since", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "programs", sa.Column("tiers_reevaluated_through", sa.BigInteger(), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("programs", "tiers_reevaluated_through")
    op.drop_column("programs", "tiers_dirty_since")
    op.drop_column("programs", "tier_grace_days")
    op.drop_column("programs", "tier_window_days")
    op.drop_column("programs", "birthday_bonus_through")
    op.drop_column("programs", "tier_metric")
    op.drop_constraint("fk_accounts_tier", "accounts", type_="foreignkey")
    op.drop_index("ix_accounts_program_id_tier_key", table_name="accounts")
    op.drop_column("accounts", "tier_checked_at")
    op.drop_column("accounts", "tier_below_since")
    op.drop_column("accounts", "tier_key")
    op.drop_table("birthday_bonuses")
    op.drop_index("ix_tier_changes_member_id_id", table_name="tier_changes")
    op.drop_table("tier_changes")
    op.drop_table("tiers")
