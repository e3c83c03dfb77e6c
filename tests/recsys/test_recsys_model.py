"""BiasedMF forward pass, the regularized loss, and per-user gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.losses import batch_loss, regularized_mse, user_gradients, user_loss
from recsys.metrics import mae, rmse
from recsys.model import BiasedMF, GatheredParams, predict

SETTINGS = settings(max_examples=40, deadline=None)


def _random_model(n_users: int, n_items: int, k: int, seed: int) -> BiasedMF:
    """A float64 model with every parameter random (biases too, unlike at init)."""
    g = torch.Generator().manual_seed(seed)
    m = BiasedMF(n_users, n_items, k, global_mean=3.3, generator=g, dtype=torch.float64)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    return m


@SETTINGS
@given(
    n_users=st.integers(1, 12),
    n_items=st.integers(1, 12),
    k=st.integers(0, 6),
    n=st.integers(0, 40),
    seed=st.integers(0, 2**31),
)
def test_forward_matches_numpy(n_users, n_items, k, n, seed):
    m = _random_model(n_users, n_items, k, seed)
    rng = np.random.default_rng(seed)
    u = rng.integers(0, n_users, n)
    i = rng.integers(0, n_items, n)
    P, Q = m.user_factors.detach().numpy(), m.item_factors.detach().numpy()
    bu, bi = m.user_bias.detach().numpy(), m.item_bias.detach().numpy()
    expected = 3.3 + bu[u] + bi[i] + np.einsum("bk,bk->b", P[u], Q[i])
    got = m(torch.as_tensor(u), torch.as_tensor(i)).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m.predict_numpy(u, i), expected, rtol=1e-12, atol=1e-12)
    clipped = m.predict_numpy(u, i, clip=(1.0, 5.0))
    np.testing.assert_allclose(clipped, np.clip(expected, 1.0, 5.0), rtol=1e-12, atol=1e-12)


def test_init_is_seeded_and_biases_start_at_zero():
    a = BiasedMF(5, 7, 3, generator=torch.Generator().manual_seed(1))
    b = BiasedMF(5, 7, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.user_factors, b.user_factors)
    assert torch.equal(a.item_factors, b.item_factors)
    assert not a.user_bias.any() and not a.item_bias.any()
    assert {n for n, _ in a.named_parameters()} == {
        "user_factors",
        "item_factors",
        "user_bias",
        "item_bias",
    }
    assert "global_mean" in dict(a.named_buffers())
    with pytest.raises(ValueError):
        BiasedMF(-1, 2, 3)


@SETTINGS
@given(n=st.integers(1, 30), k=st.integers(0, 5), seed=st.integers(0, 2**31))
def test_regularized_mse_matches_numpy(n, k, seed):
    rng = np.random.default_rng(seed)
    p, q = rng.normal(size=(n, k)), rng.normal(size=(n, k))
    bu, bi = rng.normal(size=n), rng.normal(size=n)
    pred, target = rng.normal(size=n), rng.normal(size=n)
    lf, lb = rng.uniform(0, 1), rng.uniform(0, 1)
    per = (pred - target) ** 2 + lf * ((p**2).sum(1) + (q**2).sum(1)) + lb * (bu**2 + bi**2)
    rows = GatheredParams(*(torch.as_tensor(x) for x in (p, bu, q, bi)))
    for reduction, want in (("mean", per.mean()), ("sum", per.sum())):
        got = regularized_mse(
            torch.as_tensor(pred),
            torch.as_tensor(target),
            rows,
            reg_factors=lf,
            reg_bias=lb,
            reduction=reduction,
        )
        assert float(got) == pytest.approx(want, rel=1e-12, abs=1e-12)
    with pytest.raises(ValueError):
        regularized_mse(rows.user_bias, rows.item_bias, rows, reg_factors=0, reg_bias=0,
                        reduction="max")  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None)
@given(
    n_users=st.integers(1, 8),
    n_items=st.integers(1, 10),
    k=st.integers(1, 4),
    n=st.integers(1, 50),
    seed=st.integers(0, 2**31),
)
def test_user_gradients_add_up_to_full_gradient(n_users, n_items, k, n, seed):
    """What FedAvg relies on: the clients' item gradients sum to the central one,
    and each client's user gradient is the central gradient's row for that user."""
    m = _random_model(n_users, n_items, k, seed)
    rng = np.random.default_rng(seed)
    u = torch.as_tensor(rng.integers(0, n_users, n))
    i = torch.as_tensor(rng.integers(0, n_items, n))
    r = torch.as_tensor(rng.integers(1, 6, n).astype(np.float64))
    reg = dict(reg_factors=0.07, reg_bias=0.03)

    full = batch_loss(m, u, i, r, reduction="sum", **reg)
    full.backward()

    total_loss = 0.0
    d_q = torch.zeros_like(m.item_factors)
    d_bi = torch.zeros_like(m.item_bias)
    for user in range(n_users):
        mine = u == user
        g = user_gradients(
            m.global_mean,
            m.user_factors[user],
            m.user_bias[user],
            m.item_factors,
            m.item_bias,
            i[mine],
            r[mine],
            **reg,
        )
        total_loss += g.loss
        d_q += g.item_factors
        d_bi += g.item_bias
        torch.testing.assert_close(g.user_vector, m.user_factors.grad[user])
        torch.testing.assert_close(g.user_bias, m.user_bias.grad[user])
        # Items the user did not rate get exactly zero gradient from them.
        unrated = torch.ones(n_items, dtype=torch.bool)
        unrated[i[mine]] = False
        assert not g.item_factors[unrated].any() and not g.item_bias[unrated].any()
    assert total_loss == pytest.approx(float(full.detach()), rel=1e-10)
    torch.testing.assert_close(d_q, m.item_factors.grad)
    torch.testing.assert_close(d_bi, m.item_bias.grad)


def test_user_gradients_leave_inputs_untouched():
    m = _random_model(2, 3, 2, 0)
    before = [p.detach().clone() for p in m.parameters()]
    user_gradients(
        m.global_mean, m.user_factors[0], m.user_bias[0], m.item_factors, m.item_bias,
        torch.tensor([0, 2]), torch.tensor([4.0, 1.0], dtype=torch.float64),
        reg_factors=0.1, reg_bias=0.1,
    )
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters(), strict=True))
    assert all(p.grad is None for p in m.parameters())
    # user_loss with no ratings is zero, not NaN (a client with nothing to say).
    empty = user_loss(3.0, m.user_factors[0], m.user_bias[0], m.item_factors, m.item_bias,
                      torch.tensor([], dtype=torch.int64), torch.tensor([], dtype=torch.float64),
                      reg_factors=0.1, reg_bias=0.1)
    assert float(empty.detach()) == 0.0


def test_predict_broadcasts_a_single_user_vector():
    p = torch.tensor([1.0, 2.0])
    q = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    rows = GatheredParams(p.expand(2, -1), torch.tensor(0.5).expand(2), q, torch.tensor([0.0, 1.0]))
    assert predict(3.0, rows).tolist() == [4.5, 6.0]


def test_metrics():
    assert rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(np.sqrt(4 / 3))
    assert mae([1, 2, 3], [1, 2, 5]) == pytest.approx(2 / 3)
    assert rmse(torch.tensor([2.0]), np.array([2.0])) == 0.0
    with pytest.raises(ValueError):
        rmse([1, 2], [1])
    with pytest.raises(ValueError):
        mae([], [])


def test_optimizers_follow_the_textbook_rules():
    from recsys.optim import SGD, Adam

    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(3, 2))
    grads = [rng.normal(size=(3, 2)) for _ in range(5)]

    def run(opt_cls, **kw):
        p = torch.tensor(x0, requires_grad=True)
        opt = opt_cls([p], **kw)
        for g in grads:
            opt.zero_grad()
            assert p.grad is None
            p.grad = torch.tensor(g)
            opt.step()
        return p.detach().numpy()

    np.testing.assert_allclose(run(SGD, lr=0.1), x0 - 0.1 * sum(grads), rtol=1e-12)

    # Adam (Kingma & Ba, Algorithm 1) in numpy.
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    x, m, v = x0.copy(), np.zeros_like(x0), np.zeros_like(x0)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        x = x - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    np.testing.assert_allclose(run(Adam, lr=lr), x, rtol=1e-10)
    with pytest.raises(ValueError):
        SGD([], lr=0.0)
