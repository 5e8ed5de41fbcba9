"""Exact t-SNE keeps separated clusters apart; the plot is a PNG of the stated size whose
title (also in its Title text chunk) holds the model name and the metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.evaluation.tsne import tsne
from model.evaluation.tsne_plot import DPI, FIGSIZE_IN, choose_items, plot_title, write_tsne_plot


def _clusters(k: int, per: int, seed: int = 0, spread: float = 0.4):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, 40)) * 2.0
    labels = np.repeat(np.arange(k), per)
    return centres[labels] + spread * rng.normal(size=(k * per, 40)), labels


def _nearest_label_agreement(xy: np.ndarray, labels: np.ndarray) -> float:
    d = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(d, np.inf)
    return float((labels[d.argmin(axis=1)] == labels).mean())


def test_tsne_keeps_clusters_apart_and_noise_mixed() -> None:
    x, labels = _clusters(6, 25)
    xy = tsne(x, iterations=500)
    assert xy.shape == (150, 2) and np.isfinite(xy).all()
    assert _nearest_label_agreement(xy, labels) == 1.0
    # Labels unrelated to the data: their 2-D neighbours agree about as often as chance (1/6).
    shuffled = np.random.default_rng(1).permutation(labels)
    assert _nearest_label_agreement(xy, shuffled) < 0.4


def test_choose_items_takes_the_largest_then_by_name() -> None:
    items = ["b"] * 3 + ["a"] * 3 + ["c"] * 5 + ["d"]
    assert choose_items(items, 2) == ["a", "c"]  # a and b tie at 3: by name
    assert choose_items(items, 10) == ["a", "b", "c", "d"]


def test_plot_is_a_png_of_the_stated_size_with_the_metrics_in_its_title(tmp_path: Path) -> None:
    x, labels = _clusters(24, 5)
    items = [f"item-{n:02d}" for n in labels]
    metrics = {"centroid/mAP": 0.4601, "instance/mAP": 0.3347, "instance/recall@1": 0.3611,
               "clustering/NMI": 0.8337}  # fmt: skip
    plot = write_tsne_plot(
        tmp_path / "plots" / "tsne.png", x, items, [n % 5 == 0 for n in range(len(items))],
        model_name="tiny_cpu_demo 622aa607a86b", metrics=metrics,
    )  # fmt: skip
    data = plot.path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    expected = (round(FIGSIZE_IN[0] * DPI), round(FIGSIZE_IN[1] * DPI))
    with Image.open(plot.path) as img:
        assert img.size == expected == plot.size
        title = img.text["Title"]
        # Not a blank canvas: many distinct colours were drawn.
        assert len(img.convert("RGB").getcolors(maxcolors=1 << 16) or []) > 20
    assert title == plot.title == plot_title("tiny_cpu_demo 622aa607a86b", metrics)
    for text in ("tiny_cpu_demo 622aa607a86b", "centroid mAP 46.01%", "instance mAP 33.47%",
                 "R@1 36.11%", "NMI 83.37%"):  # fmt: skip
        assert text in title
    assert len(plot.items) == 20 and plot.points == 100  # 20 of 24 items, 5 images each


def test_plot_refuses_mismatched_labels(tmp_path: Path) -> None:
    x, _ = _clusters(3, 4)
    with pytest.raises(ValueError):
        write_tsne_plot(tmp_path / "t.png", x, ["a"] * 5, [False] * 12, model_name="m", metrics={})
