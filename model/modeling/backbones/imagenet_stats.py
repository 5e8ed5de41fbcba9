"""The per-channel RGB mean and standard deviation (pixel values in [0, 1]) of ImageNet, which
torchvision's and timm's ResNet weights were trained to expect (torchvision's documented values)."""

from __future__ import annotations

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
