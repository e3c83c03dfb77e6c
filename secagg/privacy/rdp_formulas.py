"""RDP of each privacy event: the one place where the Rényi-DP formulas live.

Every function returns ε(α), the Rényi divergence of order α between the
outputs on neighbouring inputs (Mironov, "Rényi Differential Privacy", CSF
2017), at each requested order, for one occurrence of the event.
:class:`~secagg.privacy.rdp.RDPAccountant` composes them; mechanisms only
emit events and never compute RDP.

- Gaussian and Poisson-sampled Gaussian (:func:`rdp_poisson_sampled_gaussian`,
  ``q = 1`` is the plain Gaussian α/(2σ²)): Mironov, Talwar, Zhang, "Rényi
  Differential Privacy of the Sampled Gaussian Mechanism" (arXiv:1908.10530,
  2019). Exact at integer orders (binomial expansion, Sec. 3.3), and exact up
  to quadrature error (~1e-12 relative) at fractional orders by integrating
  the defining integral. dp_accounting's fractional-order series bounds every
  term by its absolute value, which over-estimates RDP at small orders (by up
  to ~50%) and sometimes gives up (``inf``); ours never exceeds theirs by more
  than rounding, so our ε is never larger than dp_accounting's.
- Laplace (:func:`rdp_laplace`): Mironov 2017, Prop. 6 (tight).
- Distributed discrete Gaussian (:func:`rdp_distributed_discrete_gaussian`):
  Kairouz, Liu, Steinke, ICML 2021 (KLS), Theorem 1 / Prop. 14 for
  ``n >= 2`` shares, which assume per-share σ >= 1/2 (their bound on how far
  a sum of discrete Gaussians is from one, τ, needs it). With ``n = 1`` the
  event is a single discrete Gaussian, τ = 0, and the formula is
  αΔ₂²/(2σ²), the bound of Canonne, Kamath, Steinke, "The Discrete Gaussian
  for Differential Privacy", NeurIPS 2020 (Prop. 5 / Thm. 15), which holds
  for every σ > 0. So the domain is ``n = 1, σ > 0`` or ``n >= 2, σ >= 1/2``
  (:func:`ddg_domain_error`); outside it the formula raises ValueError and
  the accountant refuses the event.
- Skellam (:func:`rdp_skellam`): Agarwal, Kairouz, Liu, "The Skellam Mechanism
  for Differentially Private Federated Learning", NeurIPS 2021 (AKL),
  Theorem 3.5, stated for integer orders α > 1 (the authors' accountant,
  google-research/federated ``distributed_dp/accounting_utils.py``, only
  evaluates integer orders). See "Skellam at fractional orders" below.
- Poisson subsampling of any mechanism (:func:`rdp_poisson_subsampled`, used
  for sampled DDG and Skellam): Zhu, Wang, "Poisson Subsampled Rényi
  Differential Privacy", ICML 2019, the general upper bound (Theorem 5) at
  integer orders, as in the authors' DDG/Skellam accountant.

Skellam at fractional orders
----------------------------
AKL's bound B(α) is proven at integer α only. Two extensions were in the code
base: ``B(⌈α⌉)`` (valid: Rényi divergence is non-decreasing in α) and linear
interpolation of the cumulant ``K(α) = (α-1)ε(α)`` between ⌊α⌋ and ⌈α⌉
(with ``K(1) = 0``), valid because ``K(α) = log E_Q[(P/Q)^α]`` is convex in α
(Hölder's inequality; van Erven, Harremoës, "Rényi Divergence and
Kullback-Leibler Divergence", IEEE Trans. IT 2014, convexity of (α-1)D_α). Since B is non-decreasing,
the interpolation is never above ``B(⌈α⌉)`` and is strictly below it for
α > 2 off the integers, so it is the tighter of the two proven bounds and the
one used here. (Plugging a fractional α straight into AKL's formula is tighter
still and happened to upper-bound every exact value we computed, but it is
not a theorem, so it is not used.)

Evidence (``tests/privacy/test_rdp_exact.py`` repeats a grid of it): the exact
divergence ``D_α(Sk(μ) + Δ || Sk(μ))`` (the two directions are equal by
symmetry), summed with mpmath at 40 digits over the integer support with a
rigorous tail bound, against the two extensions; e.g. for ``Δ = 1, μ = 4``:

=====  ========  ========  ========
α      exact     interp.   ceiling
=====  ========  ========  ========
1.5    0.1867    0.3906    0.3906
2.5    0.3019    0.4948    0.5469
4.5    0.4949    0.7924    0.8594
10.5   0.8652    1.6908    1.7500
=====  ========  ========  ========

and for ``Δ = 5, μ = 100``: α = 2.5 gives 0.3117 exact, 0.3368 interpolated,
0.3789 ceiling; α = 3 gives 0.3736 exact and 0.3789 for AKL's bound. For
``SkellamEvent(l1=100, l2=10, mu=1000)`` at α = 2.5 the two old copies gave
0.1336 (interpolated) and 0.1503 (ceiling); the exact divergence is 0.1250
for a shift by 1 in 100 coordinates, by 2 in 25, or by 10 in one.
dp_accounting has no Skellam or distributed discrete Gaussian event (its PLD
library has a single discrete Gaussian, used as a cross-check in the tests).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import special

from secagg.privacy.events import DistributedDiscreteGaussianEvent, SkellamEvent

#: Rényi orders: one number, a sequence, or a 1-D array (all > 1 unless stated).
Orders = float | Sequence[float] | np.ndarray

__all__ = [
    "Orders",
    "ddg_domain_error",
    "ddg_tau",
    "rdp_distributed_discrete_gaussian",
    "rdp_laplace",
    "rdp_poisson_sampled_gaussian",
    "rdp_poisson_subsampled",
    "rdp_skellam",
]


# ---------------------------------------------------------------------------
# Sampled Gaussian
# ---------------------------------------------------------------------------


def _logsumexp(a: np.ndarray, axis: int | None = None) -> np.ndarray:
    """log Σ exp(a) (scipy's version has ~1 ms of overhead per call)."""
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return np.squeeze(out, axis=axis) if axis is not None else out.reshape(())


def _log_expm1(c: np.ndarray) -> np.ndarray:
    """log(e^c - 1) for c > 0, without overflow or cancellation."""
    return c + np.log(-np.expm1(-c))


def _log_a_minus_1_int(q: float, sigma: float, alpha: int) -> float:
    """log(A_α - 1) for integer α ≥ 2, 0 < q < 1 (MTZ 2019, Sec. 3.3).

    A_α = Σ_i C(α,i) q^i (1-q)^(α-i) exp((i²-i)/(2σ²)). Because the binomial
    weights sum to 1 and the i = 0, 1 terms have exponent 0,
    A_α - 1 = Σ_{i≥2} C(α,i) q^i (1-q)^(α-i) expm1((i²-i)/(2σ²)): all terms
    positive, so log(A_α - 1) (hence RDP = log1p(A_α - 1)/(α-1)) keeps full
    relative precision even when A_α - 1 ~ 1e-12.
    """
    i = np.arange(2, alpha + 1, dtype=np.float64)
    log_terms = (
        special.gammaln(alpha + 1)
        - special.gammaln(i + 1)
        - special.gammaln(alpha - i + 1)
        + i * math.log(q)
        + (alpha - i) * math.log1p(-q)
        + _log_expm1((i * i - i) / (2 * sigma**2))
    )
    return float(_logsumexp(log_terms))


_SERIES_TERMS = 48
#: Above this many quadrature points (over all fractional orders of one
#: call), fractional orders fall back to the next integer order.
_MAX_QUADRATURE_POINTS = 2e6


def _log_h(x: np.ndarray, log1px: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """log((1+x)^α - 1 - αx) for x > -1, α > 1 (the value is ≥ 0 by convexity).

    ``x`` and ``log1px`` (= log(1+x), computed by the caller without
    overflow) are rows of a grid, ``alpha`` a column of orders. Three regimes
    keep relative precision: a binomial series when |x| < min(1/2, 1/α)
    (direct evaluation would cancel), log-space when x is large (the power
    overflows), and the direct formula for x ≤ -min(1/2, 1/α) (all terms O(1)).
    """
    x, log1px, alpha = np.broadcast_arrays(x, log1px, alpha)
    xs = np.minimum(0.5, 1.0 / alpha)
    out = np.empty(x.shape)
    small = np.abs(x) < xs
    pos = x >= xs
    neg = ~(small | pos)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if small.any():
            xv, av = x[small], alpha[small]
            # Σ_{k≥2} C(α,k) x^k = x² Σ_{k≥2} C(α,k) x^(k-2), by Horner's rule.
            coefs = [av * (av - 1) / 2.0]
            for k in range(2, _SERIES_TERMS + 1):
                coefs.append(coefs[-1] * (av - k) / (k + 1))
            acc = np.zeros_like(xv)
            for c in reversed(coefs):
                acc = acc * xv + c
            out[small] = np.log(acc) + 2 * np.log(np.abs(xv))
        if pos.any():
            l1, av = log1px[pos], alpha[pos]
            # log(1 + αx) = l1 + log α + log1p(-(α-1)/α e^{-l1}); and
            # (1+αx)/(1+x)^α < 1 (Bernoulli), so the outer log1p is safe.
            l2 = l1 + np.log(av) + np.log1p(-(av - 1) / av * np.exp(-l1))
            out[pos] = av * l1 + np.log1p(-np.exp(l2 - av * l1))
        if neg.any():
            xv, av = x[neg], alpha[neg]
            out[neg] = np.log(np.exp(av * log1px[neg]) - 1 - av * xv)
    return out


def _log_a_minus_1_frac(q: float, sigma: float, alphas: np.ndarray) -> np.ndarray:
    """log(A_α - 1) for real orders α > 1 (vector), 0 < q < 1, by quadrature.

    A_α = E_{z~N(0,σ²)}[(1 + x(z))^α] with x(z) = q (exp((2z-1)/(2σ²)) - 1)
    (MTZ 2019, Eq. 3, sensitivity 1). Since E[x(z)] = 0,
    A_α - 1 = E[(1+x)^α - 1 - αx], the integral of a non-negative analytic
    function, for which the trapezoid rule converges geometrically in
    1/step. Its singularities sit πσ² away from the real axis, so the step is
    min(σ, πσ²)/8 (relative error far below 1e-12). The grid spans the
    Gaussian bump at 0 and the bump of (1+x)^α near z = α, 10σ either side
    (e^-50 relative).
    """
    alphas = np.asarray(alphas, dtype=np.float64)
    h = min(sigma, math.pi * sigma**2) / 8.0
    lo = -10.0 * sigma
    hi = max(float(alphas.max()), 1.0) + 10.0 * sigma
    n = math.ceil((hi - lo) / h) + 1
    z = lo + h * np.arange(n)
    w = (2 * z - 1) / (2 * sigma**2)
    log1px = np.logaddexp(math.log1p(-q), math.log(q) + w)  # log(1 - q + q e^w)
    x = q * np.expm1(np.minimum(w, 700.0))
    log_phi = -(z * z) / (2 * sigma**2) - math.log(sigma * math.sqrt(2 * math.pi))
    log_f = log_phi + _log_h(x[None, :], log1px[None, :], alphas[:, None])
    return _logsumexp(log_f, axis=1) + math.log(h)


def _rdp_sampled_gaussian(q: float, sigma: float, orders: np.ndarray) -> np.ndarray:
    out = np.empty(orders.shape)
    if q == 0:
        out[:] = 0.0
        return out
    if sigma == 0:
        out[:] = math.inf
        return out
    if q == 1.0:
        return orders / (2 * sigma**2)
    is_int = orders == np.floor(orders)
    frac = ~is_int
    # Quadrature cost grows like α/σ²; past a cap, bound a fractional order
    # by the exact value at ⌈α⌉ instead (RDP is non-decreasing in α, so this
    # is a valid, slightly looser bound).
    if frac.any():
        h = min(sigma, math.pi * sigma**2) / 8.0
        points = (float(orders[frac].max()) + 20 * sigma) / h * frac.sum()
        if points > _MAX_QUADRATURE_POINTS:
            orders_eval = np.where(frac, np.ceil(orders), orders)
            is_int, frac = np.ones_like(is_int), np.zeros_like(frac)
        else:
            orders_eval = orders
    else:
        orders_eval = orders
    for k in np.flatnonzero(is_int):
        out[k] = _log_a_minus_1_int(q, sigma, int(orders_eval[k]))
    if frac.any():
        out[frac] = _log_a_minus_1_frac(q, sigma, orders[frac])
    # RDP = log(A_α)/(α-1) = log1p(A_α - 1)/(α-1).
    return np.logaddexp(0.0, out) / (orders_eval - 1)


def rdp_poisson_sampled_gaussian(
    q: float, noise_multiplier: float, orders: Orders
) -> np.ndarray:
    """RDP of the Sampled Gaussian Mechanism at each order (one step).

    Poisson sampling rate ``q``, noise std / L2 sensitivity ``noise_multiplier``,
    add/remove adjacency. Exact at integer orders, quadrature-exact at
    fractional ones (Mironov, Talwar, Zhang 2019). Matches dp_accounting's
    ``_compute_rdp_poisson_subsampled_gaussian`` at integer orders.
    """
    if not 0 <= q <= 1:
        raise ValueError(f"q must be in [0, 1], got {q!r}")
    if not noise_multiplier >= 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier!r}")
    orders_t = tuple(float(a) for a in np.atleast_1d(np.asarray(orders, dtype=np.float64)))
    return np.array(_rdp_sampled_gaussian_cached(float(q), float(noise_multiplier), orders_t))


@functools.lru_cache(maxsize=256)
def _rdp_sampled_gaussian_cached(
    q: float, sigma: float, orders: tuple[float, ...]
) -> tuple[float, ...]:
    # Cached because calibration and repeated queries ask for the same curve.
    o = np.array(orders, dtype=np.float64)
    if np.any(~np.isfinite(o)) or np.any(o <= 1):
        raise ValueError("orders must be finite and > 1")
    return tuple(float(v) for v in _rdp_sampled_gaussian(q, sigma, o))


# ---------------------------------------------------------------------------
# Laplace
# ---------------------------------------------------------------------------


def rdp_laplace(noise_multiplier: float, orders: Orders) -> np.ndarray:
    """RDP of the Laplace mechanism with scale / L1 sensitivity ``noise_multiplier``.

    Mironov 2017, Prop. 6: with ε = 1/b,
    RDP(α) = ε + log(1 + (α-1)(exp((1-2α)ε) - 1)/(2α-1)) / (α-1),
    exactly tight; evaluated as dp_accounting does (Taylor series near α = 1).
    """
    if not noise_multiplier >= 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier!r}")
    alphas = np.atleast_1d(np.asarray(orders, dtype=np.float64))
    if noise_multiplier == 0:
        return np.full(alphas.shape, math.inf)
    eps = 1.0 / noise_multiplier
    out = []
    for a in alphas.tolist():
        if a == 1:
            out.append(eps + math.expm1(-eps))
        elif a < 1.1:
            # log(1 + c v)/v as a series in v = (α-1) avoids 0/0 near α = 1.
            c = math.expm1(eps * (1 - 2 * a)) / (2 * a - 1)
            v = -c * (a - 1)
            out.append(eps + c * math.fsum(v ** (k - 1) / k for k in range(1, 100)))
        else:
            out.append(
                eps + math.log1p((a - 1) * math.expm1(eps * (1 - 2 * a)) / (2 * a - 1)) / (a - 1)
            )
    return np.array(out)


def _orders(orders: Orders) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(orders, dtype=np.float64))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError("orders must be a non-empty 1-D sequence")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 1):
        raise ValueError("RDP orders must be finite and > 1")
    return arr


# ---------------------------------------------------------------------------
# Distributed discrete Gaussian
# ---------------------------------------------------------------------------


def ddg_tau(sigma: float, num_clients: int) -> float:
    """KLS's τ = 10 · Σ_{k=1}^{n-1} exp(-2π²σ² · k/(k+1)) (Theorem 1).

    How far a sum of ``n`` discrete Gaussians N_Z(0, σ²) is from N_Z(0, nσ²);
    0 for ``n = 1``.
    """
    k = np.arange(1, int(num_clients), dtype=np.float64)
    return float(10.0 * np.sum(np.exp(-2.0 * math.pi**2 * sigma**2 * k / (k + 1))))


def ddg_domain_error(event: DistributedDiscreteGaussianEvent) -> str | None:
    """Why :func:`rdp_distributed_discrete_gaussian` has no bound for ``event``, or None.

    KLS's bound on a sum of ``n >= 2`` discrete Gaussians assumes σ >= 1/2;
    one share (``n = 1``) is a single discrete Gaussian, bounded for every
    σ > 0 (CKS 2020). The accountant and the formula both ask this function.
    """
    if event.num_clients >= 2 and event.sigma < 0.5:
        return (
            f"the Kairouz-Liu-Steinke bound for a sum of {event.num_clients} discrete "
            f"Gaussians needs sigma >= 1/2 per share, got {event.sigma!r}"
        )
    return None


def rdp_distributed_discrete_gaussian(
    event: DistributedDiscreteGaussianEvent, orders: Orders
) -> np.ndarray:
    """RDP of one distributed discrete Gaussian release (KLS Theorem 1 / Prop. 14).

    With ``n`` shares of N_Z(0, σ²), integer sensitivities Δ₂, Δ₁, dimension
    ``d`` and τ = :func:`ddg_tau`, writing ``a = Δ₂/(√n σ)``, ``b = Δ₁/(√n σ)``,
    for every real α > 1::

        ε(α) = min( α a²/2 + τ d,
                    α/2 · (a² + 2 b τ + τ² d),
                    α/2 · (a + τ √d)² )

    (the same three terms as the authors' accountant). Raises ValueError
    outside the domain of :func:`ddg_domain_error`.
    """
    if not isinstance(event, DistributedDiscreteGaussianEvent):
        raise TypeError(f"expected DistributedDiscreteGaussianEvent, got {type(event).__name__}")
    alpha = _orders(orders)
    reason = ddg_domain_error(event)
    if reason is not None:
        raise ValueError(reason)
    n, sigma, d = event.num_clients, event.sigma, event.dimension
    tau = ddg_tau(sigma, n)
    a = event.l2_sensitivity / (math.sqrt(n) * sigma)
    b = event.l1_sensitivity / (math.sqrt(n) * sigma)
    term_1 = alpha / 2 * a * a + tau * d
    term_2 = alpha / 2 * (a * a + 2 * b * tau + tau * tau * d)
    term_3 = alpha / 2 * (a + tau * math.sqrt(d)) ** 2
    return np.minimum(np.minimum(term_1, term_2), term_3)


# ---------------------------------------------------------------------------
# Skellam
# ---------------------------------------------------------------------------


def _skellam_integer(event: SkellamEvent, alpha: np.ndarray) -> np.ndarray:
    # AKL Theorem 3.5 with μ the aggregate variance per coordinate.
    mu, d2, d1 = event.mu, event.l2_sensitivity, event.l1_sensitivity
    extra = np.minimum(((2 * alpha - 1) * d2 * d2 + 6 * d1) / (4 * mu * mu), 3 * d1 / (2 * mu))
    return alpha * d2 * d2 / (2 * mu) + extra


def rdp_skellam(event: SkellamEvent, orders: Orders) -> np.ndarray:
    """RDP of the multidimensional Skellam mechanism (AKL Theorem 3.5).

    Aggregate Skellam noise of variance ``μ`` per coordinate, integer
    sensitivities Δ₂, Δ₁; at integer α > 1 (the theorem's domain)::

        ε(α) = α Δ₂² / (2μ) + min( ((2α - 1) Δ₂² + 6 Δ₁) / (4μ²),  3 Δ₁ / (2μ) ).

    At fractional α the cumulant ``(α-1)ε(α)`` is interpolated linearly
    between ⌊α⌋ and ⌈α⌉ (value 0 at α = 1): an upper bound because the Rényi
    cumulant is convex in α, and never above ε(⌈α⌉) (module docstring).
    """
    if not isinstance(event, SkellamEvent):
        raise TypeError(f"expected SkellamEvent, got {type(event).__name__}")
    alpha = _orders(orders)
    lo, hi = np.floor(alpha), np.ceil(alpha)
    cgf_lo = np.where(lo > 1, (lo - 1) * _skellam_integer(event, np.maximum(lo, 2.0)), 0.0)
    cgf_hi = (hi - 1) * _skellam_integer(event, hi)
    t = alpha - lo
    return ((1 - t) * cgf_lo + t * cgf_hi) / (alpha - 1)


# ---------------------------------------------------------------------------
# Poisson subsampling of any mechanism
# ---------------------------------------------------------------------------


def _zhu_wang_integer(q: float, alpha: int, eps: np.ndarray) -> float:
    """Zhu–Wang general upper bound at integer ``alpha >= 2``; ``eps[l]`` = ε(l) for l = 0..alpha."""
    log1mq = math.log1p(-q)
    logq = math.log(q)
    terms = [(alpha - 1) * log1mq + math.log1p((alpha - 1) * q)]
    weights = [1.0]
    ls = np.arange(2, alpha + 1, dtype=np.float64)
    log_comb = special.gammaln(alpha + 1) - special.gammaln(ls + 1) - special.gammaln(alpha - ls + 1)
    with np.errstate(invalid="ignore"):
        body = log_comb + ls * logq + (alpha - ls) * log1mq + (ls - 1) * eps[2 : alpha + 1]
    terms.extend(body.tolist())
    weights.extend([1.0] + [3.0] * (alpha - 2))
    if any(math.isinf(t) and t > 0 for t in terms):
        return math.inf
    return float(special.logsumexp(terms, b=weights)) / (alpha - 1)


def rdp_poisson_subsampled(
    q: float,
    rdp_fn: Callable[[np.ndarray], np.ndarray],
    orders: Orders,
) -> np.ndarray:
    """RDP of a mechanism run on a Poisson subsample (rate ``q``): Zhu–Wang's general upper bound.

    Zhu, Wang, "Poisson Subsampled Rényi Differential Privacy", ICML 2019,
    Theorem 5 (valid for any mechanism, add/remove adjacency): for integer
    α >= 2 and base RDP ε(·),

        ε'(α) <= 1/(α-1) · log( (1-q)^{α-1} (1 + (α-1) q)
                              + C(α,2) q² (1-q)^{α-2} e^{ε(2)}
                              + 3 Σ_{l=3}^{α} C(α,l) q^l (1-q)^{α-l} e^{(l-1) ε(l)} ).

    We also take the min with ε(α) itself (subsampling never hurts). For
    fractional α the cumulant ``K(α) = (α-1)ε'(α)`` is convex, so linear
    interpolation of K between ⌊α⌋ and ⌈α⌉ (with K(1) = 0) is an upper bound
    (Wang, Balle, Kasiviswanathan, AISTATS 2019, Corollary 10 applies the
    same argument).

    Args:
        q: sampling probability in [0, 1].
        rdp_fn: vectorized base RDP: array of orders (floats > 1) -> array of ε.
        orders: RDP orders > 1.
    """
    q = float(q)
    if not 0 <= q <= 1:
        raise ValueError(f"q must be in [0, 1], got {q!r}")
    alpha = _orders(orders)
    if q == 0:
        return np.zeros_like(alpha)
    base = np.asarray(rdp_fn(alpha), dtype=np.float64)
    if q == 1:
        return base
    top = math.ceil(alpha.max())
    eps = np.full(top + 1, np.nan)
    eps[2:] = np.asarray(rdp_fn(np.arange(2, top + 1, dtype=np.float64)), dtype=np.float64)
    cgf = {1: 0.0}  # K(1) = 0

    def cgf_at(a: int) -> float:
        if a not in cgf:
            cgf[a] = (a - 1) * _zhu_wang_integer(q, a, eps)
        return cgf[a]

    out = np.empty_like(alpha)
    for i, a in enumerate(alpha):
        lo, hi = math.floor(a), math.ceil(a)
        if lo == hi:
            value = cgf_at(lo) / (a - 1)
        else:
            t = a - lo
            value = ((1 - t) * cgf_at(lo) + t * cgf_at(hi)) / (a - 1)
        out[i] = min(value, base[i])
    return out
