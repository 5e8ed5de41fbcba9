"""Which tensor of a network output a loss term reads (``LossTerm.source``)."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from model.losses.net_output_like import NetOutputLike

OutputSelector = Callable[[NetOutputLike], Tensor]


def select_features(output: NetOutputLike) -> Tensor:
    """The raw pooled pre-BN feature (N, C): where CTL's metric losses act."""
    return output.features


def select_embeddings(output: NetOutputLike) -> Tensor:
    """The BN-neck output (N, C): what is exported for retrieval."""
    return output.embeddings


def select_logits(output: NetOutputLike) -> Tensor:
    """The classifier output (N, num_classes)."""
    return output.logits


FEATURES: OutputSelector = select_features
EMBEDDINGS: OutputSelector = select_embeddings
LOGITS: OutputSelector = select_logits
