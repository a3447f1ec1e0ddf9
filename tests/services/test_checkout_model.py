"""A stateful model test: hypothesis mixes earn, redeem, hold, capture, release, order,
refund, redeem-reward, use-coupon (an order with coupon_codes), void, advance-time and
run-jobs against a small in-memory model of the rules, checking every
balance and the ledger audit after each step.

It runs the real app through HTTP (ASGI) on its own event loop and engine, so the sync state
machine can drive it step by step.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from app import db
from app.clock import clock
from app.main import create_app
from app.services.ledger.audit import audit
from app.services.programs.programs import create_program
from app.worker import run_once
from tests.conftest import service_engine

T = TypeVar("T")
MEMBERS = ("a", "b")
PENDING_DAYS = 2
EXPIRY_DAYS = 3
START = datetime(2026, 1, 5, 9, tzinfo=UTC)
# The one reward of the model: 1000 off for 50 points, stock 3, two per member, one day.
REWARD = {
    "name": "10 off",
    "kind": "fixed_discount",
    "points_cost": 50,
    "value": 1000,
    "stock": 3,
    "per_member_limit": 2,
    "coupon_ttl_days": 1,
}


@dataclass
class Lot:
    expires_at: datetime
    remaining: int
    seq: int


@dataclass
class MemberModel:
    available: int = 0
    pending: int = 0
    held: int = 0
    lots: list[Lot] = field(default_factory=list)


@dataclass
class HoldModel:
    member: str
    points: int
    expires_at: datetime
    status: str = "active"


@dataclass
class OrderModel:
    member: str
    amount: int
    earned: int
    redeemed: int
    available_at: datetime
    seq: int
    status: str = "pending"
    refunded: int = 0
    reversed: int = 0
    restored: int = 0
    coupon: str | None = None


@dataclass
class CouponModel:
    member: str
    expires_at: datetime
    status: str = "active"

    def usable(self, now: datetime) -> bool:
        return self.status == "active" and self.expires_at > now


class Model:
    """The rules of docs/ledger.md and api.md, written the simple way."""

    def __init__(self) -> None:
        self.members = {name: MemberModel() for name in MEMBERS}
        self.holds: dict[str, HoldModel] = {}
        self.orders: dict[str, OrderModel] = {}
        self.coupons: dict[str, CouponModel] = {}
        self._seq = itertools.count()

    def standing(self, member: str | None = None) -> int:
        """Redemptions not voided (of one member, or of everyone)."""
        return sum(
            1
            for c in self.coupons.values()
            if c.status != "void" and (member is None or c.member == member)
        )

    @staticmethod
    def expiry(now: datetime) -> datetime:
        day = now.astimezone(UTC).date() + timedelta(days=EXPIRY_DAYS + 1)
        return datetime(day.year, day.month, day.day, tzinfo=UTC)

    def credit(self, name: str, points: int, now: datetime) -> None:
        m = self.members[name]
        total = m.available + m.held
        fresh = max(total + points, 0) - max(total, 0)
        m.available += points
        if fresh > 0:
            m.lots.append(Lot(self.expiry(now), fresh, next(self._seq)))

    def consume(self, name: str, points: int) -> None:
        for lot in sorted(self.members[name].lots, key=lambda lot: (lot.expires_at, lot.seq)):
            taken = min(lot.remaining, points)
            lot.remaining -= taken
            points -= taken
        self.members[name].lots = [lot for lot in self.members[name].lots if lot.remaining]

    def close_hold(self, hold: HoldModel, status: str, captured: int) -> None:
        m = self.members[hold.member]
        self.consume(hold.member, captured)
        m.held -= hold.points
        m.available += hold.points - captured
        hold.status = status

    def run_jobs(self, now: datetime) -> None:
        for hold in self.holds.values():
            if hold.status == "active" and hold.expires_at <= now:
                self.close_hold(hold, "expired", 0)
        due = [o for o in self.orders.values() if o.status == "pending" and o.available_at <= now]
        for order in sorted(due, key=lambda o: o.seq):
            net = order.earned - order.reversed
            self.members[order.member].pending -= net
            order.status = "available"
            self.credit(order.member, net, now)
        for name, m in self.members.items():
            if m.available <= 0:
                continue
            taken_total = 0
            for lot in sorted(m.lots, key=lambda lot: (lot.expires_at, lot.seq)):
                if lot.expires_at > now or taken_total >= m.available:
                    continue
                taken = min(lot.remaining, m.available - taken_total)
                lot.remaining -= taken
                taken_total += taken
            m.available -= taken_total
            m.lots = [lot for lot in m.lots if lot.remaining]
            del name


class CheckoutMachine(RuleBasedStateMachine):
    loop: asyncio.AbstractEventLoop
    app: Any

    holds = Bundle("holds")
    orders = Bundle("orders")
    coupons = Bundle("coupons")

    def __init__(self) -> None:
        super().__init__()
        clock.freeze(START)
        self.model = Model()
        self.ids = itertools.count()
        self.program_id, key = self.run(create_program("Model Shop", "CNY"))
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=True)
        self.client = httpx.AsyncClient(
            transport=transport,
            base_url="http://patron.test",
            headers={"Authorization": f"Bearer {key}"},
        )
        self.call(
            "PATCH",
            "/v1/program",
            {"pending_days": PENDING_DAYS, "points_expiry_days": EXPIRY_DAYS},
            200,
        )
        for name in MEMBERS:
            self.call("PUT", f"/v1/members/{name}", {}, 201)
        self.reward_id = self.call("POST", "/v1/rewards", REWARD, 201).json()["id"]

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def call(self, method: str, path: str, body: Any, *expected: int) -> httpx.Response:
        response = self.run(self.client.request(method, path, json=body))
        assert response.status_code in expected, (method, path, body, response.text)
        return response

    @property
    def now(self) -> datetime:
        return clock.now()

    @rule(member=st.sampled_from(MEMBERS), points=st.integers(1, 500))
    def earn(self, member: str, points: int) -> None:
        self.call(
            "POST", f"/v1/members/{member}/points/earn", {"points": points, "reason": "model"}, 201
        )
        self.model.credit(member, points, self.now)

    @rule(member=st.sampled_from(MEMBERS), points=st.integers(1, 500))
    def redeem(self, member: str, points: int) -> None:
        m = self.model.members[member]
        if m.available >= points:
            self.call("POST", f"/v1/members/{member}/points/redeem", {"points": points}, 201)
            self.model.consume(member, points)
            m.available -= points
        else:
            self.call("POST", f"/v1/members/{member}/points/redeem", {"points": points}, 409)

    @rule(
        target=holds,
        member=st.sampled_from(MEMBERS),
        points=st.integers(1, 300),
        ttl=st.sampled_from([600, 3600, 86400]),
    )
    def hold(self, member: str, points: int, ttl: int) -> str:
        m = self.model.members[member]
        body = {"points": points, "ttl_seconds": ttl}
        if m.available < points:
            self.call("POST", f"/v1/members/{member}/holds", body, 409)
            return ""
        hold_id = str(self.call("POST", f"/v1/members/{member}/holds", body, 201).json()["hold_id"])
        m.available -= points
        m.held += points
        self.model.holds[hold_id] = HoldModel(member, points, self.now + timedelta(seconds=ttl))
        return hold_id

    def _finish(self, hold_id: str, path: str, body: Any, captured: int | None) -> None:
        hold = self.model.holds.get(hold_id)
        if hold is None:
            return
        if hold.status != "active":
            self.call("POST", path, body, 409)
        elif hold.expires_at <= self.now:
            self.call("POST", path, body, 409)
            self.model.close_hold(hold, "expired", 0)
        elif captured is not None and captured > hold.points:
            self.call("POST", path, body, 409)
        else:
            self.call("POST", path, body, 200)
            if captured is None:
                self.model.close_hold(hold, "released", 0)
            else:
                self.model.close_hold(hold, "captured", captured)

    @rule(hold_id=holds, points=st.integers(1, 300) | st.none())
    def capture(self, hold_id: str, points: int | None) -> None:
        hold = self.model.holds.get(hold_id)
        captured = points if points is not None else (hold.points if hold else 0)
        body = {} if points is None else {"points": points}
        self._finish(hold_id, f"/v1/holds/{hold_id}/capture", body, captured)

    @rule(hold_id=holds)
    def release(self, hold_id: str) -> None:
        self._finish(hold_id, f"/v1/holds/{hold_id}/release", None, None)

    @rule(
        target=orders,
        member=st.sampled_from(MEMBERS),
        amount=st.integers(0, 60_000),
        hold_id=st.none() | holds,
    )
    def order(self, member: str, amount: int, hold_id: str | None) -> str:
        order_id = f"O-{next(self.ids)}"
        body: dict[str, Any] = {
            "order_id": order_id,
            "member_id": member,
            "amount": amount,
            "currency": "CNY",
        }
        hold = self.model.holds.get(hold_id) if hold_id else None
        if hold_id:
            body["redeem_hold_id"] = hold_id
            usable = (
                hold is not None
                and hold.member == member
                and hold.status == "active"
                and hold.expires_at > self.now
            )
            if not usable:
                self.call("POST", "/v1/orders", body, 409)
                return ""
        self.call("POST", "/v1/orders", body, 201)
        redeemed = 0
        if hold is not None:
            redeemed = hold.points
            self.model.close_hold(hold, "captured", hold.points)
        earned = amount // 100
        self.model.members[member].pending += earned
        self.model.orders[order_id] = OrderModel(
            member,
            amount,
            earned,
            redeemed,
            self.now + timedelta(days=PENDING_DAYS),
            next(self.ids),
        )
        return order_id

    @rule(order_id=orders, share=st.integers(1, 100))
    def refund(self, order_id: str, share: int) -> None:
        order = self.model.orders.get(order_id)
        if order is None:
            return
        amount = max(1, order.amount * share // 100)
        path = f"/v1/orders/{order_id}/refunds"
        body = {"refund_id": f"R-{next(self.ids)}", "amount": amount}
        if order.refunded + amount > order.amount:
            self.call("POST", path, body, 422)
            return
        result = self.call("POST", path, body, 201).json()
        order.refunded += amount
        reversed_now = order.earned * order.refunded // order.amount - order.reversed
        restored_now = order.redeemed * order.refunded // order.amount - order.restored
        assert (result["points_reversed"], result["points_restored"]) == (
            reversed_now,
            restored_now,
        )
        order.reversed += reversed_now
        order.restored += restored_now
        if order.coupon is not None and order.refunded == order.amount:
            freed = self.model.coupons[order.coupon]
            if freed.expires_at > self.now:
                freed.status = "active"
        m = self.model.members[order.member]
        if order.status == "pending":
            m.pending -= reversed_now
        else:
            self.model.consume(order.member, reversed_now)
            m.available -= reversed_now
        self.model.credit(order.member, restored_now, self.now)

    @rule(target=coupons, member=st.sampled_from(MEMBERS))
    def redeem_reward(self, member: str) -> str:
        m = self.model.members[member]
        path = f"/v1/members/{member}/rewards/{self.reward_id}/redeem"
        refusal = None
        if self.model.standing(member) >= REWARD["per_member_limit"]:
            refusal = "reward_limit_reached"
        elif self.model.standing() >= REWARD["stock"]:
            refusal = "out_of_stock"
        elif m.available < REWARD["points_cost"]:
            refusal = "insufficient_points"
        if refusal is not None:
            assert self.call("POST", path, None, 409).json()["code"] == refusal
            return ""
        code = str(self.call("POST", path, None, 201).json()["coupon"]["code"])
        cost = int(REWARD["points_cost"])
        self.model.consume(member, cost)
        m.available -= cost
        self.model.coupons[code] = CouponModel(member, self.now + timedelta(days=1))
        return code

    @rule(code=coupons)
    def void(self, code: str) -> None:
        coupon = self.model.coupons.get(code)
        if coupon is None:
            return
        if not coupon.usable(self.now):
            self.call("POST", f"/v1/coupons/{code}/void", None, 409)
            return
        self.call("POST", f"/v1/coupons/{code}/void", None, 200)
        coupon.status = "void"
        self.model.credit(coupon.member, int(REWARD["points_cost"]), self.now)

    @rule(
        target=orders,
        member=st.sampled_from(MEMBERS),
        amount=st.integers(0, 60_000),
        code=coupons,
    )
    def use_coupon(self, member: str, amount: int, code: str) -> str:
        coupon = self.model.coupons.get(code)
        if coupon is None:
            return ""
        order_id = f"O-{next(self.ids)}"
        body = {
            "order_id": order_id,
            "member_id": member,
            "amount": amount,
            "currency": "CNY",
            "coupon_codes": [code],
        }
        if not coupon.usable(self.now) or coupon.member != member:
            self.call("POST", "/v1/orders", body, 409)
            return ""
        discount = min(int(REWARD["value"]), amount)
        result = self.call("POST", "/v1/orders", body, 201).json()
        assert result["coupons"] == [{"code": code, "discount_amount": discount}]
        coupon.status = "used"
        earned = (amount - discount) // 100
        self.model.members[member].pending += earned
        self.model.orders[order_id] = OrderModel(
            member,
            amount,
            earned,
            0,
            self.now + timedelta(days=PENDING_DAYS),
            next(self.ids),
            coupon=code,
        )
        return order_id

    @rule(hours=st.integers(1, 60))
    def advance_time(self, hours: int) -> None:
        clock.advance(timedelta(hours=hours))

    @rule()
    def run_jobs(self) -> None:
        self.run(run_once(self.now))
        self.model.run_jobs(self.now)

    @invariant()
    def balances_match_the_model(self) -> None:
        for name, expected in self.model.members.items():
            shown = self.call("GET", f"/v1/members/{name}/points", None, 200).json()
            assert (shown["available"], shown["pending"], shown["held"]) == (
                expected.available,
                expected.pending,
                expected.held,
            ), name

    @invariant()
    def coupons_match_the_model(self) -> None:
        for code, expected in self.model.coupons.items():
            shown = self.call("GET", f"/v1/coupons/{code}", None, 200).json()["status"]
            lapsed = expected.status == "active" and expected.expires_at <= self.now
            assert shown == ("expired" if lapsed else expected.status), code

    @invariant()
    def ledger_audit_passes(self) -> None:
        violations = self.run(audit(self.program_id))
        assert not violations, [str(v) for v in violations]

    def teardown(self) -> None:
        self.run(self.client.aclose())
        clock.reset()


def test_checkout_state_machine(database_url: str) -> None:
    loop = asyncio.new_event_loop()
    saved = db.get_engine()
    engine = service_engine(database_url)
    db.configure(engine)
    CheckoutMachine.loop = loop
    CheckoutMachine.app = create_app()
    try:
        run_state_machine_as_test(
            CheckoutMachine,
            settings=settings(
                max_examples=30,
                stateful_step_count=35,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        loop.run_until_complete(engine.dispose())
        loop.close()
        db.configure(saved)
