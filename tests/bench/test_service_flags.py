"""bench/service_flags.py: the model and --env flags of the benchmarks that start a service."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench.service_flags import add_service_flags, service_flags


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_service_flags(parser)
    return parser.parse_args(list(argv))


def test_model_and_settings_are_read_back(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    args = _parse("--model", str(model), "--env", "RETRIEVAL_A=1", "--env", "RETRIEVAL_B=x=y")
    assert service_flags(args) == (model, {"RETRIEVAL_A": "1", "RETRIEVAL_B": "x=y"})


def test_a_missing_model_or_a_setting_without_a_value_stops_the_run(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no model at"):
        service_flags(_parse("--model", str(tmp_path / "none.onnx")))
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    with pytest.raises(SystemExit, match="RETRIEVAL_X=V"):
        service_flags(_parse("--model", str(model), "--env", "RETRIEVAL_A"))
