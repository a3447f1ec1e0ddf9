"""The insights dashboard in headless Chromium against a real `patron serve`: an admin opens
/dashboard, enters the key, and every chart draws from a program seeded through the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import ConsoleMessage, Page, async_playwright

from app.services.programs.programs import create_program
from tests.live import CHROMIUM_FLAGS, chromium_path, running_server

CHARTS_WITH_DATA = (
    "chart-segments",
    "chart-revenue",
    "chart-expiry",
    "chart-tiers",
    "chart-funnel",
    "chart-rewards",
    "chart-coupons",
    "chart-campaigns",
    "chart-liability",
)


async def seed(api: httpx.AsyncClient) -> None:
    """Twelve members with varied histories, points with and without expiry, feedback, two
    tiers, and one referral (c0 brought c1)."""
    now = datetime.now(UTC)

    async def ok(response: Any) -> None:
        assert response.status_code in (200, 201), response.text

    await ok(await api.patch("/v1/program", json={"points_expiry_days": 60}))
    await ok(await api.post("/v1/tiers", json={"key": "silver", "name": "Silver", "threshold": 50}))
    await ok(await api.post("/v1/tiers", json={"key": "gold", "name": "Gold", "threshold": 150}))
    await ok(
        await api.patch(
            "/v1/program", json={"referral": {"referrer_points": 10, "referee_points": 5}}
        )
    )
    code = None
    for index in range(12):
        name = f"c{index}"
        fields: dict[str, Any] = {"name": f"Customer {index}"}
        if code is not None and index == 1:
            fields["referral_code"] = code
        await ok(await api.put(f"/v1/members/{name}", json=fields))
        if index == 0:
            link = await api.post("/v1/members/c0/referral-link")
            await ok(link)
            code = link.json()["code"]
        for k in range(index % 4):
            when = now - timedelta(days=2 + index * 20 + k * 9)
            await ok(
                await api.post(
                    "/v1/orders",
                    json={
                        "order_id": f"{name}-{k}",
                        "member_id": name,
                        "amount": 5_000 + index * 2_000,
                        "currency": "CNY",
                        "occurred_at": when.isoformat(),
                    },
                )
            )
        await ok(
            await api.post(
                f"/v1/members/{name}/feedback", json={"score": index % 11, "channel": "app"}
            )
        )
    await ok(await api.patch("/v1/program", json={"points_expiry_days": None}))
    await ok(await api.post("/v1/members/c0/points/earn", json={"points": 300, "reason": "gift"}))
    for name, cost in (("Tea cup", 100), ("10 off", 50)):
        reward = await api.post(
            "/v1/rewards", json={"name": name, "kind": "gift", "points_cost": cost}
        )
        await ok(reward)
        await ok(await api.post(f"/v1/members/c0/rewards/{reward.json()['id']}/redeem"))
    await ok(await api.post("/v1/orders/c3-0/refunds", json={"refund_id": "r1", "amount": 2_000}))
    refreshed = await api.post("/v1/insights/refresh")
    await ok(refreshed)
    assert refreshed.json()["members"] == 12
    campaign = await api.post(
        "/v1/campaigns",
        json={
            "name": "Thank you",
            "audience": {},
            "action": {"bonus_points": 10},
            "holdout_percent": 50,
        },
    )
    await ok(campaign)
    await ok(await api.post(f"/v1/campaigns/{campaign.json()['id']}/run"))


async def open_dashboard(page: Page, base: str, key: str) -> None:
    await page.goto(f"{base}/dashboard")
    await page.fill("#key", key)
    await page.click("#key-form button[type=submit]")


class TestDashboard:
    async def test_charts_render_with_an_admin_key(self, database_url: str, tmp_path: Path) -> None:
        browser_path = chromium_path()
        _, key = await create_program("Dashboard Shop", "CNY")
        with running_server(database_url) as base:
            async with httpx.AsyncClient(
                base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30
            ) as api:
                await seed(api)
                segments = (await api.get("/v1/insights/segments")).json()
                expiry = (await api.get("/v1/insights/points-expiry")).json()["data"]
                liability = (await api.get("/v1/insights/liability")).json()["rows"]

            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch_persistent_context(
                    tmp_path / "profile",
                    executable_path=browser_path,
                    args=CHROMIUM_FLAGS,
                    viewport={"width": 1280, "height": 900},
                )
                page = await browser.new_page()
                problems: list[str] = []
                page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

                def on_console(message: ConsoleMessage) -> None:
                    if message.type in ("error", "warning"):
                        problems.append(f"console {message.type}: {message.text}")

                page.on("console", on_console)
                page.on(
                    "requestfailed",
                    lambda request: problems.append(f"request failed: {request.url}"),
                )
                # Nothing may leave the machine: the page works offline.
                outside: list[str] = []
                page.on(
                    "request",
                    lambda request: (
                        None
                        if request.url.startswith((base, "data:"))
                        else outside.append(request.url)
                    ),
                )

                await page.goto(f"{base}/dashboard")
                await page.wait_for_selector("#key")
                await page.screenshot(path=str(tmp_path / "dashboard-key.png"))
                await page.fill("#key", key)
                await page.click("#key-form button[type=submit]")
                await page.wait_for_selector("body[data-state=ready]", timeout=30_000)
                await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

                cards = await page.locator("#cards .card").count()
                states = {
                    chart: await page.get_attribute(f"#{chart}", "data-state")
                    for chart in CHARTS_WITH_DATA
                }
                bars = {
                    chart: await page.locator(f"#{chart} svg rect.bar").count()
                    for chart in CHARTS_WITH_DATA
                }
                labels = {
                    chart: await page.get_attribute(f"#{chart} svg", "aria-labelledby")
                    for chart in CHARTS_WITH_DATA
                }
                table_rows = await page.locator("#chart-segments table tbody tr").count()
                intervals = await page.locator("#chart-campaigns svg line.ci").count()
                liability_cells = await page.locator(
                    "#chart-liability table tbody tr:last-child td"
                ).all_inner_texts()
                members_card = await page.locator("#cards .card").first.inner_text()
                stored_key = await page.evaluate("sessionStorage.getItem('patron.adminKey')")

                # A reload keeps the key for this tab and draws again.
                await page.reload()
                await page.wait_for_selector("body[data-state=ready]", timeout=30_000)
                await browser.close()

        assert problems == []
        assert outside == []
        assert cards == 13
        assert "12" in members_card
        assert states == dict.fromkeys(CHARTS_WITH_DATA, "ready")
        assert bars["chart-segments"] == bars["chart-revenue"] == len(segments) == 11
        assert bars["chart-expiry"] == len(expiry) >= 2
        assert bars["chart-tiers"] == 2
        assert bars["chart-funnel"] == 3
        assert bars["chart-rewards"] == 2
        assert bars["chart-coupons"] == 4
        assert bars["chart-campaigns"] == 2  # treated and held out
        assert intervals == 1
        assert bars["chart-liability"] == len(liability) >= 12
        assert len(liability_cells) == 7 and liability[-1]["closing"] > 0
        assert all(labels.values())
        assert table_rows == 11
        assert stored_key == key
        for shot in ("dashboard-key.png", "dashboard.png"):
            assert (tmp_path / shot).stat().st_size > 0

    async def test_a_key_without_admin_is_refused(self, database_url: str, tmp_path: Path) -> None:
        browser_path = chromium_path()
        _, key = await create_program("Dashboard Shop", "CNY")
        with running_server(database_url) as base:
            async with httpx.AsyncClient(
                base_url=base, headers={"Authorization": f"Bearer {key}"}
            ) as api:
                created = await api.post(
                    "/v1/api-keys", json={"name": "reader", "scopes": ["members:read"]}
                )
                reader = created.json()["key"]
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch_persistent_context(
                    tmp_path / "profile", executable_path=browser_path, args=CHROMIUM_FLAGS
                )
                page = await browser.new_page()
                await open_dashboard(page, base, reader)
                await page.wait_for_selector("#status.error", timeout=30_000)
                status = await page.inner_text("#status")
                state = await page.get_attribute("body", "data-state")
                stored_key = await page.evaluate("sessionStorage.getItem('patron.adminKey')")
                await page.screenshot(path=str(tmp_path / "dashboard-refused.png"))
                await browser.close()
        assert "refused" in status
        assert state == "locked"
        assert stored_key is None
