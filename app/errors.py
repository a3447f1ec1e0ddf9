"""The domain error tree. Each class carries its HTTP status and the machine-readable ``code``
of api.md; ``app.main`` renders any of them as RFC 9457 problem+json.

    PatronError
    ├── UnauthorizedError             401 unauthorized
    ├── ForbiddenError                403 forbidden
    ├── NotFoundError                 404 not_found
    │   ├── ReferralCodeInvalidError  404 referral_code_invalid
    │   └── CouponInvalidError        404 coupon_invalid
    ├── ConflictError                 409 conflict
    │   ├── InsufficientPointsError   409 insufficient_points
    │   ├── OrderConflictError        409 order_conflict
    │   ├── HoldNotActiveError        409 hold_not_active
    │   ├── AlreadyReferredError      409 already_referred
    │   ├── NotNewCustomerError       409 not_new_customer
    │   ├── DuplicateError            409 duplicate
    │   ├── OutOfStockError           409 out_of_stock
    │   ├── RewardLimitReachedError   409 reward_limit_reached
    │   ├── RewardNotEligibleError    409 reward_not_eligible
    │   ├── RewardInactiveError       409 reward_inactive
    │   └── CouponNotUsableError      409 coupon_not_usable (with ``reason``)
    ├── PayloadTooLargeError          413 payload_too_large
    ├── UnprocessableError            422 (validation family)
    │   ├── ValidationError           422 validation_error
    │   ├── CurrencyMismatchError     422 currency_mismatch
    │   ├── IdempotencyKeyReusedError 422 idempotency_key_reused
    │   ├── RefundExceedsOrderError   422 refund_exceeds_order
    │   ├── PointsLimitExceededError  422 points_limit_exceeded
    │   └── SelfReferralError         422 self_referral
    ├── RateLimitedError              429 rate_limited
    └── ServiceUnavailableError       503 service_unavailable
"""

from __future__ import annotations

from typing import Any, ClassVar


class PatronError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.title
        self.extra = extra
        super().__init__(self.detail)


class UnauthorizedError(PatronError):
    status = 401
    code = "unauthorized"
    title = "Missing, unknown or revoked credentials"


class ForbiddenError(PatronError):
    status = 403
    code = "forbidden"
    title = "The credentials lack the scope this call needs"


class NotFoundError(PatronError):
    status = 404
    code = "not_found"
    title = "Not found"


class ReferralCodeInvalidError(NotFoundError):
    code = "referral_code_invalid"
    title = "Unknown or inactive referral code"


class CouponInvalidError(NotFoundError):
    code = "coupon_invalid"
    title = "Unknown coupon code"


class ConflictError(PatronError):
    status = 409
    code = "conflict"
    title = "Conflict"


class InsufficientPointsError(ConflictError):
    code = "insufficient_points"
    title = "Not enough available points"


class OrderConflictError(ConflictError):
    code = "order_conflict"
    title = "This order_id was already used with a different body"


class HoldNotActiveError(ConflictError):
    code = "hold_not_active"
    title = "The hold is not active"


class AlreadyReferredError(ConflictError):
    code = "already_referred"
    title = "The member was already referred"


class NotNewCustomerError(ConflictError):
    code = "not_new_customer"
    title = "The member already has orders"


class DuplicateError(ConflictError):
    code = "duplicate"
    title = "An object with this key already exists"


class OutOfStockError(ConflictError):
    code = "out_of_stock"
    title = "The reward is out of stock"


class RewardLimitReachedError(ConflictError):
    code = "reward_limit_reached"
    title = "The member already holds as many of this reward as it allows"


class RewardNotEligibleError(ConflictError):
    code = "reward_not_eligible"
    title = "The reward is not offered to this member now (tier or dates)"


class RewardInactiveError(ConflictError):
    code = "reward_inactive"
    title = "The reward is not active"


class CouponNotUsableError(ConflictError):
    """Carries ``reason``: expired, used, void, wrong_member, min_order_amount, currency or
    unknown."""

    code = "coupon_not_usable"
    title = "The coupon cannot be used"

    def __init__(self, reason: str, detail: str | None = None) -> None:
        self.reason = reason
        super().__init__(detail or f"The coupon cannot be used: {reason}.", reason=reason)


class PayloadTooLargeError(PatronError):
    status = 413
    code = "payload_too_large"
    title = "Request body too large"


class UnprocessableError(PatronError):
    status = 422
    code = "validation_error"
    title = "Invalid request"


class ValidationError(UnprocessableError):
    """A rule about the input that the schema alone cannot express."""

    def __init__(self, detail: str, *, loc: list[str | int] | None = None) -> None:
        errors = [{"loc": loc or ["body"], "msg": detail, "type": "value_error"}]
        super().__init__(detail, errors=errors)


class CurrencyMismatchError(UnprocessableError):
    code = "currency_mismatch"
    title = "The currency differs from the program's currency"


class IdempotencyKeyReusedError(UnprocessableError):
    code = "idempotency_key_reused"
    title = "This Idempotency-Key was used with a different request"


class RefundExceedsOrderError(UnprocessableError):
    code = "refund_exceeds_order"
    title = "Cumulative refunds would exceed the order amount"


class PointsLimitExceededError(UnprocessableError):
    code = "points_limit_exceeded"
    title = "The order would earn more points than one order may"


class SelfReferralError(UnprocessableError):
    code = "self_referral"
    title = "A member cannot refer themselves"


class RateLimitedError(PatronError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(detail)


class ServiceUnavailableError(PatronError):
    """The database cannot be reached or has no free connection right now; the request had
    no effect, and the client may retry after ``retry_after`` seconds."""

    status = 503
    code = "service_unavailable"
    title = "Service unavailable"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(detail)
