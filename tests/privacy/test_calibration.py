"""calibrate_noise_multiplier: verified, near-minimal, clear errors."""

from __future__ import annotations

import math

import pytest

from secagg.privacy import (
    GaussianEvent,
    PLDAccountant,
    PoissonSampledEvent,
    RDPAccountant,
    calibrate_noise_multiplier,
)

ACCOUNTANTS = {"pld": PLDAccountant, "rdp": RDPAccountant}


def _eps(kind: str, sigma: float, q: float, steps: int, delta: float) -> float:
    acct = ACCOUNTANTS[kind]().compose(PoissonSampledEvent(q, GaussianEvent(sigma)), steps)
    return acct.get_epsilon(delta)


@pytest.mark.parametrize("kind", sorted(ACCOUNTANTS))
@pytest.mark.parametrize(
    ("target", "q", "steps"),
    [(3.0, 0.01, 10_000), (1.0, 0.001, 1000), (8.0, 0.1, 1000), (0.5, 1.0, 1), (20.0, 0.05, 500)],
)
def test_result_meets_target_and_is_near_minimal(
    kind: str, target: float, q: float, steps: int
) -> None:
    sigma = calibrate_noise_multiplier(
        target_epsilon=target, delta=1e-5, sampling_probability=q, steps=steps, accountant=kind
    )
    assert _eps(kind, sigma, q, steps, 1e-5) <= target
    assert _eps(kind, sigma * (1 - 0.002), q, steps, 1e-5) > target


def test_pld_needs_less_noise_than_rdp() -> None:
    kw = {"target_epsilon": 3.0, "delta": 1e-5, "sampling_probability": 0.01, "steps": 10_000}
    pld = calibrate_noise_multiplier(**kw)  # default accountant is "pld"
    rdp = calibrate_noise_multiplier(**kw, accountant="rdp")
    assert pld < rdp
    assert pld == pytest.approx(1.5658, rel=2e-3)  # dp_accounting's PLD calibration: 1.5650


def test_accepts_an_accountant_factory() -> None:
    sigma = calibrate_noise_multiplier(
        2.0, 1e-6, 0.02, 300, accountant=lambda: RDPAccountant([2.0, 4.0, 8.0, 16.0, 32.0])
    )
    acct = RDPAccountant([2.0, 4.0, 8.0, 16.0, 32.0]).compose(
        PoissonSampledEvent(0.02, GaussianEvent(sigma)), 300
    )
    assert acct.get_epsilon(1e-6) <= 2.0


def test_tighter_tolerance() -> None:
    sigma = calibrate_noise_multiplier(2.0, 1e-5, 0.02, 500, accountant="rdp", tolerance=1e-5)
    assert _eps("rdp", sigma, 0.02, 500, 1e-5) <= 2.0
    assert _eps("rdp", sigma * (1 - 2e-5), 0.02, 500, 1e-5) > 2.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"target_epsilon": 0.0},
        {"target_epsilon": -1.0},
        {"target_epsilon": math.inf},
        {"target_epsilon": math.nan},
        {"delta": 0.0},
        {"delta": 1.0},
        {"delta": -1e-5},
        {"sampling_probability": 0.0},
        {"sampling_probability": 1.5},
        {"steps": 0},
        {"steps": 1.5},
        {"steps": True},
        {"accountant": "moments"},
        {"tolerance": 0.0},
        {"tolerance": 0.9},
    ],
)
def test_invalid_arguments(kwargs: dict) -> None:
    args = {
        "target_epsilon": 3.0,
        "delta": 1e-5,
        "sampling_probability": 0.01,
        "steps": 100,
    } | kwargs
    with pytest.raises(ValueError):
        calibrate_noise_multiplier(**args)


@pytest.mark.parametrize("kind", sorted(ACCOUNTANTS))
def test_unreachable_targets_raise(kind: str) -> None:
    # Needs σ far above 1e4.
    with pytest.raises(ValueError, match="not reachable"):
        calibrate_noise_multiplier(1e-6, 1e-10, 1.0, 10**6, accountant=kind)
    # Met by any σ ≥ 1e-3: nothing meaningful to calibrate.
    with pytest.raises(ValueError, match="too large"):
        calibrate_noise_multiplier(1e9, 0.5, 1e-3, 1, accountant=kind)
