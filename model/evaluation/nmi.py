"""Normalised mutual information of two labelings, from their contingency table (numpy only).

``NMI(U, V) = I(U; V) / ((H(U) + H(V)) / 2)``: the arithmetic normalisation, which is the
ranking-regularizer paper's ``2 I(Ω; C) / (H(Ω) + H(C))`` and sklearn's default
(``normalized_mutual_info_score``). Natural logarithms; the base cancels.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def contingency_table(truth: npt.ArrayLike, found: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """``table[i, j]`` = how many samples have the i-th distinct ``truth`` label and the j-th
    distinct ``found`` label (both in ``np.unique`` order); labels ``(N,)`` of any sortable
    dtype."""
    t = np.asarray(truth)
    f = np.asarray(found)
    if t.ndim != 1 or t.shape != f.shape:
        raise ValueError(f"expected two (N,) labelings, got {t.shape} and {f.shape}")
    _, t_codes = np.unique(t, return_inverse=True)
    _, f_codes = np.unique(f, return_inverse=True)
    t_codes, f_codes = t_codes.reshape(-1), f_codes.reshape(-1)
    n_t = int(t_codes.max(initial=-1)) + 1
    n_f = int(f_codes.max(initial=-1)) + 1
    table = np.zeros((n_t, n_f), dtype=np.int64)
    np.add.at(table, (t_codes, f_codes), 1)
    return table


def _entropy(counts: npt.NDArray[np.int64]) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def normalized_mutual_information(truth: npt.ArrayLike, found: npt.ArrayLike) -> float:
    """NMI in [0, 1] of labelings ``(N,)``. Both trivial (one label each): 1.0, as sklearn
    (identical partitions); exactly one trivial: 0.0 (no information either way)."""
    table = contingency_table(truth, found)
    n = int(table.sum())
    if n == 0:
        raise ValueError("NMI of empty labelings")
    rows, cols = table.sum(axis=1), table.sum(axis=0)
    h_t, h_f = _entropy(rows), _entropy(cols)
    if h_t == 0.0 and h_f == 0.0:
        return 1.0
    nz = table > 0
    joint = table[nz] / n
    outer = (rows[:, None] * cols[None, :])[nz] / (n * n)
    mi = float((joint * np.log(joint / outer)).sum())
    # Rounding can put MI a hair above the mean entropy or below 0.
    return float(np.clip(mi / ((h_t + h_f) / 2.0), 0.0, 1.0))
