"""Stopping after 2 epochs and resuming to 4 gives exactly the uninterrupted 4-epoch run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from model.config.train_config import load_config
from model.engine.checkpoint import load_checkpoint
from model.engine.trainer_builder import build_trainer

from .test_train_end_to_end import tiny_config


def overrides(root: Path, out: Path, epochs: int) -> list[str]:
    # Evaluation only at the very end and checkpoints every epoch; schedule fixed by the config
    # (warm-up 1, decay at 3), not by where the run stops.
    return [
        *tiny_config(root, out, epochs),
        "eval_every=100",
        "checkpoint_every=1",
        "solver.milestones=[3]",
        "data.p=4",
    ]


def _to_legacy_layout(path: Path) -> None:
    """Rewrite ``path`` as checkpoints were saved before loss terms declared their optimisers:
    the center loss's SGD state under ``center_optimizer``."""
    state = torch.load(path, weights_only=False)
    loss_optimizers = state.pop("loss_optimizers")
    assert set(loss_optimizers) == {"center"}  # what the CTL recipe declares
    state["center_optimizer"] = loss_optimizers["center"]
    torch.save(state, path)


@dataclass(frozen=True)
class Uninterrupted:
    losses: list[float]
    model: dict[str, torch.Tensor]
    loss: dict[str, torch.Tensor]
    lr: float


@pytest.fixture(scope="module")
def uninterrupted(photo_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Uninterrupted:
    """The 4-epoch run both resumes are compared with (trained once: it is deterministic)."""
    out = tmp_path_factory.mktemp("full")
    full = build_trainer(load_config(None, overrides(photo_folder, out, 4)))
    losses = [s.values["loss/total"] for s in full.fit(4)]
    return Uninterrupted(
        losses,
        {k: v.clone() for k, v in full.model.state_dict().items()},
        {k: v.clone() for k, v in full.loss.state_dict().items()},
        full.optimizer.param_groups[0]["lr"],
    )


@pytest.mark.parametrize("legacy_layout", [False, True], ids=["current", "legacy-center-key"])
def test_resume_equals_uninterrupted(
    photo_folder: Path, tmp_path: Path, legacy_layout: bool, uninterrupted: Uninterrupted
) -> None:
    full_losses = uninterrupted.losses

    part_dir = tmp_path / "part"
    first = build_trainer(load_config(None, overrides(photo_folder, part_dir, 2)))
    first_losses = [s.values["loss/total"] for s in first.fit(2)]
    assert load_checkpoint(part_dir / "last.pt")["epoch"] == 2
    if legacy_layout:
        _to_legacy_layout(part_dir / "last.pt")
    # A fresh process would rebuild everything from the config: so does this.
    second = build_trainer(load_config(None, overrides(photo_folder, part_dir, 4)))
    assert second.start_epoch == 2
    second_losses = [s.values["loss/total"] for s in second.fit(4)]

    assert first_losses + second_losses == full_losses
    assert full_losses[0] != full_losses[1]  # the comparison is not between constants
    for (name, a), (_, b) in zip(
        uninterrupted.model.items(), second.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    for (name, a), (_, b) in zip(
        uninterrupted.loss.items(), second.loss.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name  # centers included
    assert second.optimizer.param_groups[0]["lr"] == uninterrupted.lr
    rows = (part_dir / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4"]
    saved = load_checkpoint(part_dir / "last.pt")
    assert saved["config"]["solver"]["epochs"] == 4
    assert saved["label_map"] == second.label_map
