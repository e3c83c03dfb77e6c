"""Per-user scaling of the item bias (``bias_scale_reg``): exact local math, no privacy cost."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.cli import DP_DEFAULTS, main
from recsys.data import random_split, synthetic
from recsys.federated import (
    FederatedConfig,
    FederatedTrainer,
    item_step,
    local_update,
    solve_user_params,
)
from recsys.policy import Plan
from secagg import privacy

MU, REG_F, REG_B = 3.0, 0.1, 0.05


def _one_user(seed: int, m: int, k: int):
    rng = np.random.default_rng(seed)
    q = torch.as_tensor(rng.normal(size=(m, k)))
    bi = torch.as_tensor(rng.normal(size=m))
    r = torch.as_tensor(rng.integers(1, 6, m).astype(float))
    return q, bi, r, torch.zeros(m, dtype=torch.int64)


def _objective(p, bu, c, q, bi, r, lam):
    """The user's summed loss of the scaled model with its ridge terms (per rating)."""
    n = r.shape[0]
    pred = MU + bu + (1 + c) * bi + q @ p
    return (
        ((pred - r) ** 2).sum()
        + n * REG_F * (p**2).sum()
        + n * REG_B * bu**2
        + n * lam * c**2
        + (REG_F * (q**2).sum() + REG_B * (bi**2).sum())  # item terms: constant in (p, bu, c)
    )


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    m=st.integers(1, 12),
    k=st.integers(0, 3),
    lam=st.floats(1e-3, 10.0),
)
def test_scaled_user_solve_is_the_exact_minimizer(seed, m, k, lam):
    """(p_u, b_u, c_u) zero the gradient of the scaled per-user objective."""
    q, bi, r, users = _one_user(seed, m, k)
    p, bu, c = solve_user_params(
        q, bi, r, users, 1, global_mean=MU, reg_factors=REG_F, reg_bias=REG_B, bias_scale_reg=lam
    )
    assert p.shape == (1, k) and bu.shape == (1,) and c.shape == (1,)
    x = [p[0].clone().requires_grad_(True), bu[0].clone().requires_grad_(True)]
    x.append(c[0].clone().requires_grad_(True))
    grads = torch.autograd.grad(_objective(*x, q, bi, r, lam), x)
    scale = 1.0 + float(r.abs().sum()) + float(bi.abs().sum())
    assert max(float(g.abs().max()) for g in grads if g.numel()) < 1e-8 * scale


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), m=st.integers(1, 12), lam=st.floats(1e-3, 10.0))
def test_scaling_never_fits_the_users_ratings_worse(seed, m, lam):
    """The unscaled optimum is feasible with c_u = 0, so the scaled optimum is no worse."""
    q, bi, r, users = _one_user(seed, m, 2)
    kw = dict(global_mean=MU, reg_factors=REG_F, reg_bias=REG_B)
    p0, b0, _ = solve_user_params(q, bi, r, users, 1, **kw)
    p1, b1, c1 = solve_user_params(q, bi, r, users, 1, bias_scale_reg=lam, **kw)
    zero = torch.zeros((), dtype=torch.float64)
    unscaled = _objective(p0[0], b0[0], zero, q, bi, r, lam)
    scaled = _objective(p1[0], b1[0], c1[0], q, bi, r, lam)
    assert float(scaled) <= float(unscaled) + 1e-9 * (1.0 + float(unscaled))


def test_a_strong_scale_ridge_recovers_the_unscaled_solve():
    q, bi, r, users = _one_user(3, 9, 2)
    kw = dict(global_mean=MU, reg_factors=REG_F, reg_bias=REG_B)
    p0, b0, _ = solve_user_params(q, bi, r, users, 1, **kw)
    p1, b1, c1 = solve_user_params(q, bi, r, users, 1, bias_scale_reg=1e9, **kw)
    assert abs(float(c1[0])) < 1e-7
    torch.testing.assert_close(p1, p0, atol=1e-7, rtol=0)
    torch.testing.assert_close(b1, b0, atol=1e-7, rtol=0)


def test_the_item_step_follows_the_scaled_gradient():
    """d/db_i of (mu + b_u + (1 + c_u) b_i - r)^2 + reg_b b_i^2 is 2 (1 + c_u) err + 2 reg_b b_i."""
    bu, bi, c, r, lr = 0.3, -0.4, 0.25, 4.0, 0.7
    t = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    _, new_b = item_step(
        torch.zeros(1, 0, dtype=torch.float64),
        t(bu),
        torch.zeros(1, 0, dtype=torch.float64),
        t(bi),
        t(r),
        global_mean=MU,
        reg_factors=REG_F,
        reg_bias=REG_B,
        lr=lr,
        user_scale=t(c),
    )
    err = MU + bu + (1 + c) * bi - r
    expected = bi - lr * (2 * (1 + c) * err + 2 * REG_B * bi)
    assert float(new_b[0]) == pytest.approx(expected, abs=1e-12)


def test_a_cohort_with_scales_computes_what_each_client_computes_alone():
    train, _ = random_split(synthetic(25, 20, 10, rank=2, seed=4), 0.2, seed=4)
    g = torch.Generator().manual_seed(2)
    Q = torch.randn(train.n_items, 2, generator=g, dtype=torch.float64) * 0.3
    B = torch.randn(train.n_items, generator=g, dtype=torch.float64) * 0.5
    users = torch.as_tensor(np.array(train.user))
    items = torch.as_tensor(np.array(train.item))
    ratings = torch.as_tensor(np.array(train.rating))
    kw = dict(epochs=2, lr=0.1, global_mean=MU, reg_factors=REG_F, reg_bias=REG_B)
    together = local_update(Q, B, items, users, ratings, train.n_users, bias_scale_reg=0.1, **kw)
    assert together.user_scale is not None and float(together.user_scale.abs().max()) > 0
    for u in np.unique(train.user):
        mine = users == int(u)
        alone = local_update(
            Q,
            B,
            items[mine],
            torch.zeros(int(mine.sum()), dtype=torch.int64),
            ratings[mine],
            1,
            bias_scale_reg=0.1,
            **kw,
        )
        torch.testing.assert_close(alone.user_scale[0], together.user_scale[int(u)])
        torch.testing.assert_close(alone.delta_bias, together.delta_bias[mine])


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, True, "0.1"])
def test_config_rejects_a_bad_scale_ridge(bad):
    with pytest.raises(ValueError, match="bias_scale_reg"):
        FederatedConfig(bias_scale_reg=bad)


def test_scaling_changes_neither_the_upload_nor_the_privacy_accounting():
    """Same mechanism, same events, same epsilon as the accountant's; the scales stay on the clients."""
    train, test = random_split(synthetic(40, 30, 12, rank=2, seed=8), 0.2, seed=8)
    plan = Plan("plaintext", clip=1.0, noise_multiplier=1.3, count_weight=0.3, local_epochs=1)
    runs = {}
    for reg in (None, 0.1):
        t = FederatedTrainer(
            train, test, plan, rounds=3, delta=1e-4, n_factors=0, bias_scale_reg=reg, seed=1
        )
        uploads = t.client_uploads(t.population.client_ids, plan)
        ledger = t.run()
        runs[reg] = (t, uploads, ledger)
    (_, up0, led0), (t1, up1, led1) = runs[None], runs[0.1]
    assert {v.shape for v in up1.values()} == {v.shape for v in up0.values()} == {(t1.layout.dim,)}
    assert [r.events for r in led1] == [r.events for r in led0]
    acct = privacy.PLDAccountant()
    acct.compose(privacy.GaussianEvent(1.3), count=3)
    assert led1.last.epsilon == pytest.approx(acct.get_epsilon(1e-4), rel=1e-9)
    assert led1.last.epsilon == led0.last.epsilon
    assert float(t1.population.user_scale.abs().max()) > 0
    assert float(runs[None][0].population.user_scale.abs().max()) == 0.0


def test_cli_applies_the_scale_with_dp_and_can_turn_it_off(tmp_path):
    small = ["--data", "synthetic", "--synthetic-users", "30", "--synthetic-items", "20"]
    small += ["--synthetic-ratings", "8", "--protocol", "plaintext", "--rounds", "2"]
    small += ["--delta", "1e-4", "--no-progress"]
    configs = {}
    for name, extra in {
        "dp": ["--epsilon", "4"],
        "dp-off": ["--epsilon", "4", "--bias-scale-reg", "0"],
        "plain": [],
    }.items():
        out = tmp_path / name
        assert main(["train", *small, *extra, "--out", str(out)]) == 0
        configs[name] = json.loads((out / "run.json").read_text())["config"]
    assert configs["dp"]["bias_scale_reg"] == DP_DEFAULTS["bias_scale_reg"]
    assert configs["dp-off"]["bias_scale_reg"] is None
    assert configs["plain"]["bias_scale_reg"] is None
