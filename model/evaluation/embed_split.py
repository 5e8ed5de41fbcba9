"""Embed a split's query and gallery images and score them: the evaluation shared by the
trainer's periodic held-out evaluation and ``python -m model.evaluate``.

Two embedders, one pixel path: a PyTorch network (``ImageDataset`` decodes with
``decode_image``, ``eval_transform`` resizes exactly as ``to_input_array``) or an exported ONNX
file (``preprocess_bytes`` with the model's own contract → ``OnnxEmbedder``, as the service
does, JPEG draft included). So a checkpoint and its export give the same metrics up to float32
kernel differences, and up to the draft on large JPEGs when the export turns it on.

Unreadable images: :func:`evaluate_split` refuses to score a split with any (an
:class:`UnreadableImagesError` listing them), because a standalone evaluation's number is
compared across models and exports and must be on the whole split. The trainer's periodic
evaluation uses :func:`evaluate_readable` instead: a corrupt held-out file must not end a long
run, and its metric only ranks the epochs of that run against each other, which all see the
same images. Neither reads the split twice: the embedders report which rows they could read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.utils.data import DataLoader

from artifact.image_decode import preprocess_bytes, stack_batch
from artifact.onnx_embedder import OnnxEmbedder
from artifact.preprocess_spec import PreprocessSpec
from model.data.dataset_split import DatasetSplit
from model.data.image_dataset import (
    UNREADABLE_IMAGE_ERRORS,
    ImageDataset,
    NoReadableImageError,
)
from model.data.sample import Sample
from model.data.transforms import eval_transform
from model.evaluation.centroid_evaluation import centroid_metrics
from model.evaluation.embedding_nmi import embedding_nmi
from model.evaluation.ranking_metrics import accuracy_at_k, instance_metrics

log = logging.getLogger(__name__)

# samples -> (N, D) float32 embeddings as the model outputs them (not normalised here: the
# metrics normalise, and centroids average raw embeddings as the service does). Raises
# UnreadableImagesError when an image cannot be read.
EmbedFn = Callable[[Sequence[Sample]], npt.NDArray[np.float32]]
# samples -> (embeddings (N, D) float32, readable (N,) bool); rows of unreadable images are zero.
MaskedEmbedFn = Callable[[Sequence[Sample]], tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]]

RANKS = (1, 5, 10)
# DeepFashion / Street2Shop report Accuracy@K (top-K retrieval accuracy) at these K.
ACCURACY_KS = (1, 10, 20, 50)
# Paths named in an unreadable-images error or warning (the count is always complete).
SHOWN_PATHS = 5
# Recall@K of the metric-learning literature (CUB, Cars, SOP tables): the fraction of queries
# with a relevant gallery entry within the top K, under the split's own protocol (so at the
# instance level it is CMC@K, with the re-ID same-camera junk removed).
RECALL_KS = (1, 2, 4, 8)
# Key of the unreadable-image count in the metrics of evaluate_readable.
SKIPPED_KEY = "skipped_images"
# Key of the NMI of k-means over the held-out embeddings (k = number of items).
NMI_KEY = "clustering/NMI"


class UnreadableImagesError(ValueError):
    """Evaluation images could not be read; ``paths`` lists all of them."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)
        super().__init__(
            f"{len(self.paths)} evaluation images could not be read: {self.paths[:SHOWN_PATHS]}"
        )


def strict(embed: MaskedEmbedFn) -> EmbedFn:
    """``embed`` that raises :class:`UnreadableImagesError` instead of reporting a mask."""

    def embed_all(samples: Sequence[Sample]) -> npt.NDArray[np.float32]:
        out, readable = embed(samples)
        if not readable.all():
            raise UnreadableImagesError([samples[int(i)].path for i in np.flatnonzero(~readable)])
        return out

    return embed_all


def torch_masked_embedder(
    net: nn.Module,
    input_size: tuple[int, int],
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 128,
    num_workers: int = 0,
) -> MaskedEmbedFn:
    """``net.embed`` over samples read by ``ImageDataset`` with the eval transform (eval mode),
    with the mask of the images that could be read."""

    def embed(
        samples: Sequence[Sample],
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        out = np.zeros((len(samples), int(net.embedding_dim)), dtype=np.float32)
        # ImageDataset answers an unreadable index with a readable substitute and *its* index,
        # so the indices that never come back are exactly the unreadable images.
        seen = np.zeros(len(samples), dtype=bool)
        if not samples:
            return out, seen
        dataset = ImageDataset(samples, {s.item: 0 for s in samples}, eval_transform(input_size))
        loader: DataLoader[tuple[torch.Tensor, int, int]] = DataLoader(
            dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers
        )
        was_training = net.training
        net.eval()
        try:
            # inference_mode, not no_grad: no version counters or views kept for autograd.
            with torch.inference_mode():
                for images, _, indices in loader:
                    emb = net.embed(images.to(device)).float().cpu().numpy()
                    out[indices.numpy()] = emb
                    seen[indices.numpy()] = True
        except NoReadableImageError:
            seen[:] = False
        finally:
            net.train(was_training)
        return out, seen

    return embed


def torch_embedder(
    net: nn.Module,
    input_size: tuple[int, int],
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 128,
    num_workers: int = 0,
) -> EmbedFn:
    """:func:`torch_masked_embedder` that refuses unreadable images."""
    return strict(
        torch_masked_embedder(
            net, input_size, device=device, batch_size=batch_size, num_workers=num_workers
        )
    )


def onnx_masked_embedder(model_path: Path, *, batch_size: int = 64) -> MaskedEmbedFn:
    """An exported model run by ONNX Runtime on the CPU, fed exactly as the service feeds it,
    with the mask of the images that could be read."""
    embedder = OnnxEmbedder(model_path, allow_gpu=False)
    return array_masked_embedder(embedder.embed, embedder.spec, batch_size=batch_size)


# (N, 3, H, W) uint8 RGB -> (N, D) float32, e.g. OnnxEmbedder.embed.
ArrayEmbedFn = Callable[[npt.NDArray[np.uint8]], npt.NDArray[np.float32]]


def array_masked_embedder(
    embed_batch: ArrayEmbedFn, spec: PreprocessSpec, *, batch_size: int = 64
) -> MaskedEmbedFn:
    """``embed_batch`` over samples decoded by ``preprocess_bytes`` with ``spec`` (the
    service's pixel path), in batches of ``batch_size``, with the mask of readable images."""

    def embed(
        samples: Sequence[Sample],
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        readable = np.zeros(len(samples), dtype=bool)
        chunks: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]] = []
        dim = 0
        for start in range(0, len(samples), batch_size):
            arrays, rows = [], []
            for i in range(start, min(start + batch_size, len(samples))):
                try:
                    # The service's own pixel path: the contract decides resize and JPEG draft.
                    array = preprocess_bytes(samples[i].read_bytes(), spec)
                except UNREADABLE_IMAGE_ERRORS as exc:
                    log.warning("skipping unreadable image %s: %s", samples[i].path, exc)
                    continue
                arrays.append(array)
                rows.append(i)
            if rows:
                emb = np.asarray(embed_batch(stack_batch(arrays)), dtype=np.float32)
                dim = emb.shape[1]
                chunks.append((np.array(rows, dtype=np.int64), emb))
                readable[rows] = True
        out = np.zeros((len(samples), dim), dtype=np.float32)
        for rows_done, emb in chunks:
            out[rows_done] = emb
        return out, readable

    return embed


def onnx_embedder(model_path: Path, *, batch_size: int = 64) -> EmbedFn:
    """:func:`onnx_masked_embedder` that refuses unreadable images."""
    return strict(onnx_masked_embedder(model_path, batch_size=batch_size))


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


def _protocol_of(split: DatasetSplit) -> _Protocol:
    if split.protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {split.protocol!r}; known: {sorted(PROTOCOLS)}")
    return PROTOCOLS[split.protocol]


@dataclass(frozen=True)
class EmbeddedSplit:
    """A split's query ``(Q, D)`` and gallery ``(G, D)`` float32 embeddings, rows in split
    order, as the model outputs them."""

    query: npt.NDArray[np.float32]
    gallery: npt.NDArray[np.float32]


def embed_split(embed: EmbedFn, split: DatasetSplit) -> EmbeddedSplit:
    """Query and gallery embeddings; an unreadable image raises :class:`UnreadableImagesError`
    naming every unreadable file of both parts."""
    embedded, unreadable = [], []
    # The gallery is embedded even when the query had unreadable images, so one error names
    # every file to fix.
    for part in (split.query, split.gallery):
        try:
            embedded.append(embed(part))
        except UnreadableImagesError as exc:
            unreadable += exc.paths
    if unreadable:
        raise UnreadableImagesError(unreadable)
    return EmbeddedSplit(query=embedded[0], gallery=embedded[1])


def score_split(
    embedded: EmbeddedSplit, split: DatasetSplit, *, clustering: bool = True
) -> dict[str, float]:
    """:func:`evaluate_split`'s metrics of embeddings made by :func:`embed_split`."""
    return score_embeddings(
        embedded.query, split.query, embedded.gallery, split.gallery, _protocol_of(split),
        clustering=clustering,
    )  # fmt: skip


def evaluate_split(
    embed: EmbedFn, split: DatasetSplit, *, clustering: bool = True
) -> dict[str, float]:
    """Instance-level (mAP, CMC, Recall@K) and centroid-level (mAP, CMC, Recall@K[, Acc@K])
    metrics of ``split``, and with ``clustering`` the NMI of k-means over its embeddings.

    Keys: ``instance/mAP``, ``instance/rank1`` …, ``instance/recall@1`` … (K in
    :data:`RECALL_KS`), the same under ``centroid/``, :data:`NMI_KEY`, and for the retrieval
    protocol ``instance/acc@K`` and ``centroid/acc@K``; values in [0, 1].
    An unreadable image raises :class:`UnreadableImagesError` (from a strict ``embed``).
    """
    _protocol_of(split)
    return score_split(embed_split(embed, split), split, clustering=clustering)


@dataclass(frozen=True)
class ReadableEvaluation:
    """``metrics``: :func:`evaluate_split`'s keys plus :data:`SKIPPED_KEY` (the number of
    unreadable images, as a float), or only :data:`SKIPPED_KEY` when the query or the gallery
    has no readable image left; ``skipped``: the unreadable query and gallery paths."""

    metrics: dict[str, float]
    skipped: list[str]


def evaluate_readable(
    embed: MaskedEmbedFn, split: DatasetSplit, *, clustering: bool = False
) -> ReadableEvaluation:
    """:func:`evaluate_split` on the split without its unreadable query and gallery images.

    Equivalent to dropping them from the split before embedding (embeddings are per image in
    eval mode), but each image is read once. A query whose item loses all its gallery images
    is then skipped by the metrics like any query without a relevant gallery image.
    ``clustering`` is off by default here: k-means at k = number of items costs about a
    minute on a Market-size split, every evaluation of a run.
    """
    protocol = _protocol_of(split)
    q_emb, q_ok = embed(split.query)
    g_emb, g_ok = embed(split.gallery)
    skipped = [s.path for s, ok in zip(split.query, q_ok, strict=True) if not ok]
    skipped += [s.path for s, ok in zip(split.gallery, g_ok, strict=True) if not ok]
    metrics = {SKIPPED_KEY: float(len(skipped))}
    if q_ok.any() and g_ok.any():
        query = [s for s, ok in zip(split.query, q_ok, strict=True) if ok]
        gallery = [s for s, ok in zip(split.gallery, g_ok, strict=True) if ok]
        metrics.update(
            score_embeddings(
                q_emb[q_ok], query, g_emb[g_ok], gallery, protocol, clustering=clustering
            )
        )
    return ReadableEvaluation(metrics, skipped)


def score_embeddings(
    q_emb: npt.NDArray[np.float32],
    query: Sequence[Sample],
    g_emb: npt.NDArray[np.float32],
    gallery: Sequence[Sample],
    protocol: _Protocol,
    *,
    clustering: bool = True,
) -> dict[str, float]:
    q_items = np.array([s.item for s in query])
    q_cams = np.array([s.camera for s in query])
    g_items = np.array([s.item for s in gallery])
    g_cams = np.array([s.camera for s in gallery])
    g_distractor = np.array([s.is_distractor for s in gallery])
    # One ranking gives both CMC at RANKS and Recall@K at RECALL_KS.
    ks = tuple(sorted(set(RANKS) | set(RECALL_KS)))
    inst = instance_metrics(
        q_emb, q_items, q_cams, g_emb, g_items, g_cams,
        cross_camera=protocol.cross_camera, ranks=ks,
    )  # fmt: skip
    cent = centroid_metrics(
        q_emb, q_items, q_cams, g_emb, g_items, g_cams, g_distractor,
        cross_camera=protocol.cross_camera, ranks=ks, accuracy_ks=ACCURACY_KS,
    )  # fmt: skip
    out = {"instance/mAP": inst.map, "centroid/mAP": cent.map}
    out.update({f"instance/rank{r}": inst.cmc[r] for r in RANKS})
    out.update({f"centroid/rank{r}": cent.cmc[r] for r in RANKS})
    out.update({f"instance/recall@{k}": inst.cmc[k] for k in RECALL_KS})
    out.update({f"centroid/recall@{k}": cent.cmc[k] for k in RECALL_KS})
    if protocol.accuracy:
        acc = accuracy_at_k(q_emb, q_items, g_emb, g_items, ks=ACCURACY_KS)
        out.update({f"instance/acc@{k}": v for k, v in acc.items()})
        out.update({f"centroid/acc@{k}": v for k, v in cent.accuracy_at_k.items()})
    if clustering:
        out[NMI_KEY] = clustering_nmi(q_emb, query, g_emb, gallery)
    return {k: float(v) for k, v in out.items()}


def clustering_nmi(
    q_emb: npt.NDArray[np.float32],
    query: Sequence[Sample],
    g_emb: npt.NDArray[np.float32],
    gallery: Sequence[Sample],
) -> float:
    """NMI of k-means (k = number of items) over every held-out image, query and gallery, that
    shows an item: distractors belong to no item and are left out."""
    keep = np.array([not s.is_distractor for s in gallery], dtype=bool)
    emb = np.concatenate([q_emb, g_emb[keep]])
    items = [s.item for s in query] + [s.item for s, k in zip(gallery, keep, strict=True) if k]
    return embedding_nmi(emb, np.array(items))
