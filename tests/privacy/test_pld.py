"""PLDAccountant: never below the truth, close to it, and cheaper than dp_accounting.

"Truth" comes from closed forms where they exist (composed Gaussians, one
Laplace, one sampled Gaussian step by quadrature) and otherwise from
dp_accounting's PLD on a fine grid (Δ = 2e-5, itself an upper bound a few
1e-5 above the truth).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from secagg.privacy import (
    ComposedEvent,
    GaussianEvent,
    LaplaceEvent,
    PLDAccountant,
    PoissonSampledEvent,
    RDPAccountant,
    SelfComposedEvent,
)

dpa = pytest.importorskip("dp_accounting")
from dp_accounting.pld import pld_privacy_accountant as dpa_pld  # noqa: E402

# dp_accounting PLDAccountant(value_discretization_interval=2e-5).get_epsilon(1e-5),
# computed once with dp-accounting 0.6.0 (each takes 1-30 s, too slow for the suite).
FINE_REFERENCE = {
    ("sg", 0.01, 0.8, 100): 1.5108375497555164,
    ("sg", 0.01, 0.8, 1000): 3.141014308340437,
    ("sg", 0.01, 1.1, 100): 0.5497636841565041,
    ("sg", 0.01, 1.1, 1000): 1.5153622493605792,
    ("sg", 0.01, 2.0, 100): 0.189794660282975,
    ("sg", 0.01, 2.0, 1000): 0.6220310381259142,
    ("sg", 0.1, 0.8, 100): 10.976377980411987,
    ("sg", 0.1, 0.8, 1000): 39.88008694645343,
    ("sg", 0.1, 1.1, 100): 5.912651779221783,
    ("sg", 0.1, 1.1, 1000): 21.09219089364035,
    ("sg", 0.1, 2.0, 100): 2.337399619992351,
    ("sg", 0.1, 2.0, 1000): 8.279290850447335,
    ("sl", 0.05, 1.0, 1000): 6.944078732955379,
    ("sl", 0.2, 0.5, 100): 22.96690332266354,
}
MIXED_REFERENCE = 3.61222443616848  # the ComposedEvent of _mixed() below
# The brief's reference: dp_accounting's fine-grid PLD and prv_accountant agree.
TRUE_EPSILON_MAIN = 5.1926


def _event(kind: str, q: float, noise: float, steps: int) -> SelfComposedEvent:
    inner = GaussianEvent(noise) if kind == "sg" else LaplaceEvent(noise)
    return SelfComposedEvent(PoissonSampledEvent(q, inner), steps)


def _mixed() -> ComposedEvent:
    return ComposedEvent(
        (
            GaussianEvent(2.0),
            SelfComposedEvent(PoissonSampledEvent(0.02, GaussianEvent(1.0)), 500),
            SelfComposedEvent(LaplaceEvent(10.0), 5),
        )
    )


def test_reference_setting_within_1e3_above_truth() -> None:
    acct = PLDAccountant().compose(PoissonSampledEvent(0.01, GaussianEvent(1.1)), count=10_000)
    eps = acct.get_epsilon(delta=1e-5)
    assert TRUE_EPSILON_MAIN - 5e-5 <= eps <= TRUE_EPSILON_MAIN + 1e-3
    assert eps < RDPAccountant().compose(
        PoissonSampledEvent(0.01, GaussianEvent(1.1)), 10_000
    ).get_epsilon(1e-5)


@pytest.mark.parametrize(("kind", "q", "noise", "steps"), sorted(FINE_REFERENCE))
def test_against_dp_accounting_fine_grid(kind: str, q: float, noise: float, steps: int) -> None:
    ref = FINE_REFERENCE[(kind, q, noise, steps)]
    eps = PLDAccountant().compose(_event(kind, q, noise, steps)).get_epsilon(1e-5)
    assert ref - 3e-5 <= eps <= ref + 1e-3
    if kind == "sg":
        rdp = RDPAccountant().compose(_event(kind, q, noise, steps)).get_epsilon(1e-5)
        assert eps <= rdp


def test_mixed_composition_against_dp_accounting() -> None:
    eps = PLDAccountant().compose(_mixed()).get_epsilon(1e-5)
    assert MIXED_REFERENCE - 3e-5 <= eps <= MIXED_REFERENCE + 1e-3


@pytest.mark.parametrize(
    ("q", "sigma", "steps"), [(0.01, 2.0, 1000), (0.05, 1.0, 200), (1.0, 5.0, 20)]
)
def test_live_cross_check_with_dp_accounting(q: float, sigma: float, steps: int) -> None:
    ours = PLDAccountant().compose(PoissonSampledEvent(q, GaussianEvent(sigma)), steps)
    theirs = dpa_pld.PLDAccountant(value_discretization_interval=1e-4)
    theirs.compose(
        dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma)), steps)
    )
    for delta in (1e-3, 1e-6):
        e_ours, e_theirs = ours.get_epsilon(delta), theirs.get_epsilon(delta)
        # Both are upper bounds; theirs is ~1e-5 to 1e-4 above the truth at this Δ.
        assert e_theirs - 2e-4 <= e_ours <= e_theirs + 1e-3
    for eps in (0.5, 1.0, 2.0):
        d_ours, d_theirs = ours.get_delta(eps), theirs.get_delta(eps)
        assert d_ours == pytest.approx(d_theirs, rel=2e-2, abs=1e-12)


def _gaussian_delta(eps: float, mu: float) -> float:
    """Exact δ(ε) of the Gaussian mechanism with μ = Δ/σ (Balle & Wang 2018)."""
    return float(
        stats.norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * stats.norm.cdf(-eps / mu - mu / 2)
    )


@pytest.mark.parametrize("numerical", [False, True], ids=["closed-form", "discretised"])
@pytest.mark.parametrize(("sigma", "steps"), [(1.0, 1), (3.0, 50), (20.0, 1000), (0.3, 2)])
def test_composed_gaussian_never_below_exact(sigma: float, steps: int, numerical: bool) -> None:
    # T Gaussians with noise multiplier σ are exactly one with σ/√T. Alone
    # they take the closed form; next to a negligible sampled Gaussian
    # (q = 1e-12) they go through discretisation and FFT composition.
    acct = PLDAccountant().compose(GaussianEvent(sigma), steps)
    if numerical:
        acct.compose(PoissonSampledEvent(1e-12, GaussianEvent(1.0)))
    mu = math.sqrt(steps) / sigma
    for eps in np.linspace(0.0, mu * mu / 2 + 6 * mu, 25):
        exact = _gaussian_delta(float(eps), mu)
        ours = acct.get_delta(float(eps))
        assert ours >= exact * (1 - 1e-12) - 1e-300
        assert ours <= exact * (1 + 2e-3) + 1e-12
    for delta in (1e-2, 1e-5, 1e-10):
        eps = acct.get_epsilon(delta)
        assert _gaussian_delta(eps, mu) <= delta * (1 + 1e-9)  # ε really certifies δ
        assert _gaussian_delta(eps - 1e-3 * max(1.0, eps), mu) > delta  # and is tight


@pytest.mark.parametrize("b", [0.5, 1.0, 3.0])
def test_single_laplace_never_below_exact(b: float) -> None:
    acct = PLDAccountant().compose(LaplaceEvent(b))
    for eps in np.linspace(0, 1 / b, 11):
        exact = max(0.0, 1 - math.exp((eps - 1 / b) / 2))
        ours = acct.get_delta(float(eps))
        assert exact - 1e-12 <= ours <= exact + 1e-4
    assert acct.get_delta(1 / b) <= 1e-15  # pure (1/b, 0)-DP is kept exactly
    assert acct.get_epsilon(1e-12) == pytest.approx(1 / b, abs=1e-6)


def _sampled_gaussian_delta(q: float, sigma: float, eps: float) -> float:
    """max over add/remove of ∫ (p - e^ε r)_+ for one sampled Gaussian step, by quadrature."""

    def norm(x: float, m: float) -> float:
        return math.exp(-((x - m) ** 2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))

    def mix(x: float) -> float:
        return (1 - q) * norm(x, 0.0) + q * norm(x, 1.0)

    out = 0.0
    for p, r in ((mix, lambda x: norm(x, 0.0)), (lambda x: norm(x, 0.0), mix)):
        val, _ = integrate.quad(
            lambda x, p=p, r=r: max(0.0, p(x) - math.exp(eps) * r(x)),
            -15 * sigma,
            1 + 15 * sigma,
            points=[0.0, 0.5, 1.0],
            limit=400,
            epsabs=1e-15,
            epsrel=1e-12,
        )
        out = max(out, val)
    return out


@pytest.mark.parametrize(("q", "sigma"), [(0.1, 0.8), (0.5, 1.0), (0.01, 0.5)])
def test_single_sampled_gaussian_step_never_below_exact(q: float, sigma: float) -> None:
    acct = PLDAccountant().compose(PoissonSampledEvent(q, GaussianEvent(sigma)))
    for eps in (0.0, 0.01, 0.05, 0.2, 1.0, 2.0):
        exact = _sampled_gaussian_delta(q, sigma, eps)
        ours = acct.get_delta(eps)
        assert ours >= exact - 1e-12
        assert ours <= exact + 2e-3 * exact + 1e-9


@pytest.mark.parametrize("interval", [0.05, 0.01])
def test_coarse_fixed_grid_is_still_an_upper_bound(interval: float) -> None:
    # Pessimism does not depend on the grid being fine.
    ref = FINE_REFERENCE[("sg", 0.01, 1.1, 1000)]
    coarse = PLDAccountant(value_discretization_interval=interval).compose(
        _event("sg", 0.01, 1.1, 1000)
    )
    eps = coarse.get_epsilon(1e-5)
    assert eps >= ref - 3e-5
    # Connect-the-dots error grows like T·Δ² (here up to ~0.8), never negative.
    assert eps <= ref + 1000 * interval**2


def test_tiny_delta_uses_a_valid_bound_not_fft_noise() -> None:
    acct = PLDAccountant().compose(PoissonSampledEvent(0.01, GaussianEvent(1.1)), 1000)
    deltas = (1e-5, 1e-10, 1e-15, 1e-30, 1e-60, 1e-200)
    eps = []
    for d in deltas:
        eps.append(acct.get_epsilon(d))
        assert acct.get_delta(eps[-1]) <= d * (1 + 1e-6)
    assert all(math.isfinite(e) for e in eps)
    assert eps == sorted(eps)  # smaller δ, larger ε
    # Far below float64 round-off of the FFT the Chernoff bound takes over (and
    # the tail truncation is lowered to match); it is an RDP-type bound on the
    # same pessimistic PLD, so close to RDP's.
    rdp = RDPAccountant().compose(PoissonSampledEvent(0.01, GaussianEvent(1.1)), 1000)
    for d, e in zip(deltas[3:], eps[3:], strict=True):
        assert e <= rdp.get_epsilon(d) * 1.05
    with pytest.raises(ValueError, match="RDPAccountant"):
        acct.get_epsilon(1e-299)


def test_large_epsilon_is_bounded_and_consistent() -> None:
    acct = PLDAccountant().compose(PoissonSampledEvent(0.5, GaussianEvent(0.3)), 300)
    rdp = RDPAccountant().compose(PoissonSampledEvent(0.5, GaussianEvent(0.3)), 300)
    eps = acct.get_epsilon(1e-5)
    assert 100 < eps <= rdp.get_epsilon(1e-5)
    assert acct.get_delta(eps) <= 1e-5 * (1 + 1e-6)


def test_compositions_are_cached() -> None:
    acct = PLDAccountant().compose(PoissonSampledEvent(0.01, GaussianEvent(1.1)), 1000)
    acct.get_epsilon(1e-5)
    first = acct._composed()
    acct.get_epsilon(1e-6)
    acct.get_delta(1.0)
    assert acct._composed() is first
    acct.compose(GaussianEvent(10.0))
    assert acct._composed() is not first


def test_constructor_validation() -> None:
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError):
            PLDAccountant(value_discretization_interval=bad)
        with pytest.raises(ValueError):
            PLDAccountant(target_error=bad)
