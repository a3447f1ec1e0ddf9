"""Table definitions. Importing this package registers every table on ``Base.metadata``."""

from app.models.base import Base
from app.models.campaigns import (
    BirthdayReminder,
    Campaign,
    CampaignRunLane,
    CampaignTargeting,
    PointsExpiringReminder,
)
from app.models.checkout import EarnRule, Hold, Order, PointRelease, QueuedOrderRelease, Refund
from app.models.events import Event, EventStream
from app.models.idempotency import IdempotencyKey
from app.models.imports import Import, ImportRow
from app.models.insights import InsightRefresh, MemberFeedback, MemberInsight
from app.models.ledger import ENTRY_KINDS, PointEntry, PointLot
from app.models.members import Account, Member
from app.models.programs import ApiKey, Program
from app.models.referrals import RateLimitWindow, Referral
from app.models.rewards import Coupon, Reward, RewardRedemption
from app.models.tiers import BirthdayBonus, Tier, TierChange
from app.models.tokens import MemberTokenKey
from app.models.webhooks import WebhookDelivery, WebhookEndpoint

__all__ = [
    "ENTRY_KINDS",
    "Account",
    "ApiKey",
    "Base",
    "BirthdayBonus",
    "BirthdayReminder",
    "Campaign",
    "CampaignRunLane",
    "CampaignTargeting",
    "Coupon",
    "EarnRule",
    "Event",
    "EventStream",
    "Hold",
    "IdempotencyKey",
    "Import",
    "ImportRow",
    "InsightRefresh",
    "Member",
    "MemberFeedback",
    "MemberInsight",
    "MemberTokenKey",
    "Order",
    "PointEntry",
    "PointLot",
    "PointRelease",
    "PointsExpiringReminder",
    "Program",
    "QueuedOrderRelease",
    "RateLimitWindow",
    "Referral",
    "Refund",
    "Reward",
    "RewardRedemption",
    "Tier",
    "TierChange",
    "WebhookDelivery",
    "WebhookEndpoint",
]
