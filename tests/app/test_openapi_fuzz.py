"""Schemathesis fuzzes every operation of the OpenAPI spec: no input may cause a server error,
on a service without keys and on one with keys (a key holding every scope); and without a key
a keyed service answers every operation but the open ones 401 problem+json."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from app.api_keys import Scope, make_key
from tests.app.conftest import ServiceFactory

CHECKS = Path(__file__).with_name("openapi_fuzz_checks.py")
SEED = "20261122"
EVERY_SCOPE_KEY, EVERY_SCOPE = make_key("fuzzer", list(Scope))


def run_schemathesis(
    client: httpx.Client, tmp_path: Path, *args: str, max_examples: int
) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).with_name("schemathesis")
    out = subprocess.run(
        [
            str(cli),
            "run",
            f"{client.base_url}/openapi.json",
            "--max-examples",
            str(max_examples),
            "--seed",
            SEED,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # it writes a .schemathesis/ folder where it runs
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": str(CHECKS)},
    )
    assert out.returncode == 0, out.stdout[-4000:]
    summary = out.stdout.split("SUMMARY")[-1]
    # Not "failed" alone: the summary of a keyless run says "Authentication failed" by design.
    assert " passed" in summary and "Failures:" not in summary, out.stdout[-4000:]
    return out


def test_no_generated_request_causes_a_server_error(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    with service_factory() as client:
        run_schemathesis(client, tmp_path, "--checks", "not_a_server_error", max_examples=15)
        # The service survived the fuzzing.
        assert client.get("/healthz").status_code == 200


def test_with_keys_and_a_key_of_every_scope_no_request_causes_a_server_error(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    with service_factory(
        api_keys=EVERY_SCOPE.hash_line(), backup_dir=tmp_path / "backups"
    ) as client:
        out = run_schemathesis(
            client,
            tmp_path,
            "--checks",
            "no_server_error_but_503",
            "--header",
            f"Authorization: Bearer {EVERY_SCOPE_KEY}",
            max_examples=8,
        )
        # The key opened every route (schemathesis warns of operations that answered only
        # 401/403) and reached the admin routes: backups were written.
        assert "Authentication failed" not in out.stdout, out.stdout[-4000:]
        assert any((tmp_path / "backups").glob("*/manifest.json"))
        assert client.get("/healthz").status_code == 200


def test_with_keys_and_no_key_every_protected_operation_is_401(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    with service_factory(api_keys=EVERY_SCOPE.hash_line()) as client:
        out = run_schemathesis(
            client, tmp_path, "--checks", "refused_without_a_key", max_examples=5
        )
        # Its own summary of what answered only 401/403: every protected operation.
        refused = out.stdout.split("401 Unauthorized", 1)[1].split("\n\n", 1)[0]
        for operation in (
            "POST /search",
            "GET /items",
            "GET /items/{item_id}",
            "POST /items/{item_id}/images",
            "DELETE /items/{item_id}",
            "DELETE /items/{item_id}/images/{image_id}",
            "GET /items/{item_id}/images/{image_id}",
            "GET /info",
            "POST /admin/compact",
            "POST /admin/backup",
        ):
            assert f"- {operation}\n" in refused + "\n", refused
