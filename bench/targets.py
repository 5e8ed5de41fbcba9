"""Issue 10's targets as rows of one table: each a figure measured in this run, the bound it must
meet, and the verdict that follows from the two — PASS, MISS, or INVALID when the measurement
was not taken as the target requires (e.g. the generator could not offer the load), which is
never a pass. Informational rows (``op`` ``None``) carry a figure and no verdict.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

PASS, MISS, INVALID, INFO = "PASS", "MISS", "INVALID", "-"

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
}
_SHOWN_OPS = {">=": "≥", "<=": "≤", "<": "<", "==": "="}


@dataclass(frozen=True)
class Target:
    """``value``: the measured figure, in ``unit`` (``"x"``: a ratio, ``"ms"``, ``"count"``).
    ``detail``: the figures it was computed from, in words. ``invalid``: why the measurement
    does not count (``None``: it does)."""

    key: str
    label: str
    value: float
    op: str | None
    bound: float
    unit: str
    detail: str
    invalid: str | None = None

    def __post_init__(self) -> None:
        if self.op is not None and self.op not in _OPS:
            raise ValueError(f"unknown comparison {self.op!r}")

    @property
    def verdict(self) -> str:
        if self.op is None:
            return INFO
        if self.invalid is not None:
            return INVALID
        # No figure (nothing was answered) meets no bound.
        if not math.isfinite(self.value):
            return MISS
        return PASS if _OPS[self.op](self.value, self.bound) else MISS

    def shown_value(self) -> str:
        return _format(self.value, self.unit)

    def shown_bound(self) -> str:
        if self.op is None:
            return ""
        return f"{_SHOWN_OPS[self.op]} {_format(self.bound, self.unit)}"


def _format(value: float, unit: str) -> str:
    if not math.isfinite(value):
        return "n/a"
    if unit == "count":
        return f"{value:.0f}"
    if unit == "ms":
        return f"{value:.1f} ms"
    return f"{value:.2f}"


def targets_table(columns: Mapping[str, Sequence[Target]]) -> list[str]:
    """One row per target (in the first column's order), one ``measured verdict`` cell per
    column (a store), then each target's details per column."""
    names = list(columns)
    first = columns[names[0]]
    label_w = max(len(t.label) for t in first)
    bound_w = max(len("bound"), *(len(t.shown_bound()) for t in first))
    cell_w = 22
    lines = [
        f"  {'target':<{label_w}}  {'bound':<{bound_w}}"
        + "".join(f"  {name:>{cell_w}}" for name in names),
    ]
    for row, target in enumerate(first):
        cells = []
        for name in names:
            t = columns[name][row]
            if t.key != target.key:
                raise ValueError(f"column {name} has {t.key} where {target.key} is expected")
            cells.append(f"{t.shown_value()} {t.verdict:<7}")
        lines.append(
            f"  {target.label:<{label_w}}  {target.shown_bound():<{bound_w}}"
            + "".join(f"  {c:>{cell_w}}" for c in cells)
        )
    lines.append("")
    for row, target in enumerate(first):
        for name in names:
            t = columns[name][row]
            where = f" [{name}]" if len(names) > 1 else ""
            why = f"; INVALID: {t.invalid}" if t.invalid is not None and t.op is not None else ""
            lines.append(f"  {target.label}{where}: {t.detail}{why}")
    return lines


def target_json(target: Target) -> dict[str, object]:
    return {
        "key": target.key,
        "label": target.label,
        "value": target.value if math.isfinite(target.value) else None,
        "op": target.op,
        "bound": target.bound,
        "unit": target.unit,
        "verdict": target.verdict,
        "detail": target.detail,
        "invalid": target.invalid,
    }
