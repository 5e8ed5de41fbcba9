"""The artifact contract: how pixels must be prepared for an exported embedder.

The exporter writes a :class:`PreprocessSpec` into the ONNX file's ``metadata_props`` (under
:data:`CONTRACT_KEY`, as JSON) and a readable copy beside it; the service and the evaluation code
only read it. Normalisation (mean/std) lives inside the graph, so the spec only describes what the
graph's input tensor holds: RGB pixels, resized as stated, in the stated layout, dtype and range.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

CONTRACT_KEY = "centroid_retrieval.contract"
FORMAT_VERSION = 1

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
