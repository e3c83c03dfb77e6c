"""Rating-prediction error metrics (numpy; accepts anything array-like)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["mae", "rmse"]


def _pair(pred: ArrayLike, target: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    t = np.asarray(target, dtype=np.float64).reshape(-1)
    if p.shape != t.shape:
        raise ValueError(f"pred and target lengths differ: {p.shape[0]} != {t.shape[0]}")
    if p.shape[0] == 0:
        raise ValueError("cannot score an empty set of predictions")
    return p, t


def rmse(pred: ArrayLike, target: ArrayLike) -> float:
    """Root mean squared error."""
    p, t = _pair(pred, target)
    return float(np.sqrt(np.mean((p - t) ** 2)))


def mae(pred: ArrayLike, target: ArrayLike) -> float:
    """Mean absolute error."""
    p, t = _pair(pred, target)
    return float(np.mean(np.abs(p - t)))
