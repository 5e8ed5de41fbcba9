"""Backbones by the names the training config uses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from model.config.option_check import check_options
from model.modeling.backbones.backbone import Backbone
from model.modeling.backbones.efficientnet_lite0 import efficientnet_lite0
from model.modeling.backbones.resnet50 import resnet50
from model.modeling.backbones.resnet50_ibn_a import resnet50_ibn_a
from model.modeling.backbones.tiny_cnn import tiny_cnn

BACKBONES: dict[str, Callable[..., Backbone]] = {
    "resnet50": resnet50,
    "resnet50_ibn_a": resnet50_ibn_a,
    "efficientnet_lite0": efficientnet_lite0,
    "tiny_cnn": tiny_cnn,
}


def build_backbone(name: str, **kwargs: Any) -> Backbone:
    """``BACKBONES[name](**kwargs)``; an unknown name is a ``ValueError`` listing the known,
    an option the backbone does not take (``last_stride`` for ``efficientnet_lite0``) a
    :class:`~model.config.train_config.ConfigError` listing the ones it does."""
    if name not in BACKBONES:
        raise ValueError(
            f"unknown backbone {name!r}; choose one of: {', '.join(sorted(BACKBONES))}"
        )
    check_options(BACKBONES[name], kwargs, what=f"backbone {name!r}", key="model.backbone_kwargs")
    return BACKBONES[name](**kwargs)
