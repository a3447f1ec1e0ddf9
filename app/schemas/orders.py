"""Wire models for quotes, orders and refunds."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator

from app.schemas.common import (
    MAX_AMOUNT,
    NO_NUL,
    ExternalId,
    RequestModel,
    RequestTime,
    Timestamp,
)

Amount = Annotated[int, Field(strict=True, ge=0, le=MAX_AMOUNT, description="Minor units.")]
Currency = Annotated[
    str, StringConstraints(pattern=r"^[A-Z]{3}$"), Field(description="ISO 4217, e.g. CNY.")
]
OrderId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=NO_NUL)]
CouponCode = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=NO_NUL),
    Field(description="12 Crockford base32 characters; case-insensitive."),
]
MAX_COUPONS = 5
MAX_ITEMS = 200


class OrderItem(RequestModel):
    sku: Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=NO_NUL)]
    category: (
        Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_NUL)] | None
    ) = None
    quantity: int = Field(strict=True, ge=1, le=1_000_000)
    unit_price: Amount


class QuoteRequest(RequestModel):
    member_id: ExternalId
    amount: Amount
    currency: Currency
    items: list[OrderItem] | None = Field(default=None, max_length=MAX_ITEMS)

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "member_id": "cust-1001",
                    "amount": 25900,
                    "currency": "CNY",
                    "items": [
                        {"sku": "TEA-01", "category": "tea", "quantity": 2, "unit_price": 8800},
                        {"sku": "CUP-02", "category": "ware", "quantity": 1, "unit_price": 8300},
                    ],
                }
            ]
        }
    }

    @field_validator("items")
    @classmethod
    def _items_fit_amount(cls, items: list[OrderItem] | None) -> list[OrderItem] | None:
        if items is not None:
            total = sum(item.quantity * item.unit_price for item in items)
            if total > MAX_AMOUNT:
                raise ValueError("items add up to more than the largest amount")
        return items


class BreakdownLine(BaseModel):
    source: str = Field(description="`base`, `tier` or `rule:<id>`.", examples=["rule:3"])
    points: int


class QuoteOut(BaseModel):
    points: int
    breakdown: list[BreakdownLine]
    max_redeemable_points: int


class OrderCreate(QuoteRequest):
    order_id: OrderId
    occurred_at: RequestTime | None = Field(
        default=None, description="When the purchase happened (default: now)."
    )
    redeem_hold_id: str | None = Field(
        default=None, description="An active hold to capture as part of this order."
    )
    coupon_codes: list[CouponCode] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_COUPONS,
        description="Coupons to use with this order, in the same transaction; the order "
        "earns points on `amount` minus their discounts.",
    )

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "order_id": "A-1001",
                    "member_id": "cust-1001",
                    "amount": 25900,
                    "currency": "CNY",
                    "items": [
                        {"sku": "TEA-01", "category": "tea", "quantity": 2, "unit_price": 8800},
                        {"sku": "CUP-02", "category": "ware", "quantity": 1, "unit_price": 8300},
                    ],
                    "occurred_at": "2026-11-22T10:15:00+08:00",
                }
            ]
        }
    }

    @field_validator("coupon_codes")
    @classmethod
    def _codes_unique(cls, codes: list[str] | None) -> list[str] | None:
        if codes is not None and len({code.upper() for code in codes}) != len(codes):
            raise ValueError("a coupon code may be named once")
        return codes


class RefundCreate(RequestModel):
    refund_id: OrderId
    amount: int = Field(strict=True, ge=1, le=MAX_AMOUNT, description="Minor units.")

    model_config = {"json_schema_extra": {"examples": [{"refund_id": "R-1", "amount": 8800}]}}


class RefundOut(BaseModel):
    refund_id: str
    amount: int
    points_reversed: int
    points_restored: int
    created_at: Timestamp


class OrderCoupon(BaseModel):
    code: str
    discount_amount: int = Field(description="Minor units, computed on `amount`.")


class OrderOut(BaseModel):
    order_id: str
    member_id: str
    amount: int
    currency: str
    points_earned: int
    points_redeemed: int
    status: Literal["pending", "available"]
    available_at: Timestamp
    occurred_at: Timestamp
    breakdown: list[BreakdownLine]
    refunds: list[RefundOut]
    coupons: list[OrderCoupon] | None = Field(
        default=None, description="Only for an order that used coupons (`coupon_codes`)."
    )
    created_at: Timestamp
