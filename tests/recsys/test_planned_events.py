"""The event a round is planned to cause is the event its server reports (issue 12, item 5).

Both come from one function, :meth:`protocols.DifferentiallyPrivate.event_for`:
``recsys.plan.round_event`` asks it of the round's DP configuration before
the round, the DP server asks it of the same configuration for the clients
that reported. These tests run real rounds and compare.
"""

from __future__ import annotations

import numpy as np
import pytest

import protocols
from protocols.dp_modes import DP_MODES
from recsys.data import random_split, synthetic
from recsys.federated import FederatedTrainer, build_protocol
from recsys.plan import Plan, round_event
from secagg import privacy


@pytest.mark.parametrize("mode", DP_MODES)
@pytest.mark.parametrize(("q", "dropout"), [(1.0, 0.0), (0.5, 0.0), (1.0, 0.25)])
def test_the_planned_event_is_the_event_of_the_round(mode, q, dropout):
    n, dim, sigma = 8, 24, 0.8
    plan = Plan("secagg", q=q, clip=1.0, noise_multiplier=sigma, dp_mode=mode, dropout=dropout)
    proto = build_protocol(plan, n_invited=n, noise_multiplier=sigma)
    rng = np.random.default_rng(1)
    inputs = {c: rng.normal(0, 0.2, dim) for c in range(n)}
    # The planned clients report, the rest drop at the input stage (as the trainer does).
    dropped = range(n - plan.reporting(n))
    agg = protocols.simulate(proto, inputs, dropout={c: proto.INPUT_STAGE for c in dropped}, seed=2)
    assert len(agg.survivors) == plan.reporting(n) == n - round(dropout * n)
    assert agg.events == (round_event(plan, n_invited=n, dim=dim),)


def test_the_trainer_composes_the_planned_event_when_everyone_reports():
    train, test = random_split(synthetic(12, 20, 6, rank=2, seed=0), 0.2, seed=0)
    plan = Plan("secagg+", clip=1.0, noise_multiplier=1.0, dp_mode="ddg", count_weight=0.3)
    trainer = FederatedTrainer(train, test, plan, rounds=1, accountant="rdp", n_factors=2)
    row = trainer.step()
    assert row is not None and row.status == "ok" and row.survivors == row.sampled
    (event,) = [privacy.event_from_json(e) for e in row.events]
    planned = round_event(plan, n_invited=row.sampled, dim=trainer.layout.dim)
    assert isinstance(event, privacy.DistributedDiscreteGaussianEvent) and event == planned


def test_a_dp_plan_s_planned_event_needs_the_cohort_and_dimension():
    with pytest.raises(ValueError, match="cohort"):
        round_event(Plan("secagg", clip=1.0, noise_multiplier=1.0))
