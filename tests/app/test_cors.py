"""CORS: off unless origins are listed; then only those origins get the headers."""

from __future__ import annotations

from app.api_keys import Scope, make_key
from tests.app.conftest import ServiceFactory

ALLOWED = "https://shop.example"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


def test_no_cors_headers_by_default(service_factory: ServiceFactory) -> None:
    with service_factory() as client:
        r = client.get("/items", headers={"Origin": ALLOWED})
        assert r.status_code == 200
        assert not [h for h in r.headers if h.lower().startswith("access-control-")]
        preflight = client.options("/search", headers={"Origin": ALLOWED, **PREFLIGHT})
        assert "access-control-allow-origin" not in preflight.headers
        assert preflight.status_code == 405  # nothing answers preflights


def test_only_allow_listed_origins_get_cors_headers(service_factory: ServiceFactory) -> None:
    key, record = make_key("web", [Scope.READ])
    origins = f"{ALLOWED}, https://admin.example"
    with service_factory(cors_origins=origins, api_keys=record.hash_line()) as client:
        preflight = client.options("/search", headers={"Origin": ALLOWED, **PREFLIGHT})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == ALLOWED
        allowed_headers = preflight.headers["access-control-allow-headers"].lower()
        assert "authorization" in allowed_headers and "x-api-key" in allowed_headers
        assert "access-control-allow-credentials" not in preflight.headers

        r = client.get("/items", headers={"Origin": ALLOWED, "Authorization": f"Bearer {key}"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == ALLOWED
        # A refusal is readable by the page too, with its challenge.
        refused = client.get("/items", headers={"Origin": "https://admin.example"})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == "https://admin.example"
        assert "www-authenticate" in refused.headers["access-control-expose-headers"].lower()

        evil = "https://evil.example"
        r = client.get("/items", headers={"Origin": evil, "Authorization": f"Bearer {key}"})
        assert "access-control-allow-origin" not in r.headers
        bad_preflight = client.options("/search", headers={"Origin": evil, **PREFLIGHT})
        assert bad_preflight.status_code == 400
        assert "access-control-allow-origin" not in bad_preflight.headers
