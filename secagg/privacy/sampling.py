"""Noise samplers driven by a cryptographic random source (never numpy's RNG).

Whoever can predict the noise can subtract it, so every sampler here draws its
randomness from a :class:`~secagg.randomness.RandomSource` (the OS CSPRNG by
default; :class:`~secagg.randomness.DeterministicRandom` for tests only) and
uses numpy purely for vectorized arithmetic on the resulting uniforms.

Samplers
--------
- :func:`gaussian`: continuous N(0, σ²) by Box–Muller on 53-bit uniforms.
- :func:`geometric`, :func:`bernoulli_exp`, :func:`discrete_laplace`: the
  building blocks of Canonne, Kamath, Steinke (2020).
- :func:`discrete_gaussian`: N_Z(0, σ²), P[X = x] ∝ exp(-x²/(2σ²)) on the
  integers, by the rejection sampler of Canonne, Kamath, Steinke, "The Discrete
  Gaussian for Differential Privacy", NeurIPS 2020 (Algorithm 3), vectorized.
- :func:`poisson` and :func:`skellam`: Poisson by inversion (λ < 10) or
  Hörmann's PTRS transformed rejection (λ ≥ 10); Skellam(μ) as the difference
  of two independent Poisson(μ/2) (Agarwal, Kairouz, Liu, NeurIPS 2021).

Floating-point caveats (read before relying on a guarantee)
-----------------------------------------------------------
Continuous noise computed in floating point is *not* the distribution the
proof is about: the set of reachable doubles ``x + noise`` depends on ``x``,
and Mironov ("On Significance of the Least Significant Bits for Differential
Privacy", CCS 2012) shows the low-order bits can reveal ``x`` outright. The
Box–Muller sampler below is therefore only for mechanisms whose output stays
in floating point anyway (central DP-FedAvg); where the protocol is integer
(SecAgg over Z_{2^bits}) use :func:`discrete_gaussian` or :func:`skellam`,
whose outputs are integers, so there are no low-order bits to leak.

The integer samplers are not bit-exact either: they compare 53-bit uniforms
against ``exp`` / ``log`` evaluated in float64 (the reference algorithm of
Canonne et al. uses exact rational arithmetic, which is orders of magnitude
slower in Python). We keep every float comparison in a range where it is
accurate: a Bernoulli(exp(-x)) is split into ``exp(-frac(x))`` (a probability
>= 1/e, absolute error <= 2^-53) and a geometric count compared with
``floor(x)``; the geometric sampler draws in chunks whose probabilities are all
>= e^-16, so every probability it realises has relative error <= 2^-53 · e^16
≈ 1e-9, and its tail is *not* truncated (it restarts by memorylessness).
Hence the discrete Gaussian sampler has no tail truncation, and its pmf is
within a relative ~1e-9 of the ideal one, which changes a privacy loss by
about 1e-9 (negligible next to any epsilon in use). The Poisson sampler for
λ < 10 truncates the support where the float64 CDF reaches 1 (mass < 2^-52);
PTRS is exact up to float64 rounding of its acceptance test.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from secagg.randomness import RandomSource, default_rng, uniform_floats

__all__ = [
    "bernoulli_exp",
    "discrete_gaussian",
    "discrete_gaussian_variance",
    "discrete_laplace",
    "gaussian",
    "geometric",
    "poisson",
    "skellam",
]

# Chunk size, in units of the exponent, of the geometric sampler: every
# probability compared against a 53-bit uniform is >= e^-16, so the uniform's
# 2^-53 granularity costs a relative error of at most 2^-53 * e^16 ≈ 1e-9.
_CHUNK_EXPONENT = 16.0


def _count(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    return int(n)


def _scale(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return value


def _open_uniforms(n: int, rng: RandomSource) -> np.ndarray:
    """``n`` uniforms in (0, 1] (so their logarithm is finite)."""
    return 1.0 - uniform_floats(n, rng)


def gaussian(n: int, sigma: float = 1.0, rng: RandomSource | None = None) -> np.ndarray:
    """``n`` samples of the continuous Gaussian N(0, sigma²) (float64), by Box–Muller.

    Box, Muller, "A Note on the Generation of Random Normal Deviates", Ann.
    Math. Statist. 1958: for U1 in (0, 1], U2 in [0, 1), ``R = sqrt(-2 ln U1)``
    and ``(R cos 2πU2, R sin 2πU2)`` are two independent standard normals.
    Uniforms are 53-bit (:func:`secagg.randomness.uniform_floats`) from ``rng``.

    Caveats: U1 >= 2^-53 caps |sample| at sqrt(106 ln 2)·σ ≈ 8.57σ (the cut
    tail has mass ≈ 1e-17), the far tail is coarsely quantized, and the result
    is a float: see the module docstring and Mironov (CCS 2012) for why
    float noise on a float value can leak it. Prefer :func:`discrete_gaussian`
    when the protocol works on integers.
    """
    n = _count(n)
    sigma = _scale(sigma, "sigma")
    source = default_rng(rng)
    pairs = (n + 1) // 2
    u = uniform_floats(2 * pairs, source)
    radius = np.sqrt(-2.0 * np.log(1.0 - u[:pairs]))  # 1 - u in (0, 1]: finite log
    theta = (2.0 * math.pi) * u[pairs:]
    out = np.concatenate((radius * np.cos(theta), radius * np.sin(theta)))[:n]
    return out * sigma


def geometric(n: int, rate: float, rng: RandomSource | None = None) -> np.ndarray:
    """``n`` samples G >= 0 with ``P[G >= k] = exp(-rate · k)`` (int64).

    Inversion ``floor(-ln(U) / rate)`` within chunks of ``K = floor(16 / rate)``
    (at least 1): a draw that lands at or beyond ``K`` adds ``K`` and draws
    again, which is exact by memorylessness of the geometric law. So the tail
    is never truncated, and every probability realised by comparing a 53-bit
    uniform is >= e^-16 (relative error <= ~1e-9; see the module docstring).
    """
    n = _count(n)
    rate = _scale(rate, "rate")
    if rate <= 0:
        raise ValueError("rate must be > 0")
    source = default_rng(rng)
    chunk = max(1, math.floor(_CHUNK_EXPONENT / rate))
    out = np.zeros(n, dtype=np.int64)
    active = np.arange(n)
    while active.size:
        g = np.floor(-np.log(_open_uniforms(active.size, source)) / rate)
        done = g < chunk
        out[active[done]] += g[done].astype(np.int64)
        out[active[~done]] += chunk
        active = active[~done]
    return out


def bernoulli_exp(x: np.ndarray, rng: RandomSource | None = None) -> np.ndarray:
    """Independent Bernoulli(exp(-x_i)) draws for an array ``x >= 0`` (bool array).

    Canonne, Kamath, Steinke (2020), Algorithm 1 decomposes exp(-x) for
    x > 1 into exp(-1)^floor(x) · exp(-frac(x)); we do the same with one
    uniform for exp(-frac(x)) (a probability >= 1/e, so the uniform's
    granularity is harmless) and one geometric count G with
    ``P[G >= k] = e^-k`` compared against floor(x).
    """
    arr = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError("bernoulli_exp needs finite x >= 0")
    source = default_rng(rng)
    flat = arr.reshape(-1)
    whole = np.floor(flat)
    frac = flat - whole
    result = uniform_floats(flat.size, source) < np.exp(-frac)
    big = np.flatnonzero(whole > 0)
    if big.size:
        result[big] &= geometric(big.size, 1.0, source) >= whole[big]
    return result.reshape(arr.shape)


def discrete_laplace(n: int, scale: float, rng: RandomSource | None = None) -> np.ndarray:
    """``n`` samples with ``P[Y = y] ∝ exp(-|y| / scale)`` on the integers (int64).

    The difference of two independent geometrics with ratio exp(-1/scale) is
    two-sided geometric (discrete Laplace) exactly; see Canonne, Kamath,
    Steinke (2020), Section 5 (their Algorithm 2 samples the same law).
    """
    n = _count(n)
    scale = _scale(scale, "scale")
    if scale <= 0:
        raise ValueError("scale must be > 0")
    source = default_rng(rng)
    rate = 1.0 / scale
    return geometric(n, rate, source) - geometric(n, rate, source)


def discrete_gaussian(n: int, sigma: float, rng: RandomSource | None = None) -> np.ndarray:
    """``n`` samples of the discrete Gaussian N_Z(0, sigma²) (int64).

    ``P[X = x] = exp(-x²/(2σ²)) / Σ_y exp(-y²/(2σ²))`` for integer x. Rejection
    sampler of Canonne, Kamath, Steinke, "The Discrete Gaussian for
    Differential Privacy", NeurIPS 2020, Algorithm 3: with ``t = floor(σ)+1``,
    propose Y from the discrete Laplace of scale t and accept with probability
    ``exp(-(|Y| - σ²/t)² / (2σ²))``. Vectorized: all pending coordinates are
    proposed at once and only the rejected ones are redrawn.

    No tail truncation; pmf accurate to a relative ~1e-9 (float64 comparisons,
    see the module docstring). ``sigma = 0`` returns zeros. Its variance is
    slightly below σ² (:func:`discrete_gaussian_variance`).
    """
    n = _count(n)
    sigma = _scale(sigma, "sigma")
    if sigma == 0:
        return np.zeros(n, dtype=np.int64)
    source = default_rng(rng)
    t = math.floor(sigma) + 1
    s2 = sigma * sigma
    center = s2 / t
    out = np.empty(n, dtype=np.int64)
    pending = np.arange(n)
    while pending.size:
        y = discrete_laplace(pending.size, t, source)
        excess = np.abs(y).astype(np.float64) - center
        accept = bernoulli_exp(excess * excess / (2.0 * s2), source)
        out[pending[accept]] = y[accept]
        pending = pending[~accept]
    return out


def discrete_gaussian_variance(sigma: float) -> float:
    """The variance of N_Z(0, sigma²), which is strictly below sigma² for sigma > 0.

    Canonne, Kamath, Steinke (2020) show Var < σ², and the gap is
    of order exp(-2π²σ²) — beyond float64 precision once σ >= 2, where σ² is
    returned. Below that the sum is evaluated directly over |x| <= 40σ + 1.
    """
    sigma = _scale(sigma, "sigma")
    if sigma == 0:
        return 0.0
    if sigma >= 2.0:
        return sigma * sigma
    k = np.arange(1, math.ceil(40 * sigma) + 2, dtype=np.float64)
    w = np.exp(-k * k / (2 * sigma * sigma))
    return float(2 * np.sum(k * k * w) / (1 + 2 * np.sum(w)))


def _poisson_small(n: int, lam: float, rng: RandomSource) -> np.ndarray:
    """Poisson(λ) for λ < 10 by inversion against a float64 CDF table."""
    kmax = int(lam + 40 * math.sqrt(lam) + 60)
    k = np.arange(kmax + 1, dtype=np.float64)
    pmf = np.exp(k * math.log(lam) - lam - special.gammaln(k + 1))
    cdf = np.cumsum(pmf)
    u = uniform_floats(n, rng)
    # side="right": X = #{k : cdf[k] <= u}, so P[X = k] = cdf[k] - cdf[k-1].
    idx = np.searchsorted(cdf, u, side="right")
    return np.minimum(idx, kmax).astype(np.int64)


def _poisson_ptrs(n: int, lam: float, rng: RandomSource) -> np.ndarray:
    """Poisson(λ) for λ >= 10: Hörmann's PTRS transformed rejection.

    W. Hörmann, "The transformed rejection method for generating Poisson random
    variables", Insurance: Mathematics and Economics 12 (1993); the constants
    are those of the paper (also used by numpy's ``random_poisson_ptrs``).
    """
    slam = math.sqrt(lam)
    loglam = math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    log_invalpha = math.log(1.1239 + 1.1328 / (b - 3.4))
    vr = 0.9277 - 3.6224 / (b - 2)
    out = np.empty(n, dtype=np.int64)
    pending = np.arange(n)
    while pending.size:
        m = pending.size
        u = uniform_floats(m, rng) - 0.5
        v = uniform_floats(m, rng)
        us = 0.5 - np.abs(u)
        with np.errstate(divide="ignore", invalid="ignore"):
            k = np.floor((2 * a / us + b) * u + lam + 0.43)
            fast = (us >= 0.07) & (v <= vr)
            bad = (us <= 0) | (k < 0) | ((us < 0.013) & (v > us))
            kk = np.where(bad, 0.0, k)
            slow = (
                np.log(v) + log_invalpha - np.log(a / (us * us) + b)
                <= -lam + kk * loglam - special.gammaln(kk + 1)
            )
        accept = fast | (~bad & slow)
        out[pending[accept]] = k[accept].astype(np.int64)
        pending = pending[~accept]
    return out


MAX_POISSON_LAMBDA = float(2**48)


def poisson(n: int, lam: float, rng: RandomSource | None = None) -> np.ndarray:
    """``n`` samples of Poisson(lam) (int64), from the CSPRNG.

    λ < 10: inversion (support cut where the float64 CDF reaches 1, mass
    < 2^-52). λ >= 10: PTRS (Hörmann 1993), exact up to float64 rounding of
    the acceptance test. λ is limited to :data:`MAX_POISSON_LAMBDA` (2^48):
    beyond it, float64 cannot represent the samples' spread faithfully and
    the variance drifts (measured 1.5x too large at λ ≈ 1.3e16).
    """
    n = _count(n)
    lam = _scale(lam, "lam")
    if lam > MAX_POISSON_LAMBDA:
        raise ValueError(f"lam={lam:.3g} exceeds MAX_POISSON_LAMBDA=2^48 (float64 precision)")
    source = default_rng(rng)
    if lam == 0:
        return np.zeros(n, dtype=np.int64)
    if lam < 10:
        return _poisson_small(n, lam, source)
    return _poisson_ptrs(n, lam, source)


def skellam(n: int, mu: float, rng: RandomSource | None = None) -> np.ndarray:
    """``n`` samples of the symmetric Skellam law with variance ``mu`` (int64).

    ``Poisson(mu/2) - Poisson(mu/2)``: the parametrisation of Agarwal,
    Kairouz, Liu, "The Skellam Mechanism for Differentially Private Federated
    Learning", NeurIPS 2021 (pmf ``e^-μ I_k(μ)``). Closed under summation:
    the sum of n independent Skellam(μ_i) is Skellam(Σ μ_i), which is why it
    suits distributed noise under secure aggregation.
    """
    n = _count(n)
    mu = _scale(mu, "mu")
    source = default_rng(rng)
    return poisson(n, mu / 2.0, source) - poisson(n, mu / 2.0, source)
