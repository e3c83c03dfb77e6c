"""DP inside the protocols: the noise lands in the sum with the right scale, and the
round's event is the one an accountant needs."""

from __future__ import annotations

import numpy as np
import pytest

import protocols
from secagg import privacy


def _inputs(n: int, d: int, seed: int = 0) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {c: rng.normal(0, 0.3, d) for c in range(n)}


def _clipped_sum(inputs, survivors, clip):
    return np.sum([privacy.clip_l2(inputs[c], clip) for c in survivors], axis=0)


@pytest.mark.parametrize("mode", ["central", "distributed", "ddg", "skellam"])
def test_noise_scale_and_event(mode):
    n, d, sigma, clip = 12, 2048, 0.5, 1.0
    inputs = _inputs(n, d)
    inner = protocols.SecAggPlus(semi_honest=True, k=6, clip=8.0, bits=32)
    proto = protocols.DifferentiallyPrivate(
        inner, mode=mode, clip=clip, noise_multiplier=sigma, expected_clients=n
    )
    agg = protocols.simulate(proto, inputs, dropout={4: "masked_input"}, seed=3)
    assert agg.survivors == [c for c in range(n) if c != 4]
    error = agg.total - _clipped_sum(inputs, agg.survivors, clip)
    k, m = len(agg.survivors), n
    expected_std = sigma * clip * (np.sqrt(k / m) if mode != "central" else 1.0)
    # The sample std over 2048 coordinates is within ~5% of the truth w.h.p.
    assert abs(error.mean()) < 4 * expected_std / np.sqrt(d)
    assert 0.85 * expected_std < error.std() < 1.15 * expected_std
    (event,) = agg.events
    if mode == "central":
        assert event == privacy.GaussianEvent(sigma)
    elif mode == "distributed":
        assert event == privacy.GaussianEvent(sigma * np.sqrt(k / m))
    elif mode == "ddg":
        assert isinstance(event, privacy.DistributedDiscreteGaussianEvent)
        assert event.num_clients == k
    else:
        assert isinstance(event, privacy.SkellamEvent)
    # Every event is accountable.
    eps = privacy.RDPAccountant().compose(event).get_epsilon(1e-5)
    assert np.isfinite(eps) and eps > 0


def test_sampling_probability_wraps_event_and_plaintext_works():
    proto = protocols.DifferentiallyPrivate(
        protocols.Plaintext(),
        mode="central",
        clip=1.0,
        noise_multiplier=1.2,
        sampling_probability=0.1,
    )
    agg = protocols.simulate(proto, _inputs(5, 16), seed=0)
    assert agg.events == (privacy.PoissonSampledEvent(0.1, privacy.GaussianEvent(1.2)),)


def test_integer_modes_need_secagg():
    with pytest.raises(ValueError, match="SecAgg"):
        protocols.DifferentiallyPrivate(protocols.Plaintext(), mode="ddg")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "laplace"},
        {"clip": 0.0},
        {"noise_multiplier": float("nan")},
        {"expected_clients": 0},
        {"dropout_rate": 1.0},
        {"sampling_probability": 0.0},
    ],
)
def test_validation(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        protocols.DifferentiallyPrivate(protocols.SecAgg(semi_honest=True), **kwargs)


def test_dp_client_clips_to_l2_bound():
    # With a huge clip on the inner protocol and tiny noise, the sum is the sum of
    # L2-clipped inputs: a client with a large input contributes norm <= clip.
    inputs = {0: np.full(64, 10.0), 1: np.zeros(64), 2: np.zeros(64)}
    proto = protocols.DifferentiallyPrivate(
        protocols.SecAgg(semi_honest=True, clip=20.0),
        mode="distributed",
        clip=1.0,
        noise_multiplier=1e-6,
        expected_clients=3,
    )
    agg = protocols.simulate(proto, inputs, seed=0)
    assert np.linalg.norm(agg.total) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("mode", ["ddg", "skellam"])
def test_sampled_integer_rounds_are_accountable(mode):
    proto = protocols.DifferentiallyPrivate(
        protocols.SecAgg(semi_honest=True, bits=32),
        mode=mode,
        clip=1.0,
        noise_multiplier=1.0,
        sampling_probability=0.05,
        expected_clients=4,
    )
    agg = protocols.simulate(proto, _inputs(4, 32), seed=0)
    (event,) = agg.events
    assert isinstance(event, privacy.PoissonSampledEvent) and event.sampling_probability == 0.05
    sampled = privacy.RDPAccountant().compose(event, count=100).get_epsilon(1e-5)
    unsampled = privacy.RDPAccountant().compose(event.event, count=100).get_epsilon(1e-5)
    assert 0 < sampled < unsampled
