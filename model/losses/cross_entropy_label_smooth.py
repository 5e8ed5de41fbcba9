"""Cross-entropy with label smoothing (Szegedy et al., "Rethinking the Inception Architecture",
2016) in the form of reid-strong-baseline's ``CrossEntropyLabelSmooth``, used by centroids-reid.

Targets: ``(1 - ε)·onehot(y) + ε / C``; loss: the batch mean of ``-Σ_c target_c · log_softmax_c``.
(``nn.CrossEntropyLoss(label_smoothing=ε)`` gives the same number; this class keeps the
reference's form and its explicit ``num_classes``, which it checks against the logits.)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# reid-strong-baseline / centroids-reid: ``MODEL.IF_LABELSMOOTH`` on, ε = 0.1.
DEFAULT_EPSILON = 0.1


class CrossEntropyLabelSmooth(nn.Module):
    """``loss(logits (N, C) float, labels (N,) int64 in [0, C)) -> scalar``."""

    def __init__(self, num_classes: int, epsilon: float = DEFAULT_EPSILON) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.num_classes = num_classes
        self.epsilon = epsilon

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        if logits.shape[-1] != self.num_classes:
            raise ValueError(f"expected {self.num_classes} logits per row, got {logits.shape[-1]}")
        log_probs = torch.log_softmax(logits, dim=1)
        onehot = torch.zeros_like(log_probs).scatter_(1, labels[:, None], 1.0)
        targets = (1.0 - self.epsilon) * onehot + self.epsilon / self.num_classes
        return (-targets * log_probs).sum(dim=1).mean()

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, epsilon={self.epsilon}"
