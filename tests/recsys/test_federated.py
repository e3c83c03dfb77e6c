"""Federated MF: local math, equivalence with a centralized step, what leaves a client, accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import protocols
from recsys.baselines import global_mean_predictions
from recsys.data import Ratings, random_split, synthetic
from recsys.federated import (
    FederatedConfig,
    FederatedTrainer,
    local_update,
    solve_user_params,
)
from recsys.losses import batch_loss, user_gradients
from recsys.metrics import rmse
from recsys.model import BiasedMF
from recsys.optim import SGD
from recsys.policy import Plan
from secagg.identity import enroll


def _small(n_users=40, n_items=30, per_user=12, seed=0) -> tuple[Ratings, Ratings]:
    return random_split(synthetic(n_users, n_items, per_user, rank=3, seed=seed), 0.2, seed=seed)


def _only_user(r: Ratings, user: int) -> Ratings:
    return r.subset(r.user == user)


# -- the local math ------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_user_solve_is_the_exact_minimizer(seed):
    """The closed-form user step zeroes the gradient of the shared per-user loss."""
    rng = np.random.default_rng(seed)
    k, m = 3, 7
    q = torch.as_tensor(rng.normal(size=(m, k)))
    bi = torch.as_tensor(rng.normal(size=m))
    r = torch.as_tensor(rng.integers(1, 6, m).astype(float))
    p, bu, _ = solve_user_params(
        q,
        bi,
        r,
        torch.zeros(m, dtype=torch.int64),
        1,
        global_mean=3.0,
        reg_factors=0.1,
        reg_bias=0.05,
    )
    g = user_gradients(3.0, p[0], bu[0], q, bi, torch.arange(m), r, reg_factors=0.1, reg_bias=0.05)
    assert float(g.user_vector.abs().max()) < 1e-10
    assert abs(float(g.user_bias)) < 1e-10


def test_user_without_ratings_gets_zero_parameters():
    p, bu, _ = solve_user_params(
        torch.ones(2, 2, dtype=torch.float64),
        torch.zeros(2, dtype=torch.float64),
        torch.tensor([4.0, 5.0], dtype=torch.float64),
        torch.tensor([1, 1]),
        3,
        global_mean=3.0,
        reg_factors=0.1,
        reg_bias=0.1,
    )
    assert torch.equal(p[0], torch.zeros(2, dtype=torch.float64)) and float(bu[2]) == 0.0
    assert float(bu[1]) != 0.0


def test_a_cohort_computes_what_each_client_computes_alone():
    """Vectorizing the cohort is a speed-up, not an aggregation: no client's result depends on another's."""
    train, _ = _small()
    g = torch.Generator().manual_seed(1)
    Q = torch.randn(train.n_items, 3, generator=g, dtype=torch.float64) * 0.3
    B = torch.randn(train.n_items, generator=g, dtype=torch.float64) * 0.3
    users = torch.as_tensor(np.array(train.user))
    items = torch.as_tensor(np.array(train.item))
    ratings = torch.as_tensor(np.array(train.rating))
    kw = dict(epochs=3, lr=0.1, global_mean=3.0, reg_factors=0.1, reg_bias=0.05)
    together = local_update(Q, B, items, users, ratings, train.n_users, **kw)
    for u in range(train.n_users):
        mine = users == u
        alone = local_update(
            Q,
            B,
            items[mine],
            torch.zeros(int(mine.sum()), dtype=torch.int64),
            ratings[mine],
            1,
            **kw,
        )
        torch.testing.assert_close(alone.user_factors[0], together.user_factors[u])
        torch.testing.assert_close(alone.delta_factors, together.delta_factors[mine])
        torch.testing.assert_close(alone.delta_bias, together.delta_bias[mine])


# -- one client per round == a centralized step on its data ------------------------------


@pytest.mark.parametrize("aggregation", ["item", "fedavg"])
def test_one_client_round_equals_a_centralized_step(aggregation):
    train, test = _small(seed=3)
    user = int(np.bincount(train.user).argmax())
    mine = _only_user(train, user)
    cfg = FederatedConfig(
        n_factors=3,
        local_lr=0.05,
        reg_factors=0.1,
        reg_bias=0.05,
        download_dtype="float64",
        aggregation=aggregation,
        seed=5,
    )
    trainer = FederatedTrainer(
        mine,
        test,
        Plan("plaintext", coordinate_clip=1e3, count_weight=1.0, local_epochs=1),
        cfg,
        rounds=1,
    )
    assert trainer.population.client_ids.tolist() == [user]
    q0 = trainer.server.item_factors.clone()
    b0 = trainer.server.item_bias.clone()
    row = trainer.step()
    assert row.sampled == row.survivors == 1

    # Centralized: the same model, the user's parameters at their least-squares
    # optimum (solved independently with numpy), one SGD step of the summed
    # regularized loss on the user's ratings.
    it = np.array(mine.item)
    x = np.c_[q0.numpy()[it], np.ones(len(it))]
    y = np.array(mine.rating) - cfg.mu - b0.numpy()[it]
    ridge = len(it) * np.diag([cfg.reg_factors] * 3 + [cfg.reg_bias])
    theta = np.linalg.solve(x.T @ x + ridge, x.T @ y)
    model = BiasedMF(train.n_users, train.n_items, 3, global_mean=cfg.mu, dtype=torch.float64)
    with torch.no_grad():
        model.item_factors.copy_(q0)
        model.item_bias.copy_(b0)
        model.user_factors[user] = torch.as_tensor(theta[:3])
        model.user_bias[user] = float(theta[3])
    opt = SGD([model.item_factors, model.item_bias], lr=cfg.local_lr)
    loss = batch_loss(
        model,
        torch.as_tensor(np.array(mine.user)),
        torch.as_tensor(it),
        torch.as_tensor(np.array(mine.rating)),
        reg_factors=cfg.reg_factors,
        reg_bias=cfg.reg_bias,
        reduction="sum",
    )
    opt.zero_grad()
    loss.backward()
    opt.step()
    torch.testing.assert_close(
        trainer.server.item_factors, model.item_factors.detach(), atol=1e-12, rtol=1e-10
    )
    torch.testing.assert_close(
        trainer.server.item_bias, model.item_bias.detach(), atol=1e-12, rtol=1e-10
    )
    torch.testing.assert_close(
        trainer.population.user_factors[user], torch.as_tensor(theta[:3]), atol=1e-12, rtol=1e-10
    )
    assert not torch.equal(trainer.server.item_factors, q0)  # the step did something


# -- nothing about the user leaves the client ----------------------------------------------


def _identity(identities, c):
    return {"identity": identities[c]} if identities else {}


def _drive(proto, inputs):
    """Run one round of sessions; return every client's sent bytes and the server's result."""
    ids = sorted(inputs)
    dim = len(next(iter(inputs.values())))
    identities: dict[int, object] = {}
    if isinstance(proto, protocols.SecAgg):  # the actively secure variant, enrolled here
        roster, identities = enroll(ids)
        proto = proto.with_roster(roster)
    server = proto.server(ids, dim, round=1)
    clients = {c: proto.client(c, dim, round=1, **_identity(identities, c)) for c in ids}
    sent: dict[int, list[bytes]] = {c: [] for c in ids}
    to_server: list[bytes] = []
    for c, s in clients.items():
        for m in s.start() + s.provide_input(inputs[c]):
            sent[c].append(m.to_bytes())
            to_server.append(sent[c][-1])
    to_clients = [m.to_bytes() for m in server.start()]
    while not server.finished:
        if not to_clients and not to_server:
            to_clients = [m.to_bytes() for m in server.close_stage()]
        for payload in to_server:
            to_clients += [m.to_bytes() for m in server.receive(payload)]
        to_server = []
        for payload in to_clients:
            msg = protocols.Message.from_bytes(payload)
            for m in clients[msg.recipient].receive(payload):
                sent[m.sender].append(m.to_bytes())
                to_server.append(sent[m.sender][-1])
        to_clients = []
    return sent, server.result


@pytest.mark.parametrize(
    "proto",
    [protocols.Plaintext(), protocols.SecAggPlus(bits=32, clip=4.0)],
    ids=["plaintext", "secagg+"],
)
def test_user_factors_never_appear_in_any_message(proto):
    train, test = _small(n_users=8, n_items=12, per_user=6, seed=2)
    trainer = FederatedTrainer(train, test, Plan("plaintext"), n_factors=3, rounds=1)
    cohort = trainer.population.client_ids
    inputs = trainer.client_uploads(cohort, Plan("plaintext"))
    dim = trainer.layout.dim
    assert dim == train.n_items * (3 + 1) + train.n_items  # item params + per-item weights only
    assert all(v.shape == (dim,) for v in inputs.values())
    sent, result = _drive(proto, inputs)
    np.testing.assert_allclose(result.total, sum(inputs.values()), atol=1e-6)
    for cid in cohort:
        p = trainer.population.user_factors[int(cid)].numpy()
        b = float(trainer.population.user_bias[int(cid)])
        assert np.abs(p).min() > 0 and b != 0  # there is something to leak
        blob = b"".join(sent[int(cid)])
        secrets = [p.astype(np.float64).tobytes(), p.astype(np.float32).tobytes()]
        secrets += [np.float64(v).tobytes() for v in (*p, b)]
        secrets += [np.float64(v).byteswap().tobytes() for v in (*p, b)]
        for secret in secrets:
            assert secret not in blob
        vectors = []
        for payload in sent[int(cid)]:
            msg = protocols.Message.from_bytes(payload)
            for value in vars(msg).values():
                vec = getattr(value, "values", value)
                if isinstance(vec, np.ndarray) and vec.ndim == 1 and vec.size > 1:
                    vectors.append(vec)
        # The one vector a client sends is an item-space vector, nothing longer.
        assert [v.size for v in vectors] == [dim]


# -- accuracy ----------------------------------------------------------------------------


def test_short_synthetic_run_beats_the_global_mean_by_far():
    train, test = random_split(synthetic(150, 100, 30, rank=4, seed=1), 0.2, seed=1)
    baseline = rmse(global_mean_predictions(train, test), test.rating)
    trainer = FederatedTrainer(train, test, Plan("plaintext"), rounds=12, n_factors=4, seed=1)
    ledger = trainer.run()
    assert ledger.last.rmse < 0.8 * baseline
    assert ledger.rows[-1].rmse < ledger.rows[0].rmse


def test_secure_aggregation_matches_plaintext_up_to_quantization():
    train, test = _small(n_users=30, n_items=20, per_user=10, seed=4)
    finals = {}
    for name in ("plaintext", "secagg+"):
        t = FederatedTrainer(
            train, test, Plan(name), rounds=3, n_factors=2, seed=4, protocol_seed=7
        )
        t.run()
        finals[name] = (t.server.item_factors.clone(), t.ledger.last.rmse)
    torch.testing.assert_close(finals["plaintext"][0], finals["secagg+"][0], atol=1e-5, rtol=0)
    assert abs(finals["plaintext"][1] - finals["secagg+"][1]) < 1e-5


def test_rows_account_costs_and_sampling():
    train, test = _small(seed=5)
    t = FederatedTrainer(train, test, Plan("secagg+", q=0.5, dropout=0.2), rounds=3, n_factors=2)
    ledger = t.run()
    for row in ledger:
        assert row.status == "ok" and 0 < row.sampled <= t.population.n_clients
        assert row.survivors == row.sampled - round(0.2 * row.sampled)
        assert row.bytes_down_model == row.sampled * t.server.model_bytes
        assert row.bytes_down > row.bytes_down_model and row.bytes_up > row.survivors * t.layout.dim
        assert row.client_seconds >= row.train_seconds > 0
        assert row.epsilon == float("inf")  # no DP: the release is not private


def test_empty_and_local_rounds_release_nothing_or_account_conservatively():
    train, test = _small(seed=6)
    plans = iter([Plan("local"), Plan("plaintext", q=1e-3, clip=1.0, noise_multiplier=1.0)])
    t = FederatedTrainer(train, test, lambda r, ledger: next(plans, None), rounds=5)
    q0 = t.server.item_factors.clone()
    ledger = t.run()
    assert [r.status for r in ledger] == ["local", "empty"]
    assert ledger[0].epsilon == 0.0 and ledger[0].events == []
    assert 0.0 < ledger[1].epsilon < float("inf") and len(ledger[1].events) == 1
    assert torch.equal(t.server.item_factors, q0)


def test_an_aborted_round_releases_nothing_and_keeps_the_training_cost():
    """A real abort: SecAgg with threshold 1.0 cannot finish once a client drops."""
    train, test = _small(seed=8)
    plan = Plan("secagg", threshold=1.0, dropout=0.2, clip=1.0, noise_multiplier=1.0)
    t = FederatedTrainer(train, test, plan, rounds=1, n_factors=2)
    q0 = t.server.item_factors.clone()
    (row,) = t.run()
    assert row.status == "aborted" and "error" in t.last and "agg" not in t.last
    assert row.events == [] and row.epsilon == 0.0  # nothing released, nothing composed
    assert row.survivors == 0 and row.bytes_up == 0 and row.bytes_down == 0
    assert row.bytes_down_model == row.sampled * t.server.model_bytes
    assert row.client_seconds == row.train_seconds > 0 and row.server_seconds == 0.0
    assert torch.equal(t.server.item_factors, q0)


def test_the_transport_hook_returns_the_round_as_a_value():
    """A hook that reports its own outcome: the row is built from it alone."""
    from recsys.federated import RoundOutcome

    train, test = _small(seed=9)

    class Reported(FederatedTrainer):
        def run_protocol(self, t, plan, sigma, cohort):
            real = super().run_protocol(t, plan, sigma, cohort)
            return RoundOutcome(
                train_seconds=2.5,
                total=real.total,
                survivors=real.survivors,
                stats=real.stats,
                events=real.events,
            )

    t = Reported(train, test, Plan("plaintext"), rounds=1, n_factors=2)
    (row,) = t.run()
    stats = t.last["agg"].stats
    assert row.train_seconds == 2.5
    assert row.client_seconds == stats.client_seconds + 2.5
    assert row.bytes_up == stats.bytes_up
    assert row.bytes_down == stats.bytes_down + row.bytes_down_model
    assert row.survivors == t.population.n_clients


def test_target_epsilon_plan_is_calibrated_and_spent():
    train, test = _small(seed=7)
    plan = Plan("secagg+", clip=1.0, target_epsilon=3.0, q=0.5, count_weight=0.3)
    t = FederatedTrainer(train, test, plan, rounds=4, delta=1e-4, n_factors=2)
    ledger = t.run()
    assert len(ledger) == 4
    assert ledger.last.epsilon <= 3.0 + 1e-9 and ledger.last.epsilon > 2.9
    assert len({r.sigma for r in ledger}) == 1 and ledger.last.sigma > 0
