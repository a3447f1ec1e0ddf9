"""The curl examples in docs/ run, as written, against a real server process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live import running_server

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def shell_blocks(document: Path) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", document.read_text(), flags=re.S)


def json_documents(lines: list[str]) -> list[Any]:
    """Every JSON document printed, even several on one line (curl adds no newline)."""
    decoder = json.JSONDecoder()
    found = []
    text = "".join(lines)
    index = 0
    while index < len(text):
        if text[index] in "{[":
            document, index = decoder.raw_decode(text, index)
            found.append(document)
        else:
            index += 1
    return found


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[str]:
    with running_server(database_url) as base:
        yield base


def new_program_key(database_url: str) -> str:
    env = {**os.environ, "DATABASE_URL": database_url}
    created = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "program",
            "create",
            "--name",
            "Docs",
            "--currency",
            "CNY",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key: str = json.loads(created.stdout)["api_key"]
    return key


SHARED = "HOLD_ID TOKEN CODE REWARD_ID COUPON"


def run_blocks(blocks: list[str], base: str, key: str) -> list[list[str]]:
    """Run each block in bash; returns each block's output lines. Blocks share shell
    variables (HOLD_ID, TOKEN, CODE, REWARD_ID, COUPON), as when pasted into one terminal one
    after another."""
    outputs = []
    env = {**os.environ, "PATRON": base, "KEY": key}
    carried = ""
    for block in blocks:
        script = (
            f"set -euo pipefail\n{carried}\n{block}\n"
            f"echo\ndeclare -p {SHARED} 2>/dev/null || true\n"
        )
        result = subprocess.run(
            ["bash", "-c", script],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"example failed:\n{block}\n{result.stdout}{result.stderr}"
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        declared = [line for line in lines if line.startswith("declare ")]
        if declared:
            carried = "\n".join(declared)
        outputs.append([line for line in lines if not line.startswith("declare ")])
    return outputs


def readme_blocks(base: str) -> list[str]:
    """The README's curl example as a reader runs it: against their server, with the key
    they were given in place of the placeholder (the other blocks are make and CLI calls)."""
    blocks = [block for block in shell_blocks(ROOT / "README.md") if "curl " in block]
    assert len(blocks) == 1
    lines = [line for line in blocks[0].splitlines() if not line.startswith("KEY=ptr_...")]
    return ["\n".join(lines).replace("http://127.0.0.1:8000", base)]


def available(server: str, key: str, member: str) -> int:
    points = httpx.get(
        f"{server}/v1/members/{member}/points", headers={"Authorization": f"Bearer {key}"}
    ).json()
    value: int = points["available"]
    return value


class TestReaderJourney:
    """README, then docs/checkout.md, then docs/referrals.md, on one program and one shell,
    as a reader pastes them one after another: no example may clash with an earlier one."""

    def test_every_example_runs_in_order(self, server: str, database_url: str) -> None:
        key = new_program_key(database_url)
        readme = readme_blocks(server)
        checkout = shell_blocks(DOCS / "checkout.md")
        referral = shell_blocks(DOCS / "referrals.md")
        assert (len(checkout), len(referral)) == (5, 7)
        outputs = run_blocks([*readme, *checkout, *referral], server, key)
        readme_out = outputs[: len(readme)]
        checkout_out = outputs[len(readme) : len(readme) + len(checkout)]
        referral_out = outputs[len(readme) + len(checkout) :]

        # README: the welcome bonus.
        assert json_documents(readme_out[0])[-1]["available"] == 200

        # Checkout: 1000 more; the order redeems 500, earns 259; a refund of 8800 of 25900.
        order = json_documents(checkout_out[4])[-1]
        assert order["order_id"] == "A-1001"
        assert order["points_redeemed"] == 500
        assert order["points_earned"] == 259
        assert order["refunds"][0]["refund_id"] == "R-1001-1"
        # floor(259 * 8800 / 25900) = 88 reversed, floor(500 * 8800 / 25900) = 169 restored.
        after_checkout = 200 + 1000 - 500 + 259 - 88 + 169

        # Referrals: cust-1001 invites cust-2002, whose first order pays 500 to cust-1001.
        code = referral_out[2][-1]
        looked_up = json_documents(referral_out[3])[-1]
        assert looked_up == {"code": code, "valid": True, "referee_points": 200}
        friend = json_documents(referral_out[4])[-1]
        assert friend["referred_by"] == "cust-1001"
        funnel, points = json_documents(referral_out[6])
        assert funnel == {
            "code": code,
            "url": f"https://shop.example/invite/{code}",
            "invited": 1,
            "qualified": 1,
            "rewarded": 1,
            "points_earned": 500,
        }
        assert points["available"] == after_checkout + 500
        assert available(server, key, "cust-1001") == after_checkout + 500


class TestRewardsGuide:
    def test_every_example_runs(self, server: str, database_url: str) -> None:
        key = new_program_key(database_url)
        blocks = shell_blocks(DOCS / "rewards.md")
        assert len(blocks) == 8
        outputs = run_blocks(blocks, server, key)
        reward_id = int(outputs[1][-1])
        catalog = json_documents(outputs[2])[-1]["data"]
        assert [(r["id"], r["eligible"], r["reason"]) for r in catalog] == [(reward_id, True, None)]
        code = outputs[3][-1]
        assert len(code) == 12
        assert json_documents(outputs[4])[-1] == {
            "valid": True,
            "discount_amount": 2000,
            "reason": None,
        }
        order = json_documents(outputs[5])[-1]
        assert order["coupons"] == [{"code": code, "discount_amount": 2000}]
        assert order["points_earned"] == 239  # on 25900 - 2000
        refund, freed = json_documents(outputs[6])
        assert refund["points_reversed"] == 239
        assert (freed["status"], freed["order_id"]) == ("active", None)
        voided, points = json_documents(outputs[7])
        assert voided["status"] == "void"
        assert points["available"] == 1000


class TestCampaignRecipes:
    def test_every_example_runs(self, server: str, database_url: str) -> None:
        key = new_program_key(database_url)
        blocks = shell_blocks(DOCS / "campaigns.md")
        assert len(blocks) == 4
        outputs = run_blocks(blocks, server, key)
        # Nobody has orders yet, so nobody is at risk.
        preview, win_back = json_documents(outputs[1])[-2:]
        assert preview == {"members": 0, "treated": 0, "holdout": 0}
        assert win_back == {"targeted": 0, "treated": 0, "holdout": 0}
        birthday = json_documents(outputs[2])[-1]
        assert birthday["audience"] == {"birthday_within_days": 0}
        assert birthday["action"]["bonus_points"] == 300
        thanks, results = json_documents(outputs[3])[-2:]
        assert thanks == {"targeted": 1, "treated": 1, "holdout": 0}
        assert results["treated"]["members"] == 1
        assert results["cost"]["points_granted"] == 200
        assert results["verdict"] == "too_early_to_tell"
        headers = {"Authorization": f"Bearer {key}"}
        entries = httpx.get(
            f"{server}/v1/members/cust-2001/points/transactions", headers=headers
        ).json()["data"]
        assert [(e["kind"], e["points"]) for e in entries] == [("bonus", 200)]
        assert entries[0]["campaign_id"] not in (None, birthday["id"])
