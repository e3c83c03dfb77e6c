"""User-level accounting of buffered releases (protocols.buffered.ContributionAccountant).

Each buffer release is one unamplified event; a client's ε is the composition of
the buffers holding its updates, and the run's ε the worst client's. Checked
against dp_accounting (an independent implementation) composing the same
Gaussian events, and against a run of the DP buffered driver, whose per-client
cap bounds every client's count of releases.
"""

from __future__ import annotations

import dp_accounting as dpa
import numpy as np
import pytest
from dp_accounting.rdp import rdp_privacy_accountant as dpa_rdp

from protocols import DifferentiallyPrivate, registry
from protocols.buffered import AsyncDriver, BufferedServer, ContributionAccountant
from protocols.clock import LognormalDelays
from secagg import privacy

DELTA = 1e-5


def _dpa(kind: str, sigmas: list[float]) -> float:
    event = dpa.ComposedDpEvent([dpa.GaussianDpEvent(s) for s in sigmas])
    if kind == "rdp":
        acct = dpa_rdp.RdpAccountant()
    else:
        acct = dpa.pld.PLDAccountant(value_discretization_interval=1e-4)
    acct.compose(event)
    return float(acct.get_epsilon(DELTA))


@pytest.mark.parametrize("kind", ["rdp", "pld"])
def test_epsilon_is_the_worst_clients_composition(kind):
    acct = ContributionAccountant(kind)
    assert acct.epsilon(DELTA) == 0.0
    # Client 0 is in buffers 1 and 3, client 1 in 1, 2 and 3, client 2 in 2.
    acct.record([0, 1], [privacy.GaussianEvent(2.0)])
    acct.record([1, 2], [privacy.GaussianEvent(1.5)])
    acct.record([0, 1], [privacy.GaussianEvent(3.0)])
    assert acct.contributions() == 3
    theirs = _dpa(kind, [2.0, 1.5, 3.0])
    rel = 1e-9 if kind == "rdp" else 1e-2
    assert acct.epsilon(DELTA) == pytest.approx(theirs, rel=rel)
    # Not the composition of every release (client 1's three are the worst).
    assert acct.epsilon(DELTA) > _dpa(kind, [2.0, 3.0]) * (1 + rel)


def test_no_amplification_is_claimed():
    # q = 1: the same ε as an unsampled Gaussian, above the Poisson-sampled one.
    acct = ContributionAccountant("rdp")
    acct.record([7], [privacy.GaussianEvent(1.0)] * 5)
    unsampled = _dpa("rdp", [1.0] * 5)
    acct_sampled = dpa_rdp.RdpAccountant()
    acct_sampled.compose(dpa.PoissonSampledDpEvent(0.1, dpa.GaussianDpEvent(1.0)), 5)
    assert acct.epsilon(DELTA) == pytest.approx(unsampled, rel=1e-9)
    assert acct.epsilon(DELTA) > 2 * acct_sampled.get_epsilon(DELTA)


def test_a_dp_buffered_run_stays_within_the_capped_budget():
    sigma, cap = 2.0, 3
    delays = LognormalDelays(client_sigma=1.0, seed=5)
    proto = lambda n: DifferentiallyPrivate(  # noqa: E731
        registry.create("plaintext", registry.ProtocolOptions(clip=10.0)),
        mode="central", clip=1.0, noise_multiplier=sigma,
    )
    acct = ContributionAccountant("rdp")
    events_per_release = []

    def apply(release):
        if release.result is not None:
            events_per_release.append(release.result.events)
            acct.record([t.client for t in release.contributors], release.result.events)

    driver = AsyncDriver(
        BufferedServer(3, max_staleness=10), range(6), delays, concurrency=4, protocol=proto,
        train=lambda ts: {t.id: np.ones(2) for t in ts}, apply=apply, max_tasks=cap, seed=1,
        protocol_seed=1,
    )
    driver.run(100)  # stops when every client used its cap
    assert max(driver.tasks.values()) == cap
    assert 1 <= acct.contributions() <= cap
    # Every release is one unamplified Gaussian event of the configured σ.
    assert all(evs == (privacy.GaussianEvent(sigma),) for evs in events_per_release)
    assert acct.epsilon(DELTA) == pytest.approx(_dpa("rdp", [sigma] * acct.contributions()))
    assert acct.epsilon(DELTA) <= _dpa("rdp", [sigma] * cap) * (1 + 1e-9)
