"""An order line's request hash is taken when the line is staged; rejected lines are indexed.

The upload already holds each order line as the validated model; hashing it there (the API's
own request hash, which decides ``unchanged`` against ``order_conflict``) lets the worker
apply a batch of orders that earn nothing entirely in SQL, without decoding a line in Python.
Rows staged before this column existed have none; the worker hashes those itself.

The report of a running import (``GET /v1/imports/{id}``) reads its first rejected lines, and
the worker counts them at start: without an index each read scanned every staged line of the
file, 10,000,000 of them for a large orders file, on every poll. The partial index holds only
the rejected lines.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("import_rows", sa.Column("request_hash", sa.LargeBinary(), nullable=True))
    op.create_index(
        "ix_import_rows_rejected",
        "import_rows",
        ["program_id", "import_id", "line"],
        unique=False,
        postgresql_where=sa.text("error_code IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_import_rows_rejected", table_name="import_rows")
    op.drop_column("import_rows", "request_hash")
