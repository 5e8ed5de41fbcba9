"""The API key a tool sends: read from ``CENTROID_RETRIEVAL_API_KEY``, never from a flag
(flags show in the process list), as ``Authorization: Bearer <key>``.

``enroll-folder``, the load test, the Locust file, ``bench.evaluate_service`` and the bench's
lean client all read the same variable, so one ``export`` serves every tool.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

API_KEY_VARIABLE = "CENTROID_RETRIEVAL_API_KEY"


def api_key_headers(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{"Authorization": "Bearer <key>"}`` when the variable holds a key, else ``{}`` (a
    service without keys answers loopback callers anyway)."""
    key = (os.environ if environ is None else environ).get(API_KEY_VARIABLE, "").strip()
    return {"Authorization": f"Bearer {key}"} if key else {}
