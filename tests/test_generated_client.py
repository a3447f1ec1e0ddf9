"""A Python client generated from the service's own OpenAPI document (openapi-python-client,
as an integrator would) runs a checkout against a running server and reads errors as
``Problem`` documents with their ``code`` (api.md Conventions)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from app.main import create_app
from tests.live import create_program_key, running_server

PACKAGE = "patron_generated_client"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    folder = tmp_path_factory.mktemp("client")
    schema = folder / "openapi.json"
    schema.write_text(json.dumps(create_app().openapi()))
    config = folder / "config.json"
    # No formatting hooks: the generated code is imported, not kept.
    config.write_text(json.dumps({"post_hooks": []}))
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("openapi-python-client")),
            "generate",
            "--path",
            str(schema),
            "--output-path",
            str(folder / PACKAGE),
            "--meta",
            "none",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Every operation became a function: nothing was skipped as unreadable.
    assert "Unable to" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [name for name in sys.modules if name.startswith(PACKAGE)]:
            del sys.modules[name]


def module(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{name}")


class TestGeneratedClient:
    def test_checkout_and_a_conflict(self, generated: ModuleType, database_url: str) -> None:
        models = module("models")
        problem_type = models.Problem
        key = create_program_key(database_url)
        with running_server(database_url) as base:
            client = generated.AuthenticatedClient(base_url=base, token=key)
            upsert = module("api.members.upsert_member")
            earn = module("api.points.earn_points")
            quote = module("api.orders.quote_order")
            create_hold = module("api.holds.create_hold")
            create_order = module("api.orders.create_order")
            get_order = module("api.orders.get_order")
            create_refund = module("api.orders.create_refund")
            redeem = module("api.points.redeem_points")

            member = upsert.sync_detailed("cust-1", client=client, body=models.MemberUpsert())
            assert member.status_code == 201, member.content
            earned = earn.sync(
                "cust-1", client=client, body=models.EarnRequest(points=500, reason="welcome")
            )
            assert isinstance(earned, models.PointEntryOut) and earned.points == 500

            quoted = quote.sync(
                client=client,
                body=models.QuoteRequest(member_id="cust-1", amount=25900, currency="CNY"),
            )
            assert isinstance(quoted, models.QuoteOut)
            assert quoted.points == 259 and quoted.max_redeemable_points == 500

            hold = create_hold.sync(
                "cust-1", client=client, body=models.HoldCreate(points=200), idempotency_key="h1"
            )
            assert isinstance(hold, models.HoldOut), hold
            order = create_order.sync(
                client=client,
                body=models.OrderCreate(
                    order_id="A-1",
                    member_id="cust-1",
                    amount=25900,
                    currency="CNY",
                    redeem_hold_id=hold.hold_id,
                ),
            )
            assert isinstance(order, models.OrderOut), order
            assert order.points_earned == 259 and order.points_redeemed == 200

            refund = create_refund.sync(
                "A-1", client=client, body=models.RefundCreate(refund_id="R-1", amount=25900)
            )
            assert isinstance(refund, models.RefundOut), refund
            assert refund.points_reversed == 259 and refund.points_restored == 200
            fetched = get_order.sync("A-1", client=client)
            assert isinstance(fetched, models.OrderOut) and len(fetched.refunds) == 1

            # 500 available again; a redeem of more is a 409 the client reads as a Problem.
            refused = redeem.sync_detailed(
                "cust-1", client=client, body=models.RedeemRequest(points=10_000)
            )
            assert refused.status_code == 409
            assert isinstance(refused.parsed, problem_type), refused.content
            assert refused.parsed.code == "insufficient_points"
            assert refused.parsed.status == 409

            missing = get_order.sync_detailed("no-such-order", client=client)
            assert missing.status_code == 404
            assert isinstance(missing.parsed, problem_type)
            assert missing.parsed.code == "not_found"
