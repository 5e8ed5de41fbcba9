"""The export commands' JPEG draft switch: parsing, refusals, and the contract it yields (the
field and the model version), for user checkpoints and the default model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from artifact.preprocess_spec import PreprocessSpec
from model import build_default, export
from model.exporter.default_embedder import (
    DEFAULT_JPEG_DRAFT_MIN_RATIO,
    DEFAULT_MODEL_VERSION,
    build_default_net,
    default_spec,
)
from model.exporter.jpeg_draft_option import add_jpeg_draft_arguments, with_jpeg_draft
from tests.model.exporter.test_parity_gate import SmallEmbedder, small_spec


def parse(argv: list[str], default: float | None) -> float | None:
    parser = argparse.ArgumentParser()
    add_jpeg_draft_arguments(parser, default)
    ratio: float | None = parser.parse_args(argv).jpeg_draft_min_ratio
    return ratio


@pytest.mark.parametrize("default", [None, 3.0])
def test_flags_set_clear_or_keep_the_default(default: float | None) -> None:
    assert parse([], default) == default
    assert parse(["--no-jpeg-draft"], default) is None
    assert parse(["--jpeg-draft-min-ratio", "4"], default) == 4.0
    assert parse(["--jpeg-draft-min-ratio", "2.5"], default) == 2.5


@pytest.mark.parametrize(
    "argv",
    [
        ["--jpeg-draft-min-ratio", "1.5"],
        ["--jpeg-draft-min-ratio", "0"],
        ["--jpeg-draft-min-ratio", "nan"],
        ["--jpeg-draft-min-ratio", "inf"],
        ["--jpeg-draft-min-ratio", "two"],
        ["--jpeg-draft-min-ratio", "3", "--no-jpeg-draft"],
    ],
)
def test_bad_values_stop_the_command_with_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        parse(argv, None)
    assert caught.value.code == 2
    assert "jpeg" in capsys.readouterr().err


def test_a_drafted_contract_is_another_model_version() -> None:
    spec = with_jpeg_draft(small_spec(), 3.0)
    assert spec.jpeg_draft_min_ratio == 3.0
    assert spec.model_version == "1+jpeg-draft-3"
    assert with_jpeg_draft(small_spec(), 2.5).model_version == "1+jpeg-draft-2.5"
    assert with_jpeg_draft(small_spec(), None) == small_spec()
    with pytest.raises(ValueError, match="already has jpeg_draft_min_ratio"):
        with_jpeg_draft(spec, 4.0)


def test_the_default_model_chooses_its_ratio() -> None:
    net = build_default_net()
    on = default_spec(net)
    assert on.jpeg_draft_min_ratio == DEFAULT_JPEG_DRAFT_MIN_RATIO
    off = default_spec(net, jpeg_draft_min_ratio=None)
    assert off.jpeg_draft_min_ratio is None and off.model_version == DEFAULT_MODEL_VERSION
    if DEFAULT_JPEG_DRAFT_MIN_RATIO is not None:
        assert on.model_version == f"{DEFAULT_MODEL_VERSION}+jpeg-draft-{on.jpeg_draft_min_ratio:g}"


@pytest.mark.parametrize(
    ("argv", "ratio"),
    [
        ([], DEFAULT_JPEG_DRAFT_MIN_RATIO),
        (["--no-jpeg-draft"], None),
        (["--jpeg-draft-min-ratio", "4"], 4.0),
    ],
)
def test_build_default_writes_the_chosen_ratio(
    argv: list[str], ratio: float | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real command line and exporter; only the network is a small one (seconds, not a
    # minute), with the default model's spec function reduced to its draft step.
    monkeypatch.setattr(build_default, "build_default_net", lambda: SmallEmbedder())
    monkeypatch.setattr(
        build_default,
        "default_spec",
        lambda net, *, jpeg_draft_min_ratio: with_jpeg_draft(small_spec(), jpeg_draft_min_ratio),
    )
    assert build_default.main(["--out", str(tmp_path), *argv]) == 0
    written = PreprocessSpec.from_json((tmp_path / "embedder.json").read_text())
    assert written.jpeg_draft_min_ratio == ratio
    assert json.loads((tmp_path / "embedder.json").read_text())["jpeg_draft_min_ratio"] == ratio


def test_model_export_has_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        export.main(["--help"])
    assert caught.value.code == 0
    usage = capsys.readouterr().out
    assert "--jpeg-draft-min-ratio R" in usage and "--no-jpeg-draft" in usage
    # Refused before any checkpoint is read.
    with pytest.raises(SystemExit) as caught:
        export.main(["missing.pt", "--out", "x", "--jpeg-draft-min-ratio", "1"])
    assert caught.value.code == 2
