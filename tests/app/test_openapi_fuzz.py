"""Schemathesis fuzzes every operation of the OpenAPI spec: no input may cause a server error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.app.conftest import ServiceFactory


def test_no_generated_request_causes_a_server_error(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    with service_factory() as client:
        cli = Path(sys.executable).with_name("schemathesis")
        out = subprocess.run(
            [
                str(cli),
                "run",
                f"{client.base_url}/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "15",
                "--seed",
                "20261122",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,  # it writes a .schemathesis/ folder where it runs
            env={**os.environ, "NO_COLOR": "1"},
        )
        assert out.returncode == 0, out.stdout[-4000:]
        assert " passed" in out.stdout and "failed" not in out.stdout.split("SUMMARY")[-1]
        # The service survived the fuzzing.
        assert client.get("/healthz").status_code == 200
