"""Points on a circle, whose pairwise normalised distances are known in closed form."""

from __future__ import annotations

import math

import torch


def on_circle(angles: list[float], radius: float = 1.0) -> torch.Tensor:
    """float64 (len(angles), 2): ``radius · (cos t, sin t)`` per angle."""
    return radius * torch.tensor([[math.cos(t), math.sin(t)] for t in angles], dtype=torch.float64)


def chord2(dt: float) -> float:
    """Squared distance between unit vectors ``dt`` radians apart."""
    return 2.0 - 2.0 * math.cos(dt)
