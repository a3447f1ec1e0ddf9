"""Two workers and an on-demand call running one campaign at once, while members earn: each
member is targeted once, each treated member gets one bonus; the audit runs after."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

from app.clock import clock
from app.services.campaigns import running
from app.worker import run_job_until_done
from tests.campaign_support import add_members_in_bulk, create, targetings
from tests.conftest import Program
from tests.insights_support import rows

NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)


class TestConcurrentRuns:
    async def test_each_member_once(self, program: Program) -> None:
        clock.freeze(NOW)
        await add_members_in_bulk(program.id, 2_000)
        campaign = await create(program, action={"bonus_points": 7}, holdout_percent=10)

        async def worker() -> int:
            async def batch(now: datetime) -> int:
                return await running.run_due_campaigns(now, batch_size=50)

            return await run_job_until_done("run_campaigns", batch, NOW)

        async def on_demand() -> int:
            result = await running.run_campaign_now(program.id, campaign["id"], batch_size=70)
            return result.targeted

        async def checkout_traffic() -> None:
            for n in range(1, 2_000, 97):
                response = await program.post(
                    f"/v1/members/bulk-{n}/points/earn", json={"points": 3, "reason": "buy"}
                )
                assert response.status_code == 201, response.text

        await asyncio.gather(worker(), worker(), on_demand(), checkout_traffic())

        found = await targetings(program.id, campaign["id"])
        per_member = Counter(row.member_id for row in found)
        assert len(per_member) == 2_000
        assert set(per_member.values()) == {1}
        treated = sum(1 for row in found if row.group == "treated")
        bonuses = await rows(
            "SELECT member_id FROM point_entries WHERE program_id = :p AND campaign_id = :c",
            p=program.id,
            c=campaign["id"],
        )
        assert len(bonuses) == treated
        assert len({row.member_id for row in bonuses}) == treated
        events = await rows(
            "SELECT count(*) AS n FROM events WHERE program_id = :p AND type = 'campaign.targeted'",
            p=program.id,
        )
        assert events[0].n == 2_000
