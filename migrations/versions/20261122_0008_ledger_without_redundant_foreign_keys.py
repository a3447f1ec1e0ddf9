"""Drop the foreign keys of the append-only ledger and event tables.

Every row of point_entries, point_lots and events takes its program and member from the
member's locked account row in the same statement, and members and programs are never
deleted; each foreign-key check cost an extra lookup on every write (see docs/ledger.md).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 08:38:27.798541
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(op.f("fk_events_program_id_programs"), "events", type_="foreignkey")
    op.drop_constraint(op.f("fk_events_member_id_members"), "events", type_="foreignkey")
    op.drop_constraint(
        op.f("fk_point_entries_program_id_programs"), "point_entries", type_="foreignkey"
    )
    op.drop_constraint(
        op.f("fk_point_entries_member_id_members"), "point_entries", type_="foreignkey"
    )
    op.drop_constraint(op.f("fk_point_lots_program_id_programs"), "point_lots", type_="foreignkey")
    op.drop_constraint(op.f("fk_point_lots_member_id_members"), "point_lots", type_="foreignkey")
    op.drop_constraint(
        op.f("fk_point_lots_entry_id_point_entries"), "point_lots", type_="foreignkey"
    )


def downgrade() -> None:
    op.create_foreign_key(
        op.f("fk_point_lots_entry_id_point_entries"),
        "point_lots",
        "point_entries",
        ["entry_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_foreign_key(
        op.f("fk_point_lots_member_id_members"),
        "point_lots",
        "members",
        ["member_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_foreign_key(
        op.f("fk_point_lots_program_id_programs"),
        "point_lots",
        "programs",
        ["program_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_foreign_key(
        op.f("fk_point_entries_member_id_members"),
        "point_entries",
        "members",
        ["member_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_foreign_key(
        op.f("fk_point_entries_program_id_programs"),
        "point_entries",
        "programs",
        ["program_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_foreign_key(
        op.f("fk_events_member_id_members"),
        "events",
        "members",
        ["member_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_foreign_key(
        op.f("fk_events_program_id_programs"),
        "events",
        "programs",
        ["program_id"],
        ["id"],
        ondelete="CASCADE",
    )
