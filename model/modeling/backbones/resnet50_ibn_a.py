"""ResNet-50-IBN-a (Pan et al., ECCV 2018), the "L" backbone of the CTL paper.

IBN-a replaces the first batch norm of every bottleneck in layer1 to layer3 by an IBN layer
(half instance norm, half batch norm); layer4 and the stem stay batch norm, so appearance
variation (colour, lighting) is normalised away early while discrimination is kept late.
Built on torchvision's ResNet-50 (stride in the 3x3 conv, as IBN-Net's own bottleneck); the
state-dict keys are those of IBN-Net's released ``resnet50_ibn_a-d9d0bb7b.pth``
(``conv1``, ``bn1``, ``layer1.0.bn1.IN.weight``, ``layer1.0.bn1.BN.running_mean``, ...).
"""

from __future__ import annotations

from torchvision.models import resnet50 as torchvision_resnet50

from model.modeling.backbones.backbone import Backbone
from model.modeling.backbones.instance_batch_norm import InstanceBatchNorm
from model.modeling.backbones.resnet_body import ResNetBody
from model.modeling.backbones.state_dict_file import load_state_dict_file


def resnet50_ibn_a(last_stride: int = 1, weights_path: str | None = None) -> Backbone:
    """ResNet-50-IBN-a body: ``(N, 3, H, W)`` ImageNet-normalised → ``(N, 2048, h, w)``.

    ``weights_path``: IBN-Net's ImageNet state dict (``fc.*`` ignored).
    """
    net = torchvision_resnet50(weights=None)
    for layer in (net.layer1, net.layer2, net.layer3):
        for block in layer:
            block.bn1 = InstanceBatchNorm(block.bn1.num_features)
    body = ResNetBody(net, last_stride)
    if weights_path:
        load_state_dict_file(body, weights_path)
    return body
