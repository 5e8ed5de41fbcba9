"""What a training network returns: the three tensors the losses and the evaluation read."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class NetOutput(NamedTuple):
    features: Tensor  # (N, C) raw pooled, pre-BN (metric losses use this)
    embeddings: Tensor  # (N, C) BN-neck output (inference embedding)
    logits: Tensor  # (N, num_classes) bias-free classifier on the BN-neck output
