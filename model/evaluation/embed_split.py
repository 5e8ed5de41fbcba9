"""Embed a split's query and gallery images and score them: the evaluation shared by the
trainer's periodic held-out evaluation and ``python -m model.evaluate``.

Two embedders, one pixel path: a PyTorch network (``ImageDataset`` decodes with
``decode_image``, ``eval_transform`` resizes exactly as ``to_input_array``) or an exported ONNX
file (``decode_image`` → ``to_input_array`` → ``OnnxEmbedder``, as the service does). So a
checkpoint and its export give the same metrics up to float32 kernel differences.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.utils.data import DataLoader

from model.artifact.image_decode import decode_image, stack_batch, to_input_array
from model.artifact.onnx_embedder import OnnxEmbedder
from model.data.dataset_split import DatasetSplit
from model.data.image_dataset import ImageDataset
from model.data.sample import Sample
from model.data.transforms import eval_transform
from model.evaluation.centroid_evaluation import centroid_metrics
from model.evaluation.ranking_metrics import accuracy_at_k, instance_metrics

# samples -> (N, D) float32 embeddings as the model outputs them (not normalised here: the
# metrics normalise, and centroids average raw embeddings as the service does).
EmbedFn = Callable[[Sequence[Sample]], npt.NDArray[np.float32]]

RANKS = (1, 5, 10)
# DeepFashion / Street2Shop report Accuracy@K (top-K retrieval accuracy) at these K.
ACCURACY_KS = (1, 10, 20, 50)


def torch_embedder(
    net: nn.Module,
    input_size: tuple[int, int],
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 128,
    num_workers: int = 0,
) -> EmbedFn:
    """``net.embed`` over samples read by ``ImageDataset`` with the eval transform (eval mode)."""

    def embed(samples: Sequence[Sample]) -> npt.NDArray[np.float32]:
        dataset = ImageDataset(samples, {s.item: 0 for s in samples}, eval_transform(input_size))
        loader: DataLoader[tuple[torch.Tensor, int, int]] = DataLoader(
            dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers
        )
        was_training = net.training
        net.eval()
        out = np.zeros((len(samples), int(net.embedding_dim)), dtype=np.float32)
        seen = np.zeros(len(samples), dtype=bool)
        with torch.no_grad():
            for images, _, indices in loader:
                emb = net.embed(images.to(device)).float().cpu().numpy()
                out[indices.numpy()] = emb
                seen[indices.numpy()] = True
        net.train(was_training)
        _check_all_read(samples, seen)
        return out

    return embed


def onnx_embedder(model_path: Path, *, batch_size: int = 64) -> EmbedFn:
    """An exported model run by ONNX Runtime on the CPU, fed exactly as the service feeds it."""
    embedder = OnnxEmbedder(model_path, allow_gpu=False)

    def embed(samples: Sequence[Sample]) -> npt.NDArray[np.float32]:
        chunks = []
        for start in range(0, len(samples), batch_size):
            arrays = [
                to_input_array(decode_image(Path(s.path).read_bytes()), embedder.spec)
                for s in samples[start : start + batch_size]
            ]
            chunks.append(embedder.embed(stack_batch(arrays)))
        return np.concatenate(chunks).astype(np.float32)

    return embed


def _check_all_read(samples: Sequence[Sample], seen: npt.NDArray[np.bool_]) -> None:
    # Training may skip a corrupt image; evaluation must not silently score a different split.
    if not seen.all():
        missing = [samples[i].path for i in np.flatnonzero(~seen)[:5]]
        raise ValueError(f"{int((~seen).sum())} evaluation images could not be read: {missing}")


@dataclass(frozen=True)
class _Protocol:
    cross_camera: bool
    accuracy: bool


# "reid": Market-1501 protocol (same-camera gallery images of the query's identity are junk);
# "retrieval": consumer-to-shop style, every gallery image counts, Accuracy@K reported.
PROTOCOLS = {
    "reid": _Protocol(cross_camera=True, accuracy=False),
    "retrieval": _Protocol(cross_camera=False, accuracy=True),
}


def evaluate_split(embed: EmbedFn, split: DatasetSplit) -> dict[str, float]:
    """Instance-level (mAP, CMC) and centroid-level (mAP, CMC[, Acc@K]) metrics of ``split``.

    Keys: ``instance/mAP``, ``instance/rank1`` …, ``centroid/mAP``, ``centroid/rank1`` …, and
    for the retrieval protocol ``instance/acc@K`` and ``centroid/acc@K``; values in [0, 1].
    """
    if split.protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {split.protocol!r}; known: {sorted(PROTOCOLS)}")
    protocol = PROTOCOLS[split.protocol]
    q_emb, g_emb = embed(split.query), embed(split.gallery)
    return score_embeddings(q_emb, split.query, g_emb, split.gallery, protocol)


def score_embeddings(
    q_emb: npt.NDArray[np.float32],
    query: Sequence[Sample],
    g_emb: npt.NDArray[np.float32],
    gallery: Sequence[Sample],
    protocol: _Protocol,
) -> dict[str, float]:
    q_items = np.array([s.item for s in query])
    q_cams = np.array([s.camera for s in query])
    g_items = np.array([s.item for s in gallery])
    g_cams = np.array([s.camera for s in gallery])
    g_distractor = np.array([s.is_distractor for s in gallery])
    inst = instance_metrics(
        q_emb, q_items, q_cams, g_emb, g_items, g_cams,
        cross_camera=protocol.cross_camera, ranks=RANKS,
    )  # fmt: skip
    cent = centroid_metrics(
        q_emb, q_items, q_cams, g_emb, g_items, g_cams, g_distractor,
        cross_camera=protocol.cross_camera, ranks=RANKS, accuracy_ks=ACCURACY_KS,
    )  # fmt: skip
    out = {"instance/mAP": inst.map, "centroid/mAP": cent.map}
    out.update({f"instance/rank{r}": v for r, v in inst.cmc.items()})
    out.update({f"centroid/rank{r}": v for r, v in cent.cmc.items()})
    if protocol.accuracy:
        acc = accuracy_at_k(q_emb, q_items, g_emb, g_items, ks=ACCURACY_KS)
        out.update({f"instance/acc@{k}": v for k, v in acc.items()})
        out.update({f"centroid/acc@{k}": v for k, v in cent.accuracy_at_k.items()})
    return {k: float(v) for k, v in out.items()}
