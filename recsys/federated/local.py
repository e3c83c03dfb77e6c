"""What a federated client computes on its device: the local update and local evaluation.

Client ``u`` holds its training ratings ``(i, r_ui)``, its user vector ``p_u``
and bias ``b_u``; it receives the item tables ``(Q, b_item)``. One local
epoch is

1. **user step** — ``(p_u, b_u)`` minimize the objective of
   :func:`recsys.losses.regularized_mse` (``reduction="sum"``) restricted to
   the user's ratings, with the items fixed. That is a ridge regression in
   ``k + 1`` unknowns, solved exactly (:func:`solve_user_params`): an
   ALS half-step, as in Federated Collaborative Filtering (Ammad-ud-din et al.
   2019). Solving instead of stepping makes the local update independent of
   how stale ``p_u`` is, which matters when a client is sampled rarely.
2. **item step** — one pass of SGD with step ``lr`` over the user's ratings
   on the client's copies of the rated item rows (:func:`item_step`).
   Each item occurs at most once among one user's ratings and the user's
   parameters are fixed during the pass, so the pass is exactly one
   full-batch gradient step, in any order and with any batch size.

Optional per-user scaling of the item bias (``bias_scale_reg``): the
prediction becomes ``mu + b_u + (1 + c_u) b_i + p_u.q_i`` with a private
``c_u`` per user, the user-specific scale of the item bias in Koren's
baseline predictor ("Collaborative Filtering with Temporal Dynamics", KDD
2009, eq. 9, without the time dependence). It is one more unknown in the
user step's ridge regression (its regressor is the received item bias, its
ridge ``bias_scale_reg`` per rating pulls the scale towards 1), so it costs no
item parameter: it is a rank-1 factor term whose item factor is the item
bias itself. Nothing about it leaves the device.

The client uploads ``local item rows - received item rows`` (FedMF's dense
"full text" variant; see :mod:`recsys.federated.update` for the layout).

Vectorization: a cohort of clients is computed together on *per-rating rows*.
Row ``j`` is one rating of user ``row_user[j]``; the local copy of an item row
is per rating, because client ``u``'s copy of item ``i`` is touched only by
``u``'s rating of ``i``. Every operation below is either per row or a sum over
one user's rows (``index_add_`` by ``row_user``), never across users, so the
batch computes exactly what each device would compute alone — it is a
simulation speed-up, not an aggregation. The loss itself is
:func:`recsys.losses.regularized_mse` and the forward pass
:func:`recsys.model.predict`, shared with the centralized trainer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..losses import regularized_mse
from ..model import GatheredParams, predict

__all__ = [
    "LocalUpdate",
    "evaluate_rows",
    "heldout_ranks",
    "item_step",
    "local_update",
    "solve_user_params",
]


def _predict(global_mean: float, rows: GatheredParams, user_scale: Tensor | None) -> Tensor:
    """:func:`recsys.model.predict`, plus ``c_u * b_i`` when users scale the item bias."""
    pred = predict(global_mean, rows)
    if user_scale is not None:
        pred = pred + user_scale.detach() * rows.item_bias
    return pred


def solve_user_params(
    item_factors: Tensor,
    item_bias: Tensor,
    ratings: Tensor,
    row_user: Tensor,
    n_users: int,
    *,
    global_mean: float,
    reg_factors: float,
    reg_bias: float,
    bias_scale_reg: float | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Each user's exact minimizer ``(p_u, b_u, c_u)`` given the item rows of its ratings.

    The objective of user ``u`` (``regularized_mse``, ``reduction="sum"``) is

        sum_j (mu + b_u + b_j + p_u.q_j - r_j)^2 + reg_f (|p_u|^2 + |q_j|^2)
              + reg_b (b_u^2 + b_j^2)

    over its ``n_u`` rows ``j``. With ``x_j = [q_j, 1]``, ``y_j = r_j - mu - b_j``
    and ``theta = [p_u, b_u]`` the gradient vanishes at

        (sum_j x_j x_j^T + n_u diag(reg_f, ..., reg_f, reg_b)) theta = sum_j x_j y_j,

    solved here for all users at once (a batched ``(k+1) x (k+1)`` system).

    Args:
        item_factors, item_bias: per row, the item rows the user holds
            (shape ``(R, k)`` and ``(R,)``).
        ratings: ``(R,)``; row_user: ``(R,)`` int64 in ``[0, n_users)``.

        bias_scale_reg: if given, also solve for the user's scale offset
            ``c_u`` of the item bias (prediction ``... + (1 + c_u) b_j``): the
            regressor ``b_j`` joins ``x_j`` with ridge ``bias_scale_reg`` per
            rating (towards ``c_u = 0``, i.e. scale 1).

    Returns:
        ``(P, b, c)`` of shapes ``(n_users, k)``, ``(n_users,)`` and
        ``(n_users,)``, ``c`` being None unless ``bias_scale_reg`` is given;
        users without rows get zeros (no data: the prior's mode). With
        ``reg_factors = reg_bias = 0`` a user with fewer than ``k + 1``
        ratings has a singular system; keep some regularization.
    """
    dtype = item_factors.dtype
    scaled = bias_scale_reg is not None
    if scaled:
        item_factors = torch.cat([item_factors, item_bias.unsqueeze(1)], dim=1)
    k = item_factors.shape[1]
    x = torch.cat([item_factors, torch.ones(ratings.shape[0], 1, dtype=dtype)], dim=1)
    y = ratings - global_mean - item_bias
    gram = torch.zeros(n_users, k + 1, k + 1, dtype=dtype)
    gram.index_add_(0, row_user, x.unsqueeze(2) * x.unsqueeze(1))
    rhs = torch.zeros(n_users, k + 1, dtype=dtype).index_add_(0, row_user, x * y.unsqueeze(1))
    counts = torch.bincount(row_user, minlength=n_users).to(dtype)
    ridge_f = (
        [reg_factors] * (k - 1) + [float(bias_scale_reg)]
        if bias_scale_reg is not None  # i.e. scaled (spelled out so the type narrows)
        else [reg_factors] * k
    )
    ridge = torch.tensor([*ridge_f, reg_bias], dtype=dtype)
    gram += torch.diag_embed(counts.unsqueeze(1) * ridge)
    # A user without ratings has an all-zero system: make it the identity
    # (solution 0) instead of singular.
    empty = counts == 0
    if bool(empty.any()):
        gram[empty] = torch.eye(k + 1, dtype=dtype)
    theta = torch.linalg.solve(gram, rhs.unsqueeze(2)).squeeze(2)
    if scaled:
        return (
            theta[:, : k - 1].contiguous(),
            theta[:, k].contiguous(),
            theta[:, k - 1].contiguous(),
        )
    return theta[:, :k].contiguous(), theta[:, k].contiguous(), None


def item_step(
    user_factors: Tensor,
    user_bias: Tensor,
    item_factors: Tensor,
    item_bias: Tensor,
    ratings: Tensor,
    *,
    global_mean: float,
    reg_factors: float,
    reg_bias: float,
    lr: float,
    user_scale: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One SGD pass on the per-row item copies, user parameters fixed.

    All arguments are per row (shape ``(R, k)`` or ``(R,)``). The gradient is
    autograd's on :func:`~recsys.losses.regularized_mse` with
    ``reduction="sum"``: row ``j``'s item copy gets exactly the gradient of its
    own rating. ``user_scale`` (per row, optional) is the users' scale offset
    ``c_u`` of the item bias (see the module docstring). Returns the new
    ``(item_factors, item_bias)`` rows.
    """
    q = item_factors.detach().clone().requires_grad_(True)
    b = item_bias.detach().clone().requires_grad_(True)
    rows = GatheredParams(user_factors.detach(), user_bias.detach(), q, b)
    loss = regularized_mse(
        _predict(global_mean, rows, user_scale),
        ratings,
        rows,
        reg_factors=reg_factors,
        reg_bias=reg_bias,
        reduction="sum",
    )
    grad_q, grad_b = torch.autograd.grad(loss, [q, b])
    return (q - lr * grad_q).detach(), (b - lr * grad_b).detach()


@dataclass(frozen=True)
class LocalUpdate:
    """The result of a cohort's local training.

    ``user_factors``/``user_bias`` are the clients' new private parameters
    (indexed by cohort position); ``delta_factors``/``delta_bias`` the
    per-row changes of the item copies (what, scattered densely, is uploaded);
    ``user_scale`` the clients' scale offsets ``c_u`` of the item bias (None
    unless ``bias_scale_reg`` was given).
    """

    user_factors: Tensor  # (n_cohort, k)
    user_bias: Tensor  # (n_cohort,)
    delta_factors: Tensor  # (R, k)
    delta_bias: Tensor  # (R,)
    user_scale: Tensor | None = None  # (n_cohort,)


def local_update(
    item_factors: Tensor,
    item_bias: Tensor,
    row_item: Tensor,
    row_user: Tensor,
    ratings: Tensor,
    n_cohort: int,
    *,
    epochs: int,
    lr: float,
    global_mean: float,
    reg_factors: float,
    reg_bias: float,
    bias_scale_reg: float | None = None,
) -> LocalUpdate:
    """``epochs`` local epochs (user step, then item step) of every client in a cohort.

    Args:
        item_factors, item_bias: the item tables as the clients received them
            (``(n_items, k)``, ``(n_items,)``).
        row_item, row_user, ratings: the cohort's training ratings, one row
            each; ``row_user`` is the cohort position ``0..n_cohort-1``.
        bias_scale_reg: if given, each client also fits its scale offset of
            the item bias (see the module docstring) and its item step uses it.
    """
    q0, b0 = item_factors[row_item], item_bias[row_item]
    q, b = q0, b0
    p = bu = c = None
    for _ in range(epochs):
        p, bu, c = solve_user_params(
            q,
            b,
            ratings,
            row_user,
            n_cohort,
            global_mean=global_mean,
            reg_factors=reg_factors,
            reg_bias=reg_bias,
            bias_scale_reg=bias_scale_reg,
        )
        q, b = item_step(
            p[row_user],
            bu[row_user],
            q,
            b,
            ratings,
            global_mean=global_mean,
            reg_factors=reg_factors,
            reg_bias=reg_bias,
            lr=lr,
            user_scale=None if c is None else c[row_user],
        )
    assert p is not None and bu is not None
    return LocalUpdate(p, bu, q - q0, b - b0, c)


def evaluate_rows(
    user_factors: Tensor,
    user_bias: Tensor,
    item_factors: Tensor,
    item_bias: Tensor,
    ratings: Tensor,
    row_user: Tensor,
    n_users: int,
    *,
    global_mean: float,
    clip: tuple[float, float],
    user_scale: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-user ``(sum of squared errors, sum of absolute errors, count)`` on the given rows.

    ``user_factors``/``user_bias`` (and ``user_scale``, the optional scale
    offsets of the item bias) are per user, ``item_factors``/``item_bias``
    per row. Predictions are clipped to the rating scale, as in the
    centralized evaluation.
    """
    rows = GatheredParams(user_factors[row_user], user_bias[row_user], item_factors, item_bias)
    scale = None if user_scale is None else user_scale[row_user]
    err = _predict(global_mean, rows, scale).clamp(clip[0], clip[1]) - ratings
    dtype = err.dtype
    sse = torch.zeros(n_users, dtype=dtype).index_add_(0, row_user, err * err)
    sae = torch.zeros(n_users, dtype=dtype).index_add_(0, row_user, err.abs())
    count = torch.bincount(row_user, minlength=n_users).to(dtype)
    return sse, sae, count


def heldout_ranks(
    user_factors: Tensor,
    user_bias: Tensor,
    item_factors: Tensor,
    item_bias: Tensor,
    target: Tensor,
    rated: Tensor,
    *,
    global_mean: float,
    user_scale: Tensor | None = None,
) -> Tensor:
    """0-based rank of each user's held-out item among the items the user has not rated.

    Row ``u`` of the user tensors is one user (``(U, k)``, ``(U,)``),
    ``target[u]`` its held-out item, ``rated[u]`` a boolean row over all
    items of what it rated (train and test, held-out item included); the
    item tables are whole. The rank counts the unrated items scored strictly
    higher than the held-out item (ties in its favour), by the unclipped
    prediction. Per-user math only: each device can rank its own item.
    """
    scores = global_mean + user_bias.unsqueeze(1) + item_bias.unsqueeze(0)
    if user_scale is not None:
        scores = scores + user_scale.unsqueeze(1) * item_bias.unsqueeze(0)
    scores = scores + user_factors @ item_factors.T
    mine = scores.gather(1, target.unsqueeze(1))
    return ((scores > mine) & ~rated).sum(dim=1)
