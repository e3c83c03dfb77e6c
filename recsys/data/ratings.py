"""The :class:`Ratings` container: explicit-feedback triples with dense ids.

Every loader, generator and split in :mod:`recsys.data` returns one. Ids are
dense (``0..n_users-1`` and ``0..n_items-1``) so that they index embedding
tables directly; the raw ids found in the file are kept in ``user_ids`` and
``item_ids`` so a prediction can be mapped back to a MovieLens user or movie.

A subset (a split, one user's ratings) keeps the *parent's* ``n_users`` and
``n_items``: a model built from the training split must have a row for every
user and item that may show up in the test split, even one it never saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["Ratings"]


def _readonly(a: np.ndarray) -> np.ndarray:
    # Splits share nothing mutable with their parent by accident: arrays are
    # frozen, so a caller who wants to change ratings must copy on purpose.
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False, init=False)
class Ratings:
    """Explicit ratings: parallel arrays plus the sizes of the id spaces.

    Attributes:
        user: int64 dense user index of each rating, in ``[0, n_users)``.
        item: int64 dense item index of each rating, in ``[0, n_items)``.
        rating: float64 rating values (MovieLens: 1..5).
        timestamp: int64 seconds since the epoch (0 where unknown).
        n_users: size of the user id space (may exceed the users present).
        n_items: size of the item id space (may exceed the items present).
        user_ids: raw id of each dense user index (length ``n_users``).
        item_ids: raw id of each dense item index (length ``n_items``).

    The arrays are read-only. Use :meth:`from_raw` to build one from raw ids,
    which re-indexes them, or the constructor when ids are already dense.
    """

    user: NDArray[np.int64]
    item: NDArray[np.int64]
    rating: NDArray[np.float64]
    timestamp: NDArray[np.int64]
    n_users: int
    n_items: int
    user_ids: NDArray[np.int64]
    item_ids: NDArray[np.int64]

    # An explicit __init__ (the dataclass's would type its parameters as the
    # stored arrays): it accepts any array-like, copies it to a frozen array
    # of the field's dtype, and fills omitted id maps with the identity.
    def __init__(
        self,
        user: ArrayLike,
        item: ArrayLike,
        rating: ArrayLike,
        timestamp: ArrayLike,
        n_users: int,
        n_items: int,
        user_ids: ArrayLike | None = None,
        item_ids: ArrayLike | None = None,
    ) -> None:
        user = np.array(user, dtype=np.int64).reshape(-1)
        item = np.array(item, dtype=np.int64).reshape(-1)
        rating = np.array(rating, dtype=np.float64).reshape(-1)
        timestamp = np.array(timestamp, dtype=np.int64).reshape(-1)
        n = user.shape[0]
        if not (item.shape[0] == rating.shape[0] == timestamp.shape[0] == n):
            raise ValueError(
                "user, item, rating and timestamp must have the same length, got "
                f"{n}, {item.shape[0]}, {rating.shape[0]}, {timestamp.shape[0]}"
            )
        n_users, n_items = int(n_users), int(n_items)
        if n_users < 0 or n_items < 0:
            raise ValueError(f"n_users and n_items must be >= 0, got {n_users}, {n_items}")
        if n and (user.min() < 0 or user.max() >= n_users):
            raise ValueError(f"user indices must lie in [0, {n_users})")
        if n and (item.min() < 0 or item.max() >= n_items):
            raise ValueError(f"item indices must lie in [0, {n_items})")
        if not np.all(np.isfinite(rating)):
            raise ValueError("ratings must be finite")
        user_map = (
            np.arange(n_users, dtype=np.int64)
            if user_ids is None
            else np.array(user_ids, dtype=np.int64).reshape(-1)
        )
        item_map = (
            np.arange(n_items, dtype=np.int64)
            if item_ids is None
            else np.array(item_ids, dtype=np.int64).reshape(-1)
        )
        if user_map.shape[0] != n_users or item_map.shape[0] != n_items:
            raise ValueError("user_ids/item_ids must have length n_users/n_items")
        for name, value in (
            ("user", user),
            ("item", item),
            ("rating", rating),
            ("timestamp", timestamp),
            ("user_ids", user_map),
            ("item_ids", item_map),
        ):
            object.__setattr__(self, name, _readonly(value))
        object.__setattr__(self, "n_users", n_users)
        object.__setattr__(self, "n_items", n_items)

    # ------------------------------------------------------------------ build

    @classmethod
    def from_raw(
        cls,
        user: ArrayLike,
        item: ArrayLike,
        rating: ArrayLike,
        timestamp: ArrayLike | None = None,
    ) -> Ratings:
        """Build from raw (arbitrary integer) ids, re-indexing them to ``0..n-1``.

        The mapping is order-preserving: dense index ``k`` is the ``k``-th
        smallest raw id present, so re-indexing is deterministic and the same
        file always yields the same indices. ``user_ids[k]`` is that raw id.
        """
        raw_user = np.asarray(user, dtype=np.int64).reshape(-1)
        raw_item = np.asarray(item, dtype=np.int64).reshape(-1)
        user_ids, dense_user = np.unique(raw_user, return_inverse=True)
        item_ids, dense_item = np.unique(raw_item, return_inverse=True)
        ts = (
            np.zeros(raw_user.shape[0], dtype=np.int64)
            if timestamp is None
            else np.asarray(timestamp, dtype=np.int64)
        )
        return cls(
            user=dense_user.reshape(-1),
            item=dense_item.reshape(-1),
            rating=np.asarray(rating, dtype=np.float64),
            timestamp=ts,
            n_users=user_ids.shape[0],
            n_items=item_ids.shape[0],
            user_ids=user_ids,
            item_ids=item_ids,
        )

    def subset(self, index: ArrayLike) -> Ratings:
        """The ratings at ``index`` (integer indices or a boolean mask).

        Keeps ``n_users``, ``n_items`` and the raw-id maps of ``self``.
        """
        idx = np.asarray(index)
        if idx.dtype != np.bool_:
            idx = idx.astype(np.int64, copy=False)
        return Ratings(
            user=self.user[idx],
            item=self.item[idx],
            rating=self.rating[idx],
            timestamp=self.timestamp[idx],
            n_users=self.n_users,
            n_items=self.n_items,
            user_ids=self.user_ids,
            item_ids=self.item_ids,
        )

    # ---------------------------------------------------------------- queries

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def __repr__(self) -> str:
        return (
            f"Ratings(n={len(self)}, n_users={self.n_users}, n_items={self.n_items}, "
            f"mean={self.global_mean:.4f})"
        )

    @property
    def global_mean(self) -> float:
        """Mean rating (0.0 for an empty set, so a model can still be built)."""
        return float(self.rating.mean()) if len(self) else 0.0

    @property
    def rating_range(self) -> tuple[float, float]:
        """``(min, max)`` rating present; ``(nan, nan)`` when empty."""
        if not len(self):
            return (float("nan"), float("nan"))
        return (float(self.rating.min()), float(self.rating.max()))

    def user_counts(self) -> NDArray[np.int64]:
        """Number of ratings of each user, length ``n_users``."""
        return np.bincount(self.user, minlength=self.n_users).astype(np.int64)

    def item_counts(self) -> NDArray[np.int64]:
        """Number of ratings of each item, length ``n_items``."""
        return np.bincount(self.item, minlength=self.n_items).astype(np.int64)

    def by_user(self) -> list[NDArray[np.int64]]:
        """Row indices of each user's ratings, a list of length ``n_users``.

        Within a user the original order is kept (stable sort), so the result
        is deterministic. A federated client ``u`` owns ``self.subset(by_user()[u])``.
        """
        order = np.argsort(self.user, kind="stable")
        bounds = np.cumsum(self.user_counts())[:-1]
        return list(np.split(order, bounds)) if self.n_users else []
