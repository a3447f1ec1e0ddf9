"""Imports: the ``imports`` table and its staging rows, and the ``import`` entry kind (an
opening balance, at most one per member).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS = ("earn", "order", "redeem", "refund", "restore", "adjust", "expire", "referral", "bonus")


def _kind_check(kinds: tuple[str, ...]) -> str:
    return "kind IN (" + ", ".join(f"'{kind}'" for kind in kinds) + ")"


def upgrade() -> None:
    op.create_table(
        "imports",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("rows_total", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("rows_done", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("created", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("updated", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("unchanged", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("rejected", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("applied_through", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("errors", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "type IN ('members', 'balances', 'orders')", name=op.f("ck_imports_type_known")
        ),
        sa.CheckConstraint(
            "status IN ('receiving', 'queued', 'running', 'done', 'failed')",
            name=op.f("ck_imports_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_imports_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imports")),
        sa.UniqueConstraint("program_id", "id", name=op.f("uq_imports_program_id_id")),
    )
    op.create_index(
        "ix_imports_unfinished",
        "imports",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.create_table(
        "import_rows",
        sa.Column("import_id", sa.Uuid(), nullable=False),
        sa.Column("line", sa.BigInteger(), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.Text(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(length=40), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["program_id", "import_id"],
            ["imports.program_id", "imports.id"],
            name="fk_import_rows_import",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("import_id", "line", name=op.f("pk_import_rows")),
    )
    op.drop_constraint(op.f("ck_point_entries_kind_known"), "point_entries", type_="check")
    op.create_check_constraint(
        op.f("ck_point_entries_kind_known"), "point_entries", _kind_check((*_KINDS, "import"))
    )
    op.create_index(
        "ix_point_entries_one_import",
        "point_entries",
        ["program_id", "member_id"],
        unique=True,
        postgresql_where=sa.text("kind = 'import'"),
    )


def downgrade() -> None:
    op.drop_index("ix_point_entries_one_import", table_name="point_entries")
    # Opening balances cannot be expressed without their kind: a downgrade with imported
    # balances in the ledger fails here rather than rewrite history.
    op.drop_constraint(op.f("ck_point_entries_kind_known"), "point_entries", type_="check")
    op.create_check_constraint(
        op.f("ck_point_entries_kind_known"), "point_entries", _kind_check(_KINDS)
    )
    op.drop_table("import_rows")
    op.drop_index("ix_imports_unfinished", table_name="imports")
    op.drop_table("imports")
