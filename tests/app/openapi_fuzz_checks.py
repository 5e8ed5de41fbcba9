"""Schemathesis checks for tests/app/test_openapi_fuzz.py, loaded through ``SCHEMATHESIS_HOOKS``.

``no_server_error_but_503``: a 503 is the service shedding load or waiting for its store, by
design; any other 5xx is a defect. ``refused_without_a_key``: a keyed service answers every
operation but the open ones 401 problem+json with a Bearer challenge, whatever the request.
"""

from __future__ import annotations

from typing import Any

import schemathesis

# Answered without a key (README, Security: "Open without a key").
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


@schemathesis.check
def no_server_error_but_503(ctx: Any, response: Any, case: Any) -> None:
    status = response.status_code
    if status >= 500 and status != 503:
        raise AssertionError(f"{case.method} {case.formatted_path}: {status} {response.text[:300]}")


@schemathesis.check
def refused_without_a_key(ctx: Any, response: Any, case: Any) -> None:
    if case.path in OPEN_PATHS or case.method.upper() != case.operation.method.upper():
        return  # an open route, or a method the route does not have (405 first, rightly)
    where = f"{case.method} {case.formatted_path}"
    if response.status_code != 401:
        raise AssertionError(f"{where}: {response.status_code}, not 401, without a key")
    headers = {name.lower(): values[-1] for name, values in response.headers.items()}
    if headers.get("content-type") != "application/problem+json":
        raise AssertionError(f"{where}: 401 is not problem+json: {headers}")
    if not headers.get("www-authenticate", "").startswith("Bearer "):
        raise AssertionError(f"{where}: 401 without a Bearer challenge")
    if response.json().get("status") != 401:
        raise AssertionError(f"{where}: the problem's status is not 401: {response.text[:300]}")
