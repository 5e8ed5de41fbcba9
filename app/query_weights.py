"""The ``weights`` form field of a set query: one non-negative weight per query image.

A set query ranks items by ``normalize(sum_i w_i * e_i)`` over the images' raw embeddings, as an
item's centroid is built from its images (``index/centroid_math.py``); without ``weights`` every
``w_i`` is 1, which is exactly the centroid the same images would give an item.

The rule: comma-separated decimal numbers (spaces around them allowed), exactly one per file in
upload order, each finite and ``>= 0``, not all zero. A zero weight leaves its image out (it is
still decoded and embedded). Negative weights are refused: subtracting a view is not what a
centroid does, and it can turn the query into the opposite of every view.
"""

from __future__ import annotations

import math
from typing import NoReturn

from starlette.datastructures import FormData

from app.uploads import refuse_field

FIELD = "weights"
RULE = (
    "comma-separated finite numbers >= 0, one per file in upload order, not all zero "
    "(default: all 1)"
)


def read_weights(form: FormData, count: int) -> tuple[float, ...] | None:
    """The form's ``weights`` for ``count`` files (None if absent), or a 422."""
    values = form.getlist(FIELD)
    if not values:
        return None
    if len(values) > 1 or not isinstance(values[0], str):
        refuse_field(f"one text value, not files or repeats; {RULE}", FIELD)
    return parse_weights(values[0], count)


def parse_weights(text: str, count: int) -> tuple[float, ...]:
    """``text`` → ``count`` weights, or a 422 (``RequestValidationError`` on ``body.weights``)."""
    parts = text.split(",")
    if len(parts) != count:
        _refuse(f"{len(parts)} weights for {count} files; {RULE}", text)
    weights = []
    for part in parts:
        try:
            w = float(part.strip())
        except ValueError:
            _refuse(f"{part.strip()!r} is not a number; {RULE}", text)
        # float() accepts "nan", "inf" and "1e999" (inf): none is a weight.
        if not math.isfinite(w) or w < 0:
            _refuse(f"{part.strip()!r} is not a finite number >= 0; {RULE}", text)
        weights.append(w)
    if not any(weights):
        _refuse(f"the weights are all zero; {RULE}", text)
    return tuple(weights)


def _refuse(message: str, text: str) -> NoReturn:
    refuse_field(message, FIELD, text)
