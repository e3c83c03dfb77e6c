"""Centralized trainer and the non-factor baselines, on small synthetic data."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from recsys.baselines import fit_biases, global_mean_predictions
from recsys.centralized import CentralizedConfig, evaluate, train_centralized
from recsys.data import random_split, synthetic
from recsys.metrics import rmse

# Small but with real structure: rank-3 truth, 30 ratings per user.
DATA = synthetic(200, 300, 30, rank=3, seed=0, interaction_std=0.8, noise_std=0.4)
TRAIN, TEST = random_split(DATA, 0.2, seed=0)
GLOBAL_MEAN_RMSE = rmse(global_mean_predictions(TRAIN, TEST), TEST.rating)
# Large batches keep the step count (and the test time) low.
FAST = dict(n_factors=8, epochs=10, lr=0.03, reg_factors=0.05, reg_bias=0.01, batch_size=256)


def test_training_beats_global_mean_and_biases():
    res = train_centralized(TRAIN, TEST, **FAST)
    assert len(res.history) == FAST["epochs"]
    assert [s.epoch for s in res.history] == list(range(1, FAST["epochs"] + 1))
    bias_rmse = rmse(fit_biases(TRAIN).predict(TEST.user, TEST.item, (1, 5)), TEST.rating)
    final = res.final
    assert final.test_rmse < 0.8 * GLOBAL_MEAN_RMSE
    assert final.test_rmse < bias_rmse  # the latent factors add something
    assert final.train_rmse < final.test_rmse  # it fits what it saw best
    assert final.test_mae < final.test_rmse
    # The objective goes down.
    assert res.history[-1].loss < res.history[0].loss
    # history and evaluate agree.
    assert evaluate(res.model, TEST, (1.0, 5.0)) == pytest.approx((final.test_rmse, final.test_mae))


def test_adam_also_learns():
    res = train_centralized(TRAIN, TEST, **{**FAST, "optimizer": "adam", "lr": 0.05})
    assert res.final.test_rmse < 0.8 * GLOBAL_MEAN_RMSE


def test_training_is_deterministic_given_seed():
    def run(seed: int) -> list[tuple[float, ...]]:
        res = train_centralized(TRAIN, TEST, **{**FAST, "epochs": 3, "seed": seed})
        return [(s.loss, s.train_rmse, s.test_rmse, s.test_mae) for s in res.history]

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_config_overrides_and_validation():
    cfg = CentralizedConfig(epochs=1)
    res = train_centralized(TRAIN, None, cfg, n_factors=2, seed=3)
    assert res.config == dataclasses.replace(cfg, n_factors=2, seed=3)
    assert res.model.n_factors == 2
    assert math.isnan(res.final.test_rmse) and not math.isnan(res.final.train_rmse)
    with pytest.raises(ValueError):
        CentralizedConfig(optimizer="rmsprop")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        CentralizedConfig(lr=0.0)
    with pytest.raises(TypeError):
        train_centralized(TRAIN, TEST, learning_rate=0.1)
    other = synthetic(10, 10, 3, seed=1)
    with pytest.raises(ValueError, match="share n_users"):
        train_centralized(TRAIN, other, epochs=1)
    with pytest.raises(ValueError, match="empty"):
        train_centralized(TRAIN.subset(np.zeros(len(TRAIN), dtype=bool)), epochs=1)


def test_on_epoch_callback_sees_every_epoch():
    seen = []
    train_centralized(TRAIN, TEST, **{**FAST, "epochs": 2}, on_epoch=seen.append)
    assert [s.epoch for s in seen] == [1, 2]


def test_bias_baseline():
    model = fit_biases(TRAIN)
    pred = model.predict(TEST.user, TEST.item, clip=(1.0, 5.0))
    assert rmse(pred, TEST.rating) < GLOBAL_MEAN_RMSE
    # Users and items without training ratings keep zero bias.
    empty_user = np.setdiff1d(np.arange(TRAIN.n_users), TRAIN.user)
    assert not model.user_bias[empty_user].any()
    # No regularization, one user and one item: the bias fits exactly.
    one = synthetic(1, 1, 1, seed=0)
    exact = fit_biases(one, reg_user=0.0, reg_item=0.0)
    assert exact.predict([0], [0])[0] == pytest.approx(one.rating[0])
    with pytest.raises(ValueError):
        fit_biases(TRAIN, sweeps=0)
