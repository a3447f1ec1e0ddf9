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


_ORDERS_AT_0009 = """
WITH program AS (
    INSERT INTO programs (name, currency, created_at, updated_at)
    VALUES ('shop', 'CNY', now(), now()) RETURNING id
), member AS (
    INSERT INTO members (program_id, external_id, created_at, updated_at)
    SELECT id, 'm1', now(), now() FROM program RETURNING id, program_id
), ordered AS (
    INSERT INTO orders (program_id, order_id, member_id, amount, currency, occurred_at,
                        points_earned, points_redeemed, breakdown, status, available_at,
                        request_hash, created_at)
    SELECT member.program_id, o.order_id, member.id, 100, 'CNY', now(), o.points, 0, '[]',
           o.status, now() + o.wait, '\\x00', now()
      FROM member CROSS JOIN (VALUES ('waiting', 'pending', interval '2 days', 0),
                                     ('due', 'pending', interval '-1 day', 1),
                                     ('released', 'available', interval '-3 days', 1))
                             AS o (order_id, status, wait, points)
    RETURNING *
)
INSERT INTO point_entries (program_id, member_id, kind, points, status, actor, order_id,
                           created_at)
SELECT program_id, member_id, 'order', points_earned, status, 'test', order_id, now()
  FROM ordered WHERE points_earned > 0
"""

# Each queued order with the kind of the entry its queue row names.
_QUEUED = """
SELECT o.order_id, e.kind
  FROM order_release_queue AS q
  JOIN orders AS o
    ON o.id = q.order_pk AND o.member_id = q.member_id AND o.program_id = q.program_id
   AND o.available_at = q.available_at
  LEFT JOIN point_entries AS e ON e.id = q.entry_id AND e.order_id = o.order_id
 ORDER BY q.available_at
"""

_QUEUE_GONE_INDEX_BACK = """
SELECT to_regclass('order_release_queue') IS NULL
   AND to_regclass('ix_orders_pending_available_at') IS NOT NULL
"""


class TestOrderReleaseQueueMigration:
    async def test_pending_orders_are_queued_and_the_downgrade_restores_the_index(
        self, pg_server: PgServer
    ) -> None:
        url = await pg_server.create_database("patron_migrations")
        engine = create_async_engine(db.to_async_url(url))
        try:
            await asyncio.to_thread(upgrade, url, "0009")
            async with engine.begin() as conn:
                await conn.execute(text(_ORDERS_AT_0009))
            await asyncio.to_thread(upgrade, url, "0010")
            async with engine.connect() as conn:
                queued = [tuple(row) for row in await conn.execute(text(_QUEUED))]
            assert queued == [("due", "order"), ("waiting", None)]
            await asyncio.to_thread(downgrade, url, "0009")
            async with engine.connect() as conn:
                assert (await conn.execute(text(_QUEUE_GONE_INDEX_BACK))).scalar() is True
        finally:
            await engine.dispose()
            await pg_server.drop_database(url)


# Every constraint, index and trigger of the schema, as PostgreSQL prints their definitions.
_SCHEMA_KEYS = """
SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid)
  FROM pg_trigger WHERE NOT tgisinternal
"""


class TestTenantKeysMigration:
    async def test_the_downgrade_restores_the_keys_it_rebuilt(self, pg_server: PgServer) -> None:
        """0015 rebuilds the keys of every tenant table, the rewards and campaigns tables of
        0012 and 0013 included; its downgrade gives back exactly what they had."""
        url = await pg_server.create_database("patron_migrations")
        engine = create_async_engine(db.to_async_url(url))

        async def keys() -> set[tuple[str, str, str]]:
            async with engine.connect() as conn:
                return {(a, b, c) for a, b, c in await conn.execute(text(_SCHEMA_KEYS))}

        try:
            await asyncio.to_thread(upgrade, url, "0013")
            before = await keys()
            await asyncio.to_thread(upgrade, url, "0015")
            rebuilt = before - await keys()
            await asyncio.to_thread(downgrade, url, "0013")
            after = await keys()
        finally:
            await engine.dispose()
            await pg_server.drop_database(url)
        assert {
            ("coupons", "pk_coupons", "PRIMARY KEY (id)"),
            (
                "campaign_targetings",
                "uq_campaign_targetings_campaign_id_member_id_run_number",
                "UNIQUE (campaign_id, member_id, run_number)",
            ),
            (
                "coupons",
                "fk_coupons_reward_id_rewards",
                "FOREIGN KEY (reward_id) REFERENCES rewards(id) ON DELETE SET NULL",
            ),
        } <= rebuilt
        assert after == before


# Two programs' events with txids out of id order; the fan-out had passed (txid 20, id 2).
_EVENTS_BEFORE_POSITIONS = """
WITH program AS (
    INSERT INTO programs (name, currency, created_at, updated_at)
    VALUES ('a', 'CNY', now(), now()), ('b', 'CNY', now(), now()) RETURNING id, name
), written AS (
    INSERT INTO events (id, program_id, type, data, created_at, txid)
    OVERRIDING SYSTEM VALUE
    SELECT e.id, program.id, 'member.created', '{}', now(), e.txid
      FROM (VALUES (1, 'a', 30), (2, 'a', 20), (3, 'b', 10), (4, 'a', 10), (5, 'b', 40))
           AS e (id, program, txid)
      JOIN program ON program.name = e.program
)
UPDATE webhook_fanout_cursor SET txid = 20, event_id = 2
"""
_POSITIONS = """
SELECT p.name, e.id, e.position
  FROM events AS e JOIN programs AS p ON p.id = e.program_id
 ORDER BY p.name, e.position
"""
_FANNED_OUT = """
SELECT p.name, s.fanned_out
  FROM event_streams AS s JOIN programs AS p ON p.id = s.program_id ORDER BY p.name
"""


class TestEventPositionsMigration:
    async def test_positions_follow_the_old_order_and_the_fan_out_keeps_its_place(
        self, pg_server: PgServer
    ) -> None:
        url = await pg_server.create_database("patron_migrations")
        engine = create_async_engine(db.to_async_url(url))
        try:
            await asyncio.to_thread(upgrade, url, "0016")
            async with engine.begin() as conn:
                await conn.execute(text(_EVENTS_BEFORE_POSITIONS))
            await asyncio.to_thread(upgrade, url, "0017")
            async with engine.connect() as conn:
                positions = [tuple(row) for row in await conn.execute(text(_POSITIONS))]
                fanned_out = [tuple(row) for row in await conn.execute(text(_FANNED_OUT))]
            # (txid, id) order within each program, numbered from 1.
            assert positions == [("a", 4, 1), ("a", 2, 2), ("a", 1, 3), ("b", 3, 1), ("b", 5, 2)]
            # Passed: a's ids 4 and 2, b's id 3.
            assert fanned_out == [("a", 2), ("b", 1)]
        finally:
            await engine.dispose()
            await pg_server.drop_database(url)
