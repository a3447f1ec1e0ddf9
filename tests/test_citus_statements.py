"""On a Citus cluster, every hot statement runs on the one shard of its program.

Each statement of earn, redeem, the points read, a quote, an order (direct, after reading the
member, capturing a hold, with coupons, priced in it or not), a hold, its capture and release,
and a refund is explained on the cluster with representative parameters. Citus shows how it
will run a statement as ``Task Count: N`` lines, one per step: the statement itself, and each
CTE it runs as a step of its own (Citus runs an INSERT CTE that way). The test fails when any
step has more than one task, which is what a statement that lost its ``program_id`` filter, or
joins a tenant table on anything but it, turns into; or when Citus cannot plan the statement at
all.

Why EXPLAIN and not only the session's refusal of multi-task statements (conftest): the
refusal catches a statement only when a test happens to run it, while this pins every hot
statement, each of its forms, explicitly; and ``Task Count`` is what Citus itself reports
(``citus.explain_all_tasks`` is off, so one task is shown per step either way).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from app.clock import clock
from app.db import compiled
from app.services import idempotency
from app.services.checkout import earning, holds, orders
from app.services.ledger import accounts, balances, postings
from app.services.rewards import coupon_orders
from app.services.tiers import tier_evaluation
from tests.conftest import Program

pytestmark = pytest.mark.skipif(
    not os.environ.get("TEST_CITUS_DIR"),
    reason="no Citus cluster: start one with .ci/citus and set TEST_CITUS_DIR (see .ci/run)",
)

_TASK_COUNT = re.compile(r"Task Count: (\d+)")


def _hot_statements() -> dict[str, Any]:
    """Every form of every hot statement, by a name that says where it comes from."""
    found: dict[str, Any] = {
        "earn (credit)": postings._CREDIT[False],
        "earn (credit, with key)": postings._CREDIT[True],
        "redeem: lock the account": postings._LOCK_FOR_DEBIT,
        "redeem (debit)": postings._DEBIT[False],
        "redeem (debit, with key)": postings._DEBIT[True],
        "points read": balances._POINTS,
        "transactions read": balances._TRANSACTIONS,
        "idempotency: stored reply": idempotency._FIND,
        "order with coupons: the unlocked read": coupon_orders._READ_FOR_ORDER,
        "order: lock both members": orders.LOCK_IN_ORDER,
        "order: read back": orders._FIND_ORDER,
        "hold: lock its holder": accounts.LOCK_HOLDER_OF_HOLD,
        "hold: read": holds._READ_HOLD,
        "hold: get": holds._GET,
        "refund: lock the order's holder": accounts.LOCK_HOLDER_OF_ORDER,
        "refund: read the order": orders._READ_ORDER,
        "refund: stored refund": orders._FIND_REFUND,
        "tiers: evaluate members": tier_evaluation._APPLY,
        "quote/order: the member's earning context": earning._CONTEXT,
        "quote/order: the program's earning setup": earning._PROGRAM_EARNING,
        "members: lock in id order": accounts._LOCK_MANY,
    }
    for remember in (False, True):
        key = ", with key" if remember else ""
        found[f"order direct{key}"] = orders._CREATE_DIRECT[(remember, False)]
        found[f"order direct, with coupons{key}"] = orders._CREATE_DIRECT[(remember, True)]
        found[f"order direct, with coupons priced in it{key}"] = orders._CREATE_DIRECT_PRICED[
            remember
        ]
        found[f"hold{key}"] = holds._CREATE[remember]
        found[f"capture/release{key}"] = holds._CLOSE[remember]
        found[f"refund{key}"] = orders._REFUND[remember]
        for capture in (False, True):
            for coupons in (False, True):
                form = ", ".join(
                    part
                    for part, on in (("capturing a hold", capture), ("with coupons", coupons))
                    if on
                )
                found[f"order ({form or 'read member first'}){key}"] = orders._CREATE[
                    (capture, remember, coupons)
                ]
    return found


HOT_STATEMENTS = _hot_statements()


def _parameters(program_id: int, member_id: int) -> dict[str, Any]:
    """A value for every parameter name the hot statements use: the program's and member's
    real ids (what routing depends on), and plausible values of the right type for the rest."""
    now = clock.now()
    return {
        "program_id": program_id,
        "member": "m1",
        "member_id": member_id,
        "member_ids": [member_id],
        "points": 10,
        "earned": 10,
        "unredeemed": 0,
        "redeemed": 0,
        "kind": "earn",
        "reason": "statement test",
        "actor": "test",
        "redemption_id": None,
        "event_type": "points.earned",
        "now": now,
        "version": 1,
        "available": 0,
        "pending": 0,
        "held": 0,
        "idem_key": "statement-test",
        "idem_hash": b"hash",
        "idem_status": 201,
        "key": "statement-test",
        "order_id": "statement-test",
        "order_pk": 1,
        "amount": 1000,
        "currency": "CNY",
        "items": None,
        "occurred_at": now,
        "breakdown": "[]",
        "coupons": None,
        "request_hash": b"hash",
        "config_version": 1,
        "coupon_count": 0,
        "coupon_ids": [],
        "discounts": [],
        "codes": [],
        "rate_numerator": Decimal(1),
        "rate_denominator": Decimal(100),
        "hold_id": uuid.uuid4(),
        "ttl": None,
        "status": "released",
        "captured": 0,
        "refund_id": "statement-test",
        "reversed": 0,
        "restored": 0,
        "reversed_pending": 0,
        "reversed_available": 0,
        "before": 2**62,
        "limit": 10,
    }


@pytest.fixture
async def explain(program: Program, database_url: str) -> AsyncIterator[Any]:
    """EXPLAIN a statement on the cluster, with a program and member of its own, in a
    transaction that is rolled back; returns the plan's lines."""
    await program.member("m1", points=100)
    conn = await asyncpg.connect(database_url)
    await conn.execute("SET plan_cache_mode = force_custom_plan")
    # The session's database refuses multi-task statements (conftest), EXPLAIN included:
    # here the plan is what is examined.
    await conn.execute("SET citus.multi_task_query_log_level = off")
    member_id = await conn.fetchval(
        "SELECT id FROM members WHERE program_id = $1 AND external_id = 'm1'", program.id
    )
    values = _parameters(program.id, member_id)

    async def run(statement: Any) -> list[str]:
        sql, names = compiled(statement)
        missing = [name for name in names if name not in values]
        assert not missing, f"give the statement test a value for {missing}"
        transaction = conn.transaction()
        await transaction.start()
        try:
            rows = await conn.fetch("EXPLAIN " + sql, *[values[name] for name in names])
        finally:
            await transaction.rollback()
        return [row[0] for row in rows]

    try:
        yield run
    finally:
        await conn.close()


def multi_task_steps(plan: list[str]) -> list[str]:
    """The plan's steps that need more than one task (more than one shard)."""
    steps = []
    for line in plan:
        found = _TASK_COUNT.search(line)
        if found is not None and int(found[1]) > 1:
            steps.append(line.strip())
    return steps


class TestHotStatementsOnOneShard:
    @pytest.mark.parametrize("name", sorted(HOT_STATEMENTS))
    async def test_every_step_on_one_shard(self, explain: Any, name: str) -> None:
        plan = await explain(HOT_STATEMENTS[name])
        assert any(_TASK_COUNT.search(line) for line in plan), "\n".join(plan)
        assert multi_task_steps(plan) == [], "\n".join(plan)

    async def test_a_statement_without_the_program_is_caught(self, explain: Any) -> None:
        """The check can fail: reading accounts by member ids alone (as the members' lock
        did) needs every shard of the table."""
        plan = await explain("SELECT member_id FROM accounts WHERE member_id = ANY(:member_ids)")
        assert multi_task_steps(plan) != []
