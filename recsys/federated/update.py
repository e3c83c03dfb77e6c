"""The layout of the vector a client uploads, and its decoding on the server.

A client's upload is dense over *all* items, so its support does not reveal
which items the user rated (FedMF's "full text" variant; a sparse upload
would). With ``n`` items and ``k`` factors it is

    [ delta of item factors (n * k, item-major) | delta of item biases (n) | weights (n) ]

The weight block exists with per-item aggregation (``aggregation="item"``):
a client puts ``count_weight`` at each item it rated and 0 elsewhere, so the
aggregate carries, per item, the (weighted) number of clients whose deltas
it sums — FedAvg's ``sum n_k x_k`` / ``sum n_k`` split per coordinate block,
like :func:`protocols.weighted_input` does for one global weight. Nothing in
the vector depends on the user's own factor or bias except through the item
deltas.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

__all__ = ["UpdateLayout"]


@dataclass(frozen=True)
class UpdateLayout:
    """Where each part of an upload sits (see the module docstring)."""

    n_items: int
    n_factors: int
    weighted: bool = True

    @property
    def item_dim(self) -> int:
        """Dimension of the item parameters: ``n_items * (n_factors + 1)``."""
        return self.n_items * (self.n_factors + 1)

    @property
    def dim(self) -> int:
        """Dimension of an upload (item parameters plus the weight block, if any)."""
        return self.item_dim + (self.n_items if self.weighted else 0)

    def encode(
        self,
        delta_factors: Tensor,
        delta_bias: Tensor,
        row_item: Tensor,
        row_user: Tensor,
        n_cohort: int,
        *,
        count_weight: float,
        coordinate_clip: float | None = None,
    ) -> NDArray[np.float64]:
        """The cohort's uploads, one dense row per client (``(n_cohort, dim)`` float64).

        Args:
            delta_factors, delta_bias: per-rating changes of the item copies.
            row_item, row_user: the item and the cohort position of each row.
            count_weight: the value of the weight block at a rated item.
            coordinate_clip: if given, every coordinate is clipped to
                ``[-coordinate_clip, coordinate_clip]`` (the bound the
                aggregation protocol's encoding needs).
        """
        n, k = self.n_items, self.n_factors
        out = np.zeros((n_cohort, self.dim), dtype=np.float64)
        users = row_user.numpy()
        items = row_item.numpy()
        if k:
            cols = (items * k)[:, None] + np.arange(k)[None, :]
            out[users[:, None], cols] = delta_factors.to(torch.float64).numpy()
        out[users, n * k + items] = delta_bias.to(torch.float64).numpy()
        if self.weighted:
            out[users, self.item_dim + items] = count_weight
        if coordinate_clip is not None:
            np.clip(out, -coordinate_clip, coordinate_clip, out=out)
        return out

    def decode(
        self, total: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64] | None]:
        """Split an aggregate into (factor sums ``(n, k)``, bias sums ``(n,)``, weights or None)."""
        arr = np.asarray(total, dtype=np.float64)
        if arr.shape != (self.dim,):
            raise ValueError(f"aggregate has shape {arr.shape}, expected ({self.dim},)")
        n, k = self.n_items, self.n_factors
        factors = arr[: n * k].reshape(n, k)
        bias = arr[n * k : self.item_dim]
        weights = arr[self.item_dim :] if self.weighted else None
        return factors, bias, weights
