"""What every backbone is: normalised images in, a feature map out, and the normalisation its
weights expect."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


class Backbone(nn.Module):
    """``forward(x (N, 3, H, W) float, normalised with mean/std) -> (N, out_channels, h, w)``.

    ``mean`` and ``std`` are per-channel RGB statistics for pixels in [0, 1]: the input
    normalisation the (pretrained) weights expect. The network in front applies them.

    Fine-tuning: :meth:`freeze_batch_norm` keeps the batch-norm layers in eval mode through
    every later ``train()``, :meth:`freeze` also stops every parameter from learning.
    """

    def __init__(
        self, out_channels: int, mean: tuple[float, float, float], std: tuple[float, float, float]
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.mean = mean
        self.std = std
        self.batch_norm_frozen = False

    def freeze_batch_norm(self) -> None:
        """From now on every batch-norm layer normalises with its running statistics and never
        updates them, even in training mode: the pretrained statistics, not ones re-estimated
        on small P×K batches of another domain. Their affine weights still learn."""
        self.batch_norm_frozen = True
        self.train(self.training)

    def freeze(self) -> None:
        """No parameter learns (``requires_grad`` off) and batch-norm statistics stay as they
        are: the backbone is a fixed feature extractor."""
        for param in self.parameters():
            param.requires_grad_(False)
        self.freeze_batch_norm()

    def train(self, mode: bool = True) -> Backbone:
        # The trainer calls net.train() every epoch: the frozen layers go back to eval here.
        super().train(mode)
        if self.batch_norm_frozen:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError
