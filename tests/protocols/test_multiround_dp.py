"""Differential privacy across the rounds of a multi-round SecAgg+ session.

Each round takes a fresh input and fresh noise, (DDG/Skellam) its own
rotation, and releases an event computed from that round's survivors.
"""

from __future__ import annotations

import numpy as np
import pytest

import protocols
from protocols import DifferentiallyPrivate, SimulatedSession
from secagg import privacy

DIM = 8
IDS = list(range(10))


def _session_rounds(proto, dropouts, seed=3):
    rng = np.random.default_rng(11)
    rounds = []
    with SimulatedSession(proto, IDS, DIM, seed=seed) as session:
        for drop in dropouts:
            inputs = {c: rng.uniform(-0.2, 0.2, DIM) for c in session.participants()}
            res = session.run_round(inputs, drop)
            rounds.append((inputs, res))
    return rounds


def test_rotation_seed_of_the_first_round_is_the_single_round_seed():
    # Hard-coded from the formula before multi-round sessions existed (commit 8ba3a02):
    # sha256(b"secagg-fl/dp-rotation\x00" + nonce) with nonce = bytes(range(32)).
    nonce = bytes(range(32))
    expected = "1fe69e8c022d5fcb1ae9282114cabba74e4583e2ef3d6442945014d3c1d42b60"
    assert DifferentiallyPrivate.rotation_seed(nonce).hex() == expected
    assert DifferentiallyPrivate.rotation_seed(nonce, 0).hex() == expected
    seeds = {DifferentiallyPrivate.rotation_seed(nonce, i) for i in range(5)}
    assert len(seeds) == 5


def test_distributed_noise_is_fresh_every_round_and_each_event_counts_that_rounds_survivors():
    inner = protocols.SecAggPlus(semi_honest=True, rounds=3, k=4, clip=8.0)
    proto = DifferentiallyPrivate(
        inner, mode="distributed", clip=1.0, noise_multiplier=0.5, expected_clients=10
    )
    rounds = _session_rounds(proto, [{}, {3: "masked_input"}, {}])
    noises = [res.total - sum(x[c] for c in res.survivors) for x, res in rounds]
    # Independent noise: no two rounds carry the same noise vector.
    for a in range(3):
        for b in range(a + 1, 3):
            assert not np.allclose(noises[a], noises[b], atol=1e-3)
    assert [len(res.survivors) for _, res in rounds] == [10, 9, 9]
    # sigma * sqrt(k / m) with k reporting shares of m = 10 (no dropout allowance).
    assert rounds[0][1].events == (privacy.GaussianEvent(0.5),)
    for _, res in rounds[1:]:
        (event,) = res.events
        assert event.noise_multiplier == pytest.approx(0.5 * np.sqrt(9 / 10))


def test_central_noise_has_the_configured_spread_over_many_rounds():
    inner = protocols.SecAgg(semi_honest=True, rounds=12, clip=64.0)
    proto = DifferentiallyPrivate(inner, mode="central", clip=1.0, noise_multiplier=2.0)
    rounds = _session_rounds(proto, [{}] * 12)
    noise = np.concatenate([res.total - sum(x[c] for c in res.survivors) for x, res in rounds])
    # 96 draws of N(0, (sigma * clip)^2 = 4): the sample std is within 25% of 2
    # except with probability < 1e-3 (chi-square with 96 degrees of freedom).
    assert 1.5 < noise.std() < 2.5
    assert all(res.events == (privacy.GaussianEvent(2.0),) for _, res in rounds)


@pytest.mark.parametrize("mode", ["ddg", "skellam"])
def test_integer_mechanisms_decode_every_round_of_a_session(mode):
    inner = protocols.SecAggPlus(semi_honest=True, rounds=3, k=4, bits=40, clip=4.0)
    proto = DifferentiallyPrivate(
        inner, mode=mode, clip=1.0, noise_multiplier=0.05, expected_clients=10
    )
    rounds = _session_rounds(proto, [{}, {5: "masked_input"}, {}])
    for inputs, res in rounds:
        exact = sum(inputs[c] for c in res.survivors)
        # sigma = 0.05 * clip: the decoded totals sit near the exact sums (the
        # rotation of round i inverted with round i's own seed).
        assert np.abs(res.total - exact).max() < 0.5
        (event,) = res.events
        assert event == proto.event_for(DIM, len(res.survivors))

