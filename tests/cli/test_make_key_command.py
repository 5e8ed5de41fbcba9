"""``centroid-retrieval make-key``: the line it prints configures a service that accepts the key
it shows, and only with the scopes asked for."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app.api_keys import Keyring, Scope
from app.main import create_app
from app.settings import Settings
from tests.cli.run_cli import run_cli
from tests.live_server import live_server
from tests.tiny_artifact import write_tiny_artifact


@pytest.fixture
def tiny_model_path(tmp_path: Path) -> Path:
    return write_tiny_artifact(tmp_path / "model")


def _made(*args: str) -> tuple[str, str]:
    done = run_cli("make-key", *args)
    assert done.returncode == 0, done.stderr
    key = done.stderr.strip().splitlines()[-1]
    return done.stdout, key


def test_the_printed_line_configures_a_service_that_takes_the_shown_key(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    stdout, key = _made("--scopes", "read,write", "--id", "shop")
    (line,) = stdout.splitlines()  # stdout holds the configuration line only
    assert line.startswith("RETRIEVAL_API_KEYS=shop:read,write:")
    assert key.startswith("cr_shop_") and key not in stdout
    assert len(key.split("_")[2]) == 64  # 256 random bits, hex
    hash_line = line.removeprefix("RETRIEVAL_API_KEYS=")
    app = create_app(Settings(model_path=tiny_model_path, data_dir=tmp_path, api_keys=hash_line))
    with live_server(app) as url:
        assert httpx.get(f"{url}/items", headers={"X-API-Key": key}).status_code == 200
        assert httpx.get(f"{url}/items").status_code == 401


def test_line_format_default_scope_and_a_fresh_key_each_time() -> None:
    stdout, key = _made("--format", "line")
    keyring = Keyring.from_text(stdout, source="stdout")
    record = keyring.verify(key)
    assert record is not None and record.scopes == {Scope.READ}  # least privilege by default
    again, other = _made("--format", "line")
    assert other != key and again != stdout
    _, admin_key = _made("--scopes", "admin", "--id", "ops")
    assert admin_key.startswith("cr_ops_")


def test_bad_scopes_or_ids_are_messages() -> None:
    done = run_cli("make-key", "--scopes", "read,root")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == "error: unknown scope root (read, write, admin)\n"
    done = run_cli("make-key", "--id", "no_underscores")
    assert done.returncode == 1 and "key id must match" in done.stderr
