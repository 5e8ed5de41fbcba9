"""``model.evaluate --tsne PATH.png``: t-SNE of held-out embeddings coloured by item, the HPL
paper's figure, with the model's name and its metrics in the title.

At most ``max_items`` items are drawn (those with the most held-out images, ties by name), so
the legend stays readable; gallery images are dots, queries triangles. The title is also
stored in the PNG's ``Title`` text chunk, so a test or a script can read it back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from index.centroid_math import l2_normalize
from model.evaluation.tsne import MAX_POINTS, tsne

DEFAULT_MAX_ITEMS = 20
# 9 x 7.5 inches at 150 dpi: 1350 x 1125 pixels, legend beside the scatter.
FIGSIZE_IN = (9.0, 7.5)
DPI = 150
# Metrics shown in the title, in this order, when present.
TITLE_METRICS = (
    ("centroid/mAP", "centroid mAP"),
    ("instance/mAP", "instance mAP"),
    ("instance/recall@1", "R@1"),
    ("clustering/NMI", "NMI"),
)


@dataclass(frozen=True)
class TsnePlot:
    """What was drawn: ``path``, ``title``, the ``items`` shown, ``points`` plotted and the
    image's ``size`` in pixels (width, height)."""

    path: Path
    title: str
    items: list[str]
    points: int
    size: tuple[int, int]


def plot_title(model_name: str, metrics: Mapping[str, float]) -> str:
    """``"<model>\\ncentroid mAP 46.01% · instance mAP 33.47% · R@1 36.11% · NMI 70.12%"``."""
    parts = [f"{label} {100 * metrics[key]:.2f}%" for key, label in TITLE_METRICS if key in metrics]
    return f"{model_name}\n" + " · ".join(parts)


def choose_items(items: Sequence[str], max_items: int) -> list[str]:
    """The ``max_items`` items with the most images, ties by name; returned sorted by name."""
    names, counts = np.unique(np.asarray(items), return_counts=True)
    order = sorted(range(len(names)), key=lambda i: (-int(counts[i]), str(names[i])))
    return sorted(str(names[i]) for i in order[:max_items])


def write_tsne_plot(
    path: Path,
    embeddings: npt.ArrayLike,
    items: Sequence[str],
    is_query: Sequence[bool],
    *,
    model_name: str,
    metrics: Mapping[str, float],
    max_items: int = DEFAULT_MAX_ITEMS,
    seed: int = 0,
) -> TsnePlot:
    """t-SNE of ``embeddings`` ``(N, D)`` (raw model outputs, L2-normalised here) of the chosen
    items, written as a PNG to ``path``. ``items`` and ``is_query`` are ``(N,)``."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    emb = l2_normalize(np.asarray(embeddings))
    labels = np.asarray(items)
    query = np.asarray(is_query, dtype=bool)
    if labels.shape != (emb.shape[0],) or query.shape != (emb.shape[0],):
        raise ValueError(f"items and is_query must be ({emb.shape[0]},)")
    shown = choose_items(list(labels), max_items)
    keep = np.isin(labels, shown)
    rows = np.flatnonzero(keep)
    if rows.shape[0] > MAX_POINTS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, MAX_POINTS, replace=False))
    xy = tsne(emb[rows], seed=seed)
    title = plot_title(model_name, metrics)

    fig, ax = plt.subplots(figsize=FIGSIZE_IN, dpi=DPI, layout="constrained")
    # tab20 gives 20 distinct colours; beyond that colours repeat (the legend still names them).
    cmap = plt.get_cmap("tab20")
    for i, item in enumerate(shown):
        mine = labels[rows] == item
        colour = cmap(i % 20)
        for is_q, marker in ((False, "o"), (True, "^")):
            sel = mine & (query[rows] == is_q)
            if sel.any():
                ax.scatter(
                    xy[sel, 0], xy[sel, 1], s=28 if is_q else 18, marker=marker, color=colour,
                    edgecolors="black" if is_q else "none", linewidths=0.4,
                    label=item if not is_q or not (mine & ~query[rows]).any() else None,
                )  # fmt: skip
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(
        title=f"item ({len(shown)} shown; ▲ query, ● gallery)", loc="upper left",
        bbox_to_anchor=(1.01, 1.0), fontsize=7, title_fontsize=8, markerscale=1.2, frameon=False,
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png", metadata={"Title": title})
    plt.close(fig)
    with Image.open(path) as written:
        size = written.size
    return TsnePlot(path, title, shown, int(rows.shape[0]), size)
