"""Wire models for imports and exports."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.schemas.common import Timestamp

ImportType = Literal["members", "balances", "orders"]
ImportStatus = Literal["queued", "running", "done", "failed"]
ExportFormat = Literal["csv", "jsonl"]


class ImportQueued(BaseModel):
    id: str
    type: ImportType
    status: Literal["queued"]
    dry_run: bool


class ImportError(BaseModel):
    line: int = Field(description="1-based line number in the uploaded file.")
    code: str = Field(
        description="`malformed_json`, `unknown_field`, `validation_error`, "
        "`unsupported_field`, `line_too_long`, `duplicate_key`, `member_not_found`, "
        "`member_erased`, `balance_conflict`, `already_expired`, `order_conflict`, "
        "`currency_mismatch`."
    )
    message: str


class ImportOut(BaseModel):
    id: str
    type: ImportType
    status: ImportStatus
    dry_run: bool
    rows_total: int = Field(description="Non-blank lines in the file.")
    rows_done: int
    created: int
    updated: int
    unchanged: int
    rejected: int
    errors: list[ImportError] = Field(description="The first 100 rejected lines.")
    failure: str | None = Field(description="Why a failed import stopped.")
    started_at: Timestamp | None
    finished_at: Timestamp | None
