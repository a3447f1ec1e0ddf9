"""Settings, read from the environment (prefix ``PATRON_``) and an optional ``.env`` file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PATRON_", env_file=".env", extra="ignore")

    # Both the conventional DATABASE_URL and PATRON_DATABASE_URL are honoured; with neither,
    # the service starts an embedded PostgreSQL in ``data_dir``.
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("PATRON_DATABASE_URL", "DATABASE_URL")
    )
    data_dir: Path = Path(".patron-data")
    # The direct connection that migrations use (DDL, and Citus' distribution, must not go
    # through a transaction-mode pooler); unset, the same as ``database_url``.
    migration_database_url: str | None = None
    # "transaction" makes every connection safe behind PgBouncer in transaction mode: no
    # prepared statement outlives its transaction, settings are ``SET LOCAL`` in each one
    # (docs/deployment.md). "session" keeps prepared statements and session settings.
    database_pooling: Literal["session", "transaction"] = "session"
    # Plan each prepared statement once, generically (saves re-planning the multi-CTE ledger
    # statements). False on Citus, which routes a statement to its shard by the values of
    # its parameters and cannot plan several of ours without them.
    generic_plans: bool = True

    pool_size: int = Field(default=20, ge=1, le=500)
    pool_max_overflow: int = Field(default=10, ge=0, le=500)
    # How long a request waits for a free connection before failing.
    pool_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    statement_timeout_ms: int = Field(default=15_000, ge=100)
    # How long an API key lookup is cached in one process. Revocation through this process
    # clears its cache at once; other processes see it within this many seconds.
    api_key_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    # Idempotency keys are kept at least this long (api.md promises at least 24 h).
    idempotency_retention_hours: int = Field(default=48, ge=24)
    # Referral code lookups allowed per API key and minute (shared by all workers).
    referral_lookups_per_minute: int = Field(default=60, ge=1, le=100_000)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # An import upload (POST /v1/imports) streams into a staging table; api.md's limit.
    max_import_bytes: int = Field(default=512 * 1_048_576, ge=1024)
    # Lines an import applies per transaction: each holds its members' account locks.
    import_batch_size: int = Field(default=5000, ge=1, le=100_000)
    # Loops per member-batch job (release, expiry) that work off a backlog side by side, each
    # on its own share of the members (app/services/members/member_batches.py): one per core
    # PostgreSQL can give the worker.
    worker_lanes: int = Field(default=2, ge=1, le=16)
    log_level: str = "info"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
