"""Rényi-DP accountant, compatible with dp_accounting's ``RdpAccountant``.

RDP of order α of a mechanism M is sup over neighbours of the Rényi divergence
D_α(M(D) || M(D')) (Mironov, "Rényi Differential Privacy", CSF 2017). RDP
composes additively, so the accountant keeps one vector of RDP values over a
fixed set of orders and converts to (ε, δ) at query time. The per-event RDP
formulas, with their references, are in :mod:`secagg.privacy.rdp_formulas`.

Conversion to (ε, δ): Canonne, Kamath, Steinke, "The Discrete Gaussian for
Differential Privacy", NeurIPS 2020, Prop. 12 (= Balle et al. 2020, "Hypothesis
testing interpretations and Rényi DP", Thm. 21), plus the KL/Pinsker bound for
ε = 0, exactly as dp_accounting computes them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from secagg.privacy.accountant import (
    PrivacyAccountant,
    _Discrete,
    _Leaf,
    _SampledGaussian,
    _SampledLaplace,
    _SampledNonPrivate,
    _validate_delta,
    _validate_epsilon,
)
from secagg.privacy.events import DistributedDiscreteGaussianEvent
from secagg.privacy.rdp_formulas import (
    Orders,
    ddg_domain_error,
    rdp_distributed_discrete_gaussian,
    rdp_laplace,
    rdp_poisson_sampled_gaussian,
    rdp_poisson_subsampled,
    rdp_skellam,
)

__all__ = [
    "DEFAULT_RDP_ORDERS",
    "RDPAccountant",
    "compute_delta_from_rdp",
    "compute_epsilon_from_rdp",
]

#: dp_accounting's default orders: dense near 1 (large ε), integers to 63,
#: then a few large orders (tiny δ).
DEFAULT_RDP_ORDERS: tuple[float, ...] = tuple(
    [1 + x / 10.0 for x in range(1, 100)] + list(range(11, 64)) + [128, 256, 512, 1024]
)


# ---------------------------------------------------------------------------
# RDP -> (ε, δ)
# ---------------------------------------------------------------------------


def _rdp_curve(orders: Orders, rdp: Orders) -> tuple[np.ndarray, np.ndarray]:
    """Validated (orders, rdp) arrays for the (ε, δ) conversions."""
    orders_a = np.asarray(orders, dtype=np.float64)
    rdp_a = np.asarray(rdp, dtype=np.float64)
    if orders_a.shape != rdp_a.shape or orders_a.ndim != 1 or orders_a.size == 0:
        raise ValueError("orders and rdp must be non-empty 1-D sequences of the same length")
    if np.any(orders_a < 1):
        raise ValueError("Rényi orders must be >= 1")
    return orders_a, rdp_a


def compute_epsilon_from_rdp(
    orders: Orders, rdp: Orders, delta: float
) -> tuple[float, float]:
    """Return ``(epsilon, optimal_order)`` for ``delta`` from RDP curve ``rdp``.

    ε = min_α rdp(α) + log1p(-1/α) - log(δ α)/(α-1) (Canonne, Kamath, Steinke
    2020, Prop. 12; Balle et al. 2020, Thm. 21), and ε = 0 wherever
    δ ≥ sqrt(1 - exp(-rdp(α))) (KL/Pinsker). Same rules as dp_accounting.
    """
    delta = _validate_delta(delta)
    orders_a, rdp_a = _rdp_curve(orders, rdp)
    if delta == 0:
        return (0.0, float(orders_a[0])) if np.all(rdp_a == 0) else (math.inf, float(orders_a[0]))
    eps = np.empty_like(rdp_a)
    for k, (a, r) in enumerate(zip(orders_a, rdp_a, strict=True)):
        if r < 0:
            eps[k] = 0.0  # only from rounding of a ~0 divergence
        elif delta**2 + math.expm1(-r) > 0:
            eps[k] = 0.0
        elif a > 1.01:
            # Not used too close to α = 1, where it is numerically unstable
            # and never the minimiser anyway.
            eps[k] = r + math.log1p(-1 / a) - math.log(delta * a) / (a - 1)
        else:
            eps[k] = math.inf
    k = int(np.argmin(eps))
    return max(0.0, float(eps[k])), float(orders_a[k])


def compute_delta_from_rdp(
    orders: Orders, rdp: Orders, epsilon: float
) -> tuple[float, float]:
    """Return ``(delta, optimal_order)`` for ``epsilon`` from RDP curve ``rdp``.

    log δ = min_α (α-1)(rdp(α) - ε + log1p(-1/α)) - log α (CKS 2020, Prop. 12),
    also capped by the KL bound sqrt(1 - exp(-rdp)). Same as dp_accounting.
    """
    epsilon = _validate_epsilon(epsilon)
    orders_a, rdp_a = _rdp_curve(orders, rdp)
    logd = np.empty_like(rdp_a)
    for k, (a, r) in enumerate(zip(orders_a, rdp_a, strict=True)):
        if r <= 0:
            logd[k] = -math.inf
            continue
        # KL/Pinsker bound δ ≤ sqrt(1 - e^{-r}); -expm1 keeps tiny r accurate.
        ld = 0.5 * math.log(-math.expm1(-r)) if math.isfinite(r) else 0.0
        if a > 1.01 and math.isfinite(epsilon):
            ld = min(ld, (a - 1) * (r - epsilon + math.log1p(-1 / a)) - math.log(a))
        elif math.isinf(epsilon) and math.isfinite(r):
            ld = -math.inf
        logd[k] = ld
    k = int(np.argmin(logd))
    return min(math.exp(logd[k]), 1.0), float(orders_a[k])


# ---------------------------------------------------------------------------
# Accountant
# ---------------------------------------------------------------------------


class RDPAccountant(PrivacyAccountant):
    """Rényi-DP accountant (dp_accounting ``RdpAccountant`` semantics, add/remove adjacency).

    Events and how each is accounted (formulas in :mod:`secagg.privacy.rdp_formulas`):

    - Gaussian and Poisson-sampled Gaussian, also of a composition of
      Gaussians on one sample (reduced to one Gaussian): exact RDP
      (:func:`~secagg.privacy.rdp_formulas.rdp_poisson_sampled_gaussian`).
    - Laplace: exact RDP (:func:`~secagg.privacy.rdp_formulas.rdp_laplace`),
      and the pure-DP bound of a Laplace-only composition when that is
      smaller. Poisson-sampled Laplace raises
      :class:`~secagg.privacy.accountant.UnsupportedEventError` (no
      amplification bound is implemented here; use :class:`PLDAccountant`).
    - Distributed discrete Gaussian and Skellam: the RDP bounds of KLS 2021 /
      AKL 2021. Poisson-sampled, each is accounted by Zhu & Wang's general
      subsampling bound applied to that RDP curve
      (:func:`~secagg.privacy.rdp_formulas.rdp_poisson_subsampled`: integer
      orders, the min with the unsampled curve, cumulant interpolation at
      fractional orders). A DDG event outside the bound's domain
      (:func:`~secagg.privacy.rdp_formulas.ddg_domain_error`: two or more
      shares with σ < 1/2) raises ``UnsupportedEventError``.
    - NonPrivate (also Poisson-sampled): infinite RDP. NoOp: nothing.
    - Self-composition and composition add RDP. A Poisson-sampled
      composition that is not all Gaussian raises ``UnsupportedEventError``.

    Args:
        orders: Rényi orders (> 1) to track; default :data:`DEFAULT_RDP_ORDERS`.

    References: Mironov 2017; Mironov, Talwar, Zhang 2019; Canonne, Kamath,
    Steinke 2020 (conversion); Kairouz, Liu, Steinke 2021; Agarwal, Kairouz,
    Liu 2021.
    """

    def __init__(self, orders: Sequence[float] | None = None) -> None:
        super().__init__()
        o = DEFAULT_RDP_ORDERS if orders is None else tuple(float(a) for a in orders)
        if len(o) == 0 or not all(math.isfinite(a) and a > 1 for a in o):
            raise ValueError("orders must be a non-empty sequence of finite numbers > 1")
        self._orders = np.array(o, dtype=np.float64)
        self._rdp_cache: np.ndarray | None = None

    def _check_leaf(self, leaf: _Leaf) -> str | None:
        if isinstance(leaf, _Discrete) and isinstance(leaf.event, DistributedDiscreteGaussianEvent):
            return ddg_domain_error(leaf.event)
        if isinstance(leaf, (_SampledGaussian, _SampledNonPrivate, _Discrete)):
            return None
        if isinstance(leaf, _SampledLaplace):
            if leaf.q == 1.0:
                return None
            return "Poisson-sampled Laplace has no RDP amplification bound here; use PLDAccountant"
        return "unsupported event"

    def _state_changed(self) -> None:
        self._rdp_cache = None

    def _leaf_rdp(self, leaf: _Leaf) -> np.ndarray:
        o = self._orders
        if isinstance(leaf, _SampledGaussian):
            return rdp_poisson_sampled_gaussian(leaf.q, leaf.sigma, o)
        if isinstance(leaf, _SampledLaplace):
            return rdp_laplace(leaf.b, o)
        if isinstance(leaf, _SampledNonPrivate):
            # Some output has positive probability under M(D') and zero under
            # M(D): every Rényi divergence is infinite.
            return np.full(o.shape, math.inf)
        if isinstance(leaf, _Discrete):
            event = leaf.event

            def curve(a: np.ndarray) -> np.ndarray:
                if isinstance(event, DistributedDiscreteGaussianEvent):
                    return rdp_distributed_discrete_gaussian(event, a)
                return rdp_skellam(event, a)

            # Zhu & Wang's bound holds for any mechanism, so it applies to the
            # DDG/Skellam curve as it is; no tighter analysis exists here.
            return curve(o) if leaf.q == 1.0 else rdp_poisson_subsampled(leaf.q, curve, o)
        raise AssertionError(leaf)  # pragma: no cover - rejected by _check_leaf

    @property
    def orders(self) -> np.ndarray:
        """The Rényi orders tracked (a copy)."""
        return self._orders.copy()

    @property
    def rdp(self) -> np.ndarray:
        """Total RDP at each order of :attr:`orders` (a copy)."""
        if self._rdp_cache is None:
            total = np.zeros_like(self._orders)
            for leaf, c in self._sorted_leaves():
                total = total + c * self._leaf_rdp(leaf)
            self._rdp_cache = total
        return self._rdp_cache.copy()

    def get_epsilon_and_optimal_order(self, delta: float) -> tuple[float, float]:
        """``(epsilon, order)``: the certified ε for ``delta`` and the order achieving it.

        The order is ``inf`` when the pure-DP bound of a Laplace-only
        composition is the better one.
        """
        eps, order = compute_epsilon_from_rdp(self._orders, self.rdp, delta)
        pure = self._pure_epsilon()
        return (pure, math.inf) if pure < eps else (eps, order)

    def get_epsilon(self, delta: float) -> float:
        """Certified ε for ``delta`` (CKS 2020 Prop. 12 conversion); ``inf`` if unbounded."""
        return self.get_epsilon_and_optimal_order(delta)[0]

    def get_delta_and_optimal_order(self, epsilon: float) -> tuple[float, float]:
        """``(delta, order)``: the certified δ for ``epsilon`` and the order achieving it."""
        epsilon = _validate_epsilon(epsilon)
        pure = self._pure_epsilon()
        if pure < math.inf and epsilon >= pure:
            return 0.0, math.inf
        return compute_delta_from_rdp(self._orders, self.rdp, epsilon)

    def get_delta(self, epsilon: float) -> float:
        """Certified δ for ``epsilon`` (CKS 2020 Prop. 12 conversion)."""
        return self.get_delta_and_optimal_order(epsilon)[0]
