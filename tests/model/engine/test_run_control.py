"""How a run starts, reports and ends: ``solver.epochs=0`` writes and scores the untrained
network, ``progress=false`` prints a line every ``log_every`` batches, ``best_metric`` picks
best.pt, and a changed config is refused in an existing output folder unless told otherwise.

Every run here takes at most 2 steps: a split of 16 training items (2 batches of P×K = 8×4)
and 10 held-out items, tiny CNN at 64×64.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from model.config.train_config import load_config
from model.data.dataset_split import DatasetSplit
from model.data.folder_items import read_folder_items
from model.engine.checkpoint import load_checkpoint, load_model_from_checkpoint
from model.engine.output_dir_guard import OutputDirConflictError, config_differences
from model.engine.trainer import BestMetricError
from model.engine.trainer_builder import build_trainer
from model.evaluation.embed_split import evaluate_split, torch_embedder
from model.train import main as train_main

from .test_train_end_to_end import tiny_config


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    # Tiny batches: on a busy 2-core machine torch's thread pool costs more than the arithmetic.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small_split(photo_folder: Path) -> DatasetSplit:
    split = read_folder_items(photo_folder)
    train_items = sorted({s.item for s in split.train})[:16]
    held = sorted({s.item for s in split.gallery})[:10]
    return DatasetSplit(
        name="small",
        train=[s for s in split.train if s.item in train_items],
        query=[s for s in split.query if s.item in held],
        gallery=[s for s in split.gallery if s.item in held],
        protocol=split.protocol,
    )


def overrides(root: Path, out: Path, epochs: int, *extra: str) -> list[str]:
    return [*tiny_config(root, out, epochs), "eval_every=1", "checkpoint_every=1", *extra]


def test_zero_epochs_writes_and_scores_the_untrained_network(
    photo_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert train_main(overrides(photo_folder, out, 0)) == 0
    printed = capsys.readouterr().out
    assert "-inf" not in printed
    assert f"checkpoints: {out / 'last.pt'} (last), {out / 'best.pt'} (best)" in printed
    shown = float(re.search(r"best held-out centroid/mAP: ([0-9.]+)", printed).group(1))  # type: ignore[union-attr]
    state = load_checkpoint(out / "best.pt")
    assert state["epoch"] == 0 and load_checkpoint(out / "last.pt")["epoch"] == 0
    # The oracle: the checkpoint, rebuilt and scored on its own, is the figure printed.
    net, cfg = load_model_from_checkpoint(out / "best.pt")
    metrics = evaluate_split(
        torch_embedder(net, cfg.data.input_size), read_folder_items(photo_folder)
    )
    assert shown == pytest.approx(metrics["centroid/mAP"], abs=1e-4)
    assert 0.0 < shown < 1.0
    assert "epoch 0/0  untrained network  | held-out" in printed
    assert (out / "metrics.csv").read_text().splitlines()[1].startswith("0,")


def test_without_the_bar_a_line_every_n_batches(
    small_split: DatasetSplit,
    photo_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = load_config(None, overrides(photo_folder, tmp_path, 1, "log_every=1", "eval_every=5"))
    trainer = build_trainer(cfg, split=small_split)
    trainer.evaluator = None
    (summary,) = trainer.fit(1)
    lines = re.findall(
        r"epoch 1 batch (\d)/(\d)  loss ([0-9.]+)  ([0-9.]+) images/s", capsys.readouterr().out
    )
    assert [(b, n) for b, n, _, _ in lines] == [("1", "2"), ("2", "2")]
    # The running loss after the last batch is the epoch's mean.
    assert float(lines[-1][2]) == pytest.approx(summary.values["loss/total"], abs=1e-3)
    assert all(float(rate) > 0 for *_, rate in lines)


def test_best_metric_setting_picks_best_pt(
    small_split: DatasetSplit, photo_folder: Path, tmp_path: Path
) -> None:
    cfg = load_config(None, overrides(photo_folder, tmp_path, 2, "best_metric=instance/mAP"))
    trainer = build_trainer(cfg, split=small_split)
    # Centroid mAP falls while instance mAP rises: best.pt must follow the chosen one.
    scores = iter(
        [{"centroid/mAP": 0.9, "instance/mAP": 0.2}, {"centroid/mAP": 0.1, "instance/mAP": 0.3}]
    )
    trainer.evaluator = lambda net: next(scores)
    trainer.fit(2)
    best = load_checkpoint(tmp_path / "best.pt")
    assert (best["epoch"], best["best_metric"], best["best_metric_key"]) == (2, 0.3, "instance/mAP")

    bad = load_config(
        None, overrides(photo_folder, tmp_path / "bad", 1, "best_metric=centroid/R@1")
    )
    trainer = build_trainer(bad, split=small_split)
    trainer.evaluator = lambda net: {"centroid/mAP": 0.5, "centroid/rank1": 0.4}
    with pytest.raises(BestMetricError, match=r"'centroid/R@1'.*centroid/mAP, centroid/rank1"):
        trainer.fit(1)


def test_a_changed_config_is_refused_unless_resume_or_overwrite(
    small_split: DatasetSplit, photo_folder: Path, tmp_path: Path
) -> None:
    base = overrides(photo_folder, tmp_path, 1, "eval_every=5")
    first = build_trainer(load_config(None, base), split=small_split)
    first.evaluator = None
    first.fit(1)
    assert (tmp_path / "last.pt").is_file()

    # More epochs and other run-control keys: the same run, resumed.
    again = build_trainer(
        load_config(None, [*base, "solver.epochs=3", "progress=true"]), split=small_split
    )
    assert again.start_epoch == 1

    changed = [*base, "solver.base_lr=0.01", "loss.weights.center=0"]
    with pytest.raises(OutputDirConflictError) as refused:
        build_trainer(load_config(None, changed), split=small_split)
    assert refused.value.keys == ["loss.weights.center", "solver.base_lr"]
    assert "--resume" in str(refused.value) and "--overwrite" in str(refused.value)
    assert "solver.base_lr: 0.003 there, 0.01 now" in str(refused.value)

    resumed = build_trainer(
        load_config(None, [*base, "solver.base_lr=0.01", "existing_output=resume"]),
        split=small_split,
    )
    assert resumed.start_epoch == 1

    (tmp_path / "epoch_001.pt").write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("mine")
    fresh = build_trainer(
        load_config(None, [*changed, "existing_output=overwrite"]), split=small_split
    )
    assert fresh.start_epoch == 0
    assert not (tmp_path / "last.pt").exists() and not (tmp_path / "epoch_001.pt").exists()
    assert not (tmp_path / "metrics.csv").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"  # only the run's own files go


def test_config_differences_name_nested_keys() -> None:
    saved = {"model": {"backbone_kwargs": {"last_stride": 1}}, "solver": {"epochs": 4}}
    current = {"model": {"backbone_kwargs": {"last_stride": 2}}, "solver": {"epochs": 9}}
    assert config_differences(saved, current) == {"model.backbone_kwargs.last_stride": (1, 2)}
