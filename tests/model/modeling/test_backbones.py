"""Backbones: feature-map shapes, IBN-a structure, weights files (round trip and loud errors),
the packaged EfficientNet-Lite0 weights classifying real photos, the registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from torch import nn
from torchvision.models import resnet50 as torchvision_resnet50

from model.modeling.backbones.backbone import Backbone
from model.modeling.backbones.efficientnet_lite0 import (
    efficientnet_lite0,
    tf_efficientnet_lite0_imagenet,
)
from model.modeling.backbones.imagenet_stats import IMAGENET_MEAN, IMAGENET_STD
from model.modeling.backbones.instance_batch_norm import InstanceBatchNorm
from model.modeling.backbones.registry import BACKBONES, build_backbone
from model.modeling.backbones.resnet50 import resnet50
from model.modeling.backbones.resnet50_ibn_a import resnet50_ibn_a
from model.modeling.backbones.state_dict_file import WeightsFileError
from model.modeling.backbones.tiny_cnn import tiny_cnn

# torchvision's resnet50 has 25,557,032 parameters; its fc 2048 * 1000 + 1000 = 2,049,000.
# IBN-a swaps BN affine pairs for IN affine pairs on the same channels: the same count.
RESNET50_BODY_PARAMS = 25_557_032 - 2_049_000


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@torch.no_grad()
def map_shape(b: Backbone, hw: tuple[int, int]) -> tuple[int, ...]:
    return tuple(b.eval()(torch.rand(1, 3, *hw)).shape)


@pytest.fixture(scope="module")
def r50() -> Backbone:
    torch.manual_seed(0)
    return resnet50(last_stride=1)


def test_resnet50_last_stride_1_shapes(r50: Backbone) -> None:
    assert r50.out_channels == 2048
    assert (r50.mean, r50.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert n_params(r50) == RESNET50_BODY_PARAMS
    assert map_shape(r50, (256, 128)) == (1, 2048, 16, 8)
    assert map_shape(r50, (320, 320)) == (1, 2048, 20, 20)


def test_resnet50_last_stride_2_and_bad_stride() -> None:
    assert map_shape(resnet50(last_stride=2), (256, 128)) == (1, 2048, 8, 4)
    with pytest.raises(ValueError, match="last_stride"):
        resnet50(last_stride=3)


def test_resnet50_loads_a_torchvision_state_dict(tmp_path: Path, r50: Backbone) -> None:
    torch.manual_seed(1)
    source = torchvision_resnet50(weights=None)
    for m in source.modules():  # non-trivial running statistics, so they are checked too
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
    path = tmp_path / "resnet50.pth"
    torch.save(source.state_dict(), path)
    loaded = resnet50(weights_path=str(path))
    expected = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    got = loaded.state_dict()
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    # The same model in the DDP/"state_dict" wrapping also loads.
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, wrapped)
    again = resnet50(weights_path=str(wrapped)).state_dict()
    assert all(torch.equal(again[k], expected[k]) for k in expected)


def test_weights_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(WeightsFileError, match="does not exist"):
        resnet50(weights_path=str(tmp_path / "absent.pth"))
    state = torchvision_resnet50(weights=None).state_dict()
    del state["layer2.0.conv1.weight"]
    state["layer3.0.conv2.weight"] = torch.zeros(1, 1, 3, 3)
    state["head.weight"] = torch.zeros(3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(WeightsFileError) as err:
        resnet50(weights_path=str(path))
    msg = str(err.value)
    assert "1 missing keys" in msg and "layer2.0.conv1.weight" in msg
    assert "1 unexpected keys" in msg and "head.weight" in msg
    assert "1 shape mismatches" in msg and "layer3.0.conv2.weight" in msg


def test_resnet50_ibn_a_structure_and_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(2)
    ibn = resnet50_ibn_a(last_stride=1)
    assert n_params(ibn) == RESNET50_BODY_PARAMS
    body = ibn.layer1, ibn.layer2, ibn.layer3, ibn.layer4  # type: ignore[attr-defined]
    for layer in body[:3]:
        assert all(isinstance(block.bn1, InstanceBatchNorm) for block in layer)
    assert not any(isinstance(m, InstanceBatchNorm) for m in body[3].modules())
    assert isinstance(ibn.bn1, nn.BatchNorm2d)  # type: ignore[attr-defined]
    keys = ibn.state_dict().keys()
    # The key names of IBN-Net's released resnet50_ibn_a weights.
    assert {
        "layer1.0.bn1.IN.weight",
        "layer1.0.bn1.BN.running_mean",
        "layer3.5.bn1.IN.bias",
    } <= keys
    assert "layer4.0.bn1.weight" in keys and ibn.state_dict()["layer1.0.bn1.IN.weight"].shape == (
        32,
    )
    assert map_shape(ibn, (256, 128)) == (1, 2048, 16, 8)
    # Round trip through a file with an fc and without num_batches_tracked (old checkpoints).
    state = {k: v for k, v in ibn.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)
    path = tmp_path / "ibn.pth"
    torch.save(state, path)
    other = resnet50_ibn_a(weights_path=str(path))
    assert all(torch.equal(other.state_dict()[k], v) for k, v in ibn.state_dict().items()
               if not k.endswith("num_batches_tracked"))  # fmt: skip


def test_instance_batch_norm_matches_hand_computation() -> None:
    torch.manual_seed(3)
    layer = InstanceBatchNorm(6).train()
    with torch.no_grad():
        layer.IN.weight.uniform_(0.5, 2)
        layer.BN.bias.uniform_(-1, 1)
    x = torch.randn(4, 6, 5, 7) * 3 + 1
    eps = 1e-5
    first, second = x[:, :3], x[:, 3:]
    inst = (first - first.mean((2, 3), keepdim=True)) / torch.sqrt(
        first.var((2, 3), unbiased=False, keepdim=True) + eps
    )
    inst = inst * layer.IN.weight.view(1, 3, 1, 1) + layer.IN.bias.view(1, 3, 1, 1)
    batch = (second - second.mean((0, 2, 3), keepdim=True)) / torch.sqrt(
        second.var((0, 2, 3), unbiased=False, keepdim=True) + eps
    )
    batch = batch * layer.BN.weight.view(1, 3, 1, 1) + layer.BN.bias.view(1, 3, 1, 1)
    torch.testing.assert_close(layer(x), torch.cat([inst, batch], 1), rtol=1e-5, atol=1e-5)


def imagenet_top5(model: nn.Module, arr: np.ndarray) -> list[int]:
    img = Image.fromarray(arr).convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
    x = torch.from_numpy(np.asarray(img).transpose(2, 0, 1).copy()).float()[None] / 255
    x = (x - 0.5) / 0.5
    with torch.no_grad():
        return model(x)[0].topk(5).indices.tolist()  # type: ignore[no-any-return]


def test_packaged_efficientnet_lite0_weights_classify_real_photos() -> None:
    model = tf_efficientnet_lite0_imagenet()
    # chelsea is a tabby cat: ImageNet classes 281-285 are the domestic cats.
    assert imagenet_top5(model, data.chelsea())[0] in range(281, 286)
    # coffee: 967 espresso, 968 cup, 504 coffee mug.
    assert {967, 968, 504} & set(imagenet_top5(model, data.coffee())[:5])
    assert imagenet_top5(model, data.coffee())[0] in (967, 968, 504)


def test_efficientnet_lite0_backbone() -> None:
    b = efficientnet_lite0(pretrained=True)
    assert (b.out_channels, b.mean, b.std) == (1280, (0.5,) * 3, (0.5,) * 3)
    assert map_shape(b, (256, 128)) == (1, 1280, 8, 4)
    assert map_shape(b, (320, 320)) == (1, 1280, 10, 10)
    assert not any("classifier" in k for k in b.state_dict())
    pretrained = tf_efficientnet_lite0_imagenet().state_dict()
    assert torch.equal(b.state_dict()["model.conv_stem.weight"], pretrained["conv_stem.weight"])
    random_init = efficientnet_lite0(pretrained=False)
    assert not torch.equal(
        random_init.state_dict()["model.conv_stem.weight"], pretrained["conv_stem.weight"]
    )


def test_tiny_cnn_and_registry() -> None:
    assert map_shape(tiny_cnn(32), (256, 128)) == (1, 32, 32, 16)
    assert map_shape(build_backbone("tiny_cnn"), (320, 320)) == (1, 64, 40, 40)
    assert set(BACKBONES) == {"resnet50", "resnet50_ibn_a", "efficientnet_lite0", "tiny_cnn"}
    with pytest.raises(
        ValueError, match="choose one of: efficientnet_lite0, resnet50, resnet50_ibn_a, tiny_cnn"
    ):
        build_backbone("vgg16")


def test_ibn_network_converts_to_half_precision() -> None:
    # nn.Module.half() must stay callable (an attribute named "half" once shadowed it).
    layer = InstanceBatchNorm(8).half()
    assert layer.IN.weight.dtype == layer.BN.weight.dtype == torch.float16
