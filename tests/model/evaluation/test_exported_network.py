"""The in-memory ONNX path of a torch network gives the torch path's embeddings and metrics on
real photos, leaves the network in its mode, and reports unreadable files the same way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.config.train_config import load_config
from model.data.folder_items import read_folder_items
from model.engine.held_out_evaluator import build_evaluator
from model.evaluation.embed_split import evaluate_readable, torch_masked_embedder
from model.evaluation.exported_network import exported_masked_embedder, network_masked_embedder
from model.modeling.backbones.tiny_cnn import tiny_cnn
from model.modeling.embedding_net import EmbeddingNet
from tests.model.engine.conftest import write_photo_folder

INPUT = (64, 48)


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory):
    root = write_photo_folder(tmp_path_factory.mktemp("photos"), train_views=1)
    return read_folder_items(root)


@pytest.fixture(scope="module")
def net() -> EmbeddingNet:
    torch.manual_seed(0)
    model = EmbeddingNet(tiny_cnn(), num_classes=5)
    # Non-trivial BN statistics, so an export that lost the eval-mode BN would show.
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(8, 3, *INPUT))
    return model


def test_exported_embeddings_equal_torch_embeddings(split, net: EmbeddingNet) -> None:
    samples = split.query + split.gallery
    net.train()
    exported, ok_e = exported_masked_embedder(net, INPUT)(samples)
    assert net.training  # put back as it was
    eager, ok_t = torch_masked_embedder(net, INPUT)(samples)
    assert ok_e.all() and ok_t.all() and exported.shape == eager.shape == (len(samples), 64)
    np.testing.assert_allclose(exported, eager, atol=1e-4, rtol=1e-4)
    assert np.abs(exported).max() > 0.1  # a real embedding, not zeros
    via_torch = evaluate_readable(torch_masked_embedder(net, INPUT), split).metrics
    via_onnx = evaluate_readable(network_masked_embedder(net, INPUT, device="cpu"), split).metrics
    assert via_torch.keys() == via_onnx.keys()
    for key, value in via_torch.items():
        assert via_onnx[key] == pytest.approx(value, abs=1e-6), key


def test_unreadable_files_are_masked_like_the_torch_path(split, net, tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    samples = [split.gallery[0], type(split.gallery[0])(str(bad), split.gallery[0].item)]
    samples.append(split.gallery[1])
    out, ok = exported_masked_embedder(net, INPUT)(samples)
    assert ok.tolist() == [True, False, True]
    assert not out[1].any() and out[0].any()
    _, ok_t = torch_masked_embedder(net, INPUT)(samples)
    assert ok_t.tolist() == ok.tolist()


@pytest.mark.parametrize(("best", "has_nmi"), [("centroid/mAP", False), ("clustering/NMI", True)])
def test_held_out_evaluator_reports_nmi_when_it_picks_best(split, net, best, has_nmi) -> None:
    cfg = load_config(
        None, ["data.input_size=[64, 48]", "data.num_workers=0", f"best_metric={best}"]
    )
    evaluator = build_evaluator(split, cfg, torch.device("cpu"))
    assert evaluator is not None
    metrics = evaluator(net)
    assert ("clustering/NMI" in metrics) is has_nmi
    assert 0.0 < metrics["instance/recall@8"] <= 1.0 and "centroid/recall@1" in metrics
