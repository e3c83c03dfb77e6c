"""Losses for biased MF: squared error plus L2 on the rows a batch uses.

The objective is the classic one of Funk's SVD (and Surprise's ``SVD``),

    sum over observed (u, i) of  (r_ui - r_hat_ui)^2
        + reg_factors * (|p_u|^2 + |q_i|^2) + reg_bias * (b_u^2 + b_i^2),

so each rating pulls the four parameter rows it uses towards zero. A row is
regularized as often as it is used: rarely-rated items are shrunk harder
relative to their data, and a minibatch gradient is an unbiased estimate of
the full objective's. Weight decay on whole tables would instead shrink every
row at every step, rated in the batch or not.

:func:`regularized_mse` works on gathered rows; :func:`batch_loss` gathers
from a :class:`~recsys.model.BiasedMF`; :func:`user_loss` and
:func:`user_gradients` are the same objective restricted to one user's
ratings, computed from that user's vector and bias and the item tables only,
which is what a federated client can do on its device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from .model import BiasedMF, GatheredParams, predict

__all__ = [
    "UserGradients",
    "batch_loss",
    "regularized_mse",
    "user_gradients",
    "user_loss",
]

Reduction = Literal["mean", "sum"]


def regularized_mse(
    pred: Tensor,
    target: Tensor,
    rows: GatheredParams,
    *,
    reg_factors: float,
    reg_bias: float,
    reduction: Reduction = "mean",
) -> Tensor:
    """Squared error plus per-rating L2 on the rows used, reduced over the batch.

    Args:
        pred, target: shape ``(B,)``.
        rows: the parameter rows that produced ``pred`` (one per rating).
        reg_factors: L2 weight on ``|p_u|^2 + |q_i|^2``.
        reg_bias: L2 weight on ``b_u^2 + b_i^2``.
        reduction: ``"mean"`` (scale-free in the batch size, for Adam) or
            ``"sum"`` (per-rating step sizes, as in classic SGD; also what
            makes per-user losses add up to the full loss).
    """
    per_rating = (pred - target) ** 2
    if reg_factors:
        per_rating = per_rating + reg_factors * (
            rows.user_factors.pow(2).sum(-1) + rows.item_factors.pow(2).sum(-1)
        )
    if reg_bias:
        per_rating = per_rating + reg_bias * (rows.user_bias.pow(2) + rows.item_bias.pow(2))
    if reduction == "mean":
        return per_rating.mean()
    if reduction == "sum":
        return per_rating.sum()
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def batch_loss(
    model: BiasedMF,
    users: Tensor,
    items: Tensor,
    ratings: Tensor,
    *,
    reg_factors: float,
    reg_bias: float,
    reduction: Reduction = "mean",
) -> Tensor:
    """:func:`regularized_mse` of ``model`` on the ratings ``(users, items, ratings)``."""
    rows = model.gather(users, items)
    return regularized_mse(
        predict(model.global_mean, rows),
        ratings,
        rows,
        reg_factors=reg_factors,
        reg_bias=reg_bias,
        reduction=reduction,
    )


def user_loss(
    global_mean: Tensor | float,
    user_vector: Tensor,
    user_bias: Tensor,
    item_factors: Tensor,
    item_bias: Tensor,
    items: Tensor,
    ratings: Tensor,
    *,
    reg_factors: float,
    reg_bias: float,
    reduction: Reduction = "sum",
) -> Tensor:
    """The objective on one user's ratings, from that user's parameters and the item tables.

    Args:
        user_vector: ``p_u``, shape ``(k,)``; user_bias: ``b_u``, shape ``()``.
        item_factors: the full ``(n_items, k)`` table; item_bias: ``(n_items,)``.
        items, ratings: the user's rated item indices and ratings, shape ``(m,)``.

    With ``reduction="sum"`` the per-user losses of all users add up exactly
    to :func:`batch_loss` over all ratings with ``reduction="sum"``, so the
    sum of the clients' item gradients is the centralized full-batch gradient.
    """
    m = items.shape[0]
    rows = GatheredParams(
        user_vector.unsqueeze(0).expand(m, -1),
        user_bias.reshape(()).expand(m),
        item_factors[items],
        item_bias[items],
    )
    return regularized_mse(
        predict(global_mean, rows),
        ratings,
        rows,
        reg_factors=reg_factors,
        reg_bias=reg_bias,
        reduction=reduction,
    )


@dataclass(frozen=True)
class UserGradients:
    """Gradients of :func:`user_loss` (dense in the item tables: zero rows for unrated items)."""

    loss: float
    user_vector: Tensor  # (k,)
    user_bias: Tensor  # ()
    item_factors: Tensor  # (n_items, k)
    item_bias: Tensor  # (n_items,)


def user_gradients(
    global_mean: Tensor | float,
    user_vector: Tensor,
    user_bias: Tensor,
    item_factors: Tensor,
    item_bias: Tensor,
    items: Tensor,
    ratings: Tensor,
    *,
    reg_factors: float,
    reg_bias: float,
    reduction: Reduction = "sum",
) -> UserGradients:
    """Gradients of :func:`user_loss` w.r.t. the user's parameters and the item tables.

    Works on detached copies, so the inputs (for instance the server's model)
    are never modified and need not require gradients.
    """
    leaves = [t.detach().clone().requires_grad_(True) for t in (user_vector, user_bias)]
    item_leaves = [t.detach().clone().requires_grad_(True) for t in (item_factors, item_bias)]
    loss = user_loss(
        global_mean,
        leaves[0],
        leaves[1],
        item_leaves[0],
        item_leaves[1],
        items,
        ratings,
        reg_factors=reg_factors,
        reg_bias=reg_bias,
        reduction=reduction,
    )
    grads = torch.autograd.grad(loss, [*leaves, *item_leaves])
    return UserGradients(float(loss.detach()), grads[0], grads[1], grads[2], grads[3])
