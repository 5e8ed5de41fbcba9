"""API keys over real HTTP through the real app: who gets in where, and what refusals say."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from app.api_keys import ApiKeyConfigError, Scope, make_key
from app.main import create_app
from app.settings import Settings
from tests.app.conftest import ServiceFactory
from tests.live_server import free_port

READ_KEY, READ = make_key("reader", [Scope.READ])
WRITE_KEY, WRITE = make_key("writer", [Scope.WRITE])
ADMIN_KEY, ADMIN = make_key("ops", [Scope.ADMIN])
KEYS = ";".join(r.hash_line() for r in (READ, WRITE, ADMIN))
# An unknown key of the right shape, and one of a configured id with a wrong secret.
STRANGER_KEY = make_key("stranger", [Scope.READ])[0]
FORGED_KEY = make_key("reader", [Scope.READ])[0]
PROTECTED = [
    ("POST", "/search"),
    ("GET", "/items"),
    ("GET", "/items/x"),
    ("GET", "/items/x/neighbours"),
    ("POST", "/items/x/images"),
    ("PATCH", "/items/x"),
    ("DELETE", "/items/x"),
    ("DELETE", "/items/x/images/abc"),
    ("GET", "/info"),
]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


@pytest.fixture
def keyed(service_factory: ServiceFactory) -> Iterator[httpx.Client]:
    with service_factory(api_keys=KEYS) as client:
        yield client


def test_no_key_or_a_bad_key_is_401_with_a_bearer_challenge(keyed: httpx.Client) -> None:
    for method, path in PROTECTED:
        body = assert_problem(keyed.request(method, path), 401)
        assert "Authorization: Bearer" in str(body["detail"])
        assert keyed.request(method, path).headers["www-authenticate"] == (
            'Bearer realm="centroid-retrieval"'
        )
    for key in (STRANGER_KEY, FORGED_KEY, "not-a-key", READ.hash_line()):
        for headers in (bearer(key), {"X-API-Key": key}):
            r = keyed.get("/items", headers=headers)
            assert_problem(r, 401)
            assert r.headers["www-authenticate"] == (
                'Bearer realm="centroid-retrieval", error="invalid_token"'
            )
            assert key not in r.text
    assert_problem(keyed.get("/items", headers={"Authorization": f"Basic {READ_KEY}"}), 401)


def test_read_key_reads_write_key_writes_and_neither_does_the_other(
    keyed: httpx.Client, photo_views: dict[str, list[bytes]]
) -> None:
    photo = photo_views["coffee"][0]
    files = {"images": ("a.jpg", photo, "image/jpeg")}
    r = keyed.post("/items/cup/images", files=files, headers=bearer(READ_KEY))
    body = assert_problem(r, 403)
    assert body["required_scope"] == "write"
    assert r.headers["www-authenticate"] == (
        'Bearer realm="centroid-retrieval", error="insufficient_scope", scope="write"'
    )
    enrolled = keyed.post("/items/cup/images", files=files, headers=bearer(WRITE_KEY))
    assert enrolled.status_code == 201, enrolled.text
    image_id = enrolled.json()["image_ids"][0]

    search = {"image": ("q.jpg", photo, "image/jpeg")}
    found = keyed.post("/search", files=search, headers=bearer(READ_KEY))
    assert found.status_code == 200 and found.json()["results"][0]["item_id"] == "cup"
    assert keyed.get("/items/cup", headers=bearer(READ_KEY)).json()["image_ids"] == [image_id]
    assert keyed.get("/items", headers={"X-API-Key": READ_KEY}).json()["items"][0]["item_id"] == (
        "cup"
    )
    assert keyed.get("/info", headers=bearer(READ_KEY)).status_code == 200
    assert keyed.get("/items/cup/neighbours", headers=bearer(READ_KEY)).status_code == 200
    assert keyed.get("/info", headers=bearer(WRITE_KEY)).status_code == 200  # any valid key

    for key in (WRITE_KEY, ADMIN_KEY):
        assert_problem(keyed.post("/search", files=search, headers=bearer(key)), 403)
        assert_problem(keyed.get("/items", headers=bearer(key)), 403)
        assert_problem(keyed.get("/items/cup/neighbours", headers=bearer(key)), 403)
    merge = {"Content-Type": "application/merge-patch+json"}
    for key in (READ_KEY, ADMIN_KEY):
        refused = keyed.patch("/items/cup", content=b'{"a": 1}', headers={**merge, **bearer(key)})
        assert assert_problem(refused, 403)["required_scope"] == "write"
    patched = keyed.patch("/items/cup", content=b'{"a": 1}', headers={**merge, **bearer(WRITE_KEY)})
    assert patched.status_code == 200 and patched.json()["attributes"] == {"a": 1}
    for path in (f"/items/cup/images/{image_id}", "/items/cup"):
        assert_problem(keyed.delete(path, headers=bearer(READ_KEY)), 403)
        assert_problem(keyed.delete(path, headers=bearer(ADMIN_KEY)), 403)
    assert keyed.get("/items/cup", headers=bearer(READ_KEY)).status_code == 200  # still there
    r = keyed.delete(f"/items/cup/images/{image_id}", headers={"X-API-Key": WRITE_KEY})
    assert r.status_code == 204
    assert keyed.get("/items/cup", headers=bearer(READ_KEY)).status_code == 404


def test_two_different_keys_in_one_request_are_refused(keyed: httpx.Client) -> None:
    same = {**bearer(READ_KEY), "X-API-Key": READ_KEY}
    assert keyed.get("/items", headers=same).status_code == 200
    both = {**bearer(READ_KEY), "X-API-Key": WRITE_KEY}
    assert "two different API keys" in str(assert_problem(keyed.get("/items", headers=both), 401))


def test_a_refused_upload_is_answered_not_reset(keyed: httpx.Client) -> None:
    # 2 MB sent without a key: the service reads and drops it, so the client reads the 401.
    files = {"images": ("big.jpg", b"\xff" * 2_000_000, "image/jpeg")}
    assert_problem(keyed.post("/items/x/images", files=files), 401)
    assert_problem(keyed.post("/items/x/images", files=files, headers=bearer(READ_KEY)), 403)


def test_probes_docs_and_the_openapi_document_need_no_key(keyed: httpx.Client) -> None:
    for path in (
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
    ):
        assert keyed.get(path).status_code == 200, path
    assert keyed.get("/metrics").status_code == 200  # open unless metrics_requires_key


def test_metrics_can_require_a_key(service_factory: ServiceFactory) -> None:
    with service_factory(api_keys=KEYS, metrics_requires_key=True) as client:
        assert_problem(client.get("/metrics"), 401)
        assert "http_requests_total" in client.get("/metrics", headers=bearer(ADMIN_KEY)).text
        assert client.get("/healthz").status_code == 200


def test_openapi_declares_both_ways_to_send_a_key(keyed: httpx.Client) -> None:
    spec = keyed.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearerKey"]["description"],
    }
    assert schemes["apiKeyHeader"]["type"] == "apiKey"
    assert schemes["apiKeyHeader"]["in"] == "header"
    assert schemes["apiKeyHeader"]["name"] == "X-API-Key"
    either = [{"bearerKey": []}, {"apiKeyHeader": []}]
    for method, path in PROTECTED:
        template = path.replace("/x/images/abc", "/{item_id}/images/{image_id}")
        template = template.replace("/x/images", "/{item_id}/images").replace("/x", "/{item_id}")
        operation = spec["paths"][template][method.lower()]
        assert operation["security"] == either, (method, path)
        assert {"401", "403", "429"} <= set(operation["responses"]), (method, path)
    for open_path in ("/healthz", "/readyz", "/metrics"):
        assert "security" not in spec["paths"][open_path]["get"], open_path


def test_keys_never_reach_the_logs(keyed: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        keyed.get("/items", headers=bearer(READ_KEY))
        keyed.get("/items", headers={"X-API-Key": WRITE_KEY})
        keyed.get("/items", headers=bearer(FORGED_KEY))
        keyed.get("/items", headers=bearer(STRANGER_KEY))
    refusals = [r.getMessage() for r in caplog.records if "refused an API key" in r.getMessage()]
    assert refusals == [
        "refused an API key (key id 'reader')",
        "refused an API key (key id 'stranger')",
    ]
    assert any("lacks scope 'read'" in r.getMessage() for r in caplog.records)
    for key in (READ_KEY, WRITE_KEY, FORGED_KEY, STRANGER_KEY):
        assert key.split("_")[2] not in caplog.text


def test_anonymous_with_keys_is_a_contradiction(tiny_model_path: Path, tmp_path: Path) -> None:
    settings = Settings(
        model_path=tiny_model_path, data_dir=tmp_path, api_keys=KEYS, allow_anonymous=True
    )
    with pytest.raises(ApiKeyConfigError, match="RETRIEVAL_ALLOW_ANONYMOUS=true with API keys"):
        create_app(settings)


def _non_loopback_address() -> str | None:
    # A UDP "connect" sends nothing; it only picks the interface the host would route through.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address: str = s.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address


@contextmanager
def _serving_on_every_interface(settings: Settings) -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="0.0.0.0", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.mark.parametrize("allow_anonymous", [False, True])
def test_without_keys_anonymous_is_loopback_only_unless_allowed(
    tiny_model_path: Path, tmp_path: Path, allow_anonymous: bool
) -> None:
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this host has no non-loopback IPv4 address to connect to")
    settings = Settings(
        model_path=tiny_model_path, data_dir=tmp_path, allow_anonymous=allow_anonymous
    )
    with _serving_on_every_interface(settings) as port:
        deadline = time.monotonic() + 60
        while httpx.get(f"http://127.0.0.1:{port}/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert httpx.get(f"http://127.0.0.1:{port}/items").status_code == 200
        over_network = httpx.get(f"http://{address}:{port}/items")
        assert httpx.get(f"http://{address}:{port}/healthz").status_code == 200
        if allow_anonymous:
            assert over_network.status_code == 200
        else:
            body = assert_problem(over_network, 401)
            assert "over loopback only" in str(body["detail"])
            assert "RETRIEVAL_ALLOW_ANONYMOUS=true" in str(body["detail"])


def test_anonymous_access_allowed_explicitly_is_a_warning_at_start(
    tiny_model_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="app.main"):
        create_app(Settings(model_path=tiny_model_path, data_dir=tmp_path, allow_anonymous=True))
        create_app(Settings(model_path=tiny_model_path, data_dir=tmp_path, api_keys=KEYS))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "RETRIEVAL_ALLOW_ANONYMOUS=true" in warnings[0]
    assert "API keys required: 3 configured" in caplog.text


def _readme_scope_table() -> dict[str, set[tuple[str, str]]]:
    """The Security section's table: scope -> the ``METHOD /path`` operations listed for it."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Security\n", 1)[1].split("\n## ", 1)[0]
    table: dict[str, set[tuple[str, str]]] = {}
    for scope, cells in re.findall(r"^\| `(read|write|admin)` \| (.*) \|$", section, flags=re.M):
        ops = re.findall(r"`(GET|POST|PATCH|PUT|DELETE) (/[^`]*)`", cells)
        table[scope] = {(method, path) for method, path in ops}
    return table


def test_the_readme_scope_table_is_what_the_service_enforces(keyed: httpx.Client) -> None:
    # Every operation the OpenAPI document declares with a security requirement is tried with
    # each one-scope key: the scope that is not refused with 403 is the one it requires.
    spec = keyed.get("/openapi.json").json()
    keys = {"read": READ_KEY, "write": WRITE_KEY, "admin": ADMIN_KEY}
    enforced: dict[str, set[tuple[str, str]]] = {scope: set() for scope in keys}
    any_key: set[tuple[str, str]] = set()
    for template, operations in spec["paths"].items():
        path = re.sub(r"\{[^}]+\}", "x", template)
        for method, operation in operations.items():
            if not operation.get("security"):
                continue
            # A request without a key is refused before anything else is looked at.
            assert_problem(keyed.request(method.upper(), path), 401)
            allowed = [
                scope
                for scope, key in keys.items()
                if keyed.request(method.upper(), path, headers=bearer(key)).status_code != 403
            ]
            if len(allowed) == len(keys):
                any_key.add((method.upper(), template))
            else:
                assert len(allowed) == 1, (method, template, allowed)
                enforced[allowed[0]].add((method.upper(), template))
    assert ("GET", "/info") in any_key
    assert enforced["read"] and enforced["write"] and enforced["admin"]
    assert _readme_scope_table() == enforced
