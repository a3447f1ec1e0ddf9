"""Table definitions. Importing this package registers every table on ``Base.metadata``."""

from app.models.base import Base
from app.models.checkout import EarnRule, Hold, Order, PointRelease, Refund
from app.models.events import Event
from app.models.idempotency import IdempotencyKey
from app.models.ledger import ENTRY_KINDS, PointEntry, PointLot
from app.models.members import Account, Member
from app.models.programs import ApiKey, Program

__all__ = [
    "ENTRY_KINDS",
    "Account",
    "ApiKey",
    "Base",
    "EarnRule",
    "Event",
    "Hold",
    "IdempotencyKey",
    "Member",
    "Order",
    "PointEntry",
    "PointLot",
    "PointRelease",
    "Program",
    "Refund",
]
