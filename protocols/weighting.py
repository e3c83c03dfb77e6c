"""Weighted FedAvg through any aggregation protocol.

FedAvg weights client k's update x_k by its example count n_k (McMahan et al.
2017): the server needs sum_k n_k x_k and sum_k n_k. Both travel in one
vector: the client submits ``[n_k * x_k, n_k]`` (length d + 1) and the server
divides. Because the protocol only ever sums, this works unchanged with
SecAgg, SecAgg+, Paillier, CKKS and the plaintext baseline, and the server
still learns only the two sums.

Choose the protocol's ``clip`` to bound every coordinate of ``n_k * x_k`` and
``n_k`` itself (e.g. ``clip = max_weight * update_clip``); values beyond it
are clipped like any other input.
"""

from __future__ import annotations

import numpy as np

from secagg.encoding import check_finite

__all__ = ["weighted_input", "weighted_mean"]


def weighted_input(x: np.ndarray, weight: float) -> np.ndarray:
    """The vector a client submits for weighted FedAvg: ``[weight * x, weight]``."""
    arr = check_finite(x, "x")
    if not (np.isfinite(weight) and weight > 0):
        raise ValueError(f"weight must be a positive finite number, got {weight!r}")
    return np.concatenate([weight * arr, [float(weight)]])


def weighted_mean(total: np.ndarray) -> tuple[np.ndarray, float]:
    """From the aggregate of :func:`weighted_input` vectors: (weighted mean, total weight)."""
    arr = np.asarray(total, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 2:
        raise ValueError("total must be a vector of length >= 2 (the d + 1 weighted sum)")
    weight = float(arr[-1])
    if not weight > 0:
        raise ValueError(f"total weight is {weight}: no (positive) weight reached the server")
    return arr[:-1] / weight, weight
