"""Observability: /metrics in Prometheus text, request ids, JSON logs, and /readyz."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from app import db
from app.clock import clock
from app.config import get_settings
from app.migrate import upgrade
from app.services.events.webhook_delivery import deliver_due
from app.services.ledger import postings as ledger
from tests.conftest import PgServer, Program
from tests.webhook_support import Receiver, fan_out_until, register, remove_endpoints

ROOT = Path(__file__).resolve().parent.parent
EARN_ROUTE = "/v1/members/{member}/points/earn"


def metric_samples(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return metric_samples(response.text)


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def swapped_engine() -> AsyncIterator[Any]:
    """Lets a test point the service at another database, then puts the real one back."""
    original = db.get_engine()
    replaced: list[Any] = []

    def use(url: str) -> None:
        engine = db.make_engine(url)
        replaced.append(engine)
        db.configure(engine)

    yield use
    db.configure(original)
    for engine in replaced:
        await engine.dispose()


class TestMetrics:
    async def test_parses_and_counts_requests_by_route_template(self, program: Program) -> None:
        await program.member("cust-7731")
        before = await scrape(program.client)
        for _ in range(3):
            response = await program.post(
                "/v1/members/cust-7731/points/earn", json={"points": 1, "reason": "x"}
            )
            assert response.status_code == 201
        after_response = await program.client.get("/metrics")
        after = metric_samples(after_response.text)
        labels = {"method": "POST", "route": EARN_ROUTE, "status": "201"}
        assert value(after, "patron_http_requests_total", **labels) == (
            value(before, "patron_http_requests_total", **labels) + 3
        )
        assert value(after, "patron_http_request_duration_seconds_count", **labels) == (
            value(before, "patron_http_request_duration_seconds_count", **labels) + 3
        )
        assert value(after, "patron_http_request_duration_seconds_bucket", **labels, le="+Inf") >= 3
        # Member ids never become label values.
        assert "cust-7731" not in after_response.text

    async def test_unmatched_routes_and_odd_methods_share_labels(self, program: Program) -> None:
        await program.client.get("/no/such/path/123")
        await program.client.request("BREW", "/healthz")
        samples = await scrape(program.client)
        assert value(
            samples, "patron_http_requests_total", method="GET", route="unmatched", status="404"
        )
        assert value(
            samples, "patron_http_requests_total", method="OTHER", route="/healthz", status="405"
        )
        assert not any("/no/such/path" in str(labels) for _, labels in samples)

    async def test_ledger_entries_by_kind_not_counting_replays(self, program: Program) -> None:
        await program.member("m1", points=50)
        before = await scrape(program.client)
        headers = {"Idempotency-Key": "earn-once"}
        for _ in range(2):
            await program.post(
                "/v1/members/m1/points/earn", json={"points": 5, "reason": "x"}, headers=headers
            )
        await program.post("/v1/members/m1/points/redeem", json={"points": 5})
        await program.post("/v1/members/m1/points/redeem", json={"points": 5000})  # refused
        await program.post("/v1/members/m1/points/adjust", json={"points": -1, "reason": "x"})
        after = await scrape(program.client)
        for kind, added in [("earn", 1), ("redeem", 1), ("adjust", 1), ("order", 0)]:
            name = "patron_ledger_entries_total"
            assert value(after, name, kind=kind) == value(before, name, kind=kind) + added, kind

    async def test_webhook_deliveries_and_queue_depth(self, program: Program) -> None:
        receiver = await Receiver(500).start()
        try:
            endpoint = await register(program, receiver.url, ["member.created"])
            await program.member("m1")
            await fan_out_until(endpoint["id"], 1)
            queued = await scrape(program.client)
            assert value(queued, "patron_webhook_queue_depth", state="due") >= 1
            await deliver_due(clock.now())
            after = await scrape(program.client)
            retrying = "patron_webhook_deliveries_total"
            assert value(after, retrying, outcome="retrying") == (
                value(queued, retrying, outcome="retrying") + 1
            )
            assert value(after, "patron_webhook_queue_depth", state="scheduled") >= 1
            assert ("patron_webhook_endpoints_paused", frozenset()) in after
        finally:
            await receiver.stop()
            await remove_endpoints(program.id)

    async def test_database_pool(self, program: Program) -> None:
        samples = await scrape(program.client)
        settings = get_settings()
        limit = settings.pool_size + settings.pool_max_overflow
        assert value(samples, "patron_db_pool_connections_limit") == limit
        assert 0 <= value(samples, "patron_db_pool_connections_in_use") <= limit
        async with db.read_only():
            during = await scrape(program.client)
        assert value(during, "patron_db_pool_connections_in_use") >= 1

    async def test_scrapes_while_the_database_is_down(
        self, program: Program, swapped_engine: Any
    ) -> None:
        swapped_engine("postgresql://postgres@127.0.0.1:1/unreachable")
        samples = await scrape(program.client)
        assert value(
            samples, "patron_http_requests_total", method="GET", route="/metrics", status="200"
        )
        assert not any(name.startswith("patron_webhook_queue") for name, _ in samples)

    def test_multiprocess_mode_adds_up_the_workers(self, tmp_path: Path) -> None:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
        env.pop("DATABASE_URL", None)
        env.pop("PATRON_DATABASE_URL", None)

        def run(code: str) -> str:
            result = subprocess.run(
                [sys.executable, "-c", code],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            return result.stdout

        for count in (2, 3):
            run(f"from app import metrics; metrics.entry_written('earn', {count})")
        exposition = run(
            "import asyncio, sys; from datetime import UTC, datetime; from app import metrics; "
            "sys.stdout.write(asyncio.run(metrics.render(datetime.now(UTC))).decode())"
        )
        samples = metric_samples(exposition)
        assert value(samples, "patron_ledger_entries_total", kind="earn") == 5


class TestRequestId:
    async def test_echoes_a_valid_id(self, program: Program) -> None:
        response = await program.get("/v1/program", headers={"X-Request-ID": "shop-req:42.a_b-c"})
        assert response.headers["X-Request-ID"] == "shop-req:42.a_b-c"

    @pytest.mark.parametrize(
        "sent", [None, "", "has spaces", "x" * 129, "<script>", "é".encode(), "a\tb"]
    )
    async def test_generates_one_otherwise(
        self, program: Program, sent: str | bytes | None
    ) -> None:
        headers = {} if sent is None else {"X-Request-ID": sent}
        response = await program.client.get("/healthz", headers=headers)
        generated = response.headers["X-Request-ID"]
        assert len(generated) == 32 and int(generated, 16) >= 0
        assert generated != sent

    async def test_on_errors_too(self, program: Program, monkeypatch: pytest.MonkeyPatch) -> None:
        await program.member("m1", points=10)
        monkeypatch.setitem(ledger._DEBIT, False, text("SELECT 1 / 0"))
        response = await program.post(
            "/v1/members/m1/points/redeem", json={"points": 1}, headers={"X-Request-ID": "r-500"}
        )
        assert response.status_code == 500
        assert response.headers["X-Request-ID"] == "r-500"
        unauthorized = await program.client.get("/v1/program", headers={"X-Request-ID": "r-401"})
        assert unauthorized.status_code == 401
        assert unauthorized.headers["X-Request-ID"] == "r-401"


def json_lines(captured: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in captured.splitlines() if line.strip()]


class TestJsonLogs:
    async def test_access_log_carries_the_request_id(
        self, program: Program, capsys: pytest.CaptureFixture[str]
    ) -> None:
        await program.member("cust-secret-9", email="li@example.com")
        capsys.readouterr()
        await program.post(
            "/v1/members/cust-secret-9/points/earn?note=private",
            json={"points": 3, "reason": "x"},
            headers={"X-Request-ID": "trace-abc"},
        )
        err = capsys.readouterr().err
        lines = json_lines(err)  # every line is one JSON object
        (access,) = [line for line in lines if line.get("request_id") == "trace-abc"]
        assert access["logger"] == "patron.access"
        assert access["level"] == "info"
        assert access["message"] == "request"
        assert (access["method"], access["route"], access["status"]) == ("POST", EARN_ROUTE, 201)
        assert access["duration_ms"] > 0
        assert access["time"].endswith("+00:00")
        # No member id, personal data, query string or key in the logs.
        for secret in ("cust-secret-9", "li@example.com", "private", program.admin_key):
            assert secret not in err

    async def test_errors_are_logged_with_the_request_id_and_no_data(
        self, program: Program, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        await program.member("cust-secret-9", points=10)
        monkeypatch.setitem(ledger._DEBIT, False, text("SELECT 1 / 0"))
        capsys.readouterr()
        await program.post(
            "/v1/members/cust-secret-9/points/redeem",
            json={"points": 1},
            headers={"X-Request-ID": "trace-500"},
        )
        err = capsys.readouterr().err
        lines = [line for line in json_lines(err) if line.get("request_id") == "trace-500"]
        (error,) = [line for line in lines if line["level"] == "error"]
        assert error["message"] == "unhandled error on POST /v1/members/{member}/points/redeem"
        assert "DivisionByZero" in error["exception"]
        assert [line["status"] for line in lines if line["logger"] == "patron.access"] == [500]
        assert "cust-secret-9" not in err
        assert program.admin_key not in err

    def test_redaction(self) -> None:
        from app.logs import redact

        assert redact("key ptr_AbC-123 and whsec_x_Y") == "key ptr_[redacted] and whsec_[redacted]"
        assert redact("Authorization: Bearer abc.def") == "Authorization: Bearer [redacted]"
        assert redact("DETAIL:  Key (email)=(li@example.com) exists") == "DETAIL:  redacted"
        assert "li@" not in redact("[SQL: INSERT ...]\n[parameters: ('li@example.com', 1)]")


class TestReadiness:
    async def test_ready(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/readyz")
        assert response.status_code == 200
        assert response.json()["status"] == "ready"

    async def test_database_unreachable(
        self, client: httpx.AsyncClient, swapped_engine: Any
    ) -> None:
        swapped_engine("postgresql://postgres@127.0.0.1:1/unreachable")
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["status"] == "not_ready"
        assert response.json()["detail"].startswith("database unreachable")
        assert (await client.get("/healthz")).status_code == 200

    async def test_migrations_behind(
        self, client: httpx.AsyncClient, pg_server: PgServer, swapped_engine: Any
    ) -> None:
        url = await pg_server.create_database("patron_behind")
        try:
            await asyncio.to_thread(upgrade, url, "0002")
            swapped_engine(url)
            response = await client.get("/readyz")
            assert response.status_code == 503
            assert response.json()["detail"].startswith("migrations behind: database at 0002")
        finally:
            await pg_server.drop_database(url)


@pytest.fixture(autouse=True)
def _real_clock() -> Iterator[None]:
    clock.reset()
    yield
