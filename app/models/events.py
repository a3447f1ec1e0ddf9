"""The outbox: one row per state change, written in the same transaction as the change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Identity, Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class Event(Base):
    __tablename__ = "events"
    # The feed and the fan-out read a program's events by position; the partial index finds
    # the ones still waiting for a position, which are few (app/services/events/positions.py).
    __table_args__ = (
        Index("ix_events_program_id_position", "program_id", "position", unique=True),
        Index(
            "ix_events_unpositioned",
            "program_id",
            "id",
            postgresql_where=text("position IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # Written inside the statements that change the ledger, from the same locked rows; no
    # foreign keys, like the ledger tables (docs/ledger.md).
    program_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    type: Mapped[str] = mapped_column(String(40))
    member_id: Mapped[int | None] = mapped_column(BigInteger)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime]
    # The event's place in its program's feed, 1, 2, 3, ...: null when written, handed out
    # once the writing transaction has committed. Ids are taken at insert but rows appear at
    # commit, in any order, so ``id`` alone cannot be followed without skipping a late commit.
    position: Mapped[int | None] = mapped_column(BigInteger)


class EventStream(Base):
    """One row per program: its lock serialises handing out feed positions, and it records
    how far the webhook fan-out has got in the program's feed."""

    __tablename__ = "event_streams"

    program_id: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    # Every event at or below this position has its deliveries created.
    fanned_out: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
