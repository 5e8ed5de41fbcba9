"""Feature extractors the embedding networks are built on."""

from model.modeling.backbones.backbone import Backbone
from model.modeling.backbones.efficientnet_lite0 import efficientnet_lite0
from model.modeling.backbones.registry import BACKBONES, build_backbone
from model.modeling.backbones.resnet50 import resnet50
from model.modeling.backbones.resnet50_ibn_a import resnet50_ibn_a
from model.modeling.backbones.tiny_cnn import tiny_cnn

__all__ = [
    "BACKBONES",
    "Backbone",
    "build_backbone",
    "efficientnet_lite0",
    "resnet50",
    "resnet50_ibn_a",
    "tiny_cnn",
]
