"""Distribution tests for the CSPRNG-driven noise samplers (fixed DeterministicRandom seeds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

from secagg.privacy import sampling
from secagg.randomness import DeterministicRandom

# Fixed seeds make every test deterministic; the thresholds are those a correct
# sampler passes comfortably (a wrong law fails them by many orders of magnitude).
P_MIN = 1e-4


def chi_square_p(samples: np.ndarray, support: np.ndarray, pmf: np.ndarray) -> float:
    """Chi-square goodness of fit, lumping values outside ``support`` (and sparse bins) together."""
    pmf = pmf / pmf.sum()
    n = samples.size
    observed = np.array([np.count_nonzero(samples == k) for k in support], dtype=np.float64)
    expected = pmf * n
    keep = expected >= 20
    obs = [*observed[keep], n - observed[keep].sum()]
    exp = [*expected[keep], n - expected[keep].sum()]
    if exp[-1] < 1e-9:  # nothing lumped: drop the empty tail bin
        obs, exp = obs[:-1], exp[:-1]
        obs[-1] += n - sum(obs)
    return float(stats.chisquare(obs, exp).pvalue)


@pytest.mark.parametrize("sigma", [0.4, 1.0, 3.7, 25.0])
def test_discrete_gaussian_chi_square(sigma: float) -> None:
    rng = DeterministicRandom(f"dg-{sigma}")
    x = sampling.discrete_gaussian(60_000, sigma, rng)
    assert x.dtype == np.int64
    half = math.ceil(12 * sigma) + 2
    support = np.arange(-half, half + 1)
    pmf = np.exp(-(support.astype(np.float64) ** 2) / (2 * sigma * sigma))
    assert chi_square_p(x, support, pmf) > P_MIN
    # Symmetry and variance against the exact value.
    var = sampling.discrete_gaussian_variance(sigma)
    assert abs(x.mean()) < 5 * math.sqrt(var / x.size)
    assert abs(x.var() / var - 1) < 5 * math.sqrt(2 / x.size) * 1.5


def test_discrete_gaussian_large_sigma_moments() -> None:
    # KLS parameters put σ in the hundreds or thousands (integer units).
    sigma = 3000.0
    x = sampling.discrete_gaussian(100_000, sigma, DeterministicRandom("dg-large"))
    assert abs(x.mean()) < 5 * sigma / math.sqrt(x.size)
    assert abs(x.std() / sigma - 1) < 0.02
    # Kolmogorov–Smirnov against the continuous normal is accurate at this σ.
    assert stats.kstest(x / sigma, "norm").pvalue > P_MIN


def test_discrete_gaussian_variance_matches_direct_sum() -> None:
    for sigma in [0.3, 0.9, 1.7, 2.5, 10.0]:
        k = np.arange(-400, 401, dtype=np.float64)
        w = np.exp(-k * k / (2 * sigma * sigma))
        assert sampling.discrete_gaussian_variance(sigma) == pytest.approx(
            float((k * k * w).sum() / w.sum()), rel=1e-12
        )
        assert sampling.discrete_gaussian_variance(sigma) <= sigma * sigma


@pytest.mark.parametrize("lam", [0.7, 4.0, 9.99, 10.0, 37.5, 400.0])
def test_poisson_chi_square(lam: float) -> None:
    x = sampling.poisson(50_000, lam, DeterministicRandom(f"poisson-{lam}"))
    support = np.arange(0, int(lam + 12 * math.sqrt(lam) + 20))
    pmf = np.exp(support * math.log(lam) - lam - special.gammaln(support + 1.0))
    assert chi_square_p(x, support, pmf) > P_MIN


@pytest.mark.parametrize("mu", [2.0, 30.0, 700.0])
def test_skellam_chi_square(mu: float) -> None:
    x = sampling.skellam(50_000, mu, DeterministicRandom(f"skellam-{mu}"))
    half = int(12 * math.sqrt(mu) + 10)
    support = np.arange(-half, half + 1)
    pmf = special.ive(np.abs(support), mu)  # e^{-μ} I_|k|(μ): Sk(μ/2, μ/2)
    assert chi_square_p(x, support, pmf) > P_MIN
    assert abs(x.var() / mu - 1) < 5 * math.sqrt(2 / x.size) * 1.5


def test_geometric_and_discrete_laplace_laws() -> None:
    rng = DeterministicRandom("geom")
    rate = 0.3
    g = sampling.geometric(50_000, rate, rng)
    support = np.arange(0, 80)
    assert chi_square_p(g, support, np.exp(-rate * support)) > P_MIN
    y = sampling.discrete_laplace(50_000, 2.5, rng)
    support = np.arange(-60, 61)
    assert chi_square_p(y, support, np.exp(-np.abs(support) / 2.5)) > P_MIN


def test_geometric_tail_is_not_truncated() -> None:
    # With rate 4 the chunk is one step: values >= 1 need the memoryless restart.
    g = sampling.geometric(200_000, 4.0, DeterministicRandom("geom-tail"))
    assert g.max() >= 2
    # P[G >= 1] = e^-4.
    assert abs(np.mean(g >= 1) - math.exp(-4)) < 5 * math.sqrt(math.exp(-4) / g.size)


def test_bernoulli_exp_probabilities() -> None:
    rng = DeterministicRandom("bexp")
    for x in [0.0, 0.3, 1.0, 2.5, 7.2]:
        draws = sampling.bernoulli_exp(np.full(100_000, x), rng)
        p = math.exp(-x)
        assert abs(draws.mean() - p) < 5 * math.sqrt(p * (1 - p) / draws.size) + 1e-12
    with pytest.raises(ValueError):
        sampling.bernoulli_exp(np.array([-1.0]))


def test_box_muller_gaussian() -> None:
    x = sampling.gaussian(100_001, 2.5, DeterministicRandom("bm"))
    assert x.shape == (100_001,)
    assert stats.kstest(x / 2.5, "norm").pvalue > P_MIN
    # The 53-bit uniforms cap the radius at sqrt(106 ln 2).
    assert np.abs(x).max() <= 2.5 * math.sqrt(106 * math.log(2)) + 1e-9
    assert sampling.gaussian(0).shape == (0,)
    assert np.all(sampling.gaussian(5, 0.0) == 0)


def test_reproducible_per_seed_and_seed_sensitive() -> None:
    for fn, arg in [
        (sampling.discrete_gaussian, 5.0),
        (sampling.skellam, 9.0),
        (sampling.gaussian, 1.0),
        (sampling.poisson, 50.0),
    ]:
        a = fn(500, arg, DeterministicRandom(7))
        b = fn(500, arg, DeterministicRandom(7))
        c = fn(500, arg, DeterministicRandom(8))
        assert np.array_equal(a, b)
        assert not np.array_equal(a, c)


def test_zero_scale_and_validation() -> None:
    assert np.all(sampling.discrete_gaussian(10, 0.0) == 0)
    assert np.all(sampling.skellam(10, 0.0) == 0)
    assert sampling.discrete_gaussian(0, 3.0).shape == (0,)
    for bad in [-1.0, math.inf, math.nan]:
        with pytest.raises(ValueError):
            sampling.discrete_gaussian(3, bad)
        with pytest.raises(ValueError):
            sampling.skellam(3, bad)
    with pytest.raises(ValueError):
        sampling.discrete_gaussian(-1, 1.0)
    with pytest.raises(TypeError):
        sampling.gaussian(3, "1.0")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        sampling.geometric(3, 0.0)


def test_default_rng_is_the_os_csprng() -> None:
    # Two calls without rng must differ (SystemRandom), and numpy's RNG is never used.
    a = sampling.discrete_gaussian(64, 10.0)
    b = sampling.discrete_gaussian(64, 10.0)
    assert not np.array_equal(a, b)


def test_samplers_never_touch_numpy_rng(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("numpy RNG used for noise")

    for name in ["default_rng", "normal", "random", "rand", "randn", "poisson", "randint", "seed"]:
        monkeypatch.setattr(np.random, name, forbidden)
    rng = DeterministicRandom("no-numpy")
    sampling.discrete_gaussian(100, 3.0, rng)
    sampling.skellam(100, 50.0, rng)
    sampling.gaussian(100, 1.0, rng)
    sampling.poisson(100, 3.0, rng)


def test_poisson_refuses_lambdas_beyond_float_precision():
    # Regression: at lam ~ 1.3e16 the PTRS sampler's variance drifted to ~1.5x lam.
    from secagg.privacy.sampling import MAX_POISSON_LAMBDA, poisson

    with pytest.raises(ValueError, match="MAX_POISSON_LAMBDA"):
        poisson(4, MAX_POISSON_LAMBDA * 2)
