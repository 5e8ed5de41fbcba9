"""The periodic held-out evaluation of a training run (query vs gallery of the split)."""

from __future__ import annotations

import logging

import torch
from torch import nn

from model.config.train_config import TrainConfig
from model.data.dataset_split import DatasetSplit
from model.engine.trainer import BEST_METRIC, Evaluator
from model.evaluation.embed_split import SHOWN_PATHS, evaluate_readable, torch_masked_embedder

log = logging.getLogger(__name__)


def build_evaluator(
    split: DatasetSplit, cfg: TrainConfig, device: torch.device
) -> Evaluator | None:
    """Held-out evaluation of ``split`` (query vs gallery) with the training input size.

    Unreadable query or gallery images are left out and counted (``SKIPPED_KEY`` in the
    metrics, a warning in the log) rather than raising as ``python -m model.evaluate`` does: a
    corrupt file must not end a long run, and every epoch is scored without the same files, so
    best.pt is still chosen on equal terms.
    """
    if not split.query or not split.gallery:
        return None

    def evaluate(net: nn.Module) -> dict[str, float]:
        embed = torch_masked_embedder(
            net,
            cfg.data.input_size,
            device=device,
            batch_size=cfg.data.eval_batch_size,
            num_workers=cfg.data.num_workers,
        )
        result = evaluate_readable(embed, split)
        if result.skipped:
            log.warning(
                "held-out evaluation: skipped %d unreadable query/gallery images, e.g. %s",
                len(result.skipped),
                result.skipped[:SHOWN_PATHS],
            )
        if BEST_METRIC not in result.metrics:
            log.error(
                "held-out evaluation: no readable query or no readable gallery image left in "
                "%s; nothing scored, best.pt not updated",
                split.name,
            )
        return result.metrics

    return evaluate
