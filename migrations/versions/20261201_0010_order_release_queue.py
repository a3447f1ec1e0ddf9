"""The release job's due-queue: one row per order whose points are still pending, naming
the order's pending entry, so that releasing an order reads no ledger rows.

The job used to find due orders through a partial index on ``orders`` (``WHERE status =
'pending'``), so releasing an order changed an indexed column: every release was a non-HOT
update that added an entry to each of the five other indexes of ``orders``. The queue takes
over that index's work; ``orders`` keeps ``status`` as before, now in no index, and gets
room on its pages (fillfactor 90) so that the release's update can stay on the page (HOT).
The fillfactor applies to pages written from now on; rows already stored move to roomier
pages as they are updated.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "order_release_queue",
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("order_pk", sa.BigInteger(), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("member_id", "order_pk", name=op.f("pk_order_release_queue")),
    )
    # Every order still pending waits in the queue, with its own pending entry, in the order
    # it becomes due.
    op.execute(
        """
        INSERT INTO order_release_queue (member_id, order_pk, program_id, available_at,
                                         entry_id)
        SELECT o.member_id, o.id, o.program_id, o.available_at, e.id
          FROM orders AS o
          LEFT JOIN point_entries AS e
            ON e.program_id = o.program_id AND e.order_id = o.order_id
           AND e.kind = 'order' AND e.status = 'pending'
         WHERE o.status = 'pending'
         ORDER BY o.available_at
        """
    )
    op.create_index(
        "ix_order_release_queue_available_at",
        "order_release_queue",
        ["available_at"],
        unique=False,
        postgresql_include=["member_id"],
    )
    op.drop_index(
        "ix_orders_pending_available_at",
        table_name="orders",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.execute("ALTER TABLE orders SET (fillfactor = 90)")


def downgrade() -> None:
    op.execute("ALTER TABLE orders RESET (fillfactor)")
    op.create_index(
        "ix_orders_pending_available_at",
        "orders",
        ["available_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    # orders.status stayed authoritative throughout, so the queue is dropped without a trace.
    op.drop_index(
        "ix_order_release_queue_available_at",
        table_name="order_release_queue",
        postgresql_include=["member_id"],
    )
    op.drop_table("order_release_queue")
