"""Webhook endpoints through HTTP: register, list, get, delete, rotate the secret, resume,
the delivery log, and which URLs are refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.services.events.webhooks import MAX_ENDPOINTS_PER_PROGRAM
from tests.conftest import Program
from tests.webhook_support import fan_out_until, register, remove_endpoints

PUBLIC_URL = "http://93.184.216.34/hooks/patron"  # an IP literal: no DNS needed


@pytest.fixture(autouse=True)
async def _no_endpoints_left(program: Program) -> AsyncIterator[None]:
    yield
    await remove_endpoints(program.id)


async def create(program: Program, **body: Any) -> Any:
    return await program.post(
        "/v1/webhook-endpoints", json={"url": PUBLIC_URL, "events": ["*"], **body}
    )


class TestRegister:
    async def test_returns_the_secret_once(self, program: Program) -> None:
        response = await create(
            program, events=["points.earned", "member.created"], description="CRM"
        )
        assert response.status_code == 201
        endpoint = response.json()
        assert endpoint["url"] == PUBLIC_URL
        assert endpoint["events"] == ["points.earned", "member.created"]
        assert endpoint["description"] == "CRM"
        assert endpoint["status"] == "active"
        assert endpoint["paused_reason"] is None
        assert endpoint["secret"].startswith("whsec_") and len(endpoint["secret"]) > 40
        assert endpoint["created_at"].endswith("+00:00")
        listed = (await program.get("/v1/webhook-endpoints")).json()
        assert listed["next_cursor"] is None
        assert [e["id"] for e in listed["data"]] == [endpoint["id"]]
        assert "secret" not in listed["data"][0]
        one = (await program.get(f"/v1/webhook-endpoints/{endpoint['id']}")).json()
        assert "secret" not in one
        assert endpoint["secret"] not in str(one)

    async def test_idempotent_replay_hides_the_secret(self, program: Program) -> None:
        headers = {"Idempotency-Key": "hook-1"}
        first = await program.post(
            "/v1/webhook-endpoints", json={"url": PUBLIC_URL, "events": ["*"]}, headers=headers
        )
        again = await program.post(
            "/v1/webhook-endpoints", json={"url": PUBLIC_URL, "events": ["*"]}, headers=headers
        )
        assert (first.status_code, again.status_code) == (201, 201)
        assert again.headers["Idempotency-Replayed"] == "true"
        assert again.json() == {**first.json(), "secret": None}
        assert len((await program.get("/v1/webhook-endpoints")).json()["data"]) == 1

    @pytest.mark.parametrize(
        "events",
        [[], ["points.stolen"], ["*", "points.earned"], "points.earned", [1]],
    )
    async def test_invalid_event_lists(self, program: Program, events: Any) -> None:
        response = await create(program, events=events)
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"

    async def test_repeated_types_are_kept_once(self, program: Program) -> None:
        response = await create(program, events=["points.earned", "points.earned"])
        assert response.json()["events"] == ["points.earned"]

    async def test_unknown_field(self, program: Program) -> None:
        response = await create(program, secret="mine")
        assert response.status_code == 422

    async def test_at_most_50_per_program(self, program: Program) -> None:
        for _ in range(MAX_ENDPOINTS_PER_PROGRAM):
            assert (await create(program)).status_code == 201
        response = await create(program)
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"


class TestUrlRules:
    @pytest.mark.parametrize(
        "url",
        [
            "ftp://93.184.216.34/x",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "http://user:pass@93.184.216.34/x",
            "http:///nohost",
            "http://93.184.216.34/x#frag",
            "http://93.184.216.34/a b",
            "not a url",
        ],
    )
    async def test_malformed(self, program: Program, url: str) -> None:
        response = await create(program, url=url)
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["code"] == "validation_error"

    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1:8000/hook",
            "http://localhost/hook",
            "http://10.1.2.3/hook",
            "http://172.16.0.1/hook",
            "http://192.168.1.10/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/hook",
            "http://0.0.0.0/hook",
            "http://[::1]/hook",
            "http://[fe80::1]/hook",
            "http://[fd00::1]/hook",
            "http://[::ffff:127.0.0.1]/hook",
            "http://2130706433/hook",  # 127.0.0.1 spelt as one number
            "http://224.0.0.1/hook",
        ],
    )
    async def test_non_public_addresses_are_refused(self, program: Program, url: str) -> None:
        response = await create(program, url=url)
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["code"] == "validation_error"
        assert body["errors"][0]["loc"] == ["body", "url"]
        assert "webhooks_allow_private_hosts" in body["detail"]

    async def test_private_hosts_when_the_program_allows_them(self, program: Program) -> None:
        await program.patch("/v1/program", json={"webhooks_allow_private_hosts": True})
        response = await create(program, url="http://127.0.0.1:9/hook")
        assert response.status_code == 201
        # The form rules still hold.
        assert (await create(program, url="ftp://127.0.0.1/x")).status_code == 422

    async def test_unresolvable_host(self, program: Program) -> None:
        response = await create(program, url="https://no-such-host.invalid/hook")
        assert response.status_code == 422
        assert "does not resolve" in response.json()["detail"]


class TestManage:
    async def test_delete(self, program: Program) -> None:
        endpoint = (await create(program)).json()
        path = f"/v1/webhook-endpoints/{endpoint['id']}"
        assert (await program.delete(path)).status_code == 204
        assert (await program.get(path)).status_code == 404
        assert (await program.delete(path)).status_code == 404
        assert (await program.get("/v1/webhook-endpoints")).json()["data"] == []

    async def test_rotate_secret(self, program: Program) -> None:
        endpoint = (await create(program)).json()
        path = f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret"
        rotated = await program.post(path)
        assert rotated.status_code == 200
        assert rotated.json()["id"] == endpoint["id"]
        assert rotated.json()["secret"].startswith("whsec_")
        assert rotated.json()["secret"] != endpoint["secret"]
        replay_headers = {"Idempotency-Key": "rotate-1"}
        once = await program.post(path, headers=replay_headers)
        twice = await program.post(path, headers=replay_headers)
        assert twice.headers["Idempotency-Replayed"] == "true"
        assert twice.json() == {**once.json(), "secret": None}

    async def test_resume_an_active_endpoint_changes_nothing(self, program: Program) -> None:
        endpoint = (await create(program)).json()
        response = await program.post(f"/v1/webhook-endpoints/{endpoint['id']}/resume")
        assert response.status_code == 200
        assert response.json()["status"] == "active"

    async def test_other_programs_endpoint_is_not_found(
        self, program: Program, other_program: Program
    ) -> None:
        endpoint = (await create(other_program)).json()
        try:
            base = f"/v1/webhook-endpoints/{endpoint['id']}"
            for method, path in [
                ("GET", base),
                ("DELETE", base),
                ("POST", base + "/rotate-secret"),
                ("POST", base + "/resume"),
                ("GET", base + "/deliveries"),
            ]:
                response = await program.request(method, path)
                assert response.status_code == 404, (method, path)
                assert response.json()["code"] == "not_found"
            assert (await program.get("/v1/webhook-endpoints")).json()["data"] == []
            # Still there for its owner.
            assert (await other_program.get(base)).status_code == 200
        finally:
            await remove_endpoints(other_program.id)

    @pytest.mark.parametrize("endpoint_id", ["nope", "123", "00000000-0000-0000-0000-000000000000"])
    async def test_unknown_ids(self, program: Program, endpoint_id: str) -> None:
        response = await program.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries")
        assert response.status_code == 404

    async def test_needs_admin(self, program: Program) -> None:
        key = await program.key_with("points:write", "points:read", "members:write")
        for method, path in [
            ("GET", "/v1/webhook-endpoints"),
            ("POST", "/v1/webhook-endpoints"),
        ]:
            response = await program.request(
                method, path, key=key, json={"url": PUBLIC_URL, "events": ["*"]}
            )
            assert response.status_code == 403


class TestDeliveryLog:
    async def test_lists_newest_first_with_cursor_and_status(self, program: Program) -> None:
        # A closed port on loopback: nothing is sent in this test, only queued.
        endpoint = await register(program, "http://127.0.0.1:9/hook", ["member.created"])
        for n in range(3):
            await program.member(f"m{n}", points=5)  # points.earned is not subscribed
        await fan_out_until(endpoint["id"], 3)
        path = f"/v1/webhook-endpoints/{endpoint['id']}/deliveries"
        first = (await program.get(path, params={"limit": 2})).json()
        assert len(first["data"]) == 2
        second = (
            await program.get(path, params={"limit": 2, "cursor": first["next_cursor"]})
        ).json()
        assert second["next_cursor"] is None
        log = first["data"] + second["data"]
        assert [d["id"] for d in log] == sorted((d["id"] for d in log), reverse=True)
        assert {d["event_type"] for d in log} == {"member.created"}
        assert all(d["status"] == "pending" and d["attempts"] == 0 for d in log)
        assert all(d["next_attempt_at"] is not None for d in log)
        delivered = await program.get(path, params={"status": "delivered"})
        assert delivered.json()["data"] == []
        assert (await program.get(path, params={"status": "lost"})).status_code == 422
