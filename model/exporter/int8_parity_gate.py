"""The INT8 export's parity gate: a quantised model is installed only if it agrees with its FP32
model on the parity photos and retrieves as well on a real-photo folder.

Both models are run by ONNX Runtime on the same pixels (``preprocess_bytes`` with the contract,
the service's path); the reference is the FP32 *ONNX* model, not PyTorch, since that is what the
INT8 model replaces. Bars (issue 10): mean cosine >= 0.995 and minimum >= 0.98 over the parity
photos (run as one batch and one by one, like the FP32 gate), and centroid Recall@1 on the
folder within 0.01 of the FP32 model's, either way (a quantisation that retrieves much
*better* has changed the model just as much).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from artifact.image_decode import preprocess_bytes, stack_batch
from artifact.onnx_embedder import OnnxEmbedder
from model.data.dataset_split import DatasetSplit
from model.data.folder_items import read_folder_items
from model.data.sample_photos import write_gallery_query_folder
from model.evaluation.embed_split import evaluate_split, onnx_embedder
from model.exporter.embedding_agreement import Agreement, row_cosines

MIN_MEAN_COSINE = 0.995
MIN_COSINE = 0.98
MAX_RECALL_CHANGE = 0.01
RECALL_KEY = "centroid/rank1"
# The shipped-photo folder: one item per cell of a 2×2 grid over each of the 20 photos (the
# harder set of model.data.photo_folder: cells of one photo share colours and texture), four
# query views each, so 320 queries resolve a Recall@1 change to 1/320.
FOLDER_GRID = (2, 2)
FOLDER_GALLERY_VIEWS = 4
FOLDER_QUERY_VIEWS = 4


class Int8ParityError(RuntimeError):
    """The INT8 model disagrees with its FP32 model beyond the gate's bars."""


@dataclass(frozen=True)
class Int8Thresholds:
    min_mean_cosine: float = MIN_MEAN_COSINE
    min_cosine: float = MIN_COSINE
    max_recall_change: float = MAX_RECALL_CHANGE


# The bars.
INT8_GATE = Int8Thresholds()


@dataclass(frozen=True)
class FolderRecall:
    """Centroid Recall@1 in [0, 1] of ``num_queries`` queries among ``num_items`` items."""

    recall_at_1: float
    num_queries: int
    num_items: int


@dataclass(frozen=True)
class Int8ParityReport:
    photos: Agreement
    fp32: FolderRecall
    int8: FolderRecall

    @property
    def recall_change(self) -> float:
        return self.int8.recall_at_1 - self.fp32.recall_at_1

    def failures(self, bars: Int8Thresholds) -> list[str]:
        """The bars this report misses, each as a readable sentence; ``[]`` when it passes."""
        out = []
        if self.photos.mean_cosine < bars.min_mean_cosine:
            out.append(f"mean cosine {self.photos.mean_cosine:.6f} < {bars.min_mean_cosine}")
        if self.photos.min_cosine < bars.min_cosine:
            out.append(f"min cosine {self.photos.min_cosine:.6f} < {bars.min_cosine}")
        if abs(self.recall_change) > bars.max_recall_change:
            change = abs(self.recall_change)
            out.append(f"|Recall@1 change| {change:.4f} > {bars.max_recall_change}")
        return out

    def __str__(self) -> str:
        return (
            f"INT8 vs FP32: {self.photos} (parity photos, batched and one by one); centroid "
            f"Recall@1 on {self.fp32.num_queries} queries / {self.fp32.num_items} items: FP32 "
            f"{self.fp32.recall_at_1:.4f}, INT8 {self.int8.recall_at_1:.4f}, change "
            f"{self.recall_change:+.4f}"
        )


def photo_agreement(fp32_path: Path, int8_path: Path, photos: Sequence[bytes]) -> Agreement:
    """Cosines of the INT8 embeddings of ``photos`` to the FP32 batch's, the INT8 model run
    as one batch and again one by one; mean and minimum over both runs."""
    fp32 = OnnxEmbedder(fp32_path, allow_gpu=False)
    int8 = OnnxEmbedder(int8_path, allow_gpu=False)
    batch = stack_batch([preprocess_bytes(photo, int8.spec) for photo in photos])
    reference = fp32.embed(batch)
    singles = np.concatenate([int8.embed(batch[i : i + 1]) for i in range(batch.shape[0])])
    cosines = np.concatenate(
        [row_cosines(reference, int8.embed(batch)), row_cosines(reference, singles)]
    )
    return Agreement(len(photos), float(cosines.mean()), float(cosines.min()))


def folder_recall(model_path: Path, split: DatasetSplit) -> FolderRecall:
    """Centroid Recall@1 of ``split`` with the exported model, as ``model.evaluate`` scores it
    (each gallery item's centroid in ``index.FlatCentroidIndex``, the service's ranking)."""
    metrics = evaluate_split(onnx_embedder(model_path), split)
    return FolderRecall(
        recall_at_1=metrics[RECALL_KEY],
        num_queries=len(split.query),
        num_items=len({s.item for s in split.gallery}),
    )


def shipped_photo_split(root: Path) -> DatasetSplit:
    """Write the shipped-photo folder (see ``FOLDER_*``) to ``root`` and read it back."""
    write_gallery_query_folder(
        root,
        gallery_views=FOLDER_GALLERY_VIEWS,
        query_views=FOLDER_QUERY_VIEWS,
        grid=FOLDER_GRID,
    )
    return read_folder_items(root, name="shipped photos")


def check_int8_parity(
    fp32_path: Path, int8_path: Path, photos: Sequence[bytes], split: DatasetSplit
) -> Int8ParityReport:
    """Measure the INT8 model against its FP32 model: the report, no verdict."""
    return Int8ParityReport(
        photos=photo_agreement(fp32_path, int8_path, photos),
        fp32=folder_recall(fp32_path, split),
        int8=folder_recall(int8_path, split),
    )
