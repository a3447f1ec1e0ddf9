"""Campaigns (an action aimed at a class of members, with a random held-out group), the
record of every member each campaign targeted, and the reminders already sent.

``campaign_targetings`` is the unique record behind "each member once per run": its key is
(campaign, member, run number), and the bonus entry, the coupon and the ``campaign.targeted``
event are written in the same transaction as the row (app/services/campaigns/running.py).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base
from app.models.rewards import Coupon


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (
        CheckConstraint("holdout_percent BETWEEN 0 AND 50", name="holdout_percent_range"),
        CheckConstraint("cooldown_days BETWEEN 0 AND 3650", name="cooldown_days_range"),
        CheckConstraint(
            "bonus_points IS NULL OR bonus_points BETWEEN 1 AND 1000000000",
            name="bonus_points_range",
        ),
        # Exactly one action: bonus points, a coupon from a reward, or a notification only.
        CheckConstraint(
            "num_nonnulls(bonus_points, reward_id, nullif(notify_only, false)) = 1",
            name="one_action",
        ),
        Index("ix_campaigns_program_id_id", "program_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    program_id: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(200))
    # The audience conditions as the API took them (schemas/campaigns.py, Audience).
    audience: Mapped[dict[str, Any]] = mapped_column(JSONB)
    bonus_points: Mapped[int | None] = mapped_column(BigInteger)
    reward_id: Mapped[int | None] = mapped_column(BigInteger)
    notify_only: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    message: Mapped[str | None] = mapped_column(Text)
    holdout_percent: Mapped[int] = mapped_column(SmallInteger)
    cooldown_days: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean)
    starts_at: Mapped[datetime | None]
    ends_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # DELETE hides a campaign; its targetings, entries and results stay explainable.
    deleted_at: Mapped[datetime | None]
    # Runs: the number of the latest run, whether it is under way (run_cursor is 0 while it
    # is, NULL once every lane of it finished; how far each lane got is on its
    # ``campaign_run_lanes`` row), and when it started.
    run_number: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    run_cursor: Mapped[int | None] = mapped_column(BigInteger)
    last_run_at: Mapped[datetime | None]


class CampaignRunLane(Base):
    """One lane of a campaign's latest run: the members with ``member_id % lanes = lane``,
    walked in ascending id order. Batches of different lanes run side by side; batches of one
    lane (from any worker or on-demand call) lock this row, so they take turns and each
    continues where the last one stopped."""

    __tablename__ = "campaign_run_lanes"
    __table_args__ = (
        ForeignKeyConstraint(
            ["campaign_id", "program_id"],
            ["campaigns.id", "campaigns.program_id"],
            ondelete="CASCADE",
        ),
        CheckConstraint("lane >= 0 AND lane < lanes", name="lane_in_range"),
    )

    campaign_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    lane: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    program_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    lanes: Mapped[int] = mapped_column(SmallInteger)
    run_number: Mapped[int] = mapped_column(Integer)
    # The last member id this lane handled in its run (0 before the first batch); NULL once
    # the lane has been walked to the end.
    cursor: Mapped[int | None] = mapped_column(BigInteger)


class CampaignTargeting(Base):
    """One member targeted by one run of a campaign: the unique record of it."""

    __tablename__ = "campaign_targetings"
    __table_args__ = (
        # Named here: the conventional name would pass PostgreSQL's 63 characters.
        UniqueConstraint(
            "campaign_id",
            "member_id",
            "run_number",
            "program_id",
            name="uq_campaign_targetings_campaign_member_run_program",
        ),
        CheckConstraint("\"group\" IN ('treated', 'holdout')", name="group_known"),
        # Each member's first targeting, in member order, from the index alone (results).
        Index(
            "ix_campaign_targetings_first_targeting",
            "program_id",
            "campaign_id",
            "member_id",
            "targeted_at",
            postgresql_include=["group"],
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # No foreign keys, as on the ledger tables (docs/ledger.md, "Foreign keys"): a run writes
    # these rows by the thousand, taking the ids from the campaign and account rows it has
    # locked in the same transaction; campaigns are never deleted, only hidden.
    program_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(BigInteger)
    member_id: Mapped[int] = mapped_column(BigInteger)
    run_number: Mapped[int] = mapped_column(Integer)
    group: Mapped[str] = mapped_column(String(8))
    # What the treated member was given: bonus points (and their entry), or a coupon.
    points: Mapped[int | None] = mapped_column(BigInteger)
    entry_id: Mapped[int | None] = mapped_column(BigInteger)
    coupon_code: Mapped[str | None] = mapped_column(String(12))
    targeted_at: Mapped[datetime]


class PointsExpiringReminder(Base):
    """A ``points.expiring`` event sent for one member's points expiring at one time."""

    __tablename__ = "points_expiring_reminders"
    __table_args__ = (
        ForeignKeyConstraint(
            ["member_id", "program_id"], ["members.id", "members.program_id"], ondelete="CASCADE"
        ),
    )

    member_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(primary_key=True)
    program_id: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    points: Mapped[int] = mapped_column(BigInteger)
    reminded_at: Mapped[datetime]


class BirthdayReminder(Base):
    """A ``member.birthday_upcoming`` event sent for one member's birthday on one date."""

    __tablename__ = "birthday_reminders"
    __table_args__ = (
        ForeignKeyConstraint(
            ["member_id", "program_id"], ["members.id", "members.program_id"], ondelete="CASCADE"
        ),
    )

    member_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    birthday_on: Mapped[date] = mapped_column(Date, primary_key=True)
    program_id: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    reminded_at: Mapped[datetime]


# A campaign's coupons, for its cost in the results. Declared here, beside the query that
# needs it, so the rewards model stays as its owners wrote it.
COUPONS_CAMPAIGN_INDEX = Index(
    "ix_coupons_program_id_campaign_id",
    Coupon.program_id,
    Coupon.campaign_id,
    postgresql_where=text("campaign_id IS NOT NULL"),
)
