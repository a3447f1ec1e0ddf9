"""Schemathesis against the service's own OpenAPI document, every phase it has (examples,
coverage, fuzzing, stateful) and every check but one (``schemathesis.toml`` says which and
why): no input it generates may give a server error or a response outside its schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.live import cli_env, create_program_key, running_server

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.schemathesis
class TestSchemathesis:
    def test_no_failure(self, database_url: str, tmp_path: Path) -> None:
        key = create_program_key(database_url, "Schemathesis")
        with running_server(database_url) as base:
            result = subprocess.run(
                [
                    str(Path(sys.executable).with_name("schemathesis")),
                    "--no-color",
                    "--config-file",
                    str(ROOT / "schemathesis.toml"),
                    "run",
                    f"{base}/openapi.json",
                    "--report-dir",
                    str(tmp_path),
                ],
                env=cli_env(database_url, PATRON_SCHEMATHESIS_KEY=key),
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
        summary = result.stdout[-20_000:] + result.stderr[-5_000:]
        assert result.returncode == 0, summary
        assert "Tested: " in result.stdout, summary
