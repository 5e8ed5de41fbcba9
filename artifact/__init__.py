"""The torch-free artifact contract: preprocessing spec, image decoding, ONNX embedder."""

from artifact.image_decode import (
    ImageDecodeError,
    ImageTooLargeError,
    decode_image,
    preprocess_bytes,
    to_input_array,
)
from artifact.onnx_embedder import OnnxEmbedder
from artifact.preprocess_spec import ContractError, PreprocessSpec

__all__ = [
    "ContractError",
    "ImageDecodeError",
    "ImageTooLargeError",
    "OnnxEmbedder",
    "PreprocessSpec",
    "decode_image",
    "preprocess_bytes",
    "to_input_array",
]
