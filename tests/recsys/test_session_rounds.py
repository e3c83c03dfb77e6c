"""The trainer over multi-round protocol sessions (Plan.session_rounds): one key setup for
several training rounds, dropouts leave the session, the ledger shows the setup apart."""

from __future__ import annotations

import pytest
import torch

from protocols.clock import LognormalDelays
from recsys.data import random_split, synthetic
from recsys.federated import FederatedTrainer
from recsys.federated.timed import TimedTrainer
from recsys.plan import DEFAULT_SESSION_ROUNDS, Plan


def _small(seed=3):
    return random_split(synthetic(30, 20, 10, rank=3, seed=seed), 0.2, seed=seed)


def test_plan_defaults_to_multi_round_sessions_only_where_that_is_secure():
    assert Plan("secagg+").session_length(100) == DEFAULT_SESSION_ROUNDS
    assert Plan("secagg").session_length(4) == 4  # capped by the rounds left
    assert Plan("secagg+", q=0.5).session_length(100) == 1  # sampled cohorts
    assert Plan("plaintext").session_length(100) == 1
    assert Plan("paillier").session_length(100) == 1
    # Distributed noise would thin out with the session's participants.
    dist = Plan("secagg+", clip=1.0, noise_multiplier=1.0, dp_mode="distributed")
    assert dist.session_length(100) == 1
    assert dist.replace(session_rounds=3).session_length(100) == 3
    central = Plan("secagg+", clip=1.0, noise_multiplier=1.0)
    assert central.session_length(100) == DEFAULT_SESSION_ROUNDS
    assert Plan("secagg+", session_rounds=1).session_length(100) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"protocol": "secagg+", "q": 0.5, "session_rounds": 3},
        {"protocol": "paillier", "session_rounds": 2},
        {"protocol": "plaintext", "session_rounds": 2},
        {"protocol": "secagg", "session_rounds": 0},
        {"protocol": "secagg", "session_rounds": 2.0},
    ],
)
def test_plan_refuses_a_session_length_it_cannot_run(kwargs):
    with pytest.raises(ValueError, match="session_rounds"):
        Plan(**kwargs)


def test_one_setup_serves_several_rounds_and_the_ledger_shows_it_apart():
    train, test = _small()
    plan = Plan("secagg+", session_rounds=3, semi_honest=True)
    t = FederatedTrainer(train, test, plan, rounds=5, n_factors=2, seed=3, protocol_seed=5)
    ledger = t.run()
    t.close()
    assert [r.session_round for r in ledger] == [0, 1, 2, 0, 1]
    for row in ledger:
        if row.session_round == 0:
            assert row.setup_bytes > 0 and row.setup_client_seconds > 0
            assert row.setup_bytes < row.bytes_up + row.bytes_down - row.bytes_down_model
        else:
            assert row.setup_bytes == 0 and row.setup_client_seconds == 0.0
    # A later round sends no keys or shares: fewer protocol bytes than the setup round.
    proto_bytes = [r.bytes_up + r.bytes_down - r.bytes_down_model for r in ledger]
    assert proto_bytes[1] < proto_bytes[0] and proto_bytes[4] < proto_bytes[3]


def test_dropouts_leave_the_session_and_a_new_setup_brings_everyone_back():
    train, test = _small(seed=4)
    plan = Plan("secagg", session_rounds=3, dropout=0.1, semi_honest=True)
    t = FederatedTrainer(train, test, plan, rounds=4, n_factors=2, seed=4, protocol_seed=6)
    ledger = t.run()
    t.close()
    n = t.population.n_clients
    sampled = [r.sampled for r in ledger]
    # 10% drop at the input stage each round and stay out until the next setup.
    assert sampled[0] == n and sampled[1] == ledger.rows[0].survivors
    assert sampled[2] == ledger.rows[1].survivors
    assert ledger.rows[3].session_round == 0 and sampled[3] == n
    for row in ledger:
        assert row.survivors == row.sampled - round(0.1 * row.sampled)


def test_multi_round_sessions_train_exactly_like_single_round_ones():
    # The same uploads summed by a session per round or one session for all rounds:
    # the same model up to quantization (both sums are exact in the ring).
    train, test = _small(seed=5)
    finals = {}
    for length in (1, 4):
        plan = Plan("secagg+", session_rounds=length, semi_honest=True)
        t = FederatedTrainer(train, test, plan, rounds=4, n_factors=2, seed=5, protocol_seed=9)
        t.run()
        t.close()
        finals[length] = t.server.item_factors.clone()
    torch.testing.assert_close(finals[1], finals[4], atol=1e-5, rtol=0)


def test_the_default_trainer_runs_the_active_variant_in_sessions():
    train, test = _small(seed=6)
    t = FederatedTrainer(train, test, Plan("secagg+"), rounds=3, n_factors=2, seed=6)
    ledger = t.run()
    t.close()
    assert [r.session_round for r in ledger] == [0, 1, 2]
    assert all(r.status == "ok" for r in ledger)


def test_timed_rounds_after_the_setup_pay_only_their_own_round_trips():
    train, test = _small(seed=7)
    delays = LognormalDelays(seed=1, network_median=1.0, compute_median=0.1)

    def run(length):
        plan = Plan("secagg+", session_rounds=length, semi_honest=True)
        t = TimedTrainer(train, test, plan, rounds=3, n_factors=2, seed=7, delays=delays)
        ledger = t.run()
        t.close()
        return [r.sim_seconds for r in ledger]

    single, multi = run(1), run(3)
    # Same devices and the same first round; later rounds have 2 round trips, not 4.
    assert multi[0] == pytest.approx(single[0])
    assert multi[2] - multi[1] < single[2] - single[1]


def test_evaluations_share_one_session_and_give_the_single_round_metrics():
    train, test = _small(seed=8)
    rows = {}
    eval_rounds = {}
    for length in (1, 5):
        plan = Plan("secagg+", session_rounds=length, semi_honest=True)
        t = FederatedTrainer(train, test, plan, rounds=3, n_factors=2, seed=8, protocol_seed=2)
        seen = []
        for _ in range(3):
            rows.setdefault(length, []).append(t.step())
            seen.append(t.last["eval"].session_round)
        t.close()
        eval_rounds[length] = seen
    assert eval_rounds == {1: [0, 0, 0], 5: [0, 1, 2]}
    for a, b in zip(rows[1], rows[5], strict=True):
        assert a.rmse == pytest.approx(b.rmse, abs=1e-6) and a.hr10 == pytest.approx(b.hr10)
