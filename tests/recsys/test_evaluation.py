"""Evaluation on the devices: per-client sums, leave-one-out ranking, totals through a protocol."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recsys.data import Ratings, random_split, synthetic
from recsys.federated import (
    ClientPopulation,
    FederatedTrainer,
    client_vectors,
    evaluation_protocol,
    from_sums,
    from_totals,
    heldout_ranks,
    solve_user_params,
)
from recsys.federated.evaluation import FIELDS, MAX_TEST_RATINGS
from recsys.ledger import LedgerRow, read_jsonl
from recsys.metrics import hit_and_ndcg
from recsys.policy import Plan


def test_hit_and_ndcg_known_values():
    hit, gain = hit_and_ndcg([0, 1, 9, 10, 500], k=10)
    np.testing.assert_array_equal(hit, [1, 1, 1, 0, 0])
    np.testing.assert_allclose(gain, [1.0, 1 / math.log2(3), 1 / math.log2(11), 0.0, 0.0])


def test_heldout_rank_counts_unrated_items_scored_higher():
    # One user, no factors (k = 0 is not allowed: k = 1 with zero vectors), so the
    # score of item i is mu + b_u + b_i: the ranking is the item-bias order.
    item_bias = torch.tensor([0.5, 0.1, 0.9, 0.3, 0.7], dtype=torch.float64)
    rated = torch.tensor([[False, True, False, False, True]])  # items 1 and 4 rated (4 held out)
    zeros = torch.zeros(1, 1, dtype=torch.float64)
    rank = heldout_ranks(
        zeros,
        torch.zeros(1, dtype=torch.float64),
        torch.zeros(5, 1, dtype=torch.float64),
        item_bias,
        torch.tensor([4]),
        rated | torch.tensor([[False, False, False, False, True]]),
        global_mean=3.0,
    )
    assert rank.tolist() == [1]  # only item 2 (0.9) of the unrated 0, 2, 3 beats 0.7


def _ratings(rows, n_users=3, n_items=6):
    u, i, r, ts = zip(*rows, strict=True)
    return Ratings(u, i, r, ts, n_users, n_items)


def test_the_held_out_item_is_the_last_rated_test_item():
    train = _ratings([(0, 0, 4, 1), (1, 1, 3, 1), (2, 2, 5, 1)])
    test = _ratings([(0, 3, 4, 50), (0, 4, 2, 90), (0, 5, 1, 10), (1, 5, 3, 7), (1, 4, 3, 7)])
    pop = ClientPopulation(train, test, 2)
    assert pop.heldout_item.tolist() == [4, 4, -1]  # user 1: a tie, the later row wins
    assert pop.rated[0].tolist() == [True, False, False, True, True, True]
    assert pop.rated[2].tolist() == [False, False, True, False, False, False]


def _model(n_items, k, seed=1):
    g = torch.Generator().manual_seed(seed)
    q = 0.3 * torch.randn(n_items, k, generator=g, dtype=torch.float64)
    return q, 0.2 * torch.randn(n_items, generator=g, dtype=torch.float64)


def test_client_sums_against_a_per_user_loop():
    """Each user's sums, recomputed one user at a time with plain numpy."""
    train, test = random_split(synthetic(30, 25, 10, seed=3), 0.3, seed=3)
    k, mu, lo, hi = 3, 3.0, 1.0, 5.0
    q, b = _model(train.n_items, k)
    pop = ClientPopulation(train, test, k)
    kw = {"global_mean": mu, "reg_factors": 0.1, "reg_bias": 0.1}
    sums = pop.client_sums(q, b, clip=(lo, hi), **kw)
    p, bu, _ = solve_user_params(
        q[torch.as_tensor(np.array(train.item))],
        b[torch.as_tensor(np.array(train.item))],
        torch.as_tensor(np.array(train.rating)),
        torch.as_tensor(np.array(train.user)),
        train.n_users,
        **kw,
    )
    qn, bn, pn, bun = q.numpy(), b.numpy(), p.numpy(), bu.numpy()
    for u in range(train.n_users):
        mine = test.user == u
        pred = np.clip(mu + bun[u] + bn[test.item[mine]] + qn[test.item[mine]] @ pn[u], lo, hi)
        err = pred - test.rating[mine]
        expect = [np.sum(err**2), np.sum(np.abs(err)), mine.sum(), float(mine.any())]
        np.testing.assert_allclose(sums[u, :4], expect, atol=1e-12)
        if not mine.any():
            assert sums[u, 4:].tolist() == [0.0, 0.0, 0.0]
            continue
        last = np.flatnonzero(mine)[np.argmax(test.timestamp[mine] * 10_000 + np.flatnonzero(mine))]
        target = test.item[last]
        seen = set(train.item[train.user == u]) | set(test.item[mine])
        score = mu + bun[u] + bn + qn @ pn[u]
        rank = sum(1 for i in range(train.n_items) if i not in seen and score[i] > score[target])
        assert sums[u, 6] == 1.0
        assert sums[u, 4] == float(rank < 10)
        assert sums[u, 5] == pytest.approx(1 / math.log2(rank + 2) if rank < 10 else 0.0)


def test_vectors_and_totals_round_trip():
    sums = np.array([[4.0, 2.0, 3.0, 1.0, 1.0, 0.5, 1.0], [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0]])
    vectors = client_vectors(sums, (1.0, 5.0))
    assert vectors.min() >= 0.0 and vectors.max() <= 1.0
    ev = from_totals(vectors.sum(axis=0), (1.0, 5.0))
    assert ev.n == 4 and ev.clients == 2 and ev.ranked == 2
    assert ev.rmse == pytest.approx(math.sqrt(5.0 / 4)) and ev.mae == pytest.approx(3.0 / 4)
    assert ev.hr == pytest.approx(0.5) and ev.ndcg == pytest.approx(0.25)
    assert from_sums(sums.sum(axis=0)) == pytest.approx(ev)
    too_many = sums.copy()
    too_many[0, 2] = MAX_TEST_RATINGS + 1
    with pytest.raises(ValueError, match="held-out ratings"):
        client_vectors(too_many, (1.0, 5.0))
    assert len(FIELDS) == sums.shape[1]


def test_evaluation_protocol_has_no_dp_and_clip_one():
    plan = Plan("secagg+", clip=1.0, noise_multiplier=1.0, dp_mode="central")
    proto = evaluation_protocol(plan)
    assert proto.NAME == "secagg+"
    assert proto.clip == 1.0
    assert evaluation_protocol(Plan("plaintext")).NAME == "plaintext"


@pytest.mark.parametrize("protocol", ["plaintext", "secagg+"])
def test_trainer_evaluates_through_the_protocol_and_agrees_with_the_clear_sum(protocol, tmp_path):
    train, test = random_split(synthetic(40, 30, 12, seed=0), 0.25, seed=0)
    trainer = FederatedTrainer(
        train,
        test,
        Plan(protocol),
        rounds=2,
        n_factors=3,
        protocol_seed=7,
        ledger_path=str(tmp_path / "ledger.jsonl"),
    )
    ledger = trainer.run()
    row = ledger.last
    assert trainer.last["eval"].survivors  # the evaluation ran as a protocol round
    assert row.eval_bytes > 0
    cfg = trainer.config
    factors, bias = trainer.server.served()
    clear = trainer.population.evaluate(
        factors,
        bias,
        global_mean=cfg.mu,
        reg_factors=cfg.reg_factors,
        reg_bias=cfg.reg_bias,
        clip=cfg.rating_scale,
        bias_scale_reg=cfg.bias_scale_reg,
    )
    tol = 1e-12 if protocol == "plaintext" else 1e-6
    assert row.rmse == pytest.approx(clear.rmse, abs=tol)
    assert row.mae == pytest.approx(clear.mae, abs=tol)
    assert row.hr10 == pytest.approx(clear.hr, abs=tol)
    assert row.ndcg10 == pytest.approx(clear.ndcg, abs=tol)
    assert 0.0 <= row.hr10 <= 1.0 and 0.0 <= row.ndcg10 <= row.hr10
    again = read_jsonl(tmp_path / "ledger.jsonl")[-1]
    assert again.hr10 == row.hr10 and again.ndcg10 == row.ndcg10


def test_rounds_without_evaluation_have_nan_ranking_columns():
    train, test = random_split(synthetic(20, 20, 8, seed=1), 0.25, seed=1)
    ledger = FederatedTrainer(train, test, Plan("plaintext"), rounds=3, eval_every=3).run()
    assert math.isnan(ledger[0].hr10) and math.isnan(ledger[0].ndcg10) and ledger[0].eval_bytes == 0
    assert math.isfinite(ledger[2].hr10)
    row = LedgerRow.from_dict(ledger[0].to_dict())
    assert math.isnan(row.hr10)
