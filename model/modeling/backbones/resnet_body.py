"""A torchvision ResNet without its classifier, as a :class:`Backbone`, with the last-stride
option of Luo et al. ("Bag of Tricks and a Strong Baseline for Deep Person Re-ID", 2019).

The stem keeps torchvision's standard conv → BN → ReLU → max-pool. (The CTL reference's ResNet
copy has the stem ReLU commented out; its pretrained weights come from torchvision, trained with
the ReLU, so we keep the standard one.)

Keys of :meth:`state_dict` are torchvision's / timm's ResNet keys minus ``fc.*``.
"""

from __future__ import annotations

from torch import Tensor
from torchvision.models import ResNet

from model.modeling.backbones.backbone import Backbone
from model.modeling.backbones.imagenet_stats import IMAGENET_MEAN, IMAGENET_STD

_STRIDES = (1, 2)


class ResNetBody(Backbone):
    """``(N, 3, H, W)`` → ``(N, 2048, H/16, W/16)`` with ``last_stride=1`` (``H/32`` with 2).

    ``last_stride=1`` removes layer4's downsampling: a 256×128 input gives a 16×8 map instead of
    8×4, the finer map Luo et al. found to help re-identification at little cost.
    """

    def __init__(self, net: ResNet, last_stride: int = 1) -> None:
        if last_stride not in _STRIDES:
            raise ValueError(f"last_stride must be one of {_STRIDES}, got {last_stride}")
        super().__init__(net.fc.in_features, IMAGENET_MEAN, IMAGENET_STD)
        self.conv1 = net.conv1
        self.bn1 = net.bn1
        self.relu = net.relu
        self.maxpool = net.maxpool
        self.layer1 = net.layer1
        self.layer2 = net.layer2
        self.layer3 = net.layer3
        self.layer4 = net.layer4
        # torchvision's bottleneck (ResNet v1.5) strides in conv2 and in the shortcut's 1x1 conv.
        first = self.layer4[0]
        first.conv2.stride = (last_stride, last_stride)
        if first.downsample is not None:
            first.downsample[0].stride = (last_stride, last_stride)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)  # type: ignore[no-any-return]
