"""The periodic held-out evaluation of a training run (query vs gallery of the split)."""

from __future__ import annotations

import logging

import torch
from torch import nn

from model.config.train_config import TrainConfig
from model.data.dataset_split import DatasetSplit
from model.engine.trainer import BEST_METRIC, Evaluator
from model.evaluation.embed_split import NMI_KEY, SHOWN_PATHS, evaluate_readable
from model.evaluation.exported_network import network_masked_embedder

log = logging.getLogger(__name__)


def build_evaluator(
    split: DatasetSplit, cfg: TrainConfig, device: torch.device, *, clustering: bool = False
) -> Evaluator | None:
    """Held-out evaluation of ``split`` (query vs gallery) with the training input size.

    On the CPU the network is embedded through ONNX Runtime (an in-memory export per
    evaluation, :mod:`model.evaluation.exported_network`: 3-4x faster than eager torch), on
    CUDA in torch. The metrics are :func:`~model.evaluation.embed_split.evaluate_split`'s keys
    (``centroid/mAP``, ``instance/recall@1`` ...); ``clustering`` adds ``clustering/NMI``, off
    by default because its k-means costs about a minute per evaluation at Market size, and on
    when ``cfg.best_metric`` is the NMI.

    Unreadable query or gallery images are left out and counted (``SKIPPED_KEY`` in the
    metrics, a warning in the log) rather than raising as ``python -m model.evaluate`` does: a
    corrupt file must not end a long run, and every epoch is scored without the same files, so
    best.pt is still chosen on equal terms.
    """
    if not split.query or not split.gallery:
        return None
    clustering = clustering or cfg.best_metric == NMI_KEY

    def evaluate(net: nn.Module) -> dict[str, float]:
        embed = network_masked_embedder(
            net,
            cfg.data.input_size,
            device=device,
            batch_size=cfg.data.eval_batch_size,
            num_workers=cfg.data.num_workers,
        )
        result = evaluate_readable(embed, split, clustering=clustering)
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
