"""The artifact contract: how pixels must be prepared for an exported embedder.

The exporter writes a :class:`PreprocessSpec` into the ONNX file's ``metadata_props`` (under
:data:`CONTRACT_KEY`, as JSON) and a readable copy beside it; the service and the evaluation code
only read it. Normalisation (mean/std) lives inside the graph, so the spec only describes what the
graph's input tensor holds: RGB pixels, resized as stated, in the stated layout, dtype and range.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

CONTRACT_KEY = "centroid_retrieval.contract"
FORMAT_VERSION = 1
# The smallest jpeg_draft_min_ratio: the DCT-scaled decode keeps ratio/2 × the model input.
MIN_JPEG_DRAFT_RATIO = 2.0

_SUPPORTED = {
    "size_order": ("HW",),
    "layout": ("NCHW",),
    "dtype": ("uint8",),
    "resize": ("bilinear",),
    "colour_order": ("RGB",),
}


class ContractError(ValueError):
    """An ONNX file carries no usable preprocessing contract."""


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything a client needs to turn an image into the graph's input tensor.

    ``input_size`` is ``(height, width)``; the input tensor is ``(N, 3, H, W)`` ``uint8`` holding
    RGB values in ``[0, 255]``; the output ``output_name`` is ``(N, embedding_dim)`` ``float32``.

    ``jpeg_draft_min_ratio``: ``None`` (also when absent, as in contracts written before it
    existed) decodes every image in full. A number ``r >= 2`` lets a JPEG whose oriented size is
    at least ``r × (H, W)`` on both axes be decoded DCT-scaled (1/2, 1/4 or 1/8) to no less than
    ``r/2 × (H, W)`` before the exact resize; see :mod:`artifact.image_decode`.
    """

    input_size: tuple[int, int]
    embedding_dim: int
    model_name: str
    model_version: str
    output_normalized: bool = False
    input_name: str = "images"
    output_name: str = "embeddings"
    size_order: str = "HW"
    layout: str = "NCHW"
    dtype: str = "uint8"
    value_range: tuple[int, int] = (0, 255)
    resize: str = "bilinear"
    colour_order: str = "RGB"
    export_date: str = ""
    source_checkpoint: str = ""
    format_version: int = FORMAT_VERSION
    jpeg_draft_min_ratio: float | None = None
    # Informational: what the graph does to the input internally (not applied by clients).
    graph_normalization: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.format_version != FORMAT_VERSION:
            raise ContractError(
                f"contract format_version {self.format_version} is not supported "
                f"(this build reads version {FORMAT_VERSION})"
            )
        for name, allowed in _SUPPORTED.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ContractError(f"contract field {name}={value!r} is not supported: {allowed}")
        h, w = self.input_size
        if h <= 0 or w <= 0 or self.embedding_dim <= 0:
            raise ContractError("contract input_size and embedding_dim must be positive")
        if tuple(self.value_range) != (0, 255):
            raise ContractError(f"contract value_range {self.value_range} is not (0, 255)")
        ratio = self.jpeg_draft_min_ratio
        if ratio is not None:
            _check_field_type("jpeg_draft_min_ratio", ratio)
            # Below 2 the DCT-scaled decode could come out smaller than the model input and the
            # resize would have to enlarge it again.
            if ratio < MIN_JPEG_DRAFT_RATIO:
                raise ContractError(
                    f"contract jpeg_draft_min_ratio {ratio} is below {MIN_JPEG_DRAFT_RATIO}"
                )
            # One representation in memory and in the written JSON (2.0, not 2).
            object.__setattr__(self, "jpeg_draft_min_ratio", float(ratio))

    @property
    def height(self) -> int:
        return self.input_size[0]

    @property
    def width(self) -> int:
        return self.input_size[1]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["value_range"] = list(self.value_range)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessSpec:
        known = set(cls.__dataclass_fields__)
        missing = [
            k
            for k in (
                "input_size",
                "embedding_dim",
                "model_name",
                "model_version",
                "format_version",
            )
            if k not in d
        ]
        if missing:
            raise ContractError(f"contract is missing required fields: {missing}")
        kwargs = {k: v for k, v in d.items() if k in known}
        # Types are checked, never coerced: bool("false") is True and int("3") hides a writer
        # bug, so a contract that says anything but exactly what it means is refused.
        for name, value in kwargs.items():
            _check_field_type(name, value)
        kwargs["input_size"] = (d["input_size"][0], d["input_size"][1])
        if "value_range" in d:
            kwargs["value_range"] = (d["value_range"][0], d["value_range"][1])
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> PreprocessSpec:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ContractError(f"contract is not valid JSON: {exc}") from exc
        if not isinstance(d, dict):
            raise ContractError("contract JSON must be an object")
        return cls.from_dict(d)

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], *, source: str = "model") -> PreprocessSpec:
        """Read the contract from an ONNX ``metadata_props`` map."""
        if CONTRACT_KEY not in metadata:
            raise ContractError(
                f"{source} carries no preprocessing contract (metadata key {CONTRACT_KEY!r} is "
                "absent); export it with `python -m model.export` or "
                "`python -m model.build_default`"
            )
        return cls.from_json(metadata[CONTRACT_KEY])


def _is_int(value: object) -> bool:
    # bool is a subclass of int in Python, but true is not a JSON integer.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return _is_int(value) or isinstance(value, float)


def _is_finite_number_or_null(value: object) -> bool:
    # JSON has one number type, so 2 and 2.0 both mean two; NaN and Infinity are not JSON.
    if value is None:
        return True
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int_pair(value: object) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_int(v) for v in value)


def _is_number_lists(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, list) and all(_is_number(x) for x in v)
        for k, v in value.items()
    )


# JSON check per field annotation of PreprocessSpec (strings: this module postpones
# annotations), so the dataclass stays the one list of fields and their types.
_JSON_TYPES: dict[str, tuple[Callable[[object], bool], str]] = {
    "str": (lambda v: isinstance(v, str), "a JSON string"),
    "int": (_is_int, "a JSON integer"),
    "bool": (lambda v: isinstance(v, bool), "a JSON boolean (true or false)"),
    "float | None": (_is_finite_number_or_null, "a finite JSON number or null"),
    "tuple[int, int]": (_is_int_pair, "a JSON array of two integers"),
    "dict[str, list[float]]": (_is_number_lists, "a JSON object of arrays of numbers"),
}


def _check_field_type(name: str, value: object) -> None:
    """Raise ContractError unless ``value`` has the JSON type the contract field ``name`` needs."""
    annotation = PreprocessSpec.__dataclass_fields__[name].type
    if annotation not in _JSON_TYPES:
        raise AssertionError(f"contract field {name!r} has no declared JSON type")
    check, want = _JSON_TYPES[str(annotation)]
    if not check(value):
        raise ContractError(
            f"contract field {name} must be {want}, got {json.dumps(value, default=repr)} "
            f"({type(value).__name__})"
        )
