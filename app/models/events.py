"""The outbox: one row per state change, written in the same transaction as the change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Identity, Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class Event(Base):
    __tablename__ = "events"
    # The feed reads a program's events by (txid, id), the webhook fan-out all events by
    # (txid, id); the first index also serves any lookup by program.
    __table_args__ = (
        Index("ix_events_program_id_txid_id", "program_id", "txid", "id"),
        Index("ix_events_txid_id", "txid", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # Written inside the statements that change the ledger, from the same locked rows; no
    # foreign keys, like the ledger tables (docs/ledger.md).
    program_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    type: Mapped[str] = mapped_column(String(40))
    member_id: Mapped[int | None] = mapped_column(BigInteger)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime]
    # The id of the writing transaction. Ids are taken when a row is inserted, but rows become
    # visible when their transaction commits, so a reader that follows ``id`` alone can pass
    # a smaller id that commits later. Readers follow (txid, id) instead and stop below the
    # oldest transaction still running (see app/services/events/events.py).
    txid: Mapped[int] = mapped_column(
        BigInteger, server_default=text("(pg_current_xact_id())::text::bigint")
    )
