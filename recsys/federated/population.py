"""The simulated clients: each user's ratings, held-out ratings and private parameters.

One client per user. A client's training ratings, test ratings, user vector
and user bias stay here — the only things that leave a client are its upload
vector (:mod:`recsys.federated.update`) and its evaluation sums
(:mod:`recsys.federated.evaluation`), each through an aggregation protocol. The arrays are stored per rating and sorted by
user so that a cohort's local work runs vectorized (see
:mod:`recsys.federated.local` for why that is still per-device math).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from ..data import Ratings
from ..metrics import hit_and_ndcg
from .evaluation import FIELDS, TOP_K, EvalResult, from_sums
from .local import LocalUpdate, evaluate_rows, heldout_ranks, local_update, solve_user_params

__all__ = ["ClientDirectory", "ClientPopulation", "EvalResult"]


@dataclass(frozen=True)
class ClientDirectory:
    """The public facts about a run's clients, for a server that holds none of their data.

    What :class:`~recsys.federated.FederatedTrainer` needs when the clients
    train and evaluate on their own devices (the Flower app): who may be
    sampled and the sizes of the id spaces.
    """

    client_ids: NDArray[np.int64]
    n_users: int
    n_items: int

    def __post_init__(self) -> None:
        ids = np.unique(np.asarray(self.client_ids, dtype=np.int64))
        if not len(ids) or ids[0] < 0 or ids[-1] >= self.n_users:
            raise ValueError("client ids must be a non-empty subset of [0, n_users)")
        object.__setattr__(self, "client_ids", ids)

    @property
    def n_clients(self) -> int:
        return int(self.client_ids.shape[0])


def _sorted_by_user(r: Ratings) -> tuple[Tensor, Tensor, Tensor]:
    order = np.argsort(r.user, kind="stable")
    return (
        torch.as_tensor(np.array(r.user[order])),
        torch.as_tensor(np.array(r.item[order])),
        torch.as_tensor(np.array(r.rating[order]), dtype=torch.float64),
    )


def _leave_one_out(train: Ratings, test: Ratings | None) -> tuple[NDArray[np.int64], Tensor]:
    """Each user's held-out item for ranking (-1: none) and the mask of what it rated.

    The held-out item is the user's last-rated test rating (latest timestamp,
    the last in order among ties); see :mod:`recsys.federated.evaluation`.
    """
    target = np.full(train.n_users, -1, dtype=np.int64)
    rated = torch.zeros(train.n_users, train.n_items, dtype=torch.bool)
    rated[torch.as_tensor(np.array(train.user)), torch.as_tensor(np.array(train.item))] = True
    if test is None or not len(test):
        return target, rated
    order = np.lexsort((np.arange(len(test)), np.asarray(test.timestamp), np.asarray(test.user)))
    users, items = np.asarray(test.user)[order], np.asarray(test.item)[order]
    target[users] = items  # later rows overwrite earlier: the last-rated item wins
    rated[torch.as_tensor(users), torch.as_tensor(items)] = True
    return target, rated


class ClientPopulation:
    """All clients of a run (users with at least one training rating can train).

    Args:
        train: training ratings; user ``u``'s rows are client ``u``'s data.
        test: held-out ratings over the same id spaces (each client keeps its
            own), or None.
        n_factors: the model's latent dimension.

    Attributes:
        client_ids: ids of the users that hold training ratings (sorted).
        user_factors, user_bias: every client's private parameters, updated
            when the client trains (``(n_users, k)``, ``(n_users,)``, float64).
        user_scale: every client's scale offset of the item bias
            (``(n_users,)``; stays 0 unless training with ``bias_scale_reg``).
    """

    def __init__(self, train: Ratings, test: Ratings | None, n_factors: int) -> None:
        if test is not None and (test.n_users != train.n_users or test.n_items != train.n_items):
            raise ValueError("train and test must share n_users and n_items (split one Ratings)")
        self.n_users, self.n_items, self.n_factors = train.n_users, train.n_items, n_factors
        self.train_user, self.train_item, self.train_rating = _sorted_by_user(train)
        if test is not None and len(test):
            self.test_user, self.test_item, self.test_rating = _sorted_by_user(test)
        else:
            self.test_user = self.test_item = torch.zeros(0, dtype=torch.int64)
            self.test_rating = torch.zeros(0, dtype=torch.float64)
        counts = torch.bincount(self.train_user, minlength=self.n_users).numpy()
        self.ratings_per_client = counts
        self.client_ids: NDArray[np.int64] = np.flatnonzero(counts > 0).astype(np.int64)
        self.user_factors = torch.zeros(self.n_users, n_factors, dtype=torch.float64)
        self.user_bias = torch.zeros(self.n_users, dtype=torch.float64)
        self.user_scale = torch.zeros(self.n_users, dtype=torch.float64)
        self.heldout_item, self.rated = _leave_one_out(train, test)

    @property
    def n_clients(self) -> int:
        return int(self.client_ids.shape[0])

    def cohort_rows(self, ids: NDArray[np.int64]) -> tuple[Tensor, Tensor]:
        """The training rows of clients ``ids`` and each row's cohort position."""
        position = np.full(self.n_users, -1, dtype=np.int64)
        position[np.asarray(ids, dtype=np.int64)] = np.arange(len(ids))
        pos = torch.as_tensor(position)[self.train_user]
        rows = torch.nonzero(pos >= 0).squeeze(1)
        return rows, pos[rows]

    def train_cohort(
        self,
        ids: NDArray[np.int64],
        item_factors: Tensor,
        item_bias: Tensor,
        *,
        epochs: int,
        lr: float,
        global_mean: float,
        reg_factors: float,
        reg_bias: float,
        bias_scale_reg: float | None = None,
    ) -> tuple[LocalUpdate, Tensor, Tensor]:
        """Local training of clients ``ids`` from the received item tables.

        Each client keeps its new user parameters. Returns the
        :class:`~recsys.federated.local.LocalUpdate` and, per row, the item
        and cohort position (what :meth:`UpdateLayout.encode` needs).
        """
        rows, local = self.cohort_rows(ids)
        items = self.train_item[rows]
        upd = local_update(
            item_factors,
            item_bias,
            items,
            local,
            self.train_rating[rows],
            len(ids),
            epochs=epochs,
            lr=lr,
            global_mean=global_mean,
            reg_factors=reg_factors,
            reg_bias=reg_bias,
            bias_scale_reg=bias_scale_reg,
        )
        idx = torch.as_tensor(np.asarray(ids, dtype=np.int64))
        self.user_factors[idx] = upd.user_factors
        self.user_bias[idx] = upd.user_bias
        if upd.user_scale is not None:
            self.user_scale[idx] = upd.user_scale
        return upd, items, local

    def client_sums(
        self,
        item_factors: Tensor,
        item_bias: Tensor,
        *,
        global_mean: float,
        reg_factors: float,
        reg_bias: float,
        clip: tuple[float, float],
        bias_scale_reg: float | None = None,
    ) -> np.ndarray:
        """What every client computes on its device to evaluate the model: ``(n_users, 7)``.

        Each client first refits its user parameters to the current item
        tables on its *training* ratings (the same local solve as in
        training; nothing leaves the device), then computes the fields of
        :data:`recsys.federated.evaluation.FIELDS`: its sums of squared and
        absolute errors on its held-out ratings and their count, and the
        HR@10 and NDCG@10 of its leave-one-out item. Users with held-out but
        no training ratings are scored with zero user parameters (the global
        mean plus item bias). With ``bias_scale_reg`` the refit includes each
        client's scale of the item bias (see :mod:`recsys.federated.local`).
        Rows are per user id; a user with nothing held out has a zero row.
        """
        out = np.zeros((self.n_users, len(FIELDS)))
        if self.test_rating.shape[0] == 0:
            return out
        p, bu, scale = solve_user_params(
            item_factors[self.train_item],
            item_bias[self.train_item],
            self.train_rating,
            self.train_user,
            self.n_users,
            global_mean=global_mean,
            reg_factors=reg_factors,
            reg_bias=reg_bias,
            bias_scale_reg=bias_scale_reg,
        )
        sse, sae, count = evaluate_rows(
            p,
            bu,
            item_factors[self.test_item],
            item_bias[self.test_item],
            self.test_rating,
            self.test_user,
            self.n_users,
            global_mean=global_mean,
            clip=clip,
            user_scale=scale,
        )
        out[:, 0], out[:, 1], out[:, 2] = sse.numpy(), sae.numpy(), count.numpy()
        out[:, 3] = count.numpy() > 0
        users = np.flatnonzero(self.heldout_item >= 0)
        if len(users):
            idx = torch.as_tensor(users)
            ranks = heldout_ranks(
                p[idx],
                bu[idx],
                item_factors,
                item_bias,
                torch.as_tensor(self.heldout_item[users]),
                self.rated[idx],
                global_mean=global_mean,
                user_scale=None if scale is None else scale[idx],
            )
            hit, gain = hit_and_ndcg(ranks.numpy(), TOP_K)
            out[users, 4], out[users, 5], out[users, 6] = hit, gain, 1.0
        return out

    def evaluate(self, item_factors: Tensor, item_bias: Tensor, **kwargs: Any) -> EvalResult:
        """Every client's :meth:`client_sums`, added up here in the clear (the reference).

        The trainer aggregates the same sums through the round's protocol
        instead (:meth:`recsys.federated.FederatedTrainer.evaluate`); this
        is what that must agree with.
        """
        return from_sums(self.client_sums(item_factors, item_bias, **kwargs).sum(axis=0))
