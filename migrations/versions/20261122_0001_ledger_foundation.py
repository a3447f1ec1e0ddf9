"""ledger foundation

Revision ID: 0001
Revises:
Create Date: 2026-11-22 07:37:42.251496
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "programs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column(
            "earn_rate",
            sa.Numeric(precision=18, scale=6),
            server_default=sa.text("1"),
            nullable=False,
        ),
        sa.Column("pending_days", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("points_expiry_days", sa.Integer(), nullable=True),
        sa.Column("hold_ttl_seconds", sa.Integer(), server_default=sa.text("900"), nullable=False),
        sa.Column(
            "timezone", sa.String(length=64), server_default=sa.text("'UTC'"), nullable=False
        ),
        sa.Column(
            "birthday_bonus_points", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column(
            "webhooks_allow_private_hosts",
            sa.Boolean(),
            server_default=sa.text("false"),
            nullable=False,
        ),
        sa.Column(
            "referral",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "birthday_bonus_points >= 0", name=op.f("ck_programs_birthday_bonus_non_negative")
        ),
        sa.CheckConstraint("earn_rate >= 0", name=op.f("ck_programs_earn_rate_non_negative")),
        sa.CheckConstraint(
            "hold_ttl_seconds BETWEEN 1 AND 86400", name=op.f("ck_programs_hold_ttl_range")
        ),
        sa.CheckConstraint(
            "pending_days BETWEEN 0 AND 365", name=op.f("ck_programs_pending_days_range")
        ),
        sa.CheckConstraint(
            "points_expiry_days IS NULL OR points_expiry_days BETWEEN 1 AND 3650",
            name=op.f("ck_programs_points_expiry_days_range"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_programs")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_api_keys_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(
        "ix_api_keys_program_id_created_at", "api_keys", ["program_id", "created_at"], unique=False
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_idempotency_keys_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("program_id", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(
        "ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"], unique=False
    )
    op.create_table(
        "members",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("birthday", sa.Date(), nullable=True),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_members_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_members")),
        sa.UniqueConstraint(
            "program_id", "external_id", name=op.f("uq_members_program_id_external_id")
        ),
    )
    op.create_index("ix_members_program_id_id", "members", ["program_id", "id"], unique=False)
    op.create_table(
        "accounts",
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("available", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("pending", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("held", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("lifetime_earned", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "lifetime_redeemed", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column("version", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("held >= 0", name=op.f("ck_accounts_held_non_negative")),
        sa.CheckConstraint("pending >= 0", name=op.f("ck_accounts_pending_non_negative")),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_accounts_member_id_members"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_accounts_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_accounts")),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=True),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_events_member_id_members"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_events_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_program_id_id", "events", ["program_id", "id"], unique=False)
    op.create_table(
        "point_entries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column(
            "status", sa.String(length=16), server_default=sa.text("'available'"), nullable=False
        ),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("order_id", sa.String(length=128), nullable=True),
        sa.Column("hold_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "kind IN ('earn', 'order', 'redeem', 'refund', 'restore', 'adjust', 'expire', 'referral', 'bonus')",
            name=op.f("ck_point_entries_kind_known"),
        ),
        sa.CheckConstraint(
            "status IN ('available', 'pending')", name=op.f("ck_point_entries_status_known")
        ),
        sa.CheckConstraint("points <> 0", name=op.f("ck_point_entries_points_non_zero")),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_point_entries_member_id_members"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_point_entries_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_point_entries")),
    )
    op.create_index(
        "ix_point_entries_member_id_id", "point_entries", ["member_id", "id"], unique=False
    )
    op.create_table(
        "point_lots",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "remaining >= 0 AND remaining <= points", name=op.f("ck_point_lots_remaining_in_range")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["point_entries.id"],
            name=op.f("fk_point_lots_entry_id_point_entries"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_point_lots_member_id_members"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_point_lots_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_point_lots")),
    )
    op.create_index(
        "ix_point_lots_expiring",
        "point_lots",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("remaining > 0"),
    )
    op.create_index(
        "ix_point_lots_spendable",
        "point_lots",
        ["member_id", "expires_at", "id"],
        unique=False,
        postgresql_where=sa.text("remaining > 0"),
    )
    # The ledger is append-only: a correction is a new entry, never an edit. The database
    # enforces it, so no code path (or hand-written SQL) can rewrite history.
    op.execute(
        """
        CREATE FUNCTION patron_refuse_ledger_rewrite() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'point_entries is append-only: % refused', TG_OP
                USING ERRCODE = 'restrict_violation';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER point_entries_append_only BEFORE UPDATE OR DELETE ON point_entries "
        "FOR EACH ROW EXECUTE FUNCTION patron_refuse_ledger_rewrite()"
    )
    op.execute(
        "CREATE TRIGGER point_entries_no_truncate BEFORE TRUNCATE ON point_entries "
        "FOR EACH STATEMENT EXECUTE FUNCTION patron_refuse_ledger_rewrite()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER point_entries_no_truncate ON point_entries")
    op.execute("DROP TRIGGER point_entries_append_only ON point_entries")
    op.execute("DROP FUNCTION patron_refuse_ledger_rewrite()")
    op.drop_index(
        "ix_point_lots_spendable",
        table_name="point_lots",
        postgresql_where=sa.text("remaining > 0"),
    )
    op.drop_index(
        "ix_point_lots_expiring", table_name="point_lots", postgresql_where=sa.text("remaining > 0")
    )
    op.drop_table("point_lots")
    op.drop_index("ix_point_entries_member_id_id", table_name="point_entries")
    op.drop_table("point_entries")
    op.drop_index("ix_events_program_id_id", table_name="events")
    op.drop_table("events")
    op.drop_table("accounts")
    op.drop_index("ix_members_program_id_id", table_name="members")
    op.drop_table("members")
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_index("ix_api_keys_program_id_created_at", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("programs")
