"""bench.auth_overhead: its figures are of what it says (real verifications, real HTTP to two
services, one keyed), in a couple of seconds on the tiny artifact."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench import auth_overhead
from bench.service_process import REPO_ROOT


def test_measures_verification_and_both_services_side_by_side(tiny_model_path: Path) -> None:
    result = auth_overhead.run(tiny_model_path, keys=50, iterations=500, requests=30)
    assert result.keys == 50 and result.requests == 30
    for us in (result.verify_valid_us, result.verify_wrong_secret_us, result.policy_us):
        assert 0 < us < 10_000
    assert result.anonymous_p50_ms > 0 and result.keyed_p50_ms > 0
    assert result.http_ratio_p50 == result.keyed_p50_ms / result.anonymous_p50_ms
    text = auth_overhead.summary(result)
    assert "target <= 50 µs per request: " in text and "with a key / anonymous: p50" in text


def test_the_keyed_service_really_demands_the_key(tiny_model_path: Path) -> None:
    # The comparison is only worth something if the keyed side checks keys: without the key
    # the same request is refused there.
    _, _, _, _, text, key = auth_overhead.measure_verification(keys=3, iterations=1)
    assert key.startswith("cr_k1_") and text.count(";") == 2
    try:
        auth_overhead.measure_http(tiny_model_path, text, "cr_k1_" + "0" * 64, requests=1)
    except RuntimeError as exc:
        assert "answered 401" in str(exc)
    else:
        raise AssertionError("a wrong key was accepted")


def test_help_lists_every_flag() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.auth_overhead", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.startswith("usage: python -m bench.auth_overhead")
    for flag in ("--model", "--keys", "--iterations", "--requests", "--json"):
        assert flag in done.stdout
