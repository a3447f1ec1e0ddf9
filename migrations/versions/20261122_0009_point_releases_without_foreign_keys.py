"""Drop the foreign keys of point_releases, like the other append-only ledger tables (0008):
the release job writes its rows from entries it has just read under the member's lock, and
the checks cost a fifth of the release job's time.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22 09:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FOREIGN_KEYS = (
    ("fk_point_releases_entry_id_point_entries", "entry_id", "point_entries"),
    ("fk_point_releases_program_id_programs", "program_id", "programs"),
    ("fk_point_releases_member_id_members", "member_id", "members"),
)


def upgrade() -> None:
    for name, _, _ in _FOREIGN_KEYS:
        op.drop_constraint(name, "point_releases", type_="foreignkey")


def downgrade() -> None:
    for name, column, table in _FOREIGN_KEYS:
        op.create_foreign_key(name, "point_releases", table, [column], ["id"], ondelete="CASCADE")
