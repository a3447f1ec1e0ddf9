"""Imports: one row per uploaded file, and the staging rows its lines were parsed into.

An upload is parsed line by line as it streams in and copied into ``import_rows`` (the file
is never held whole in memory); the worker then applies the staged rows in short batches,
advancing ``applied_through`` in the same transaction as each batch, so a crash resumes
after the last committed batch and never applies a line twice
(app/services/imports/).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base

IMPORT_TYPES = ("members", "balances", "orders")
# ``receiving`` while the upload streams in (the client has no id yet); the contract's four
# statuses after that.
IMPORT_STATUSES = ("receiving", "queued", "running", "done", "failed")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Import(Base):
    __tablename__ = "imports"
    __table_args__ = (
        UniqueConstraint("program_id", "id"),
        CheckConstraint(_one_of("type", IMPORT_TYPES), name="type_known"),
        CheckConstraint(_one_of("status", IMPORT_STATUSES), name="status_known"),
        Index(
            "ix_imports_unfinished",
            "created_at",
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    program_id: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    type: Mapped[str] = mapped_column(String(16))
    dry_run: Mapped[bool]
    status: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(80))
    rows_total: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    rows_done: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    created: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    updated: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    unchanged: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    rejected: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    # The last line whose outcome is committed; the next batch starts after it.
    applied_through: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    # The first 100 rejected lines, kept when the import finishes (the staging rows go).
    errors: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    failure: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class ImportRow(Base):
    """One line of an uploaded file: its natural key and validated content, or why it was
    rejected."""

    __tablename__ = "import_rows"
    __table_args__ = (
        ForeignKeyConstraint(
            ["program_id", "import_id"],
            ["imports.program_id", "imports.id"],
            name="fk_import_rows_import",
            ondelete="CASCADE",
        ),
        # The rejected lines of an import, in order: the report's first errors and the
        # count at start read these few instead of every staged line.
        Index(
            "ix_import_rows_rejected",
            "program_id",
            "import_id",
            "line",
            postgresql_where=text("error_code IS NOT NULL"),
        ),
    )

    import_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    line: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    program_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    key: Mapped[str | None] = mapped_column(Text)
    # The validated line as JSON text (COPY in binary has no jsonb encoder; cast when read).
    payload: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(40))
    error_message: Mapped[str | None] = mapped_column(Text)
    # An order line's request hash, taken at upload (the worker then needs no Python for a
    # line that earns nothing); None for other types and for rows staged before 0018.
    request_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
