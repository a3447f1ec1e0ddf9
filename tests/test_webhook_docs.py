"""docs/webhooks.md shows a shop how to verify Patron-Signature in Python and with openssl;
both snippets run here against a real signed delivery."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from app import webhook_signature
from app.clock import clock
from app.services.events.webhook_delivery import deliver_due
from tests.conftest import Program
from tests.webhook_support import Received, Receiver, fan_out_until, register, remove_endpoints

DOC = Path(__file__).resolve().parent.parent / "docs" / "webhooks.md"


def snippet(language: str, containing: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.DOTALL)
    (block,) = [b for b in blocks if containing in b]
    return block


@pytest.fixture(scope="module")
def python_verify() -> Callable[..., bool]:
    namespace: dict[str, Any] = {}
    exec(snippet("python", "def verify_patron_signature"), namespace)
    function: Callable[..., bool] = namespace["verify_patron_signature"]
    return function


def shell_verify(
    tmp_path: Path, secret: str, header: str, body: bytes
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "body.json").write_bytes(body)
    return subprocess.run(
        ["bash", "-c", snippet("sh", "openssl")],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "SECRET": secret, "HEADER": header},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


@pytest.fixture
async def delivery(program: Program) -> AsyncIterator[tuple[str, Received]]:
    """A real delivery of a real event, signed now (the shell snippet reads the wall clock)."""
    clock.reset()
    receiver = await Receiver().start()
    try:
        endpoint = await register(program, receiver.url, ["points.earned"])
        await program.member("m1", points=42)
        await fan_out_until(endpoint["id"], 1)
        await deliver_due(clock.now())
        (received,) = receiver.requests
        yield endpoint["secret"], received
    finally:
        await receiver.stop()
        await remove_endpoints(program.id)


def resigned(secrets: list[str], body: bytes, age_seconds: int) -> str:
    return webhook_signature.signature_header(secrets, int(time.time()) - age_seconds, body)


class TestPythonSnippet:
    async def test_verifies_a_delivery(
        self, delivery: tuple[str, Received], python_verify: Callable[..., bool]
    ) -> None:
        secret, received = delivery
        header = received.headers["patron-signature"]
        assert python_verify(secret, header, received.body)
        assert not python_verify(secret, header, received.body.replace(b"42", b"43"))
        assert not python_verify("whsec_wrong", header, received.body)
        assert not python_verify(secret, resigned([secret], received.body, 301), received.body)
        assert python_verify(secret, resigned([secret], received.body, 200), received.body)
        assert python_verify(
            secret, resigned(["whsec_new", secret], received.body, 0), received.body
        )

    async def test_agrees_with_the_helper(
        self, delivery: tuple[str, Received], python_verify: Callable[..., bool]
    ) -> None:
        secret, received = delivery
        header = received.headers["patron-signature"]
        assert webhook_signature.verify(secret, header, received.body)
        for bad in ("", "t=abc,v1=00", "v1=00", f"t={int(time.time())}", "t=1,t=2,v1=00"):
            assert not webhook_signature.verify(secret, bad, received.body)
            assert not python_verify(secret, bad, received.body)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
class TestShellSnippet:
    async def test_verifies_a_delivery(
        self, delivery: tuple[str, Received], tmp_path: Path
    ) -> None:
        secret, received = delivery
        header = received.headers["patron-signature"]
        result = shell_verify(tmp_path, secret, header, received.body)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "valid"

    async def test_refuses_tampering_staleness_and_wrong_secrets(
        self, delivery: tuple[str, Received], tmp_path: Path
    ) -> None:
        secret, received = delivery
        header = received.headers["patron-signature"]
        body = received.body
        refused = [
            (secret, header, body.replace(b"42", b"43")),
            ("whsec_wrong", header, body),
            (secret, resigned([secret], body, 400), body),
            (secret, "v1=" + header.split("v1=")[1], body),
        ]
        for key, signature, payload in refused:
            result = shell_verify(tmp_path, key, signature, payload)
            assert result.returncode == 1, (signature, result.stdout)

    async def test_accepts_either_secret_after_a_rotation(
        self, delivery: tuple[str, Received], tmp_path: Path
    ) -> None:
        secret, received = delivery
        header = resigned(["whsec_new", secret], received.body, 0)
        for key in (secret, "whsec_new"):
            assert shell_verify(tmp_path, key, header, received.body).returncode == 0
