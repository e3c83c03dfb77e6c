"""Synthetic MovieLens-like ratings with a known low-rank ground truth.

The generator draws a "true" biased MF model,

    r*(u, i) = mu + b_u + b_i + p_u . q_i,

picks which items each user rates with a power-law (Zipf) popularity, adds
Gaussian noise and rounds and clips to the 1..5 star scale, as MovieLens
ratings are. It is what the demo, the tests and the scale benchmarks run on
when the real data is absent or too small. numpy's RNG is fine here: nothing
about synthetic data is secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .ratings import Ratings

__all__ = ["SyntheticTruth", "synthetic", "synthetic_with_truth"]

# ML-100K's ratings span Sep 1997 .. Apr 1998; reuse that window for realism.
_T0, _T1 = 874_724_710, 893_286_638


@dataclass(frozen=True)
class SyntheticTruth:
    """The model that generated a synthetic data set (for tests and demos)."""

    global_mean: float
    user_bias: NDArray[np.float64]
    item_bias: NDArray[np.float64]
    user_factors: NDArray[np.float64]
    item_factors: NDArray[np.float64]
    popularity: NDArray[np.float64]  # probability of each item being drawn

    def predict(self, user: NDArray[np.int64], item: NDArray[np.int64]) -> NDArray[np.float64]:
        """Noise-free, unrounded ratings of the pairs ``(user[k], item[k])``."""
        dot = np.einsum("ij,ij->i", self.user_factors[user], self.item_factors[item])
        return self.global_mean + self.user_bias[user] + self.item_bias[item] + dot


def _sample_items(
    rng: np.random.Generator, n_users: int, n_items: int, k: int, p: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """``k`` distinct items per user, drawn by successive sampling with weights ``p``.

    Taking the first ``k`` distinct items of an i.i.d. stream drawn from ``p``
    has the same law as ``rng.choice(n_items, k, replace=False, p=p)``, but is
    vectorised over users: O(total draws) instead of O(n_users * n_items),
    which matters for the scale benchmarks (1e5 users x 1e4 items).
    """
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    have_user = np.empty(0, dtype=np.int64)
    have_item = np.empty(0, dtype=np.int64)
    need = np.full(n_users, k, dtype=np.int64)
    for _ in range(64):
        active = np.flatnonzero(need > 0)
        if active.size == 0:
            break
        # Oversample: heavy heads produce repeats, so ask for more than needed.
        draws = np.maximum(2 * need[active], 8)
        new_user = np.repeat(active, draws)
        u01 = rng.random(new_user.shape[0])
        new_item = np.minimum(np.searchsorted(cdf, u01, side="right"), n_items - 1)
        all_user = np.concatenate([have_user, new_user])
        all_item = np.concatenate([have_item, new_item])
        # First occurrence of each (user, item) pair, in stream order.
        _, first = np.unique(all_user * n_items + all_item, return_index=True)
        first.sort()
        all_user, all_item = all_user[first], all_item[first]
        # Keep each user's first k distinct items (rank within user, stream order).
        order = np.argsort(all_user, kind="stable")
        all_user, all_item = all_user[order], all_item[order]
        starts = np.searchsorted(all_user, np.arange(n_users))
        rank = np.arange(all_user.shape[0]) - starts[all_user]
        keep = rank < k
        have_user, have_item = all_user[keep], all_item[keep]
        need = k - np.bincount(have_user, minlength=n_users)
    # Users still short after many rounds (only when k is close to n_items
    # under a very steep popularity): finish them exactly, one at a time.
    for u in np.flatnonzero(need > 0):
        mine = have_item[have_user == u]
        rest = np.setdiff1d(np.arange(n_items), mine)
        w = p[rest] / p[rest].sum()
        extra = rng.choice(rest, size=int(need[u]), replace=False, p=w)
        have_user = np.concatenate([have_user, np.full(extra.shape[0], u)])
        have_item = np.concatenate([have_item, extra])
    order = np.lexsort((have_item, have_user))
    return have_user[order], have_item[order]


def synthetic_with_truth(
    n_users: int = 943,
    n_items: int = 1682,
    ratings_per_user: int = 50,
    rank: int = 5,
    seed: int = 0,
    *,
    global_mean: float = 3.5,
    user_bias_std: float = 0.4,
    item_bias_std: float = 0.5,
    interaction_std: float = 0.6,
    noise_std: float = 0.5,
    popularity_exponent: float = 1.0,
    rating_scale: tuple[float, float] = (1.0, 5.0),
    round_ratings: bool = True,
) -> tuple[Ratings, SyntheticTruth]:
    """Generate MovieLens-like ratings and the random biased low-rank model behind them.

    Args:
        n_users, n_items: sizes of the id spaces (every user has ratings;
            unpopular items may have none, as in real catalogues).
        ratings_per_user: distinct items each user rates (``<= n_items``).
        rank: dimension of the true user/item factors.
        seed: seed of numpy's generator; same arguments, same data.
        global_mean, user_bias_std, item_bias_std: the bias part of the model.
        interaction_std: standard deviation of ``p_u . q_i`` (factor entries
            are N(0, interaction_std / sqrt(rank)), so the dot product's
            spread does not depend on ``rank``).
        noise_std: Gaussian noise added before rounding.
        popularity_exponent: item ``j``-th in popularity is drawn with weight
            ``(j + 1) ** -popularity_exponent`` (Zipf); 0 means uniform.
        rating_scale: ratings are clipped to this range.
        round_ratings: round to whole stars, like MovieLens.

    Returns:
        ``(ratings, truth)``: :class:`Ratings` sorted by (user, item), with
        identity raw ids, and the :class:`SyntheticTruth` that made them.
    """
    if n_users < 1 or n_items < 1 or rank < 1:
        raise ValueError("n_users, n_items and rank must be >= 1")
    if not 1 <= ratings_per_user <= n_items:
        raise ValueError(f"ratings_per_user must lie in [1, n_items={n_items}]")
    if popularity_exponent < 0:
        raise ValueError("popularity_exponent must be >= 0")
    lo, hi = rating_scale
    if not lo < hi:
        raise ValueError("rating_scale must be (low, high) with low < high")

    rng = np.random.default_rng(seed)
    factor_std = np.sqrt(interaction_std / np.sqrt(rank))
    user_factors = rng.normal(0.0, factor_std, size=(n_users, rank))
    item_factors = rng.normal(0.0, factor_std, size=(n_items, rank))
    user_bias = rng.normal(0.0, user_bias_std, size=n_users)
    item_bias = rng.normal(0.0, item_bias_std, size=n_items)
    # Zipf weights over a random permutation, so popularity is not tied to id.
    weights = np.empty(n_items)
    weights[rng.permutation(n_items)] = np.arange(1, n_items + 1, dtype=np.float64) ** (
        -popularity_exponent
    )
    popularity = weights / weights.sum()
    truth = SyntheticTruth(
        global_mean=float(global_mean),
        user_bias=user_bias,
        item_bias=item_bias,
        user_factors=user_factors,
        item_factors=item_factors,
        popularity=popularity,
    )

    user, item = _sample_items(rng, n_users, n_items, ratings_per_user, popularity)
    values = truth.predict(user, item) + rng.normal(0.0, noise_std, size=user.shape[0])
    if round_ratings:
        values = np.round(values)
    values = np.clip(values, lo, hi)
    timestamp = rng.integers(_T0, _T1, size=user.shape[0], dtype=np.int64)
    ratings = Ratings(
        user=user,
        item=item,
        rating=values,
        timestamp=timestamp,
        n_users=n_users,
        n_items=n_items,
    )
    return ratings, truth


def synthetic(
    n_users: int = 943,
    n_items: int = 1682,
    ratings_per_user: int = 50,
    rank: int = 5,
    seed: int = 0,
    **kwargs: Any,
) -> Ratings:
    """MovieLens-like synthetic ratings; see :func:`synthetic_with_truth` for the knobs.

    Keyword arguments (``noise_std``, ``popularity_exponent``, ...) are passed
    through. The defaults give ML-100K's shape (943 users, 1682 items) with
    about half its ratings.
    """
    ratings, _ = synthetic_with_truth(n_users, n_items, ratings_per_user, rank, seed, **kwargs)
    return ratings
