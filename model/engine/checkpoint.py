"""Checkpoints: ``last.pt`` every N epochs (resume point), ``best.pt`` by held-out centroid mAP.

Every checkpoint holds the resolved config (as a plain dict) and the label map, so a checkpoint
alone is enough to rebuild the network for evaluation and export
(:func:`load_model_from_checkpoint`). Files are written to a temporary name and renamed, so an
interrupted save never leaves a truncated ``last.pt``.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model.config.train_config import TrainConfig, from_dict
from model.engine.registries import build_model
from model.losses.recipes.term_names import CENTER

LAST = "last.pt"
BEST = "best.pt"
# Bumped when the layout of the saved dict changes incompatibly.
CHECKPOINT_FORMAT = 1


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) random states."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointManager:
    """Writes ``out_dir/last.pt`` (+ ``epoch_XXX.pt`` when ``keep_epochs``) and ``best.pt``.

    ``enabled`` is False on every rank but 0 under DDP: one writer per run.
    """

    def __init__(self, out_dir: Path, *, enabled: bool = True, keep_epochs: bool = False) -> None:
        self.out_dir = out_dir
        self.enabled = enabled
        self.keep_epochs = keep_epochs

    @property
    def last_path(self) -> Path:
        return self.out_dir / LAST

    @property
    def best_path(self) -> Path:
        return self.out_dir / BEST

    def save(self, state: dict[str, Any], *, epoch: int, is_best: bool) -> None:
        """Save ``state`` as ``last.pt``; copy it to ``best.pt`` when ``is_best``."""
        if not self.enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        state = {"format": CHECKPOINT_FORMAT, **state}
        tmp = self.last_path.with_suffix(".pt.tmp")
        torch.save(state, tmp)
        tmp.replace(self.last_path)
        if self.keep_epochs:
            shutil.copyfile(self.last_path, self.out_dir / f"epoch_{epoch:03d}.pt")
        if is_best:
            shutil.copyfile(self.last_path, self.best_path.with_suffix(".pt.tmp"))
            self.best_path.with_suffix(".pt.tmp").replace(self.best_path)

    def load_last(self, map_location: torch.device | str = "cpu") -> dict[str, Any] | None:
        """The resume state, or None when the run has no ``last.pt`` yet."""
        if not self.last_path.is_file():
            return None
        return load_checkpoint(self.last_path, map_location)


def load_checkpoint(path: Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    # weights_only=False: the file also holds RNG states (NumPy arrays, tuples); checkpoints are
    # files this project wrote, not untrusted input.
    state: dict[str, Any] = torch.load(path, map_location=map_location, weights_only=False)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a checkpoint of this project (format {CHECKPOINT_FORMAT})")
    return _with_loss_optimizers(state)


def _with_loss_optimizers(state: dict[str, Any]) -> dict[str, Any]:
    """Checkpoints written before loss terms declared their own optimisers kept the one such
    optimiser, the center loss's SGD, under ``center_optimizer``: the same state, now filed
    under its term's name, so such a run still resumes."""
    if "loss_optimizers" in state or "center_optimizer" not in state:
        return state
    legacy = state.pop("center_optimizer")
    return {**state, "loss_optimizers": {} if legacy is None else {CENTER: legacy}}


def load_model_from_checkpoint(path: Path) -> tuple[nn.Module, TrainConfig]:
    """Rebuild the network stored in ``path`` (eval mode, CPU) and its resolved config."""
    state = load_checkpoint(path)
    cfg = from_dict(state["config"])
    net = build_model(
        cfg.model, len(state["label_map"]), cfg.data.input_size, load_pretrained=False
    )
    net.load_state_dict(state["model"])
    return net.eval(), cfg
