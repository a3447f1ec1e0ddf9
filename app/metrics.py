"""Prometheus metrics: what the service counts, and the ``/metrics`` text.

Counters and histograms live in the process that counts them. With several uvicorn workers
(``patron serve --workers N``), set ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder before
starting: every process then writes its samples there and any worker's ``/metrics`` adds them
up (prometheus-client's multiprocess mode; see docs/observability.md). Without it, each
process reports its own.

Gauges that describe the database (the webhook queue, paused endpoints) are computed when
scraped, so every process reports the same truth.

Other modules count through the small functions here (``entry_written``,
``delivery_attempted``, ``observe_request``) so metric names and labels stay in one place.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from sqlalchemy import text

from app import db
from app.models.ledger import ENTRY_KINDS

log = logging.getLogger("patron.metrics")

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
if MULTIPROCESS:
    # A worker that stops drops its live gauges (pool use) from the sums; counters stay.
    atexit.register(mark_process_dead, os.getpid())
# Any other method (a client may send anything) is counted as OTHER, to bound the labels.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"

HTTP_REQUESTS = Counter(
    "patron_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "patron_http_request_duration_seconds",
    "Time from receiving a request to finishing its response, by route template and status.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
LEDGER_ENTRIES = Counter("patron_ledger_entries", "Ledger entries written, by kind.", ["kind"])
WEBHOOK_DELIVERIES = Counter(
    "patron_webhook_deliveries",
    "Webhook delivery attempts, by outcome: delivered (2xx), retrying (failed, will retry), "
    "failed (failed and gave up after the retry horizon).",
    ["outcome"],
)
DB_POOL_IN_USE = Gauge(
    "patron_db_pool_connections_in_use",
    "Database connections checked out of the pool.",
    multiprocess_mode="livesum",
)
DB_POOL_LIMIT = Gauge(
    "patron_db_pool_connections_limit",
    "The most connections the pool may open (pool size plus overflow).",
    multiprocess_mode="livesum",
)

_ENTRY_COUNTERS = {kind: LEDGER_ENTRIES.labels(kind) for kind in ENTRY_KINDS}
DELIVERY_OUTCOMES = ("delivered", "retrying", "failed")
_DELIVERY_COUNTERS = {outcome: WEBHOOK_DELIVERIES.labels(outcome) for outcome in DELIVERY_OUTCOMES}
# (method, route, status) -> (counter child, histogram child): labels() costs a lookup and a
# lock, and this runs on every request. Routes and statuses are bounded, so is this.
_request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def entry_written(kind: str, count: int = 1) -> None:
    """Count ledger entries after the service that wrote them returned (not for replays)."""
    _ENTRY_COUNTERS[kind].inc(count)


def delivery_attempted(outcome: str) -> None:
    _DELIVERY_COUNTERS[outcome].inc()


def known_method(method: str) -> str:
    return method if method in _METHODS else "OTHER"


def observe_request(method: str, route: str | None, status: int, seconds: float) -> None:
    """Count one answered request; ``method`` as ``known_method`` gives it."""
    key = (method, route or UNMATCHED_ROUTE, status)
    children = _request_children.get(key)
    if children is None:
        labels = (method, key[1], str(status))
        children = (HTTP_REQUESTS.labels(*labels), HTTP_REQUEST_DURATION.labels(*labels))
        _request_children[key] = children
    children[0].inc()
    children[1].observe(seconds)


def set_pool_limit(connections: int) -> None:
    DB_POOL_LIMIT.set(connections)


# Every pool of the process reports its checkouts, whenever and wherever it is created (the
# lifespan, the tests, the CLI).
db.on_pool_use(DB_POOL_IN_USE.inc)


_QUEUE = text(
    """
SELECT count(*) FILTER (WHERE w.status = 'active' AND d.next_attempt_at <= :now) AS due,
       count(*) FILTER (WHERE w.status = 'active' AND d.next_attempt_at > :now) AS scheduled,
       count(*) FILTER (WHERE w.status = 'paused') AS paused,
       (SELECT count(*) FROM webhook_endpoints WHERE status = 'paused') AS paused_endpoints
  FROM webhook_deliveries AS d JOIN webhook_endpoints AS w ON w.id = d.endpoint_id
 WHERE d.status = 'pending'
"""
)


async def _database_families(now: datetime) -> list[Metric]:
    """Gauges read from the database at scrape time; none when it does not answer."""
    try:
        async with asyncio.timeout(2.0), db.read_only() as conn:
            row = (await conn.execute(_QUEUE, {"now": now})).one()
    except Exception as exc:  # a scrape must work while the database is down
        log.warning("metrics: database gauges unavailable (%s)", type(exc).__name__)
        return []
    queue = GaugeMetricFamily(
        "patron_webhook_queue_depth",
        "Webhook deliveries waiting: due now, scheduled for a retry, or held by a paused one.",
        labels=["state"],
    )
    for state in ("due", "scheduled", "paused"):
        queue.add_metric([state], getattr(row, state))
    paused = GaugeMetricFamily(
        "patron_webhook_endpoints_paused", "Webhook endpoints paused after failing."
    )
    paused.add_metric([], row.paused_endpoints)
    return [queue, paused]


class _Families:
    """A collector that yields metric families computed beforehand."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


async def render(now: datetime) -> bytes:
    """The Prometheus text exposition of this process (or all, in multiprocess mode)."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        counted = generate_latest(registry)
    else:
        counted = generate_latest(REGISTRY)
    scraped = CollectorRegistry(auto_describe=False)
    scraped.register(_Families(await _database_families(now)))
    return counted + generate_latest(scraped)
