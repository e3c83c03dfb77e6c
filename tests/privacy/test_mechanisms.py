"""DP-FedAvg mechanisms: clipping, central and distributed Gaussian noise, and their events."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from secagg.privacy.events import GaussianEvent, PoissonSampledEvent
from secagg.privacy.mechanisms import (
    central_gaussian,
    clip_l2,
    distributed_gaussian_event,
    distributed_gaussian_share,
    noise_clients,
)
from secagg.randomness import DeterministicRandom

finite = st.floats(min_value=-1e150, max_value=1e150, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(
    x=hnp.arrays(np.float64, st.integers(1, 50), elements=finite),
    clip=st.floats(min_value=1e-6, max_value=1e6),
)
def test_clip_l2_bounds_norm_and_keeps_direction(x: np.ndarray, clip: float) -> None:
    out, was_clipped = clip_l2(x, clip, return_clipped=True)
    norm = float(np.linalg.norm(x))
    assert float(np.linalg.norm(out)) <= clip
    assert was_clipped == (norm > clip)
    if not was_clipped:
        assert np.array_equal(out, x)
    else:
        # Same direction: out = x * positive scalar.
        scale = clip / norm
        assert np.allclose(out, x * scale, rtol=1e-12, atol=1e-300)
    assert out is not x


def test_clip_l2_plain_return_and_validation() -> None:
    v = np.array([3.0, 4.0])
    assert np.allclose(clip_l2(v, 1.0), [0.6, 0.8])
    assert isinstance(clip_l2(v, 10.0), np.ndarray)
    assert np.array_equal(clip_l2(np.zeros(3), 1.0), np.zeros(3))
    for bad in [0.0, -1.0, math.inf, math.nan]:
        with pytest.raises(ValueError):
            clip_l2(v, bad)
    with pytest.raises(ValueError):
        clip_l2(np.array([1.0, math.nan]), 1.0)


def test_central_gaussian_noise_and_event() -> None:
    total = np.full((400, 250), 3.0)
    noised, event = central_gaussian(
        total, clip=0.5, noise_multiplier=1.3, rng=DeterministicRandom("central")
    )
    assert event == GaussianEvent(1.3)
    assert noised.shape == total.shape
    err = (noised - total).ravel()
    std = 1.3 * 0.5
    assert abs(err.mean()) < 5 * std / math.sqrt(err.size)
    assert abs(err.std() / std - 1) < 5 * math.sqrt(0.5 / err.size)

    _, sampled = central_gaussian(
        total, clip=0.5, noise_multiplier=1.3, sampling_probability=0.01,
        rng=DeterministicRandom(0),
    )
    assert sampled == PoissonSampledEvent(0.01, GaussianEvent(1.3))


def test_central_gaussian_zero_noise_and_reproducibility() -> None:
    total = np.arange(10.0)
    out, event = central_gaussian(total, clip=1.0, noise_multiplier=0.0)
    assert np.array_equal(out, total)
    assert event == GaussianEvent(0.0)
    a, _ = central_gaussian(total, clip=1.0, noise_multiplier=1.0, rng=DeterministicRandom(1))
    b, _ = central_gaussian(total, clip=1.0, noise_multiplier=1.0, rng=DeterministicRandom(1))
    c, _ = central_gaussian(total, clip=1.0, noise_multiplier=1.0)  # OS CSPRNG
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    with pytest.raises(ValueError):
        central_gaussian(total, clip=1.0, noise_multiplier=-1.0)


def test_distributed_shares_sum_to_the_central_noise() -> None:
    n, clip, sigma, dim = 25, 2.0, 0.9, 4000
    rng = DeterministicRandom("shares")
    x = np.zeros(dim)
    total = sum(
        distributed_gaussian_share(x, clip=clip, noise_multiplier=sigma, expected_clients=n, rng=rng)
        for _ in range(n)
    )
    target = sigma * clip
    assert abs(np.std(total) / target - 1) < 5 * math.sqrt(0.5 / dim)
    assert distributed_gaussian_event(sigma, n, n) == GaussianEvent(sigma)


def test_shortfall_accounting_when_clients_drop() -> None:
    # 100 planned, 64 report: the sum has sqrt(64/100) of the planned std.
    event = distributed_gaussian_event(1.0, 100, 64)
    assert isinstance(event, GaussianEvent)
    assert event.noise_multiplier == pytest.approx(0.8)
    # The empirical std of 64 shares matches the event's multiplier.
    rng = DeterministicRandom("drop")
    total = sum(
        distributed_gaussian_share(np.zeros(3000), clip=1.0, noise_multiplier=1.0,
                                   expected_clients=100, rng=rng)
        for _ in range(64)
    )
    assert abs(np.std(total) / 0.8 - 1) < 5 * math.sqrt(0.5 / 3000)


def test_over_provisioning_for_dropout() -> None:
    # Planning for 20% dropout: 80 of 100 reporting meets the target exactly.
    assert noise_clients(100, 0.2) == pytest.approx(80.0)
    assert distributed_gaussian_event(1.5, 100, 80, dropout_rate=0.2) == GaussianEvent(1.5)
    # Everyone reporting gives more noise (more privacy) than the target.
    more = distributed_gaussian_event(1.5, 100, 100, dropout_rate=0.2)
    assert more.noise_multiplier == pytest.approx(1.5 * math.sqrt(100 / 80))
    share = distributed_gaussian_share(
        np.zeros(20_000), clip=1.0, noise_multiplier=1.5, expected_clients=100,
        dropout_rate=0.2, rng=DeterministicRandom("over"),
    )
    assert abs(np.std(share) / (1.5 / math.sqrt(80)) - 1) < 5 * math.sqrt(0.5 / 20_000)
    sampled = distributed_gaussian_event(1.5, 100, 80, dropout_rate=0.2, sampling_probability=0.1)
    assert sampled == PoissonSampledEvent(0.1, GaussianEvent(1.5))


def test_distributed_validation() -> None:
    with pytest.raises(ValueError):
        distributed_gaussian_event(1.0, 10, 0)
    with pytest.raises(ValueError):
        noise_clients(10, 1.0)
    with pytest.raises(ValueError):
        noise_clients(0)
    with pytest.raises(ValueError):
        distributed_gaussian_share(np.zeros(3), clip=0.0, noise_multiplier=1.0, expected_clients=3)
    # Shape follows x, including matrices.
    assert distributed_gaussian_share(
        np.zeros((4, 5)), clip=1.0, noise_multiplier=1.0, expected_clients=2
    ).shape == (4, 5)


def test_clip_l2_large_vector_is_tight_and_bounded() -> None:
    # Regression: at 2^20 coordinates the computed norm is many ulps off, which
    # once made the post-scaling shrink loop crawl one ulp at a time.
    x = np.linspace(-1.0, 1.0, 2**20)
    out = clip_l2(x, 1.0)
    norm = float(np.linalg.norm(out))
    assert norm <= 1.0
    assert 1.0 - norm < 1e-12
