"""ResNet-50 (He et al., 2016; torchvision's definition) as a :class:`Backbone`."""

from __future__ import annotations

from torchvision.models import resnet50 as torchvision_resnet50

from model.modeling.backbones.backbone import Backbone
from model.modeling.backbones.resnet_body import ResNetBody
from model.modeling.backbones.state_dict_file import load_state_dict_file


def resnet50(last_stride: int = 1, weights_path: str | None = None) -> Backbone:
    """ResNet-50 body: ``(N, 3, H, W)`` ImageNet-normalised → ``(N, 2048, h, w)``.

    ``weights_path``: a torchvision or timm ``resnet50`` ImageNet state dict (``fc.*`` ignored);
    without it the weights are torchvision's random initialisation.
    """
    body = ResNetBody(torchvision_resnet50(weights=None), last_stride)
    if weights_path:
        load_state_dict_file(body, weights_path)
    return body
