"""Events are ordered by a per-program position instead of their transaction's id.

``pg_current_xact_id()`` and ``pg_current_snapshot()`` are node-local under Citus, so the
(txid, id) order and the settled horizon computed from them do not hold on a cluster. An
event is now written without a position; the feed and the webhook fan-out hand out the
program's next positions, under the program's ``event_streams`` row lock, to the events that
have committed and have none yet (app/services/events/positions.py, docs/decisions.md).

Existing events get positions in their old (txid, id) order, so a reader's cursor and the
fan-out continue where they were: the fan-out's single (txid, event id) cursor becomes each
program's ``fanned_out`` position, and an endpoint's ``starts_at_txid`` the position it starts
after. ``webhook_fanout_cursor`` and the txid column go, so nothing depends on them.

The backfill rewrites every event row under an exclusive lock on events; on a large database
run it in a maintenance window.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 20:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_streams",
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("fanned_out", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_event_streams_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("program_id", name=op.f("pk_event_streams")),
    )
    op.add_column("events", sa.Column("position", sa.BigInteger(), nullable=True))
    op.execute(
        """
        UPDATE events AS e SET position = n.position
          FROM (SELECT id, program_id,
                       row_number() OVER (PARTITION BY program_id ORDER BY txid, id) AS position
                  FROM events) AS n
         WHERE e.id = n.id AND e.program_id = n.program_id
        """
    )
    op.create_index(
        "ix_events_program_id_position", "events", ["program_id", "position"], unique=True
    )
    op.create_index(
        "ix_events_unpositioned",
        "events",
        ["program_id", "id"],
        unique=False,
        postgresql_where=sa.text("position IS NULL"),
    )
    # The fan-out had passed every event up to its cursor, in (txid, id) order: in each
    # program that is a prefix of the positions just given.
    op.execute(
        """
        INSERT INTO event_streams (program_id, fanned_out)
        SELECT p.id, COALESCE((SELECT max(e.position) FROM events AS e, webhook_fanout_cursor AS c
                                WHERE e.program_id = p.id
                                  AND (e.txid, e.id) <= (c.txid, c.event_id)), 0)
          FROM programs AS p
        """
    )
    op.add_column(
        "webhook_endpoints",
        sa.Column(
            "starts_after_position", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
    )
    op.execute(
        """
        UPDATE webhook_endpoints AS w
           SET starts_after_position = COALESCE(
                   (SELECT max(e.position) FROM events AS e
                     WHERE e.program_id = w.program_id AND e.txid < w.starts_at_txid), 0)
        """
    )
    op.alter_column("webhook_endpoints", "starts_after_position", server_default=None)
    op.drop_column("webhook_endpoints", "starts_at_txid")
    op.drop_index("ix_events_txid_id", table_name="events")
    op.drop_index("ix_events_program_id_txid_id", table_name="events")
    op.drop_column("events", "txid")
    op.drop_table("webhook_fanout_cursor")


def downgrade() -> None:
    op.create_table(
        "webhook_fanout_cursor",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_webhook_fanout_cursor_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_fanout_cursor")),
    )
    # Back on one node, positions stand in for transaction ids: they are below every real
    # transaction id handed out from now on, so the old events count as settled, in the
    # order they had. Events not positioned yet count as written by this transaction.
    op.add_column(
        "events", sa.Column("txid", sa.BigInteger(), server_default=sa.text("0"), nullable=False)
    )
    op.execute("UPDATE events SET txid = COALESCE(position, pg_current_xact_id()::text::bigint)")
    op.alter_column(
        "events", "txid", server_default=sa.text("(pg_current_xact_id())::text::bigint")
    )
    op.create_index(
        "ix_events_program_id_txid_id", "events", ["program_id", "txid", "id"], unique=False
    )
    op.create_index("ix_events_txid_id", "events", ["txid", "id"], unique=False)
    op.add_column(
        "webhook_endpoints",
        sa.Column("starts_at_txid", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.execute("UPDATE webhook_endpoints SET starts_at_txid = starts_after_position + 1")
    op.alter_column("webhook_endpoints", "starts_at_txid", server_default=None)
    op.drop_column("webhook_endpoints", "starts_after_position")
    # The single cursor can only be where every program's fan-out already was: the smallest.
    op.execute(
        """
        INSERT INTO webhook_fanout_cursor (id, txid, event_id, updated_at)
        SELECT 1, COALESCE(min(s.fanned_out), 0), 0, now() FROM event_streams AS s
        """
    )
    op.drop_index(
        "ix_events_unpositioned",
        table_name="events",
        postgresql_where=sa.text("position IS NULL"),
    )
    op.drop_index("ix_events_program_id_position", table_name="events")
    op.drop_column("events", "position")
    op.drop_table("event_streams")
