"""Webhook delivery against real HTTP receivers on 127.0.0.1: signatures, retries with
growing delays, the retry horizon, pausing and resuming, secret rotation, concurrent workers,
and receivers that hang, drop the connection or fail while checkout traffic goes on."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from app import worker
from app.clock import clock
from app.services.events import webhook_delivery, webhook_urls
from app.services.events.webhook_delivery import deliver_due, fan_out_events
from app.webhook_signature import parse_header, verify
from tests.conftest import Program
from tests.webhook_support import Receiver, deliveries, fan_out_until, register, remove_endpoints

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
async def _no_endpoints_left(program: Program) -> AsyncIterator[None]:
    yield
    await remove_endpoints(program.id)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    yield server
    await server.stop()


@pytest.fixture
def short_timeout(monkeypatch: pytest.MonkeyPatch) -> float:
    """Cut the 10 s request timeout so that tests with hanging receivers stay short."""
    monkeypatch.setattr(webhook_delivery, "REQUEST_TIMEOUT_SECONDS", 0.5)
    return 0.5


async def delivery_row(endpoint_id: str) -> object:
    (row,) = await deliveries(endpoint_id)
    return row


class TestDelivered:
    async def test_signed_post_of_the_event(self, program: Program, receiver: Receiver) -> None:
        clock.freeze(START)
        endpoint = await register(program, receiver.url)
        await program.member("m1", points=25)
        await fan_out_until(endpoint["id"], 2)
        assert await deliver_due(clock.now()) == 2
        assert len(receiver.requests) == 2
        feed = (await program.get("/v1/events")).json()["data"]
        # Sent concurrently, so in any order.
        received = sorted(receiver.requests, key=lambda r: int(r.headers["patron-event-id"]))
        for request, event in zip(received, feed, strict=True):
            assert request.method == "POST"
            assert request.path == "/hooks/patron"
            assert request.headers["content-type"] == "application/json"
            # The body is the feed's event, byte for byte as JSON.
            assert orjson.loads(request.body) == event
            assert request.headers["patron-event-id"] == str(event["id"])
            signature = request.headers["patron-signature"]
            assert signature.startswith(f"t={int(START.timestamp())},v1=")
            assert verify(endpoint["secret"], signature, request.body, now=START)
            assert not verify(endpoint["secret"], signature, request.body + b" ", now=START)
            assert not verify("whsec_other", signature, request.body, now=START)
        log = (await program.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries")).json()
        assert [(d["status"], d["attempts"], d["last_status_code"]) for d in log["data"]] == [
            ("delivered", 1, 200),
            ("delivered", 1, 200),
        ]
        assert all(d["next_attempt_at"] is None for d in log["data"])
        # Nothing more to send.
        assert await deliver_due(clock.now()) == 0

    async def test_only_subscribed_types_and_only_after_registration(
        self, program: Program, receiver: Receiver
    ) -> None:
        await program.member("before", points=5)
        endpoint = await register(program, receiver.url, ["points.redeemed"])
        await program.member("m1", points=10)
        await program.post("/v1/members/m1/points/redeem", json={"points": 4})
        rows = await fan_out_until(endpoint["id"], 1)
        assert [r.type for r in rows] == ["points.redeemed"]
        await deliver_due(clock.now())
        assert [orjson.loads(r.body)["type"] for r in receiver.requests] == ["points.redeemed"]

    async def test_the_worker_runs_both_jobs(self, program: Program, receiver: Receiver) -> None:
        endpoint = await register(program, receiver.url)
        await program.member("m1")
        await fan_out_until(endpoint["id"], 1)
        handled = await worker.run_once()
        assert handled["webhooks_deliver"] >= 1
        assert receiver.requests


class TestRetries:
    async def test_non_2xx_retries_with_growing_delays(
        self, program: Program, receiver: Receiver
    ) -> None:
        receiver.behaviour = 500
        clock.freeze(START)
        endpoint = await register(program, receiver.url, ["member.created"])
        await program.member("m1")
        await fan_out_until(endpoint["id"], 1)
        delays = []
        for attempt in range(1, 7):
            assert await deliver_due(clock.now()) == 1
            row = await delivery_row(endpoint["id"])
            assert (row.status, row.attempts, row.last_status_code) == ("pending", attempt, 500)
            assert row.last_error == "HTTP 500"
            delay = row.next_attempt_at - clock.now()
            delays.append(delay.total_seconds())
            # Not due a moment before its time.
            clock.freeze(row.next_attempt_at - timedelta(seconds=1))
            assert await deliver_due(clock.now()) == 0
            clock.freeze(row.next_attempt_at)
        print("retry delays (s):", [round(d, 1) for d in delays])
        assert 24 <= delays[0] <= 36  # 30 s ± 20 %
        assert all(later > earlier for earlier, later in itertools.pairwise(delays))
        assert len(receiver.requests) == 6
        assert set(receiver.event_ids()) == {str(row.event_id)}
        endpoint_now = (await program.get(f"/v1/webhook-endpoints/{endpoint['id']}")).json()
        assert endpoint_now["consecutive_failures"] == 6
        assert endpoint_now["failing_since"] == START.isoformat()
        assert endpoint_now["status"] == "active"

    async def test_a_success_resets_the_failure_count(
        self, program: Program, receiver: Receiver
    ) -> None:
        receiver.behaviour = 503
        clock.freeze(START)
        endpoint = await register(program, receiver.url, ["member.created"])
        await program.member("m1")
        await fan_out_until(endpoint["id"], 1)
        await deliver_due(clock.now())
        receiver.behaviour = 204
        clock.advance(timedelta(minutes=5))
        await deliver_due(clock.now())
        row = await delivery_row(endpoint["id"])
        assert (row.status, row.attempts, row.last_status_code) == ("delivered", 2, 204)
        state = (await program.get(f"/v1/webhook-endpoints/{endpoint['id']}")).json()
        assert (state["consecutive_failures"], state["failing_since"]) == (0, None)

    @pytest.mark.parametrize("behaviour", ["hang", "kill", 302])
    async def test_timeouts_drops_and_redirects_are_failures(
        self, program: Program, receiver: Receiver, short_timeout: float, behaviour: str | int
    ) -> None:
        receiver.behaviour = behaviour
        clock.freeze(START)
        endpoint = await register(program, receiver.url, ["member.created"])
        await program.member("m1")
        await fan_out_until(endpoint["id"], 1)
        started = time.perf_counter()
        await deliver_due(clock.now())
        assert time.perf_counter() - started < short_timeout + 2
        row = await delivery_row(endpoint["id"])
        assert (row.status, row.attempts) == ("pending", 1)
        assert row.next_attempt_at > clock.now() + timedelta(seconds=20)
        expected = {
            "hang": "No response within 0.5 s.",
            "kill": "RemoteProtocolError",
            302: "HTTP 302",
        }[behaviour]
        assert expected in row.last_error
        assert len(receiver.requests) == 1

    async def test_after_the_horizon_fails_and_pauses_until_resumed(
        self, program: Program, receiver: Receiver
    ) -> None:
        receiver.behaviour = 500
        clock.freeze(START)
        endpoint = await register(program, receiver.url, ["member.created"])
        path = f"/v1/webhook-endpoints/{endpoint['id']}"
        await program.member("m1")
        await fan_out_until(endpoint["id"], 1)
        # Retrying through the day: never failed before 24 h.
        while clock.now() < START + timedelta(hours=24):
            await deliver_due(clock.now())
            row = await delivery_row(endpoint["id"])
            assert row.status == "pending"
            clock.freeze(row.next_attempt_at)
        attempts_in_a_day = row.attempts
        await deliver_due(clock.now())
        row = await delivery_row(endpoint["id"])
        assert row.status == "failed"
        assert row.attempts == attempts_in_a_day + 1
        print("attempts over the 24 h horizon:", row.attempts)
        assert 20 <= row.attempts <= 40
        paused = (await program.get(path)).json()
        assert paused["status"] == "paused"
        assert paused["paused_at"] == clock.now().isoformat()
        assert "HTTP 500" in paused["paused_reason"]
        assert f"event {row.event_id}" in paused["paused_reason"]
        # Paused: new events queue up but nothing is sent.
        await program.member("m2")
        await fan_out_until(endpoint["id"], 2)
        sent = len(receiver.requests)
        clock.advance(timedelta(hours=1))
        assert await deliver_due(clock.now()) == 0
        assert len(receiver.requests) == sent
        # Resumed: what waited is sent at once; the failed one stays failed.
        receiver.behaviour = 200
        resumed = await program.post(path + "/resume")
        assert resumed.json()["status"] == "active"
        assert resumed.json()["paused_reason"] is None
        assert await deliver_due(clock.now()) == 1
        statuses = [r.status for r in await deliveries(endpoint["id"])]
        assert statuses == ["failed", "delivered"]

    async def test_a_single_bad_event_does_not_pause_a_working_endpoint(
        self, program: Program, receiver: Receiver
    ) -> None:
        clock.freeze(START)
        endpoint = await register(program, receiver.url, ["member.created"])
        await program.member("m1")
        first_id = str((await fan_out_until(endpoint["id"], 1))[0].event_id)
        # The receiver refuses m1's event, and only that one.
        receiver.behaviour = lambda request: (
            400 if request.headers["patron-event-id"] == first_id else 200
        )
        await deliver_due(clock.now())
        clock.advance(timedelta(hours=23))
        await program.member("m2")
        await fan_out_until(endpoint["id"], 2)
        for _ in range(4):
            await deliver_due(clock.now())
            clock.advance(timedelta(hours=1))
        first, second = await deliveries(endpoint["id"])
        assert (first.status, second.status) == ("failed", "delivered")
        state = (await program.get(f"/v1/webhook-endpoints/{endpoint['id']}")).json()
        assert state["status"] == "active"


class TestSecretRotation:
    async def test_both_signatures_for_24_hours(self, program: Program, receiver: Receiver) -> None:
        clock.freeze(START)
        endpoint = await register(program, receiver.url, ["member.created"])
        old = endpoint["secret"]
        new = (await program.post(f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret")).json()[
            "secret"
        ]
        await program.member("m1")
        await fan_out_until(endpoint["id"], 1)
        await deliver_due(clock.now())
        request = receiver.requests[-1]
        header = request.headers["patron-signature"]
        assert len(parse_header(header)[1]) == 2
        assert verify(new, header, request.body, now=START)
        assert verify(old, header, request.body, now=START)
        clock.advance(timedelta(hours=24, seconds=1))
        await program.member("m2")
        await fan_out_until(endpoint["id"], 2)
        await deliver_due(clock.now())
        request = receiver.requests[-1]
        header = request.headers["patron-signature"]
        assert len(parse_header(header)[1]) == 1
        assert verify(new, header, request.body, now=clock.now())
        assert not verify(old, header, request.body, now=clock.now())


class TestRequestForgery:
    async def test_address_is_checked_again_before_each_attempt(
        self, program: Program, receiver: Receiver
    ) -> None:
        endpoint = await register(program, receiver.url, ["member.created"])
        await program.patch("/v1/program", json={"webhooks_allow_private_hosts": False})
        await program.member("m1")
        await fan_out_until(endpoint["id"], 1)
        assert await deliver_due(clock.now()) == 1
        assert receiver.requests == []
        row = await delivery_row(endpoint["id"])
        assert row.status == "pending"
        assert "non-public address" in row.last_error

    async def test_connects_to_the_address_it_checked(
        self, program: Program, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The host is resolved once per attempt and the request goes to that address, with
        the original Host header: a DNS answer that changes in between cannot redirect it."""
        lookups: list[str] = []

        async def resolve(host: str, port: int) -> list[Any]:
            lookups.append(host)
            return [ipaddress.ip_address("127.0.0.1")]

        monkeypatch.setattr(webhook_urls, "resolve", resolve)
        # Treat loopback as public for this test only, so the receiver can stand in for a
        # public host.
        monkeypatch.setattr(webhook_urls, "is_public", lambda address: True)
        port = receiver.url.split(":")[2].split("/")[0]
        url = f"http://hooks.shop.example:{port}/hooks/patron"
        endpoint = await register(program, url, ["member.created"], allow_private=False)
        await program.member("m1")
        await fan_out_until(endpoint["id"], 1)
        await deliver_due(clock.now())
        (request,) = receiver.requests
        assert request.headers["host"] == f"hooks.shop.example:{port}"
        assert lookups == ["hooks.shop.example", "hooks.shop.example"]  # register, deliver

    async def test_a_host_with_any_private_address_is_refused(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async def resolve(host: str, port: int) -> list[Any]:
            return [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("10.0.0.5")]

        monkeypatch.setattr(webhook_urls, "resolve", resolve)
        with pytest.raises(webhook_urls.UnsafeDestinationError, match=r"10\.0\.0\.5"):
            await webhook_urls.target_for("https://shop.example/hook", allow_private=False)

    async def test_pinned_target(self, monkeypatch: pytest.MonkeyPatch) -> None:
        async def resolve(host: str, port: int) -> list[Any]:
            assert (host, port) == ("shop.example", 8443)
            return [ipaddress.ip_address("2606:2800:220:1::1")]

        monkeypatch.setattr(webhook_urls, "resolve", resolve)
        target = await webhook_urls.target_for("https://shop.example:8443/h?x=1", False)
        assert target.url == "https://[2606:2800:220:1::1]:8443/h?x=1"
        assert target.headers == {"Host": "shop.example:8443"}
        assert target.extensions == {"sni_hostname": "shop.example"}

    @pytest.mark.parametrize(
        ("address", "public"),
        [
            ("93.184.216.34", True),
            ("2606:2800:220:1::1", True),
            ("127.0.0.1", False),
            ("::ffff:10.0.0.1", False),
            ("2002:7f00:1::1", False),  # 6to4 around 127.0.0.1
            ("100.64.1.1", False),
            ("ff02::1", False),
        ],
    )
    def test_public_addresses(self, address: str, public: bool) -> None:
        assert webhook_urls.is_public(ipaddress.ip_address(address)) is public


class TestConcurrentWorkers:
    async def test_two_workers_never_send_an_attempt_twice(
        self, program: Program, receiver: Receiver
    ) -> None:
        receiver.delay = 0.02
        endpoints = [await register(program, receiver.url, ["member.created"]) for _ in range(3)]
        for n in range(20):
            await program.member(f"m{n}")
        for endpoint in endpoints:
            await fan_out_until(endpoint["id"], 20)
        # Fan-out twice at once changes nothing more.
        await asyncio.gather(fan_out_events(clock.now()), fan_out_events(clock.now()))
        counts = await asyncio.gather(deliver_due(clock.now()), deliver_due(clock.now()))
        print("attempts per worker:", counts)
        assert sum(counts) == 60
        sent = Counter(
            (r.headers["patron-event-id"], r.headers["patron-signature"]) for r in receiver.requests
        )
        assert len(receiver.requests) == 60
        assert max(sent.values()) == 1
        for endpoint in endpoints:
            rows = await deliveries(endpoint["id"])
            assert [(r.status, r.attempts) for r in rows] == [("delivered", 1)] * 20


class TestBadReceiversDoNotBlock:
    async def test_checkout_and_other_endpoints_keep_flowing(
        self, program: Program, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The hanging receiver's attempts end at this timeout; everything else must be done
        # before. (The sends share this test's event loop with the earn calls.)
        timeout = 8.0
        monkeypatch.setattr(webhook_delivery, "REQUEST_TIMEOUT_SECONDS", timeout)
        hang, kill, fail = [await Receiver(b).start() for b in ("hang", "kill", 500)]
        good = await Receiver(200).start()
        try:
            endpoints = [await register(program, r.url) for r in (hang, kill, fail, good)]
            for n in range(10):
                await program.member(f"m{n}", points=10)
            for endpoint in endpoints:
                await fan_out_until(endpoint["id"], 20)

            started = time.perf_counter()
            sending = asyncio.create_task(deliver_due(clock.now()))
            for n in range(200):
                response = await program.post(
                    f"/v1/members/m{n % 10}/points/earn", json={"points": 1, "reason": "x"}
                )
                assert response.status_code == 201
            async with asyncio.timeout(timeout):
                while len(good.requests) < 20 or len(fail.requests) < 20:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            others_done = time.perf_counter() - started
            # Checkout went on while deliveries were under way (the earn calls above all
            # answered while the hanging receiver still held its attempts open), and
            # everything for the other endpoints went out while the hanging receiver's
            # first attempts were still waiting for an answer.
            assert others_done < timeout
            assert not sending.done()
            assert 1 <= len(hang.requests) <= webhook_delivery.MAX_SENDS_PER_ENDPOINT
            assert len(kill.requests) == 20
            sending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await sending
        finally:
            for server in (hang, kill, fail, good):
                await server.stop()


def test_backoff_doubles_up_to_an_hour_with_jitter() -> None:
    for attempt, base in [(1, 30), (2, 60), (3, 120), (7, 1920), (8, 3600), (50, 3600)]:
        seconds = [webhook_delivery.backoff(attempt).total_seconds() for _ in range(200)]
        assert base * 0.8 <= min(seconds) and max(seconds) <= base * 1.2
        assert len(set(seconds)) > 1


async def test_claims_skip_unknown_busy_ids(program: Program) -> None:
    # The claim statement accepts a list of endpoints to skip, empty or not.
    assert await webhook_delivery._claim(program.id, clock.now(), 1, [uuid.uuid4()]) == []
