"""A corrupt held-out image: training's periodic evaluation skips and counts it, the standalone
evaluation refuses it (naming the files).

The folder dataset is a copy of the shared photo folder with three broken files added to its
query and gallery parts: random bytes, a truncated JPEG and an empty file.
"""

from __future__ import annotations

import csv
import logging
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from model.config.train_config import load_config
from model.data.dataset_split import DatasetSplit
from model.data.folder_items import read_folder_items
from model.data.sample import Sample
from model.engine.checkpoint import load_checkpoint
from model.engine.trainer import BEST_METRIC
from model.engine.trainer_builder import build_trainer
from model.evaluation.embed_split import (
    SKIPPED_KEY,
    UnreadableImagesError,
    evaluate_readable,
    evaluate_split,
    onnx_embedder,
    onnx_masked_embedder,
    torch_embedder,
    torch_masked_embedder,
)
from model.export import main as export_main

from .test_train_end_to_end import tiny_config

ROOT = Path(__file__).resolve().parents[3]


def first_item_dir(part: Path) -> Path:
    return sorted(p for p in part.iterdir() if p.is_dir())[0]


@pytest.fixture(scope="module")
def broken_folder(photo_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("broken") / "photos"
    shutil.copytree(photo_folder, root)
    query_item = first_item_dir(root / "query")
    gallery_item = first_item_dir(root / "gallery")
    a_jpeg = sorted(gallery_item.glob("*.jpg"))[0].read_bytes()
    (query_item / "zz_random.jpg").write_bytes(np.random.default_rng(0).bytes(2000))
    (gallery_item / "zz_truncated.jpg").write_bytes(a_jpeg[: len(a_jpeg) // 3])
    (gallery_item / "zz_empty.jpg").write_bytes(b"")
    return root


BROKEN = ("zz_random.jpg", "zz_truncated.jpg", "zz_empty.jpg")


def assert_same_metrics(got: dict[str, float], want: dict[str, float]) -> None:
    # Batches of other sizes may round differently in the last float32 bit.
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key


def without_broken(split: DatasetSplit) -> DatasetSplit:
    def keep(samples: list[Sample]) -> list[Sample]:
        return [s for s in samples if Path(s.path).name not in BROKEN]

    return replace(split, query=keep(split.query), gallery=keep(split.gallery))


@pytest.fixture(scope="module")
def run(broken_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("run")
    cfg = load_config(None, [*tiny_config(broken_folder, out, 2), "eval_every=1"])
    trainer = build_trainer(cfg)
    handler = _Capture()
    logging.getLogger("model.engine.held_out_evaluator").addHandler(handler)
    try:
        summaries = trainer.fit(2)
    finally:
        logging.getLogger("model.engine.held_out_evaluator").removeHandler(handler)
    return {"out": out, "trainer": trainer, "summaries": summaries, "records": handler.records}


class _Capture(logging.Handler):
    """Records of one logger (caplog cannot be used from a module-scoped fixture)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_training_evaluation_skips_counts_and_logs(run: dict[str, object]) -> None:
    summaries = run["summaries"]
    assert isinstance(summaries, list) and len(summaries) == 2
    for summary in summaries:
        assert summary.values[f"eval/{SKIPPED_KEY}"] == 3.0
        assert 0.0 < summary.values[f"eval/{BEST_METRIC}"] <= 1.0
    out = run["out"]
    assert isinstance(out, Path)
    with (out / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(r[f"eval/{SKIPPED_KEY}"]) for r in rows] == [3.0, 3.0]
    assert (out / "best.pt").is_file()
    records = run["records"]
    assert isinstance(records, list)
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings  # one summary per evaluation
    assert "skipped 3 unreadable" in warnings[0]
    assert all(name in warnings[0] for name in BROKEN), warnings[0]


def test_skipping_equals_scoring_the_split_without_the_files(
    run: dict[str, object], broken_folder: Path
) -> None:
    trainer = run["trainer"]
    split = read_folder_items(broken_folder)
    assert sum(Path(s.path).name in BROKEN for s in split.query + split.gallery) == 3
    net = trainer.model  # type: ignore[attr-defined]
    result = evaluate_readable(torch_masked_embedder(net, (64, 64)), split)
    assert sorted(Path(p).name for p in result.skipped) == sorted(BROKEN)
    clean = evaluate_split(torch_embedder(net, (64, 64)), without_broken(split), clustering=False)
    assert_same_metrics(result.metrics, {**clean, SKIPPED_KEY: 3.0})
    # The last epoch's logged metrics are the same evaluation of the same weights.
    last = run["summaries"][-1].values  # type: ignore[index]
    assert last[f"eval/{BEST_METRIC}"] == pytest.approx(clean[BEST_METRIC], abs=1e-6)


def test_standalone_evaluation_refuses_and_names_the_files(
    run: dict[str, object], broken_folder: Path, tmp_path: Path
) -> None:
    trainer = run["trainer"]
    split = read_folder_items(broken_folder)
    with pytest.raises(UnreadableImagesError, match="3 evaluation images") as err:
        evaluate_split(torch_embedder(trainer.model, (64, 64)), split)  # type: ignore[attr-defined]
    assert sorted(Path(p).name for p in err.value.paths) == sorted(BROKEN)
    out = run["out"]
    assert isinstance(out, Path)
    done = subprocess.run(
        [sys.executable, "-m", "model.evaluate", "--checkpoint", str(out / "best.pt")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "3 evaluation images could not be read" in done.stderr, done.stderr[-2000:]


def test_onnx_embedder_reports_the_same_unreadable_images(
    run: dict[str, object], broken_folder: Path, tmp_path: Path
) -> None:
    out = run["out"]
    assert isinstance(out, Path)
    assert export_main([str(out / "best.pt"), "--out", str(tmp_path / "model")]) == 0
    onnx_path = tmp_path / "model" / "embedder.onnx"
    split = read_folder_items(broken_folder)
    result = evaluate_readable(onnx_masked_embedder(onnx_path), split)
    assert sorted(Path(p).name for p in result.skipped) == sorted(BROKEN)
    clean = evaluate_split(onnx_embedder(onnx_path), without_broken(split), clustering=False)
    assert_same_metrics(result.metrics, {**clean, SKIPPED_KEY: 3.0})
    with pytest.raises(UnreadableImagesError, match="3 evaluation images"):
        evaluate_split(onnx_embedder(onnx_path), split)


def test_nothing_readable_in_the_query_is_logged_not_fatal(
    broken_folder: Path, tmp_path: Path
) -> None:
    split = read_folder_items(broken_folder)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    all_bad = replace(split, query=[replace(s, path=str(bad)) for s in split.query])
    out = tmp_path / "run"
    cfg = load_config(None, [*tiny_config(broken_folder, out, 1), "data.p=4"])
    trainer = build_trainer(cfg, split=all_bad)
    (summary,) = trainer.fit(1)
    assert summary.values[f"eval/{SKIPPED_KEY}"] == len(split.query) + 2  # + 2 broken gallery
    assert f"eval/{BEST_METRIC}" not in summary.values
    assert (out / "last.pt").is_file() and not (out / "best.pt").exists()
    assert load_checkpoint(out / "last.pt")["best_metric"] == float("-inf")
