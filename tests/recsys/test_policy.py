"""Plans are validated; callable policies see (round, ledger); the budget policy never overspends; cost policy."""

from __future__ import annotations

import math

import pytest

from recsys.data import random_split, synthetic
from recsys.federated import FederatedTrainer
from recsys.ledger import Ledger, LedgerRow, RunInfo
from recsys.policy import (
    BudgetPolicy,
    CostAwarePolicy,
    FixedPolicy,
    Plan,
    as_policy,
    estimate_cost,
    round_event,
)
from secagg import privacy


def _data(seed=0):
    return random_split(synthetic(40, 30, 12, rank=3, seed=seed), 0.2, seed=seed)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"protocol": "secagg++"},
        {"protocol": "SecAgg"},
        {"q": 0.0},
        {"q": 1.5},
        {"q": -0.1},
        {"q": float("nan")},
        {"q": True},
        {"local_epochs": 0},
        {"local_epochs": 1.5},
        {"bits": 1},
        {"protocol": "paillier", "bits": 53},
        {"noise_multiplier": 1.0},  # noise without a clip
        {"clip": 1.0},  # clip without noise
        {"clip": 1.0, "noise_multiplier": 1.0, "target_epsilon": 3.0},
        {"clip": -1.0, "noise_multiplier": 1.0},
        {"clip": 1.0, "noise_multiplier": 0.0},
        {"clip": 1.0, "target_epsilon": math.inf},
        {"clip": 1.0, "noise_multiplier": 1.0, "dp_mode": "local"},
        {"protocol": "plaintext", "clip": 1.0, "noise_multiplier": 1.0, "dp_mode": "distributed"},
        {"protocol": "paillier", "clip": 1.0, "noise_multiplier": 1.0, "dp_mode": "ddg"},
        {"count_weight": 5.0, "coordinate_clip": 4.0},
        {"dropout": 1.0},
        {"threshold": 0.0},
        {"threshold": True},
        {"key_bits": 512},
    ],
)
def test_invalid_plans_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        Plan(**kwargs)


def test_valid_plans_and_replace():
    p = Plan("ckks", q=0.25, clip=0.5, noise_multiplier=1.2, dp_mode="distributed")
    assert p.dp and p.releases and p.replace(q=1.0).q == 1.0
    with pytest.raises(ValueError):
        p.replace(q=2.0)
    assert Plan.from_dict(p.to_dict()) == p
    assert not Plan("local").releases
    assert Plan("secagg+", clip=1.0, noise_multiplier=1.0, dp_mode="ddg").dp


def test_as_policy():
    plan = Plan("plaintext")
    assert as_policy(plan) == FixedPolicy(plan)
    fn = lambda r, ledger: plan  # noqa: E731
    assert as_policy(fn) is fn
    with pytest.raises(TypeError):
        as_policy("secagg")


def test_callable_policy_is_called_with_round_and_ledger():
    train, test = _data()
    calls = []

    def policy(round, ledger):
        calls.append((round, ledger, len(ledger)))
        return Plan("plaintext") if round <= 3 else None

    t = FederatedTrainer(train, test, policy, rounds=10, n_factors=2)
    ledger = t.run()
    assert [c[0] for c in calls] == [1, 2, 3, 4]
    assert all(c[1] is t.ledger for c in calls)
    assert [c[2] for c in calls] == [0, 1, 2, 3]  # rows written before the next call
    assert len(ledger) == 3


def test_policy_returning_garbage_is_an_error():
    train, test = _data()
    t = FederatedTrainer(train, test, lambda r, ledger: "plaintext", rounds=2, n_factors=2)
    with pytest.raises(TypeError):
        t.step()


@pytest.mark.parametrize("accountant", ["pld", "rdp"])
def test_budget_policy_never_exceeds_the_target(accountant):
    train, test = _data(1)
    base = Plan("secagg+", q=0.5, clip=1.0, noise_multiplier=1.0, count_weight=0.3)
    policy = BudgetPolicy(2.0, base=base, rounds=4)
    # Run longer than the budget was planned for: the policy must stop.
    t = FederatedTrainer(
        train, test, policy, rounds=8, delta=1e-4, accountant=accountant, n_factors=2
    )
    ledger = t.run()
    assert all(row.epsilon <= 2.0 + 1e-9 for row in ledger)
    assert 4 <= len(ledger) < 8 and policy.exhausted_at == len(ledger) + 1
    assert ledger.last.epsilon > 1.8  # and it does spend the budget
    assert {row.sigma for row in ledger} == {policy.noise_multiplier}


def test_budget_policy_can_switch_to_a_non_releasing_plan():
    train, test = _data(2)
    base = Plan("plaintext", q=1.0, clip=1.0, noise_multiplier=1.0, count_weight=0.3)
    policy = BudgetPolicy(3.0, base=base, rounds=2, on_exhausted=Plan("local"))
    t = FederatedTrainer(train, test, policy, rounds=4, delta=1e-4, n_factors=2)
    ledger = t.run()
    assert [r.protocol for r in ledger] == ["plaintext", "plaintext", "local", "local"]
    assert ledger[3].epsilon == ledger[1].epsilon <= 3.0
    with pytest.raises(ValueError):
        BudgetPolicy(3.0, base=base, on_exhausted=Plan("plaintext"))


def test_budget_policy_needs_a_dp_base():
    ledger = Ledger(1e-5, info=RunInfo(rounds=3))
    with pytest.raises(ValueError):
        BudgetPolicy(1.0, base=Plan("secagg+"))(1, ledger)


def test_round_event():
    assert isinstance(round_event(Plan("local")), privacy.NoOpEvent)
    assert isinstance(round_event(Plan("secagg")), privacy.NonPrivateEvent)
    e = round_event(Plan("secagg", q=0.1, clip=1.0, noise_multiplier=2.0), n_invited=10, dim=8)
    assert e == privacy.PoissonSampledEvent(0.1, privacy.GaussianEvent(2.0))


def _ledger(n_clients=1000, dim=20_000):
    return Ledger(1e-5, info=RunInfo(n_clients=n_clients, upload_dim=dim, model_bytes=4 * dim))


def test_cost_policy_switches_to_fit_the_upload_budget():
    paillier = Plan("paillier", q=0.05)
    plus32 = Plan("secagg+", q=1.0, bits=32)
    plus16 = Plan("secagg+", q=1.0, bits=16)
    ledger = _ledger()
    big = CostAwarePolicy([paillier, plus32, plus16], max_upload_bytes=1e9)
    assert big(1, ledger) == paillier  # 50 expected clients: Paillier allowed, and it fits
    assert CostAwarePolicy([paillier.replace(q=0.5), plus32])(1, ledger) == plus32  # 500 > 200
    tight = CostAwarePolicy([paillier, plus32, plus16], max_upload_bytes=50_000)
    assert tight(1, ledger) == plus16
    est16 = estimate_cost(plus16, 1000, 20_000, 80_000).upload_bytes
    est32 = estimate_cost(plus32, 1000, 20_000, 80_000).upload_bytes
    assert est16 < 50_000 < est32
    none_fit = CostAwarePolicy([plus32, plus16], max_upload_bytes=10.0)
    assert none_fit(1, ledger) == plus16  # cheapest fallback
    assert CostAwarePolicy([plus32], max_upload_bytes=10.0, fallback="stop")(1, ledger) is None


def test_cost_policy_prefers_observed_costs():
    ledger = _ledger()
    plan = Plan("secagg+", bits=32)
    # An observed round where SecAgg+ turned out cheap.
    ledger.append(
        LedgerRow(
            round=1,
            protocol="secagg+",
            rmse=1.0,
            mae=1.0,
            epsilon=math.inf,
            delta=1e-5,
            bytes_up=1000 * 100,
            bytes_down=1000 * 200,
            client_seconds=1.0,
            server_seconds=1.0,
            survivors=1000,
            sampled=1000,
            plan=plan.to_dict(),
        )
    )
    pol = CostAwarePolicy([plan, Plan("plaintext")], max_upload_bytes=150)
    est = pol.estimate(plan, ledger)
    assert est.source == "observed" and est.upload_bytes == 100
    assert pol(2, ledger) == plan


def test_cost_policy_validation():
    with pytest.raises(ValueError):
        CostAwarePolicy([])
    with pytest.raises(ValueError):
        CostAwarePolicy([Plan()], max_upload_bytes=-1)
    with pytest.raises(ValueError):
        CostAwarePolicy([Plan()], fallback="maybe")


def test_budget_policy_with_discrete_gaussian_stays_within_the_target():
    train, test = _data(3)
    base = Plan("secagg", clip=1.0, noise_multiplier=1.0, dp_mode="ddg", count_weight=0.3)
    policy = BudgetPolicy(5.0, base=base, rounds=3)
    t = FederatedTrainer(train, test, policy, rounds=3, delta=1e-4, accountant="rdp", n_factors=2)
    ledger = t.run(5)
    assert len(ledger) == 3 and all(r.epsilon <= 5.0 for r in ledger)
    assert ledger.last.epsilon > 4.5
    events = [privacy.event_from_json(e) for r in ledger for e in r.events]
    assert all(isinstance(e, privacy.DistributedDiscreteGaussianEvent) for e in events)


def test_discrete_modes_need_the_rdp_accountant_before_anything_is_released():
    train, test = _data(3)
    plan = Plan("secagg+", clip=1.0, noise_multiplier=1.0, dp_mode="skellam", count_weight=0.3)
    t = FederatedTrainer(train, test, plan, rounds=2, n_factors=2)  # PLD accountant
    q0 = t.server.item_factors.clone()
    with pytest.raises(ValueError, match="rdp"):
        t.step()
    assert len(t.ledger) == 0 and (t.server.item_factors == q0).all()


def test_ddg_with_client_sampling_is_accountable():
    # Poisson-sampled DDG rounds are accounted by RDP (Zhu-Wang subsampling bound).
    from recsys.data import random_split, synthetic
    from recsys.federated import FederatedTrainer

    train, test = random_split(
        synthetic(n_users=24, n_items=16, ratings_per_user=8, seed=1), 0.2, seed=0
    )
    plan = Plan(protocol="secagg", q=0.5, clip=1.0, noise_multiplier=1.0, dp_mode="ddg")
    ledger = FederatedTrainer(train, test, plan, rounds=2, accountant="rdp", n_factors=2).run()
    sampled = [r for r in ledger.rows if r.status == "ok"]
    assert sampled and all(0 < r.epsilon < float("inf") for r in sampled)
    assert any("PoissonSampled" in e for r in sampled for e in r.events)
