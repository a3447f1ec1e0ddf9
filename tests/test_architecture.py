"""The layering rules of architecture.md that a reader relies on, checked on the source.

- Only ``app/services/ledger/`` writes the ledger's tables (accounts, point_entries,
  point_lots): every other service composes the ledger's postings.
- Only ``app/services/idempotency.py`` writes ``idempotency_keys`` (the one wrapper).
- Services do not speak HTTP: no FastAPI or Starlette, no ``app.auth``, no routers.
- Every route is a FastAPI route: no ASGI layer answers requests ahead of the router.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from app.main import create_app

APP = Path(__file__).resolve().parent.parent / "app"
LEDGER = APP / "services" / "ledger"

# A write to a table: INSERT INTO t, UPDATE t, DELETE FROM t, COPY t, TRUNCATE t.
_WRITE = r"(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM|COPY|TRUNCATE(?:\s+TABLE)?)\s+{table}\b"
LEDGER_TABLES = ("accounts", "point_entries", "point_lots")


def _python_files() -> list[Path]:
    return sorted(APP.rglob("*.py"))


def _writers(table: str) -> set[Path]:
    pattern = re.compile(_WRITE.format(table=table), re.IGNORECASE)
    return {path for path in _python_files() if pattern.search(path.read_text())}


class TestLedgerOwnsTheBalance:
    @pytest.mark.parametrize("table", LEDGER_TABLES)
    def test_only_the_ledger_package_writes(self, table: str) -> None:
        outside = {path for path in _writers(table) if LEDGER not in path.parents}
        assert not outside, f"{table} is written outside app/services/ledger/: {outside}"

    @pytest.mark.parametrize("table", LEDGER_TABLES)
    def test_the_check_finds_the_ledgers_own_writes(self, table: str) -> None:
        # The pattern must match how the ledger spells its writes, or the test above
        # would pass for the wrong reason.
        assert any(LEDGER in path.parents for path in _writers(table))


class TestOneIdempotencyMechanism:
    def test_only_the_idempotency_module_stores_replies(self) -> None:
        writers = _writers("idempotency_keys")
        assert writers == {APP / "services" / "idempotency.py"}


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


class TestServicesDoNotSpeakHttp:
    FORBIDDEN = ("fastapi", "starlette", "app.auth", "app.routers", "app.main")

    @pytest.mark.parametrize(
        "path",
        sorted((APP / "services").rglob("*.py")),
        ids=lambda path: str(path.relative_to(APP)),
    )
    def test_no_http_imports(self, path: Path) -> None:
        offending = {
            module
            for module in _imported_modules(path)
            if any(module == f or module.startswith(f + ".") for f in self.FORBIDDEN)
        }
        assert not offending, f"{path} imports {offending}"


class TestOneFrontDoor:
    def test_no_middleware_answers_ahead_of_the_router(self) -> None:
        app = create_app()
        names = {middleware.cls.__name__ for middleware in app.user_middleware}
        assert names == {"BodySizeLimit", "RequestObservability"}

    def test_every_hot_route_is_documented_once_with_its_body(self) -> None:
        schema = create_app().openapi()
        for path, method, model in (
            ("/v1/members/{member}/points/earn", "post", "EarnRequest"),
            ("/v1/members/{member}/points/redeem", "post", "RedeemRequest"),
            ("/v1/members/{member}/holds", "post", "HoldCreate"),
            ("/v1/holds/{hold_id}/capture", "post", "HoldCapture"),
            ("/v1/orders", "post", "OrderCreate"),
        ):
            body = schema["paths"][path][method]["requestBody"]["content"]["application/json"]
            assert body["schema"] == {"$ref": f"#/components/schemas/{model}"}
            assert model in schema["components"]["schemas"]
