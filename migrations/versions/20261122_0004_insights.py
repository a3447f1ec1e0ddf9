"""Insights: member segments and lifecycle, refresh times, feedback (NPS), lifecycle and
point-value settings on programs, and an index for period scans of orders.

Revision ID: 0004
Revises: 0005 (0005 was the head when this was written; the ids are labels, the chain is
what orders them)
Create Date: 2026-11-22 08:13:18.807352
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_PROGRAM_CHECKS = (
    ("lifecycle_mature_range", "lifecycle_mature_days BETWEEN 1 AND 3650"),
    ("lifecycle_churn_range", "lifecycle_churn_days BETWEEN 1 AND 3650"),
    ("lifecycle_churn_multiple_range", "lifecycle_churn_interval_multiple BETWEEN 1 AND 100"),
    ("point_value_non_negative", "point_value_minor >= 0"),
)


def upgrade() -> None:
    op.create_table(
        "insight_refreshes",
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("members", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_insight_refreshes_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("program_id", name=op.f("pk_insight_refreshes")),
    )
    op.create_table(
        "member_feedback",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("score", sa.SmallInteger(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("channel", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("score BETWEEN 0 AND 10", name=op.f("ck_member_feedback_score_range")),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_member_feedback_member_id_members"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_member_feedback_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_feedback")),
    )
    op.create_index(
        "ix_member_feedback_member_id_created_at",
        "member_feedback",
        ["member_id", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_member_feedback_program_id_created_at",
        "member_feedback",
        ["program_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "member_insights",
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("segment", sa.String(length=32), nullable=False),
        sa.Column("lifecycle", sa.String(length=16), nullable=False),
        sa.Column("recency_score", sa.SmallInteger(), nullable=True),
        sa.Column("frequency_score", sa.SmallInteger(), nullable=True),
        sa.Column("monetary_score", sa.SmallInteger(), nullable=True),
        sa.Column("orders_count", sa.Integer(), nullable=False),
        sa.Column("net_spend", sa.BigInteger(), nullable=False),
        sa.Column("first_order_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_order_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("churns_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "lifecycle IN ('prospect', 'new', 'growing', 'mature', 'churned')",
            name=op.f("ck_member_insights_lifecycle_known"),
        ),
        sa.CheckConstraint(
            "segment IN ('champions', 'loyal', 'potential_loyalists', 'new', 'promising', 'need_attention', 'at_risk', 'cant_lose', 'hibernating', 'lost', 'prospects')",
            name=op.f("ck_member_insights_segment_known"),
        ),
        sa.CheckConstraint(
            "(recency_score IS NULL AND frequency_score IS NULL AND monetary_score IS NULL) OR (recency_score BETWEEN 1 AND 5 AND frequency_score BETWEEN 1 AND 5 AND monetary_score BETWEEN 1 AND 5)",
            name=op.f("ck_member_insights_scores_in_range"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_member_insights_member_id_members"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_member_insights_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_member_insights")),
    )
    op.create_index(
        "ix_member_insights_program_id_lifecycle",
        "member_insights",
        ["program_id", "lifecycle", "member_id"],
        unique=False,
    )
    op.create_index(
        "ix_member_insights_program_id_segment",
        "member_insights",
        ["program_id", "segment", "member_id"],
        unique=False,
    )
    op.create_index(
        "ix_orders_program_id_occurred_at",
        "orders",
        ["program_id", "occurred_at"],
        unique=False,
        postgresql_include=["member_id", "amount", "refunded_amount"],
    )
    op.create_index(
        "ix_orders_program_id_member_id",
        "orders",
        ["program_id", "member_id"],
        unique=False,
        postgresql_include=["occurred_at", "amount", "refunded_amount"],
    )
    op.add_column(
        "programs",
        sa.Column(
            "lifecycle_mature_days", sa.Integer(), server_default=sa.text("365"), nullable=False
        ),
    )
    op.add_column(
        "programs",
        sa.Column(
            "lifecycle_churn_days", sa.Integer(), server_default=sa.text("180"), nullable=False
        ),
    )
    op.add_column(
        "programs",
        sa.Column(
            "lifecycle_churn_interval_multiple",
            sa.Integer(),
            server_default=sa.text("3"),
            nullable=False,
        ),
    )
    op.add_column(
        "programs",
        sa.Column(
            "point_value_minor",
            sa.Numeric(precision=18, scale=6),
            server_default=sa.text("1"),
            nullable=False,
        ),
    )
    for name, condition in _PROGRAM_CHECKS:
        op.create_check_constraint(op.f(f"ck_programs_{name}"), "programs", condition)


def downgrade() -> None:
    for name, _ in _PROGRAM_CHECKS:
        op.drop_constraint(op.f(f"ck_programs_{name}"), "programs", type_="check")
    op.drop_column("programs", "point_value_minor")
    op.drop_column("programs", "lifecycle_churn_interval_multiple")
    op.drop_column("programs", "lifecycle_churn_days")
    op.drop_column("programs", "lifecycle_mature_days")
    op.drop_index(
        "ix_orders_program_id_member_id",
        table_name="orders",
        postgresql_include=["occurred_at", "amount", "refunded_amount"],
    )
    op.drop_index(
        "ix_orders_program_id_occurred_at",
        table_name="orders",
        postgresql_include=["member_id", "amount", "refunded_amount"],
    )
    op.drop_index("ix_member_insights_program_id_segment", table_name="member_insights")
    op.drop_index("ix_member_insights_program_id_lifecycle", table_name="member_insights")
    op.drop_table("member_insights")
    op.drop_index("ix_member_feedback_program_id_created_at", table_name="member_feedback")
    op.drop_index("ix_member_feedback_member_id_created_at", table_name="member_feedback")
    op.drop_table("member_feedback")
    op.drop_table("insight_refreshes")
