"""The two-head network of the ranking regularizer (Taha, Chen, Shrivastava and Davis, "Boosting
Standard Classification Architectures Through a Ranking Regularizer", WACV 2020).

One backbone feature map (N, C, h, w) feeds two heads:

* classification: global average pooling → fc → logits (N, num_classes), trained with softmax
  cross-entropy;
* embedding: the feature map, flattened (``head="flatten"``, the paper's head) or first average-
  pooled to a small fixed grid (``head="pooled"``), → fc → (N, embedding_dim), trained with the
  triplet loss on its L2-normalised output. This head is what is exported for retrieval.

Size of the embedding fc for ResNet-50 (C = 2048) with the usual stride 2 in layer4 (build the
backbone with ``last_stride=2``: the CTL setting of stride 1 would make a 16×8 map at 256×128,
a 67M-parameter fc):

* ``flatten`` at 256×128 (H×W): 8×4 map, 65536 → 256, 16.8M parameters (our recommended input
  size for this head; at 224×224 the 7×7 map would make it 25.7M);
* ``pooled`` with the default 4×4 grid: 32768 → 256, 8.4M parameters, at any input size, so
  square product photos need no pedestrian-shaped crop.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.modeling.backbones.backbone import Backbone
from model.modeling.input_normalization import InputNormalization
from model.modeling.net_output import NetOutput

# The paper's embedding head size (Taha et al.: fc to 256-d).
DEFAULT_EMBEDDING_DIM = 256
# 4×4 keeps a coarse spatial layout (what flattening is for) with half the fc of a flattened
# 8×4 map, and assumes no aspect ratio.
DEFAULT_POOLED_GRID_HW = (4, 4)

HeadBuilder = Callable[[int, tuple[int, int], tuple[int, int]], tuple[nn.Module, int]]


def _flatten_head(
    channels: int, map_hw: tuple[int, int], grid_hw: tuple[int, int]
) -> tuple[nn.Module, int]:
    """The paper's head: flatten the whole (C, h, w) map; ties the net to one input size."""
    return nn.Flatten(), channels * map_hw[0] * map_hw[1]


def _pooled_head(
    channels: int, map_hw: tuple[int, int], grid_hw: tuple[int, int]
) -> tuple[nn.Module, int]:
    """Average-pool the map to ``grid_hw`` first: the fc size no longer depends on the input."""
    reshape = nn.Sequential(nn.AdaptiveAvgPool2d(grid_hw), nn.Flatten())
    return reshape, channels * grid_hw[0] * grid_hw[1]


EMBEDDING_HEADS: dict[str, HeadBuilder] = {"flatten": _flatten_head, "pooled": _pooled_head}


@torch.no_grad()
def _feature_map_hw(backbone: Backbone, input_size_hw: tuple[int, int]) -> tuple[int, int]:
    """Spatial size of the backbone's output for one input of ``input_size_hw``.

    Run in eval mode so the probe does not touch batch-norm running statistics.
    """
    was_training = backbone.training
    backbone.eval()
    try:
        fmap = backbone(torch.zeros(1, 3, *input_size_hw))
    finally:
        backbone.train(was_training)
    return int(fmap.shape[-2]), int(fmap.shape[-1])


class TwoHeadNet(nn.Module):
    """Backbone + classification head + embedding head.

    ``forward(x float [0, 1] (N, 3, H, W)) -> NetOutput`` with ``features`` the embedding head's
    raw output (N, embedding_dim) (the triplet loss normalises it itself), ``embeddings`` the
    same, L2-normalised, and ``logits`` (N, num_classes). ``embed(x) -> (N, embedding_dim)``
    unit-norm rows: export with ``output_normalized=True``. With ``head="flatten"``, ``H×W``
    must equal ``input_size_hw``.
    """

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        input_size_hw: tuple[int, int],
        embedding_dim: int = DEFAULT_EMBEDDING_DIM,
        head: str = "flatten",
        pooled_grid_hw: tuple[int, int] = DEFAULT_POOLED_GRID_HW,
    ) -> None:
        super().__init__()
        if head not in EMBEDDING_HEADS:
            raise ValueError(
                f"unknown embedding head {head!r}; choose from {sorted(EMBEDDING_HEADS)}"
            )
        if num_classes < 1 or embedding_dim < 1:
            raise ValueError("num_classes and embedding_dim must be positive")
        self.input_size_hw = input_size_hw
        self.embedding_dim = embedding_dim
        self.num_classes = num_classes
        self.head = head
        self.normalize = InputNormalization(backbone.mean, backbone.std)
        self.backbone = backbone
        channels = backbone.out_channels
        map_hw = _feature_map_hw(backbone, input_size_hw)
        reshape, in_features = EMBEDDING_HEADS[head](channels, map_hw, pooled_grid_hw)
        self.embedding_head = nn.Sequential(reshape, nn.Linear(in_features, embedding_dim))
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)
        )

    def forward(self, x: Tensor) -> NetOutput:
        fmap = self.backbone(self.normalize(x))
        raw = self.embedding_head(fmap)
        return NetOutput(
            features=raw, embeddings=F.normalize(raw, dim=1), logits=self.classifier(fmap)
        )

    def embed(self, x: Tensor) -> Tensor:
        return F.normalize(self.embedding_head(self.backbone(self.normalize(x))), dim=1)
