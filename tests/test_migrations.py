"""The schema comes from the migrations, and the migrations match the models."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app import db
from app.migrate import downgrade, head_revision, upgrade
from app.models import Base
from tests.conftest import PgServer


def _drift(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


class TestModelsMatchMigrations:
    async def test_no_drift(self, database_url: str) -> None:
        engine = create_async_engine(db.to_async_url(database_url))
        try:
            async with engine.connect() as conn:
                differences = await conn.run_sync(_drift)
        finally:
            await engine.dispose()
        assert differences == [], f"models and migrations differ: {differences}"


class TestDowngradeAndUpgrade:
    async def test_round_trip(self, pg_server: PgServer) -> None:
        url = await pg_server.create_database("patron_migrations")
        try:
            await asyncio.to_thread(upgrade, url)
            await asyncio.to_thread(downgrade, url, "base")
            engine = create_async_engine(db.to_async_url(url))
            async with engine.connect() as conn:
                tables = (
                    await conn.execute(
                        text(
                            "SELECT count(*) FROM information_schema.tables "
                            "WHERE table_schema = 'public' AND table_name <> 'alembic_version'"
                        )
                    )
                ).scalar()
            assert tables == 0
            await asyncio.to_thread(upgrade, url)
            async with engine.connect() as conn:
                version = (
                    await conn.execute(text("SELECT version_num FROM alembic_version"))
                ).scalar()
            await engine.dispose()
            assert version == head_revision()
        finally:
            await pg_server.drop_database(url)
