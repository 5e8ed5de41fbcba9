"""The crash soak's own logic: distinct images, the rounds it refuses, its summary figures.
(Its rounds themselves run in tests/app/test_crash_durability.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.crash_soak import Ack, RoundResult, main, noise_png, run_round, summary_lines


def _result(store: str, killed: bool, acked: int, lost: int, changed: bool) -> RoundResult:
    acks = [Ack(f"i{n}", f"m{n}") for n in range(acked)]
    before = [[("a", 0.9), ("b", 0.5)]]
    after = [[("b", 0.9), ("a", 0.5)]] if changed else [[("a", 0.9 + 1e-8), ("b", 0.5)]]
    return RoundResult(
        store=store,
        redis_killed=killed,
        acknowledged=acks,
        missing=acks[:lost],
        unexpected=[],
        cut_off=8,
        service_exit=-9,
        answers_before=before,
        answers_after=after,
        images_after=acked,
    )


def test_images_are_distinct_and_decodable() -> None:
    import io

    from PIL import Image

    images = {noise_png(seed) for seed in range(200)}
    assert len(images) == 200
    assert Image.open(io.BytesIO(noise_png(7))).size == (24, 24)


def test_summary_counts_per_kind_of_round() -> None:
    results = [
        _result("sqlite", False, 100, 0, False),
        _result("sqlite", False, 50, 0, False),
        _result("redis", False, 70, 0, True),
        _result("redis", True, 60, 2, False),
    ]
    lines = summary_lines(results)
    assert lines[0].startswith("redis: 1 rounds, 70 acknowledged images, 0 lost, 1 baseline")
    assert lines[1].startswith(
        "redis + redis-server killed: 1 rounds, 60 acknowledged images, 2 lost"
    )
    assert lines[2].startswith("sqlite: 2 rounds, 150 acknowledged images, 0 lost, 0 baseline")
    assert "16 requests cut off" in lines[2]


def test_a_redis_kill_round_needs_redis(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such round"):
        run_round(tmp_path / "m.onnx", tmp_path, "sqlite", kill_redis=True)


def test_zero_rounds_is_a_clean_exit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--rounds", "0", "--redis-kill-rounds", "0"]) == 0
    assert capsys.readouterr().out == ""
