"""Periodic jobs (``patron worker``).

Each job is a service function ``job(now) -> int`` that handles one small batch and returns
how many items it handled; the worker calls it again until it returns 0, then moves on. A
batch first finds the program (or programs) with due work in one cheap read across programs
(app/services/programs/due_programs.py), then claims and works within one program at a time:
every statement that locks or changes rows names that program, so on Citus it runs on the one
shard holding it. Jobs lock what they work on with ``FOR UPDATE SKIP LOCKED`` (or per-member
account locks), so several worker replicas can run at once without doing anything twice, and
short batches keep the member locks they take brief, so checkout traffic is not held up.

The member-batch jobs (release, expiry) and the campaign runs also take a ``lane``: the worker
runs ``worker_lanes`` loops of them side by side, each on its own share of the members (of a
run's lanes, for campaigns), so that a large backlog is worked off on more than one core
(app/services/members/member_batches.py, app/services/campaigns/run_lanes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from app.clock import clock
from app.config import get_settings
from app.services import idempotency
from app.services.campaigns import reminders, running
from app.services.checkout import holds
from app.services.engagement import birthdays
from app.services.events import webhook_delivery
from app.services.imports import runner as imports
from app.services.insights import insights
from app.services.ledger import expiry, pending
from app.services.members.member_batches import Lane
from app.services.programs import rate_limits
from app.services.referrals import referrals
from app.services.rewards import coupon_expiry
from app.services.tiers import tier_evaluation

log = logging.getLogger("patron.worker")

Job = Callable[[datetime], Awaitable[int]]


class LaneJob(Protocol):
    """A member-batch job: one batch of the due members in ``lane``."""

    def __call__(self, now: datetime, *, lane: Lane) -> Awaitable[int]: ...


@dataclass(frozen=True, slots=True)
class InLanes:
    """A member-batch job, run in ``worker_lanes`` loops side by side."""

    job: LaneJob


@dataclass(frozen=True, slots=True)
class Budgeted:
    """A job that may have hours of work (an import of millions of lines): each cycle gives
    it at most ``seconds``, so the jobs of the next cycle (webhooks, expiry) do not wait for
    it to finish, and while it still has work the next cycle starts at once instead of after
    the worker's interval."""

    job: Job
    seconds: float


# (name, job) in the order they run each cycle.
JOBS: list[tuple[str, Job | InLanes | Budgeted]] = [
    ("expire_holds", holds.expire_overdue_holds),
    ("expire_coupons", coupon_expiry.expire_due_coupons),
    ("release_pending_points", InLanes(pending.release_due_points)),
    ("pay_referrals", referrals.pay_due_referrals),
    ("expire_points", InLanes(expiry.expire_due_points)),
    ("reevaluate_changed_tiers", tier_evaluation.continue_background_reevaluation),
    ("check_tiered_members", tier_evaluation.check_tiered_members),
    ("birthday_bonuses", birthdays.grant_birthday_bonuses),
    ("purge_idempotency_keys", idempotency.purge_expired_keys),
    ("purge_rate_limit_windows", rate_limits.purge_old_windows),
    ("webhooks_fan_out", webhook_delivery.fan_out_events),
    ("webhooks_deliver", webhook_delivery.deliver_due),
    ("refresh_insights", insights.refresh_due_insights),
    # After the insights refresh, so that audiences see today's segments and stages.
    ("run_campaigns", InLanes(running.run_due_campaigns)),
    ("send_reminders", reminders.send_due_reminders),
    ("imports", Budgeted(imports.run_imports, seconds=30.0)),
]


async def run_job_until_done(name: str, job: Job, now: datetime, max_batches: int = 10_000) -> int:
    total = 0
    for _ in range(max_batches):
        handled = await job(now)
        total += handled
        if handled == 0:
            break
    if total:
        log.info("job %s handled %d", name, total)
    return total


async def run_in_lanes_until_done(
    name: str, job: LaneJob, now: datetime, lanes: int | None = None
) -> int:
    """One loop per lane (``worker_lanes`` by default), side by side, each until its lane has
    nothing due; returns the total handled. A failing lane cancels the others."""
    count = lanes or get_settings().worker_lanes
    loops: list[asyncio.Task[int]] = []
    async with asyncio.TaskGroup() as group:
        for index in range(count):
            lane = Lane(index, count)

            async def one_batch(at: datetime, lane: Lane = lane) -> int:
                return await job(at, lane=lane)

            loops.append(group.create_task(run_job_until_done(name, one_batch, now)))
    return sum(loop.result() for loop in loops)


async def run_within_budget(name: str, job: Budgeted) -> bool:
    """Run the job batch after batch (each at the clock's time) until it has nothing left or
    its time is up; True when it stopped with work left."""
    deadline = time.monotonic() + job.seconds
    total = 0
    while True:
        handled = await job.job(clock.now())
        total += handled
        if handled == 0 or time.monotonic() >= deadline:
            break
    if total:
        log.info("job %s handled %d", name, total)
    return handled > 0


async def run_until_done(name: str, job: Job | InLanes | Budgeted, now: datetime) -> int:
    if isinstance(job, InLanes):
        return await run_in_lanes_until_done(name, job.job, now)
    if isinstance(job, Budgeted):
        return await run_job_until_done(name, job.job, now)
    return await run_job_until_done(name, job, now)


async def _run_cycle(stop: asyncio.Event) -> bool:
    """One pass over the jobs; True when a budgeted job still has work."""
    more = False
    for name, job in JOBS:
        if stop.is_set():
            break
        try:
            if isinstance(job, Budgeted):
                more = await run_within_budget(name, job) or more
            else:
                await run_until_done(name, job, clock.now())
        except Exception:  # one failing job must not stop the others
            log.exception("job %s failed; retrying next cycle", name)
    return more


async def run_once(now: datetime | None = None) -> dict[str, int]:
    """Run every job to completion once, at ``now`` (default: the clock). Tests call this."""
    at = now or clock.now()
    return {name: await run_until_done(name, job, at) for name, job in JOBS}


async def run_forever(interval_seconds: float = 5.0) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    log.info("worker started; jobs: %s", ", ".join(name for name, _ in JOBS))
    while not stop.is_set():
        if await _run_cycle(stop):
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_seconds)
    log.info("worker stopped")
