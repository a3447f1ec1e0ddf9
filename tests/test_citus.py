"""``patron migrate --citus`` on a real Citus cluster (``.ci/citus``): every tenant table
distributed by program_id in one co-location group, the shared tables as reference tables.

These run only when the session's database is on such a cluster (``TEST_CITUS_DIR``, set by
``.ci/run``); elsewhere they are skipped, saying so.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from app.citus import DISTRIBUTION_COLUMN, REFERENCE_TABLES, VERSION_TABLE, distribute
from app.migrate import head_revision
from app.models import Base
from tests.conftest import PgServer, Program, make_citus_cluster_database

pytestmark = pytest.mark.skipif(
    not os.environ.get("TEST_CITUS_DIR"),
    reason="no Citus cluster: start one with .ci/citus and set TEST_CITUS_DIR (see .ci/run)",
)

_PARTITIONS = """
SELECT logicalrelid::regclass::text AS table_name, partmethod::text,
       CASE WHEN partmethod = 'h' THEN column_to_column_name(logicalrelid, partkey) END AS column,
       colocationid
  FROM pg_dist_partition
"""


async def _partitions(url: str) -> dict[str, tuple[str, str | None, int]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(_PARTITIONS)
    finally:
        await conn.close()
    return {
        row["table_name"]: (row["partmethod"], row["column"], row["colocationid"]) for row in rows
    }


@pytest.fixture
async def cluster_database(pg_server: PgServer) -> AsyncIterator[str]:
    """A database of its own on the cluster, with nothing in it."""
    url = await pg_server.create_database("patron_citus")
    await make_citus_cluster_database(url, os.environ["TEST_CITUS_DIR"])
    yield url
    await pg_server.drop_database(url)


class TestMigrateCitus:
    async def test_distributes_every_table(self, cluster_database: str) -> None:
        env = {**os.environ, "DATABASE_URL": cluster_database}
        env.pop("PATRON_DATABASE_URL", None)
        env.pop("PATRON_MIGRATION_DATABASE_URL", None)
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "app.cli", "migrate", "--citus"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        partitions = await _partitions(cluster_database)
        tables = {table.name for table in Base.metadata.sorted_tables}
        assert set(partitions) == tables | {VERSION_TABLE}
        tenant = tables - REFERENCE_TABLES
        assert {partitions[name][:2] for name in tenant} == {("h", DISTRIBUTION_COLUMN)}
        assert len({partitions[name][2] for name in tenant}) == 1, "one co-location group"
        assert {partitions[name][0] for name in REFERENCE_TABLES | {VERSION_TABLE}} == {"n"}

    async def test_every_node_sees_the_schema_version(self, database_url: str) -> None:
        """A service may connect to any node (each holds Citus's metadata): each node reports
        the schema at head, so the service is ready there too."""
        folder = Path(os.environ["TEST_CITUS_DIR"])
        for node in ("worker1", "worker2"):
            port = (folder / f"{node}.port").read_text().strip()
            parts = urlsplit(database_url)
            node_url = urlunsplit((parts.scheme, f"postgres@127.0.0.1:{port}", parts.path, "", ""))
            conn = await asyncpg.connect(node_url)
            try:
                version = await conn.fetchval("SELECT version_num FROM alembic_version")
            finally:
                await conn.close()
            assert version == head_revision()

    async def test_running_it_again_changes_nothing(self, database_url: str) -> None:
        before = await _partitions(database_url)
        assert await distribute(database_url) == []
        assert await _partitions(database_url) == before


class TestHotPathsOnOneShard:
    """The session's database refuses any statement that needs more than one shard
    (conftest), so these fail when a hot statement stops routing to one."""

    async def test_earn_and_read_points(self, program: Program) -> None:
        await program.member("m1")
        earned = await program.post(
            "/v1/members/m1/points/earn",
            json={"points": 100, "reason": "welcome"},
            headers={"Idempotency-Key": "earn-m1"},
        )
        assert earned.status_code == 201, earned.text
        assert (await program.balance("m1"))["available"] == 100

    async def test_redeem_a_reward_and_void_its_coupon(self, program: Program) -> None:
        await program.member("m1", points=500)
        reward = (
            await program.post(
                "/v1/rewards",
                json={"name": "Tea", "kind": "fixed_discount", "value": 300, "points_cost": 200},
            )
        ).json()
        redeemed = await program.post(
            f"/v1/members/m1/rewards/{reward['id']}/redeem",
            headers={"Idempotency-Key": "redeem-m1"},
        )
        assert redeemed.status_code == 201, redeemed.text
        code = redeemed.json()["coupon"]["code"]
        listed = (await program.get("/v1/members/m1/coupons")).json()
        assert [c["code"] for c in listed["data"]] == [code]
        assert (await program.get(f"/v1/coupons/{code}")).json()["status"] == "active"
        voided = await program.post(f"/v1/coupons/{code}/void")
        assert voided.status_code == 200, voided.text
        assert (await program.balance("m1"))["available"] == 500
