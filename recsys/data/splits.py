"""Train/test splits of a :class:`~recsys.data.Ratings` set.

Both splits are exact partitions (every rating lands in exactly one side),
reproducible from ``seed`` (numpy's generator; nothing secret), and keep the
parent's ``n_users``/``n_items`` so one model covers both sides. Each side
lists its ratings in the parent's order.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .ratings import Ratings

__all__ = ["per_user_split", "random_split"]


def _check_fraction(test_fraction: float) -> None:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")


def _round_half_up(x: ArrayLike) -> NDArray[np.int64]:
    # np.round rounds half to even; half-up is easier to state and predict.
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)


def random_split(
    ratings: Ratings, test_fraction: float = 0.2, seed: int = 0
) -> tuple[Ratings, Ratings]:
    """Uniformly random ``(train, test)`` split of the ratings.

    The test side has ``round(test_fraction * len(ratings))`` ratings chosen
    uniformly without replacement. This is the split the acceptance runs use
    (ML-100K, ``test_fraction=0.2``, ``seed=0``). Users or items that land only
    in the test side are cold-start: a model predicts them from the biases it
    has (the global mean, plus whichever side is known).
    """
    _check_fraction(test_fraction)
    n = len(ratings)
    n_test = int(_round_half_up(test_fraction * n))
    rng = np.random.default_rng(seed)
    is_test = np.zeros(n, dtype=bool)
    is_test[rng.permutation(n)[:n_test]] = True
    return ratings.subset(~is_test), ratings.subset(is_test)


def per_user_split(
    ratings: Ratings, test_fraction: float = 0.2, seed: int = 0
) -> tuple[Ratings, Ratings]:
    """``(train, test)`` split that holds out a fraction of *each user's* ratings.

    A user with ``n >= 2`` ratings puts ``round(test_fraction * n)`` of them,
    clamped to ``[1, n - 1]``, in the test side, chosen uniformly; so every
    such user appears on both sides. A user with a single rating keeps it for
    training. This is the natural split for federated evaluation, where each
    client evaluates on ratings it holds back.
    """
    _check_fraction(test_fraction)
    n = len(ratings)
    rng = np.random.default_rng(seed)
    # Sort by (user, random key): a uniform random order within each user.
    order = np.lexsort((rng.random(n), ratings.user))
    counts = ratings.user_counts()
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    sorted_user = ratings.user[order]
    rank = np.arange(n) - starts[sorted_user]
    n_test = np.clip(_round_half_up(test_fraction * counts), 1, np.maximum(counts - 1, 0))
    is_test = np.zeros(n, dtype=bool)
    is_test[order] = rank < n_test[sorted_user]
    return ratings.subset(~is_test), ratings.subset(is_test)
