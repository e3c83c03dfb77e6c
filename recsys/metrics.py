"""Recommender metrics: rating-prediction errors and leave-one-out ranking (numpy)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["hit_and_ndcg", "mae", "rmse"]


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


def hit_and_ndcg(rank: ArrayLike, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """HR@k and NDCG@k of held-out items at 0-based ``rank`` among their candidates.

    With one relevant item per user (leave-one-out), the hit is ``rank < k``
    and the discounted gain ``1 / log2(rank + 2)`` inside the top k, else 0
    (He et al., "Neural Collaborative Filtering", WWW 2017, section 4.1).
    """
    r = np.asarray(rank, dtype=np.float64)
    hit = (r < k).astype(np.float64)
    return hit, np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0)
