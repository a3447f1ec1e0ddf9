"""Keys that sign member tokens (the tokens themselves are stateless).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 08:23:08.739452
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "member_token_keys",
        sa.Column("kid", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("secret", sa.LargeBinary(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_member_token_keys")),
    )


def downgrade() -> None:
    op.drop_table("member_token_keys")
