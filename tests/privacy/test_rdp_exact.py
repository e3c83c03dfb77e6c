"""The integer-mechanism RDP formulas against exact Rényi divergences computed with mpmath.

Independent of the code under test: the divergences are sums over the integer
support at 40 significant digits, with a rigorous bound on the truncated tail,
so each exact value is known to lie in an interval ``[lo, hi]`` with
``hi - lo`` below 1e-12 relative. A formula is sound on this grid if it is
``>= hi`` everywhere.

Skellam (Agarwal, Kairouz, Liu, NeurIPS 2021, Theorem 3.5, integer orders):
the accountant's fractional-order extension (cumulant interpolation) must
upper-bound the exact divergence and be no larger than the other proven
extension, AKL's bound at ⌈α⌉ (the formula the code base used to have a second
copy of). Distributed discrete Gaussian with one share and σ < 1/2: the formula
must upper-bound the exact single discrete Gaussian divergence (Canonne,
Kamath, Steinke, NeurIPS 2020), which is why that event is accepted.
"""

from __future__ import annotations

import functools
import math

import pytest

from secagg.privacy.events import DistributedDiscreteGaussianEvent, SkellamEvent
from secagg.privacy.rdp_formulas import rdp_distributed_discrete_gaussian, rdp_skellam

mp = pytest.importorskip("mpmath")

mp.mp.dps = 40
ALPHAS = (1.5, 2.0, 2.5, 3.0, 4.5, 8.0, 10.5)
TAIL_RTOL = 1e-12


@functools.cache
def _skellam_pmf(mu: float, half_width: int) -> dict[int, object]:
    """P[X = k] for X ~ Sk(μ) (two Poisson(μ/2)), variance μ: e^{-μ} I_|k|(μ), |k| <= half_width."""
    v = mp.mpf(mu)
    return {k: mp.exp(-v) * mp.besseli(abs(k), v) for k in range(-half_width, half_width + 1)}


def _skellam_divergence(mu: float, shift: int, alpha: float) -> tuple[float, float]:
    """``(lo, hi)`` around D_α(Sk(μ) + shift || Sk(μ)) (both directions are equal by symmetry).

    Sum over |k| <= K. Tail: for m >= 0, with p0 = P[X = 0], the series of the
    Bessel function gives e^{-μ}(μ/2)^m/m! <= P[X = m] <= p0 (μ/2)^m/m!, so each
    tail summand p(k-Δ)^α p(k)^{1-α} (k > K) is at most U(k-Δ)^α L(k)^{1-α}, whose
    successive ratios (μ/2)(k+1)^{α-1}/(k-Δ+1)^α decrease in k: a geometric
    series bounds the tail. The same for k < -K with |k-Δ| = |k| + Δ. The lower
    bound L is loose by about I_0(μ)^(α-1), so K must reach far past the bulk.
    """
    a = mp.mpf(alpha)
    v = mp.mpf(mu)
    d = int(shift)
    big_k = int(2 * mu + 20 * math.sqrt(mu) + 10 * alpha * d + 40)
    p = _skellam_pmf(mu, big_k + d)
    total = mp.fsum(p[k - d] ** a * p[k] ** (1 - a) for k in range(-big_k, big_k + 1))
    log_p0, log_half = mp.log(p[0]), mp.log(v / 2)

    def log_upper(m: int) -> object:
        return log_p0 + m * log_half - mp.loggamma(m + 1)

    def log_lower(m: int) -> object:
        return -v + m * log_half - mp.loggamma(m + 1)

    m = big_k + 1
    tail = mp.mpf(0)
    for far, near in ((m - d, m), (m + d, m)):  # k = +m pairs (m-Δ, m); k = -m pairs (m+Δ, m)
        first = mp.exp(a * log_upper(far) + (1 - a) * log_lower(near))
        ratio = (v / 2) * mp.mpf(near + 1) ** (a - 1) / mp.mpf(far + 1) ** a
        assert ratio < 1
        tail += first / (1 - ratio)
    assert tail / total < TAIL_RTOL
    return float(mp.log(total) / (a - 1)), float(mp.log(total + tail) / (a - 1))


def _akl_integer_bound(mu: float, l2: float, l1: float, alpha: float) -> float:
    """AKL Theorem 3.5 as printed (μ = aggregate variance), written out here independently."""
    return alpha * l2**2 / (2 * mu) + min(((2 * alpha - 1) * l2**2 + 6 * l1) / (4 * mu**2), 3 * l1 / (2 * mu))


# (aggregate variance μ, integer shift vector): the divergence of a product is the sum.
SKELLAM_CASES = [
    (1.0, (1,)),
    (4.0, (1,)),
    (4.0, (2,)),
    (25.0, (3,)),
    (100.0, (5,)),
    (10.0, (1, 1, 1, 1)),  # Δ₂ = 2, Δ₁ = 4
    (50.0, (3, 1)),  # Δ₂ = √10, Δ₁ = 4
]


@pytest.mark.slow
@pytest.mark.parametrize(("mu", "shift"), SKELLAM_CASES, ids=lambda c: str(c))
def test_skellam_formula_upper_bounds_the_exact_divergence(mu: float, shift: tuple[int, ...]) -> None:
    l2 = math.sqrt(sum(s * s for s in shift))
    l1 = float(sum(abs(s) for s in shift))
    event = SkellamEvent(l1_sensitivity=l1, l2_sensitivity=l2, mu=mu)
    ours = rdp_skellam(event, ALPHAS)
    for alpha, value in zip(ALPHAS, ours, strict=True):
        bounds = [_skellam_divergence(mu, s, alpha) for s in shift]
        lo, hi = sum(b[0] for b in bounds), sum(b[1] for b in bounds)
        assert hi - lo <= 1e-12 * hi
        assert value >= hi, (alpha, value, hi)
        ceiling = _akl_integer_bound(mu, l2, l1, math.ceil(alpha))
        if alpha == int(alpha):
            assert value == pytest.approx(ceiling, rel=1e-14)
        else:
            assert value <= ceiling
            if alpha > 2:  # strictly tighter than ε(⌈α⌉) off the integers above 2
                assert value < ceiling


def _discrete_gaussian_divergence(sigma: float, shift: int, alpha: float) -> object:
    """D_α(N_Z(shift, σ²) || N_Z(0, σ²)) as an mpmath number, summed over |k| <= K.

    The summand is e^{-(α(k-Δ)² + (1-α)k²)/(2σ²)} / Z; terms beyond K = αΔ + 40σ + 40
    are below e^{-800} relative to the peak and decay faster than geometrically.
    """
    a, s = mp.mpf(alpha), mp.mpf(sigma)
    big_k = int(alpha * shift + 40 * sigma + 40)
    ks = range(-big_k, big_k + 1)
    z = mp.fsum(mp.exp(-mp.mpf(k) ** 2 / (2 * s * s)) for k in ks)
    total = mp.fsum(mp.exp(-(a * (k - shift) ** 2 + (1 - a) * k**2) / (2 * s * s)) for k in ks) / z
    return mp.log(total) / (a - 1)


@pytest.mark.parametrize("sigma", [0.3, 0.4, 0.49, 1.5])
@pytest.mark.parametrize("shift", [1, 3])
def test_one_share_ddg_below_one_half_is_bounded(sigma: float, shift: int) -> None:
    event = DistributedDiscreteGaussianEvent(
        l2_sensitivity=float(shift), l1_sensitivity=float(shift), sigma=sigma, num_clients=1, dimension=1
    )
    ours = rdp_distributed_discrete_gaussian(event, ALPHAS)
    for alpha, value in zip(ALPHAS, ours, strict=True):
        # The formula is CKS's α Δ²/(2σ²) ...
        assert value == pytest.approx(alpha * shift**2 / (2 * sigma**2), rel=1e-14)
        # ... which bounds the exact divergence, compared at 40 digits (for σ = 1.5
        # the gap is ~1e-19, below float64 resolution; when αΔ is an integer the
        # two are equal, so allow the last digits of mpmath's rounding).
        closed_form = mp.mpf(alpha) * shift**2 / (2 * mp.mpf(sigma) ** 2)
        exact = _discrete_gaussian_divergence(sigma, shift, alpha)
        assert closed_form >= exact * (1 - mp.mpf(10) ** -35), (alpha, value, exact)
