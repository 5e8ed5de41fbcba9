"""TwoHeadNet: head sizes against hand-computed parameter counts, NetOutput semantics, unit-norm
``embed``, and an ONNX export that serves like a CTL model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from artifact.image_decode import preprocess_bytes, stack_batch
from artifact.onnx_embedder import OnnxEmbedder
from artifact.preprocess_spec import PreprocessSpec
from model.exporter.onnx_exporter import export_embedder
from model.exporter.parity_photos import load_parity_photos
from model.modeling.backbones.backbone import Backbone
from model.modeling.backbones.registry import build_backbone
from model.modeling.two_head_net import TwoHeadNet


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def tiny_net(head: str, input_hw: tuple[int, int] = (64, 32)) -> TwoHeadNet:
    torch.manual_seed(0)
    backbone = build_backbone("tiny_cnn", out_channels=16)
    return TwoHeadNet(backbone, num_classes=5, input_size_hw=input_hw, embedding_dim=12, head=head)


@pytest.mark.parametrize("head", ["flatten", "pooled"])
def test_tiny_cnn_shapes_and_head_sizes(head: str) -> None:
    net = tiny_net(head).eval()
    x = torch.rand(3, 3, 64, 32)
    with torch.no_grad():
        fmap = net.backbone(net.normalize(x))
        out = net(x)
    c, h, w = fmap.shape[1:]
    in_features = c * h * w if head == "flatten" else c * 4 * 4
    assert n_params(net.embedding_head) == in_features * 12 + 12
    assert n_params(net.classifier) == c * 5 + 5
    assert n_params(net) == n_params(net.backbone) + in_features * 12 + 12 + c * 5 + 5
    assert out.features.shape == out.embeddings.shape == (3, 12)
    assert out.logits.shape == (3, 5)
    assert net.embedding_dim == 12


def test_outputs_mean_what_net_output_says() -> None:
    net = tiny_net("flatten").eval()
    x = torch.rand(4, 3, 64, 32)
    with torch.no_grad():
        out = net(x)
        fmap = net.backbone(net.normalize(x))
        fc_e, fc_c = net.embedding_head[-1], net.classifier[-1]
        raw = fmap.flatten(1) @ fc_e.weight.T + fc_e.bias  # flatten → fc, by hand
        logits = fmap.mean(dim=(2, 3)) @ fc_c.weight.T + fc_c.bias  # GAP → fc, by hand
        embedded = net.embed(x)
    torch.testing.assert_close(out.features, raw)
    torch.testing.assert_close(out.embeddings, raw / raw.norm(dim=1, keepdim=True))
    torch.testing.assert_close(out.logits, logits)
    torch.testing.assert_close(embedded, out.embeddings)
    torch.testing.assert_close(embedded.norm(dim=1), torch.ones(4))


def test_flatten_head_is_tied_to_its_input_size_pooled_is_not() -> None:
    with pytest.raises(RuntimeError):
        tiny_net("flatten")(torch.rand(1, 3, 96, 96))
    pooled = tiny_net("pooled").eval()
    for hw in [(64, 32), (96, 96), (40, 72)]:
        assert pooled.embed(torch.rand(2, 3, *hw)).shape == (2, 12)


def test_size_probe_leaves_batch_norm_statistics_alone() -> None:
    torch.manual_seed(0)
    backbone = build_backbone("tiny_cnn", out_channels=16)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    TwoHeadNet(backbone, num_classes=3, input_size_hw=(64, 32))
    assert backbone.training
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_unknown_head_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown embedding head"):
        tiny_net("attention")


@pytest.fixture(scope="module")
def resnet50_stride2() -> Backbone:
    """Built once: the heads under test do not modify the backbone they share."""
    return build_backbone("resnet50", last_stride=2)


@pytest.mark.parametrize(
    ("head", "input_hw", "in_features"),
    [
        ("flatten", (256, 128), 2048 * 8 * 4),
        ("pooled", (256, 128), 2048 * 4 * 4),
        ("pooled", (224, 224), 2048 * 4 * 4),
    ],
)
def test_resnet50_with_stride_2_head_sizes(
    resnet50_stride2: Backbone, head: str, input_hw: tuple[int, int], in_features: int
) -> None:
    net = TwoHeadNet(resnet50_stride2, num_classes=10, input_size_hw=input_hw, head=head).eval()
    # 256×128 / 32 = 8×4 cells of 2048 channels: 65536 → 256 is 16.8M, the 4×4 pool 8.4M.
    assert n_params(net.embedding_head) == in_features * 256 + 256
    assert n_params(net.classifier) == 2048 * 10 + 10
    with torch.no_grad():
        out = net(torch.rand(2, 3, *input_hw))
    assert out.embeddings.shape == (2, 256) and out.logits.shape == (2, 10)
    torch.testing.assert_close(out.embeddings.norm(dim=1), torch.ones(2))


def test_exports_and_serves_like_a_ctl_model(tmp_path: Path) -> None:
    net = tiny_net("pooled", input_hw=(64, 64)).eval()
    spec = PreprocessSpec(
        input_size=(64, 64),
        embedding_dim=net.embedding_dim,
        model_name="two-head-test",
        model_version="1",
        output_normalized=True,
        graph_normalization={
            "mean": list(net.backbone.mean),
            "std": list(net.backbone.std),
            "scale": [1 / 255],
        },
    )
    photos = load_parity_photos()
    # export_embedder raises ParityError unless PyTorch and ONNX Runtime agree (cosine ≥ 0.9999).
    result = export_embedder(net, spec, tmp_path, photos)
    assert result.parity.num_photos == len(photos)
    embedder = OnnxEmbedder(result.onnx_path, allow_gpu=False)
    assert embedder.spec.output_normalized
    got = embedder.embed(stack_batch([preprocess_bytes(p, embedder.spec) for p in photos]))
    assert got.shape == (len(photos), 12)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
