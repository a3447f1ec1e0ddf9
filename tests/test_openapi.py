"""The OpenAPI document as generated clients and /docs read it (api.md Conventions): every
error response is ``application/problem+json`` with the ``Problem`` schema, every operation
has a short camelCase ``operationId`` and appears under one tag."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

PUBLIC = {"/healthz", "/readyz", "/metrics"}


@pytest.fixture
async def schema(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    ]


class TestErrorResponses:
    async def test_every_error_is_a_problem_document(self, schema: dict[str, Any]) -> None:
        checked = 0
        for method, path, operation in operations(schema):
            if path in PUBLIC:
                continue
            for status, response in operation["responses"].items():
                if status[0] not in "45":
                    continue
                assert response["content"] == {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                }, (method, path, status)
                checked += 1
        assert checked > 100

    async def test_readiness_documents_its_own_503(self, schema: dict[str, Any]) -> None:
        # /readyz is for load balancers: "not ready" is its own JSON, not a problem document.
        responses = schema["paths"]["/readyz"]["get"]["responses"]
        assert "application/json" in responses["503"]["content"]

    async def test_problem_schema_names_the_code(self, schema: dict[str, Any]) -> None:
        problem = schema["components"]["schemas"]["Problem"]
        assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])

    async def test_outage_and_oversized_body_are_declared(self, schema: dict[str, Any]) -> None:
        for method, path, operation in operations(schema):
            if path in PUBLIC:
                continue
            assert "503" in operation["responses"], (method, path)
            if "requestBody" in operation:
                assert "413" in operation["responses"], (method, path)

    async def test_order_declares_its_codes(self, schema: dict[str, Any]) -> None:
        responses = schema["paths"]["/v1/orders"]["post"]["responses"]
        assert "points_limit_exceeded" in responses["422"]["description"]
        assert "order_conflict" in responses["409"]["description"]


class TestOperationIds:
    async def test_every_operation_has_a_camel_case_id(self, schema: dict[str, Any]) -> None:
        ids = [operation.get("operationId", "") for _, _, operation in operations(schema)]
        assert all(re.fullmatch(r"[a-z]+(?:[A-Z][a-z]*)*", op) for op in ids), ids
        assert len(ids) == len(set(ids))

    @pytest.mark.parametrize(
        ("method", "path", "operation_id"),
        [
            ("post", "/v1/members/{member}/points/earn", "earnPoints"),
            ("post", "/v1/members/{member}/points/redeem", "redeemPoints"),
            ("get", "/v1/members/{member}/points", "getPoints"),
            ("post", "/v1/members/{member}/holds", "createHold"),
            ("post", "/v1/holds/{hold_id}/capture", "captureHold"),
            ("post", "/v1/holds/{hold_id}/release", "releaseHold"),
            ("post", "/v1/orders", "createOrder"),
            ("post", "/v1/orders/quote", "quoteOrder"),
            ("get", "/v1/orders/{order_id}", "getOrder"),
            ("post", "/v1/orders/{order_id}/refunds", "createRefund"),
            ("put", "/v1/members/{member}", "upsertMember"),
        ],
    )
    async def test_named_operations(
        self, schema: dict[str, Any], method: str, path: str, operation_id: str
    ) -> None:
        assert schema["paths"][path][method]["operationId"] == operation_id


class TestTags:
    async def test_each_operation_under_one_tag(self, schema: dict[str, Any]) -> None:
        for method, path, operation in operations(schema):
            assert len(operation["tags"]) == 1, (method, path, operation["tags"])

    async def test_api_key_operations_once_under_api_keys(self, schema: dict[str, Any]) -> None:
        tagged = {
            (method, path): operation["tags"]
            for method, path, operation in operations(schema)
            if path.startswith("/v1/api-keys")
        }
        assert len(tagged) == 3
        assert all(tags == ["API keys"] for tags in tagged.values())
