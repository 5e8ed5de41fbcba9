"""What the losses need from a network's output: ``model.modeling.net_output.NetOutput`` or
anything else with the same three tensors (structural typing keeps ``model/losses`` free of
an import of the network side)."""

from __future__ import annotations

from typing import Protocol

from torch import Tensor


class NetOutputLike(Protocol):
    """``features`` (N, C) raw pooled pre-BN feature, ``embeddings`` (N, C) BN-neck output,
    ``logits`` (N, num_classes)."""

    @property
    def features(self) -> Tensor: ...

    @property
    def embeddings(self) -> Tensor: ...

    @property
    def logits(self) -> Tensor: ...
