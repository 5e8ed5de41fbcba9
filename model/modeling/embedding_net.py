"""The CTL network: backbone → global average pooling → BN-neck → bias-free classifier.

Wieczorek et al. (2021) train it with cross-entropy on the logits and triplet, center and
centroid-triplet losses on the pooled features; the BN-neck output is what gets exported.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from model.modeling.backbones.backbone import Backbone
from model.modeling.bn_neck import BNNeck
from model.modeling.input_normalization import InputNormalization
from model.modeling.net_output import NetOutput

# The reference's weights_init_classifier: normal(0, 0.001), no bias.
CLASSIFIER_INIT_STD = 0.001
# What ``embed`` may return (ModelConfig.embedding).
EMBEDDINGS = ("bn_neck", "features")


class EmbeddingNet(nn.Module):
    """``forward(x (N, 3, H, W) float in [0, 1]) -> NetOutput`` with ``C = embedding_dim =
    backbone.out_channels``; ``embed(x) -> (N, C)`` BN-neck output.

    ``num_classes = 0`` builds no classifier (inference-only models): ``logits`` is ``(N, 0)``.

    ``embedding`` picks what ``embed`` (the exported embedding) returns: ``"bn_neck"`` (the
    reference's BN-neck output) or ``"features"`` (the pooled features before it, which the
    metric losses train). The neck divides each dimension by its training-set spread, which
    can amplify the dimensions a pretrained backbone barely uses: fine-tuning Lite0, it cost
    1.5-1.9 points of centroid mAP after epochs at 1e-4 and helped 0.4-1.0 after one at 1e-5
    (README, "Fine-tuning the default model on CPU").
    """

    def __init__(self, backbone: Backbone, num_classes: int, embedding: str = "bn_neck") -> None:
        super().__init__()
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        if embedding not in EMBEDDINGS:
            raise ValueError(f"embedding must be one of {', '.join(EMBEDDINGS)}, got {embedding!r}")
        self.embedding = embedding
        self.embedding_dim = backbone.out_channels
        self.num_classes = num_classes
        self.normalize = InputNormalization(backbone.mean, backbone.std)
        self.backbone = backbone
        self.bn_neck = BNNeck(self.embedding_dim)
        self.classifier: nn.Linear | None = None
        if num_classes > 0:
            self.classifier = nn.Linear(self.embedding_dim, num_classes, bias=False)
            nn.init.normal_(self.classifier.weight, std=CLASSIFIER_INIT_STD)

    def pooled(self, x: Tensor) -> Tensor:
        """``(N, 3, H, W)`` in [0, 1] → ``(N, C)`` globally average-pooled backbone features."""
        return F.adaptive_avg_pool2d(self.backbone(self.normalize(x)), 1).flatten(1)

    def forward(self, x: Tensor) -> NetOutput:
        features = self.pooled(x)
        embeddings = self.bn_neck(features)
        if self.classifier is None:
            logits = embeddings.new_zeros((embeddings.shape[0], 0))
        else:
            logits = self.classifier(embeddings)
        return NetOutput(features=features, embeddings=embeddings, logits=logits)

    def embed(self, x: Tensor) -> Tensor:
        """``(N, 3, H, W)`` in [0, 1] → ``(N, C)`` the exported embedding: the BN-neck output,
        or the pooled features with ``embedding="features"``."""
        if self.embedding == "features":
            return self.pooled(x)
        return self.bn_neck(self.pooled(x))  # type: ignore[no-any-return]
