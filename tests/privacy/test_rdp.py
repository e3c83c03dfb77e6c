"""RDPAccountant against dp_accounting's RdpAccountant and against exact values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from secagg.privacy import (
    DEFAULT_RDP_ORDERS,
    DistributedDiscreteGaussianEvent,
    GaussianEvent,
    LaplaceEvent,
    PoissonSampledEvent,
    RDPAccountant,
    SkellamEvent,
    compute_delta_from_rdp,
    compute_epsilon_from_rdp,
)
from secagg.privacy.rdp_formulas import (
    rdp_distributed_discrete_gaussian,
    rdp_laplace,
    rdp_poisson_sampled_gaussian,
    rdp_skellam,
)

dpa = pytest.importorskip("dp_accounting")
from dp_accounting.rdp import rdp_privacy_accountant as dpa_rdp  # noqa: E402

INT_ORDERS = [float(a) for a in [*list(range(2, 64)), 128, 256, 512, 1024]]
QS = [0.001, 0.01, 0.1, 0.5, 1.0]
SIGMAS = [0.5, 0.8, 1.1, 2.0, 5.0]


def test_default_orders_match_dp_accounting() -> None:
    assert list(DEFAULT_RDP_ORDERS) == [float(a) for a in dpa_rdp.DEFAULT_RDP_ORDERS]
    np.testing.assert_array_equal(RDPAccountant().orders, np.array(dpa_rdp.DEFAULT_RDP_ORDERS))


@pytest.mark.parametrize("q", QS)
@pytest.mark.parametrize("sigma", SIGMAS)
def test_sampled_gaussian_integer_orders_match_dp_accounting(q: float, sigma: float) -> None:
    ours = rdp_poisson_sampled_gaussian(q, sigma, INT_ORDERS)
    theirs = dpa_rdp._compute_rdp_poisson_subsampled_gaussian(q, sigma, INT_ORDERS)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=0)


@pytest.mark.parametrize("q", [0.001, 0.01, 0.1])
@pytest.mark.parametrize("sigma", [0.8, 1.1, 2.0])
@pytest.mark.parametrize("steps", [1000, 10_000])
def test_accountant_matches_dp_accounting_at_integer_orders(
    q: float, sigma: float, steps: int
) -> None:
    ours = RDPAccountant(INT_ORDERS).compose(PoissonSampledEvent(q, GaussianEvent(sigma)), steps)
    theirs = dpa_rdp.RdpAccountant(INT_ORDERS)
    theirs.compose(
        dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma)), steps)
    )
    np.testing.assert_allclose(ours.rdp, theirs._rdp, rtol=1e-9)
    for delta in (1e-3, 1e-5, 1e-10):
        assert ours.get_epsilon(delta) == pytest.approx(theirs.get_epsilon(delta), rel=1e-9)
    for eps in (0.5, 2.0, 8.0):
        assert ours.get_delta(eps) == pytest.approx(theirs.get_delta(eps), rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("q", [0.001, 0.01, 0.1])
@pytest.mark.parametrize("sigma", [0.8, 1.1, 2.0])
def test_default_orders_never_worse_than_dp_accounting(q: float, sigma: float) -> None:
    # At fractional orders dp_accounting bounds |terms| of an alternating
    # series (an over-estimate, sometimes inf); ours is exact, so ours ≤ theirs.
    ours = RDPAccountant().compose(PoissonSampledEvent(q, GaussianEvent(sigma)), 1000)
    theirs = dpa_rdp.RdpAccountant()
    theirs.compose(
        dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma)), 1000)
    )
    assert np.all(ours.rdp <= theirs._rdp * (1 + 1e-9))
    assert ours.get_epsilon(1e-5) <= theirs.get_epsilon(1e-5) * (1 + 1e-9)


def test_reference_setting() -> None:
    acct = RDPAccountant().compose(PoissonSampledEvent(0.01, GaussianEvent(1.1)), count=10_000)
    assert acct.get_epsilon(delta=1e-5) == pytest.approx(5.632, abs=5e-4)


mpmath = pytest.importorskip("mpmath")


def _exact_rdp(q: float, sigma: float, alpha: float) -> float:
    """RDP of the sampled Gaussian by 40-digit quadrature of its defining integral."""
    mp = mpmath.mp
    with mpmath.workdps(40):
        q_, s_, a_ = mp.mpf(q), mp.mpf(sigma), mp.mpf(alpha)

        def f(z):
            return mp.npdf(z, 0, s_) * ((1 - q_) + q_ * mp.exp((2 * z - 1) / (2 * s_ * s_))) ** a_

        a = mp.quad(f, [-mp.inf, -10 * s_, 0, 1, a_, a_ + 10 * s_, mp.inf])
        return float(mp.log(a) / (a_ - 1))


@pytest.mark.parametrize(
    ("q", "sigma", "alpha"),
    [
        (1e-4, 20.0, 46.0),  # dp_accounting loses ~1e-8 relative here; we do not
        (1e-3, 0.5, 1.1),  # dp_accounting's series over-estimates this by 20%
        (0.01, 1.1, 1.5),
        (0.1, 0.8, 1.1),  # dp_accounting returns inf here
        (0.1, 0.3, 3.3),
        (0.5, 2.0, 10.9),
        (0.9, 0.8, 1.01),
        (0.01, 1.1, 200.5),
    ],
)
def test_fractional_orders_are_exact(q: float, sigma: float, alpha: float) -> None:
    ours = rdp_poisson_sampled_gaussian(q, sigma, [alpha])[0]
    assert ours == pytest.approx(_exact_rdp(q, sigma, alpha), rel=1e-10)


@pytest.mark.parametrize("b", [0.3, 1.0, 2.0, 10.0])
def test_laplace_matches_dp_accounting(b: float) -> None:
    ours = rdp_laplace(b, DEFAULT_RDP_ORDERS)
    theirs = np.array([dpa_rdp._laplace_rdp(1 / b, a) for a in DEFAULT_RDP_ORDERS])
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    a = RDPAccountant().compose(LaplaceEvent(b), 7)
    t = dpa_rdp.RdpAccountant()
    t.compose(dpa.SelfComposedDpEvent(dpa.LaplaceDpEvent(b), 7))
    for delta in (1e-2, 1e-6, 1e-12):
        # Same RDP conversion, additionally capped by pure-DP composition (7/b).
        assert a.get_epsilon(delta) == pytest.approx(min(t.get_epsilon(delta), 7 / b), rel=1e-9)
    assert a.get_delta(7 / b) == 0.0


def test_ddg_reduces_to_gaussian_for_one_client() -> None:
    # n = 1: τ = 0, RDP = αΔ₂²/(2σ²), the continuous Gaussian's (CKS 2020).
    ev = DistributedDiscreteGaussianEvent(
        l2_sensitivity=3.0, l1_sensitivity=9.0, sigma=4.0, num_clients=1, dimension=9
    )
    np.testing.assert_allclose(
        rdp_distributed_discrete_gaussian(ev, INT_ORDERS), np.array(INT_ORDERS) * 9 / 32
    )
    a = RDPAccountant().compose(ev, 5)
    b = RDPAccountant().compose(GaussianEvent(4.0 / 3.0), 5)
    assert a.get_epsilon(1e-5) == pytest.approx(b.get_epsilon(1e-5), rel=1e-12)


def test_ddg_formula_and_monotonicity() -> None:
    ev = DistributedDiscreteGaussianEvent(100.0, 800.0, 1.0, 50, 64)
    tau = 10 * sum(math.exp(-2 * math.pi**2 * 1.0 * k / (k + 1)) for k in range(1, 50))
    a = np.array([2.0, 10.0])
    var = 50 * 1.0
    expected = np.minimum.reduce(
        [
            a * 100**2 / (2 * var) + tau * 64,
            a / 2 * (100**2 / var + 2 * 800 * tau / math.sqrt(var) + tau**2 * 64),
            a / 2 * (100 / math.sqrt(var) + tau * 8) ** 2,
        ]
    )
    np.testing.assert_allclose(rdp_distributed_discrete_gaussian(ev, a), expected, rtol=1e-12)
    # More noise per client never costs more privacy.
    e1 = RDPAccountant().compose(DistributedDiscreteGaussianEvent(100.0, 800.0, 2.0, 50, 64), 10)
    e2 = RDPAccountant().compose(DistributedDiscreteGaussianEvent(100.0, 800.0, 3.0, 50, 64), 10)
    assert e1.get_epsilon(1e-5) >= e2.get_epsilon(1e-5)


def test_skellam_formula_and_gaussian_limit() -> None:
    ev = SkellamEvent(l1_sensitivity=50.0, l2_sensitivity=10.0, mu=1e4)
    a = np.array([2.0, 5.0, 32.0])
    expected = a * 100 / (2e4) + np.minimum(((2 * a - 1) * 100 + 300) / (4e8), 150 / 2e4)
    np.testing.assert_allclose(rdp_skellam(ev, a), expected, rtol=1e-12)
    # Fractional orders interpolate the cumulant: between ε(2) and ε(3), not ε(⌈α⌉)
    # (tests/privacy/test_rdp_exact.py checks both against the exact divergence).
    assert rdp_skellam(ev, [2.0])[0] < rdp_skellam(ev, [2.5])[0] < rdp_skellam(ev, [3.0])[0]
    # Large μ: the Skellam approaches a Gaussian of the same variance.
    big = RDPAccountant().compose(SkellamEvent(1e4, 1e3, 1e12), 10).get_epsilon(1e-5)
    gauss = RDPAccountant().compose(GaussianEvent(1e6 / 1e3), 10).get_epsilon(1e-5)
    assert big == pytest.approx(gauss, rel=1e-3)
    assert big >= gauss


_rdp_curves = st.lists(
    st.one_of(st.just(0.0), st.floats(1e-6, 50.0)),
    min_size=len(DEFAULT_RDP_ORDERS),
    max_size=len(DEFAULT_RDP_ORDERS),
)


@settings(max_examples=25, deadline=None)
@given(_rdp_curves, st.floats(1e-12, 0.9))
def test_conversions_match_dp_accounting(rdp: list[float], delta: float) -> None:
    orders = list(DEFAULT_RDP_ORDERS)
    e_ours, _ = compute_epsilon_from_rdp(orders, rdp, delta)
    e_theirs, _ = dpa_rdp.compute_epsilon(orders, rdp, delta)
    assert e_ours == pytest.approx(e_theirs, rel=1e-12, abs=1e-12)
    d_ours, _ = compute_delta_from_rdp(orders, rdp, e_ours)
    try:
        d_theirs, _ = dpa_rdp.compute_delta(orders, rdp, e_ours)
    except ValueError:  # dp_accounting's log1p(-exp(-r)) fails for r < 1e-16
        assume(False)
    # Ours evaluates the KL term as log(-expm1(-r)), more accurate for small r.
    assert d_ours == pytest.approx(d_theirs, rel=1e-6, abs=1e-300)


def test_orders_validation() -> None:
    for bad in ([], [1.0], [0.5, 2.0], [2.0, math.inf], [math.nan]):
        with pytest.raises(ValueError):
            RDPAccountant(bad)
    with pytest.raises(ValueError):
        compute_epsilon_from_rdp([2.0, 3.0], [1.0], 1e-5)
