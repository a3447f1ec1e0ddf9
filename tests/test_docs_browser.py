"""An admin changes a tier threshold in Swagger UI (/docs) of a running server, and the API
shows the change. Runs Debian's Chromium headless through Playwright."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.async_api import async_playwright

from app.services.programs.programs import create_program
from tests.live import CHROMIUM_FLAGS, chromium_path, running_server


class TestSwaggerUi:
    async def test_admin_changes_a_threshold_with_try_it_out(
        self, database_url: str, tmp_path: Path
    ) -> None:
        browser_path = chromium_path()
        _, key = await create_program("Docs Shop", "CNY")
        headers = {"Authorization": f"Bearer {key}"}
        with running_server(database_url) as base:
            async with httpx.AsyncClient(base_url=base, headers=headers) as api:
                created = await api.post(
                    "/v1/tiers", json={"key": "gold", "name": "Gold", "threshold": 1000}
                )
                assert created.status_code == 201, created.text

                async with async_playwright() as playwright:
                    browser = await playwright.chromium.launch(
                        executable_path=browser_path, args=CHROMIUM_FLAGS
                    )
                    page = await browser.new_page()
                    errors: list[str] = []
                    page.on("pageerror", lambda error: errors.append(str(error)))
                    await page.goto(f"{base}/docs")
                    await page.click("button.authorize")
                    await page.fill(".auth-container input", key)
                    await page.click(".auth-btn-wrapper button.authorize")
                    await page.click(".auth-btn-wrapper button.btn-done")

                    operation = page.locator("#operations-VIP_tiers-updateTier")
                    await operation.locator(".opblock-summary").click()
                    await operation.locator("button.try-out__btn").click()
                    await operation.locator('tr[data-param-name="key"] input').fill("gold")
                    await operation.locator("textarea.body-param__text").fill('{"threshold": 2500}')
                    await operation.locator("button.execute").click()
                    status = operation.locator(".live-responses-table tbody .response-col_status")
                    await status.first.wait_for(timeout=15_000)
                    shown = (await status.first.inner_text()).strip()
                    await page.screenshot(
                        path=str(tmp_path / "swagger-try-it-out.png"), full_page=True
                    )
                    await browser.close()
                assert shown.startswith("200"), shown
                assert errors == []

                tier = (await api.get("/v1/tiers/gold")).json()
                assert tier["threshold"] == 2500
        assert (tmp_path / "swagger-try-it-out.png").stat().st_size > 0
