"""The ledger's postings, called as the services that compose them call them (no HTTP),
each followed by the audit: every posting keeps the invariants of architecture.md.

Balances are read back from the account row and checked against what the posting should
have done; the audit then proves the row agrees with the entries, the holds and the lots.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from app.clock import clock
from app.errors import InsufficientPointsError, NotFoundError
from app.schemas.orders import OrderCreate
from app.services import ledger
from app.services.checkout import holds, orders
from app.services.ledger import expiry, pending
from app.services.ledger.audit import audit
from app.services.members.members import upsert_member
from app.services.programs.programs import create_program, update_program

START = datetime(2026, 5, 1, 9, tzinfo=UTC)
ACTOR = "test:postings"


@pytest.fixture
async def program_id(database_url: str) -> Any:
    program, _ = await create_program("Postings", "CNY")
    clock.freeze(START)
    yield program
    violations = await audit(program)
    assert not violations, violations


def posting(program_id: int, kind: str, points: int, member: str = "m1") -> ledger.Posting:
    event = {"earn": "points.earned", "redeem": "points.redeemed", "adjust": "points.adjusted"}
    return ledger.Posting(
        program_id=program_id,
        member=member,
        points=points,
        kind=kind,
        event_type=event[kind],
        actor=ACTOR,
        reason="test",
    )


async def balance(program_id: int, member: str = "m1") -> tuple[int, int, int]:
    points = await ledger.get_points(program_id, member)
    return points["available"], points["pending"], points["held"]


async def new_member(program_id: int, member: str = "m1", points: int = 0) -> None:
    await upsert_member(program_id, member, {})
    if points:
        await ledger.credit(posting(program_id, "earn", points, member), None)


def order(order_id: str, amount: int, **extra: Any) -> OrderCreate:
    return OrderCreate.model_validate(
        {"order_id": order_id, "member_id": "m1", "amount": amount, "currency": "CNY", **extra}
    )


class TestOpenAccount:
    async def test_a_new_member_has_an_empty_account(self, program_id: int) -> None:
        await new_member(program_id)
        assert await balance(program_id) == (0, 0, 0)


class TestCreditAndDebit:
    async def test_credit_then_debit(self, program_id: int) -> None:
        await new_member(program_id, points=300)
        reply = await ledger.debit(posting(program_id, "redeem", 120), None)
        assert reply.created and not reply.replayed
        assert await balance(program_id) == (180, 0, 0)

    async def test_debit_beyond_available_is_refused_and_changes_nothing(
        self, program_id: int
    ) -> None:
        await new_member(program_id, points=100)
        with pytest.raises(InsufficientPointsError):
            await ledger.debit(posting(program_id, "redeem", 101), None)
        assert await balance(program_id) == (100, 0, 0)

    async def test_unknown_member(self, program_id: int) -> None:
        with pytest.raises(NotFoundError):
            await ledger.credit(posting(program_id, "earn", 5, member="ghost"), None)


class TestHoldPostings:
    async def test_reserve_then_settle_part(self, program_id: int) -> None:
        await new_member(program_id, points=500)
        created = await holds.create_hold(program_id, "m1", 200, None, None, None)
        hold_id = _field(created.body, "hold_id")
        assert await balance(program_id) == (300, 0, 200)
        await holds.capture_hold(program_id, hold_id, 150, ACTOR, None)
        assert await balance(program_id) == (350, 0, 0)

    async def test_expired_holds_give_their_points_back(self, program_id: int) -> None:
        await new_member(program_id, points=500)
        await holds.create_hold(program_id, "m1", 200, None, 60, None)
        clock.advance(timedelta(minutes=2))
        await until_done(holds.expire_overdue_holds)
        assert await balance(program_id) == (500, 0, 0)


class TestOrderAndRefundPostings:
    async def test_order_capturing_a_hold_then_full_refund(self, program_id: int) -> None:
        await new_member(program_id, points=500)
        hold_id = _field(
            (await holds.create_hold(program_id, "m1", 200, None, None, None)).body, "hold_id"
        )
        await orders.create_order(
            program_id, ACTOR, order("A-1", 10_000, redeem_hold_id=hold_id), None
        )
        assert await balance(program_id) == (400, 0, 0)  # 500 - 200 redeemed + 100 earned
        await orders.create_refund(program_id, "A-1", "R-1", 10_000, ACTOR, None)
        assert await balance(program_id) == (500, 0, 0)  # 100 reversed, 200 restored

    async def test_refund_clawback_leaves_a_debt_that_a_credit_repays(
        self, program_id: int
    ) -> None:
        await new_member(program_id)
        await orders.create_order(program_id, ACTOR, order("A-1", 10_000), None)
        await ledger.debit(posting(program_id, "redeem", 100), None)
        await orders.create_refund(program_id, "A-1", "R-1", 10_000, ACTOR, None)
        assert await balance(program_id) == (-100, 0, 0)
        await ledger.credit(posting(program_id, "earn", 150), None)
        assert await balance(program_id) == (50, 0, 0)


class TestJobPostings:
    async def test_pending_points_are_released(self, program_id: int) -> None:
        await _set_program(program_id, pending_days=7)
        await new_member(program_id)
        await orders.create_order(program_id, ACTOR, order("A-1", 10_000), None)
        assert await balance(program_id) == (0, 100, 0)
        clock.advance(timedelta(days=7))
        await until_done(pending.release_due_points)
        assert await balance(program_id) == (100, 0, 0)

    async def test_due_lots_expire(self, program_id: int) -> None:
        await _set_program(program_id, points_expiry_days=30)
        await new_member(program_id, points=80)
        clock.advance(timedelta(days=32))
        await until_done(expiry.expire_due_points)
        assert await balance(program_id) == (0, 0, 0)


async def until_done(job: Callable[[datetime], Awaitable[int]]) -> None:
    """Run a worker job until it finds nothing due (other tests' programs share the table)."""
    while await job(clock.now()):
        pass


def _field(body: str, name: str) -> Any:
    return orjson.loads(body)[name]


async def _set_program(program_id: int, **settings: Any) -> None:
    await update_program(program_id, settings)
