"""The BN-neck of Luo et al. ("Bag of Tricks and a Strong Baseline for Deep Person
Re-Identification", CVPRW 2019), used by CTL: a batch norm between the pooled features (which the
metric losses see) and the classifier, whose output is the inference embedding."""

from __future__ import annotations

from torch import nn


class BNNeck(nn.BatchNorm1d):
    """``BatchNorm1d(dim)`` on ``(N, dim)`` with the shift (bias) frozen at 0.

    Luo et al. freeze the bias so the normalised features stay centred on the origin, where the
    classifier's angular decision boundaries work. Initialised as the reference's kaiming init
    for batch norm: weight 1, bias 0.
    """

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        nn.init.constant_(self.weight, 1.0)
        nn.init.constant_(self.bias, 0.0)
        self.bias.requires_grad_(False)
