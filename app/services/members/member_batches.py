"""The shape every per-member worker job shares: find the program whose work has been due
longest (one cheap query over all programs), then, in that program only, pick due members,
lock their account rows in ascending id order (skipping any a checkout holds right now, so
jobs never wait on traffic), and do the batch's work set-based, all in one short transaction.
Every statement of the transaction filters by that program, so on Citus each runs on the one
shard that holds the program.

A job can be run in several lanes at once: lane ``i`` of ``n`` only picks members with
``member_id % n = i``, so loops in different lanes never reach for the same account rows and
a long backlog is worked off on more than one core. Replicas running the same lane are still
safe: the account locks (SKIP LOCKED) decide which of them handles a member, and the work
re-reads what is due after the lock is granted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import TextClause, text

from app import db
from app.services.programs.due_programs import looking_across_programs


@dataclass(frozen=True, slots=True)
class Lane:
    """The members with ``member_id % count = index``."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"lane {self.index} of {self.count} does not exist")


ALL_MEMBERS = Lane()

# Account locks in ascending member id; a member busy at checkout is skipped this time.
LOCK_ACCOUNTS = text(
    """
SELECT member_id FROM accounts
 WHERE program_id = :program_id AND member_id = ANY(:member_ids)
 ORDER BY member_id
   FOR UPDATE SKIP LOCKED
"""
)


# Members locked only after another loop of the same lane (another replica) had handled them
# leave a batch with nothing to do; it looks again rather than report the lane done, at most
# this many times, so it cannot spin.
ATTEMPTS = 3


async def run_batch(
    due_program: TextClause,
    due: TextClause,
    work: TextClause,
    now: datetime,
    batch_size: int,
    lane: Lane = ALL_MEMBERS,
) -> int:
    """``due_program`` (params ``now``, ``lane``, ``lanes``) yields the program with the
    oldest due work in the lane, or nothing; ``due`` (also ``program_id`` and ``batch``)
    yields member ids of that program and lane; ``work`` (params ``program_id``,
    ``member_ids``, ``now``) handles the locked ones and returns a count, which this returns
    (0 when nothing was due or every due member was busy)."""
    lane_params = {"now": now, "lane": lane.index, "lanes": lane.count}
    for _ in range(ATTEMPTS):
        # Outside the batch's transaction: it reads every program (every shard on Citus),
        # the transaction then only the one it found.
        async with looking_across_programs() as conn:
            program_id = (await conn.execute(due_program, lane_params)).scalar()
        if program_id is None:
            return 0
        async with db.transaction() as conn:
            candidates = (
                await conn.execute(
                    due, {**lane_params, "program_id": program_id, "batch": batch_size}
                )
            ).scalars()
            member_ids = sorted(set(candidates))
            if not member_ids:
                continue
            locked = (
                (
                    await conn.execute(
                        LOCK_ACCOUNTS, {"program_id": program_id, "member_ids": member_ids}
                    )
                )
                .scalars()
                .all()
            )
            if not locked:
                return 0
            handled: int = (
                await conn.execute(
                    work, {"program_id": program_id, "member_ids": list(locked), "now": now}
                )
            ).scalar_one()
        if handled:
            return handled
    return 0
