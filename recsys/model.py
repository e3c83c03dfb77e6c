"""Biased matrix factorization, as a torch module and as plain functions.

The model predicts

    r_hat(u, i) = mu + b_u + b_i + p_u . q_i

with a fixed global mean ``mu`` (the training mean, a buffer, not learned),
user biases ``b_u``, item biases ``b_i``, user factors ``p_u`` and item factors
``q_i``. The parameters are plain tensors (not ``nn.Embedding``) so they can be
sliced and passed around: :func:`predict` is the whole forward pass on
already-gathered rows, and :meth:`BiasedMF.forward` only gathers and calls it.
A federated client uses the same :func:`predict` with its own user vector and
the server's item tables (see :func:`recsys.losses.user_gradients`); no
per-user state has to live in the module.

The loss is kept apart, in :mod:`recsys.losses`; the training loop in
:mod:`recsys.centralized` (and later the federated trainer).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import Tensor, nn

__all__ = ["BiasedMF", "GatheredParams", "ItemParams", "predict"]


class GatheredParams(NamedTuple):
    """Parameter rows for a batch of ``(user, item)`` pairs, one row per pair."""

    user_factors: Tensor  # (B, k)
    user_bias: Tensor  # (B,)
    item_factors: Tensor  # (B, k)
    item_bias: Tensor  # (B,)


class ItemParams(NamedTuple):
    """The item tables: what the server holds and clients update in FedAvg."""

    factors: Tensor  # (n_items, k)
    bias: Tensor  # (n_items,)


def predict(global_mean: Tensor | float, rows: GatheredParams) -> Tensor:
    """``mu + b_u + b_i + p_u . q_i`` for each gathered row; shape ``(B,)``.

    Differentiable in every tensor in ``rows``; broadcasting lets a client
    pass its single user vector expanded to ``(B, k)``.
    """
    dot = (rows.user_factors * rows.item_factors).sum(dim=-1)
    return global_mean + rows.user_bias + rows.item_bias + dot


class BiasedMF(nn.Module):
    """Biased MF over ``n_users`` x ``n_items`` with ``n_factors`` latent dimensions.

    Args:
        n_users, n_items: sizes of the dense id spaces (``Ratings.n_users``...).
        n_factors: latent dimension ``k`` (0 gives the bias-only model).
        global_mean: ``mu``, normally the training set's mean rating.
        init_std: factors start as N(0, init_std^2); biases start at 0. Small
            random factors break the symmetry between latent dimensions.
        generator: torch generator for the initialization (reproducibility).
        dtype: parameter dtype (float32 for speed, float64 for exact checks).

    Attributes (``nn.Parameter``): ``user_factors`` (n_users, k),
    ``user_bias`` (n_users,), ``item_factors`` (n_items, k), ``item_bias``
    (n_items,); buffer ``global_mean`` (scalar).
    """

    # A registered buffer, declared so that type checkers see a Tensor rather
    # than nn.Module.__getattr__'s ``Tensor | Module``.
    global_mean: Tensor

    def __init__(
        self,
        n_users: int,
        n_items: int,
        n_factors: int,
        *,
        global_mean: float = 0.0,
        init_std: float = 0.1,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if n_users < 0 or n_items < 0 or n_factors < 0:
            raise ValueError("n_users, n_items and n_factors must be >= 0")
        self.n_users, self.n_items, self.n_factors = n_users, n_items, n_factors

        def normal(*shape: int) -> Tensor:
            return torch.randn(*shape, generator=generator, dtype=dtype) * init_std

        self.user_factors = nn.Parameter(normal(n_users, n_factors))
        self.item_factors = nn.Parameter(normal(n_items, n_factors))
        self.user_bias = nn.Parameter(torch.zeros(n_users, dtype=dtype))
        self.item_bias = nn.Parameter(torch.zeros(n_items, dtype=dtype))
        self.register_buffer("global_mean", torch.tensor(float(global_mean), dtype=dtype))

    def gather(self, users: Tensor, items: Tensor) -> GatheredParams:
        """The parameter rows used by the pairs ``(users[b], items[b])``."""
        return GatheredParams(
            self.user_factors[users],
            self.user_bias[users],
            self.item_factors[items],
            self.item_bias[items],
        )

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        """Predicted ratings for ``(users[b], items[b])``; int64 index tensors of shape (B,)."""
        return predict(self.global_mean, self.gather(users, items))

    def item_params(self) -> ItemParams:
        """The item tables (the parameters a federated server aggregates)."""
        return ItemParams(self.item_factors, self.item_bias)

    @torch.no_grad()
    def predict_numpy(
        self,
        users: ArrayLike,
        items: ArrayLike,
        *,
        clip: tuple[float, float] | None = None,
        batch_size: int = 1 << 16,
    ) -> NDArray[np.float64]:
        """Predictions as a float64 numpy array, optionally clipped to the rating scale.

        Clipping to ``(1, 5)`` can only reduce the error of a 1..5 rating, so
        evaluations clip (as Surprise does); training never does, since the
        clamp would zero the gradient of out-of-range predictions.
        """
        u = torch.as_tensor(np.array(users, dtype=np.int64))
        i = torch.as_tensor(np.array(items, dtype=np.int64))
        chunks = [
            self(u[s : s + batch_size], i[s : s + batch_size])
            for s in range(0, u.shape[0], batch_size)
        ]
        pred = torch.cat(chunks).to(torch.float64).numpy() if chunks else np.zeros(0)
        if clip is not None:
            pred = np.clip(pred, clip[0], clip[1])
        return pred
