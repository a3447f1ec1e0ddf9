"""Property tests: refunds never reverse or restore more than the order earned and redeemed,
and a series of partial refunds reaching the order amount reverses and restores exactly."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from app.services.checkout.orders import refund_shares


@st.composite
def order_and_refunds(draw: st.DrawFn) -> tuple[int, int, int, list[int]]:
    amount = draw(st.integers(min_value=1, max_value=10**12))
    earned = draw(st.integers(min_value=0, max_value=10**9))
    redeemed = draw(st.integers(min_value=0, max_value=10**9))
    refunds: list[int] = []
    left = amount
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        if left == 0:
            break
        part = draw(st.integers(min_value=1, max_value=left))
        refunds.append(part)
        left -= part
    if draw(st.booleans()) and left:
        refunds.append(left)  # make it a full refund
    return amount, earned, redeemed, refunds


class TestRefundShares:
    @given(order_and_refunds())
    @settings(max_examples=500, deadline=None)
    def test_never_more_than_earned_and_exact_when_full(
        self, case: tuple[int, int, int, list[int]]
    ) -> None:
        amount, earned, redeemed, refunds = case
        refunded = reversed_total = restored_total = 0
        for part in refunds:
            shares = refund_shares(
                amount=amount,
                points_earned=earned,
                points_redeemed=redeemed,
                refunded_before=refunded,
                reversed_before=reversed_total,
                restored_before=restored_total,
                refund_amount=part,
            )
            assert shares.reversed >= 0
            assert shares.restored >= 0
            refunded += part
            reversed_total += shares.reversed
            restored_total += shares.restored
            assert reversed_total <= earned
            assert restored_total <= redeemed
        if refunded == amount:
            assert (reversed_total, restored_total) == (earned, redeemed)

    @given(
        st.integers(min_value=1, max_value=10**6),
        st.integers(min_value=0, max_value=10**6),
        st.data(),
    )
    def test_order_of_partial_refunds_does_not_matter_for_totals(
        self, amount: int, earned: int, data: st.DataObject
    ) -> None:
        first = data.draw(st.integers(min_value=1, max_value=amount))
        second = amount - first

        def total(parts: list[int]) -> int:
            refunded = reversed_total = 0
            for part in parts:
                if part == 0:
                    continue
                reversed_total += refund_shares(
                    amount=amount,
                    points_earned=earned,
                    points_redeemed=0,
                    refunded_before=refunded,
                    reversed_before=reversed_total,
                    restored_before=0,
                    refund_amount=part,
                ).reversed
                refunded += part
            return reversed_total

        assert total([first, second]) == total([second, first]) == earned
