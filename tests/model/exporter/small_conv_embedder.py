"""A small convolutional embedder for the INT8 tests, exported through the project's exporter.

Big enough that static quantisation does something real (three convolutions, one of them
depthwise, ReLU6 activations, a linear head) and small enough to export, calibrate and quantise
in about a second at 32×32. Its stem is timm's TF-"same" convolution, as in EfficientNet-Lite:
at stride 2 it pads at run time from the input's shape, so the exported graph carries the
float shape arithmetic the quantiser must leave alone.

Random convolutions pool every photo to nearly the same vector (all-positive ReLU6 features
share one large mean), so rankings between items would hang on noise and a Recall@1 gate would
measure nothing. A BN-neck fixed on real photos removes that shared part: the pooled features
are standardised with their mean and standard deviation over views of the shipped photos
(computed once, at construction), and the items separate as a trained embedder's do.
"""

from __future__ import annotations

from pathlib import Path

import torch
from timm.layers import create_conv2d
from torch import Tensor, nn

from artifact.image_decode import preprocess_bytes, stack_batch
from artifact.preprocess_spec import PreprocessSpec
from bench.loadtest.photo_set import build_photo_set
from model.exporter.onnx_exporter import export_embedder
from model.exporter.parity_photos import load_parity_photos

DIM = 16
INPUT_HW = (32, 32)
SEED = 0


class SmallConvEmbedder(nn.Module):
    """``(N, 3, 32, 32)`` float in [0, 1] → ``(N, 16)``: stem, depthwise, pointwise, head."""

    embedding_dim = DIM

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(SEED)
        self.stem = create_conv2d(3, 8, 3, stride=2, padding="same")
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 24, 1)
        self.head = nn.Linear(24, DIM, bias=False)
        self.act = nn.ReLU6()
        self.neck = nn.BatchNorm1d(24, affine=False).eval()
        with torch.no_grad():
            pooled = self.pooled(_reference_photos())
            self.neck.running_mean.copy_(pooled.mean(dim=0))
            self.neck.running_var.fill_(float(pooled.var(dim=0).mean()))

    def pooled(self, x: Tensor) -> Tensor:
        x = (x - 0.5) / 0.25
        x = self.act(self.stem(x))
        x = self.act(self.dw(x))
        x = self.act(self.pw(x))
        return x.mean(dim=(2, 3))

    def embed(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.neck(self.pooled(x)))
        return out


def _reference_photos() -> Tensor:
    """``(32, 3, 32, 32)`` float in [0, 1]: views of the shipped photos, the service's pixels."""
    views = build_photo_set(views_per_photo=4, seed=11).all_views()
    batch = stack_batch([preprocess_bytes(v, small_conv_spec()) for v in views])
    return torch.from_numpy(batch).float() / 255


def small_conv_spec() -> PreprocessSpec:
    return PreprocessSpec(
        input_size=INPUT_HW, embedding_dim=DIM, model_name="small-conv-int8-test", model_version="3"
    )


def export_small_conv(out_dir: Path) -> Path:
    """Export the net with its FP32 parity gate; the ``embedder.onnx`` path."""
    return export_embedder(
        SmallConvEmbedder().eval(), small_conv_spec(), out_dir, load_parity_photos()
    ).onnx_path
