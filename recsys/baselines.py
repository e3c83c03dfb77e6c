"""Non-factor baselines: the global-mean predictor and a regularized bias model.

They put the MF figures in context: the global mean is the floor any model
must beat, and the bias model (``mu + b_u + b_i``, no interaction term) shows
how much of the gain comes from the latent factors. The bias model is fitted
by alternating closed-form ridge updates (Koren 2010, sec. 2.1; what
Surprise's ``BaselineOnly`` does with ALS), which needs no learning rate and
converges in a few sweeps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .data import Ratings

__all__ = ["BiasModel", "fit_biases", "global_mean_predictions"]


def global_mean_predictions(train: Ratings, target: Ratings) -> NDArray[np.float64]:
    """Predict the training mean for every rating of ``target``."""
    return np.full(len(target), train.global_mean)


@dataclass(frozen=True)
class BiasModel:
    """``r_hat(u, i) = global_mean + user_bias[u] + item_bias[i]``."""

    global_mean: float
    user_bias: NDArray[np.float64]
    item_bias: NDArray[np.float64]

    def predict(
        self, users: ArrayLike, items: ArrayLike, clip: tuple[float, float] | None = None
    ) -> NDArray[np.float64]:
        """Predictions for the pairs ``(users[k], items[k])``, optionally clipped."""
        pred = (
            self.global_mean
            + self.user_bias[np.asarray(users, dtype=np.int64)]
            + self.item_bias[np.asarray(items, dtype=np.int64)]
        )
        return np.clip(pred, *clip) if clip is not None else pred


def fit_biases(
    train: Ratings, *, reg_user: float = 15.0, reg_item: float = 10.0, sweeps: int = 10
) -> BiasModel:
    """Fit user and item biases by alternating ridge regression.

    Each sweep sets every item bias to ``sum(r - mu - b_u) / (reg_item + n_i)``
    over its ratings, then every user bias likewise with ``reg_user``. The
    defaults are Surprise's ``BaselineOnly`` ALS defaults. Users and items
    without training ratings keep bias 0.
    """
    if reg_user < 0 or reg_item < 0 or sweeps < 1:
        raise ValueError("reg_user and reg_item must be >= 0, sweeps >= 1")
    mu = train.global_mean
    resid = train.rating - mu
    n_u = np.bincount(train.user, minlength=train.n_users).astype(np.float64)
    n_i = np.bincount(train.item, minlength=train.n_items).astype(np.float64)
    b_u = np.zeros(train.n_users)
    b_i = np.zeros(train.n_items)
    for _ in range(sweeps):
        s_i = np.bincount(train.item, weights=resid - b_u[train.user], minlength=train.n_items)
        b_i = np.divide(s_i, reg_item + n_i, out=np.zeros_like(s_i), where=(reg_item + n_i) > 0)
        s_u = np.bincount(train.user, weights=resid - b_i[train.item], minlength=train.n_users)
        b_u = np.divide(s_u, reg_user + n_u, out=np.zeros_like(s_u), where=(reg_user + n_u) > 0)
    return BiasModel(mu, b_u, b_i)
