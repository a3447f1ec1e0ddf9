"""Campaigns: the campaigns, the record of every member each run targeted (unique per
campaign, member and run), ``point_entries.campaign_id`` for campaign bonuses, and the
reminder settings of programs with the reminders already sent.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("audience", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("bonus_points", sa.BigInteger(), nullable=True),
        sa.Column("reward_id", sa.BigInteger(), nullable=True),
        sa.Column("notify_only", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("holdout_percent", sa.SmallInteger(), nullable=False),
        sa.Column("cooldown_days", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("run_number", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("run_cursor", sa.BigInteger(), nullable=True),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "bonus_points IS NULL OR bonus_points BETWEEN 1 AND 1000000000",
            name=op.f("ck_campaigns_bonus_points_range"),
        ),
        sa.CheckConstraint(
            "cooldown_days BETWEEN 0 AND 3650", name=op.f("ck_campaigns_cooldown_days_range")
        ),
        sa.CheckConstraint(
            "holdout_percent BETWEEN 0 AND 50", name=op.f("ck_campaigns_holdout_percent_range")
        ),
        sa.CheckConstraint(
            "num_nonnulls(bonus_points, reward_id, nullif(notify_only, false)) = 1",
            name=op.f("ck_campaigns_one_action"),
        ),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_campaigns_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
    )
    op.create_index("ix_campaigns_program_id_id", "campaigns", ["program_id", "id"], unique=False)
    op.create_table(
        "birthday_reminders",
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("birthday_on", sa.Date(), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_birthday_reminders_member_id_members"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_birthday_reminders_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("member_id", "birthday_on", name=op.f("pk_birthday_reminders")),
    )
    op.create_table(
        "campaign_targetings",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("campaign_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("run_number", sa.Integer(), nullable=False),
        sa.Column("group", sa.String(length=8), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=True),
        sa.Column("entry_id", sa.BigInteger(), nullable=True),
        sa.Column("coupon_code", sa.String(length=12), nullable=True),
        sa.Column("targeted_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "\"group\" IN ('treated', 'holdout')", name=op.f("ck_campaign_targetings_group_known")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_targetings")),
        sa.UniqueConstraint(
            "campaign_id",
            "member_id",
            "run_number",
            name=op.f("uq_campaign_targetings_campaign_id_member_id_run_number"),
        ),
    )
    op.create_index(
        "ix_campaign_targetings_program_id_campaign_id",
        "campaign_targetings",
        ["program_id", "campaign_id"],
        unique=False,
    )
    op.create_table(
        "points_expiring_reminders",
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_points_expiring_reminders_member_id_members"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_points_expiring_reminders_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "member_id", "expires_at", name=op.f("pk_points_expiring_reminders")
        ),
    )
    op.add_column("point_entries", sa.Column("campaign_id", sa.BigInteger(), nullable=True))
    op.add_column(
        "programs",
        sa.Column(
            "expiry_reminder_days", sa.Integer(), server_default=sa.text("14"), nullable=True
        ),
    )
    op.add_column(
        "programs",
        sa.Column(
            "birthday_reminder_days", sa.Integer(), server_default=sa.text("7"), nullable=True
        ),
    )
    op.add_column(
        "programs", sa.Column("reminders_checked_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(
        "ix_coupons_program_id_campaign_id",
        "coupons",
        ["program_id", "campaign_id"],
        unique=False,
        postgresql_where=sa.text("campaign_id IS NOT NULL"),
    )
    op.create_check_constraint(
        op.f("ck_programs_expiry_reminder_days_range"),
        "programs",
        "expiry_reminder_days IS NULL OR expiry_reminder_days BETWEEN 1 AND 365",
    )
    op.create_check_constraint(
        op.f("ck_programs_birthday_reminder_days_range"),
        "programs",
        "birthday_reminder_days IS NULL OR birthday_reminder_days BETWEEN 0 AND 60",
    )


def downgrade() -> None:
    op.drop_index("ix_coupons_program_id_campaign_id", table_name="coupons")
    op.drop_constraint(op.f("ck_programs_birthday_reminder_days_range"), "programs")
    op.drop_constraint(op.f("ck_programs_expiry_reminder_days_range"), "programs")
    op.drop_column("programs", "reminders_checked_at")
    op.drop_column("programs", "birthday_reminder_days")
    op.drop_column("programs", "expiry_reminder_days")
    op.drop_column("point_entries", "campaign_id")
    op.drop_table("points_expiring_reminders")
    op.drop_index("ix_campaign_targetings_program_id_campaign_id", table_name="campaign_targetings")
    op.drop_table("campaign_targetings")
    op.drop_table("birthday_reminders")
    op.drop_index("ix_campaigns_program_id_id", table_name="campaigns")
    op.drop_table("campaigns")
