"""ResNetBody against the standard ResNet-50s (timm's and torchvision's) with the same weights.

With last stride 2 the body must be exactly the standard network minus its head, so a lost
ReLU, a moved stride or a skipped block changes the output. Random weights with randomised
BatchNorm statistics and affines (eval mode), so no BN is close to the identity.
"""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet50 as torchvision_resnet50

from model.modeling.backbones.resnet50 import resnet50

INPUT_HW = (64, 32)


def randomise_batch_norms(net: nn.Module) -> None:
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                m.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(n, generator=generator) * 0.1)


@pytest.fixture(scope="module")
def standard() -> nn.Module:
    """torchvision's resnet50 with random weights: the source of every network's weights."""
    torch.manual_seed(0)
    net = torchvision_resnet50(weights=None)
    randomise_batch_norms(net)
    return net.eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(2, 3, *INPUT_HW, generator=torch.Generator().manual_seed(1))


def body_with(state: dict[str, torch.Tensor], last_stride: int) -> nn.Module:
    body = resnet50(last_stride=last_stride)
    # The body's keys are torchvision's / timm's minus the classifier: no renaming needed.
    body.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")})
    return body.eval()


@torch.no_grad()
def test_last_stride_2_equals_timm_and_torchvision_resnet50(
    standard: nn.Module, x: torch.Tensor
) -> None:
    state = standard.state_dict()
    body = body_with(state, last_stride=2)
    timm_net = timm.create_model("resnet50", pretrained=False)
    timm_net.load_state_dict(state)  # timm's resnet50 uses torchvision's key names
    timm_net.eval()

    got = body(x)
    assert got.shape == (2, 2048, INPUT_HW[0] // 32, INPUT_HW[1] // 32)
    # The whole layer4 map against timm's forward_features ...
    torch.testing.assert_close(got, timm_net.forward_features(x), rtol=1e-4, atol=1e-4)
    # ... and its pooling against torchvision's own forward with the classifier removed.
    headless = torchvision_resnet50(weights=None)
    headless.load_state_dict(state)
    headless.fc = nn.Identity()
    headless.eval()
    pooled = F.adaptive_avg_pool2d(got, 1).flatten(1)
    torch.testing.assert_close(pooled, headless(x), rtol=1e-4, atol=1e-4)
    # Not trivially small outputs: the comparison has something to compare.
    assert got.abs().mean() > 0.1


@torch.no_grad()
def test_a_missing_stem_relu_would_be_caught(standard: nn.Module, x: torch.Tensor) -> None:
    # The reference's copy has no ReLU after the stem BN; that network must differ clearly.
    body = body_with(standard.state_dict(), last_stride=2)
    expected = body(x)
    body.relu = nn.Identity()  # the stem's ReLU (the blocks have their own)
    assert not torch.allclose(body(x), expected, rtol=1e-2, atol=1e-2)


@torch.no_grad()
def test_last_stride_1_doubles_the_map(standard: nn.Module, x: torch.Tensor) -> None:
    state = standard.state_dict()
    fine = body_with(state, last_stride=1)
    coarse = body_with(state, last_stride=2)
    fine_map, coarse_map = fine(x), coarse(x)
    assert fine_map.shape == (2, 2048, INPUT_HW[0] // 16, INPUT_HW[1] // 16)
    assert fine_map.shape[2:] == (2 * coarse_map.shape[2], 2 * coarse_map.shape[3])
    # Only layer4's first block changes stride (its 3x3 conv and its shortcut), nothing else.
    strides = {
        name: m.stride
        for name, m in fine.named_modules()
        if isinstance(m, nn.Conv2d) and m.stride != (1, 1)
    }
    assert strides == {
        "conv1": (2, 2),
        "layer2.0.conv2": (2, 2),
        "layer2.0.downsample.0": (2, 2),
        "layer3.0.conv2": (2, 2),
        "layer3.0.downsample.0": (2, 2),
    }
