"""Noise calibration: the smallest noise multiplier meeting an (ε, δ) target.

ε(σ) for a Poisson-sampled Gaussian composed ``steps`` times is decreasing in
the noise multiplier σ, so the smallest admissible σ is found by bracketing
and then shrinking the bracket (dp_accounting's ``mechanism_calibration``
bisects). With the PLD accountant a cheaper, coarser (still pessimistic) PLD
first locates the root to ~2%, and the accurate PLD finishes.

The answer is always *verified*: the returned σ was evaluated with the
requested accountant and met the target, and a σ at most a factor
``1 + tolerance`` smaller was evaluated and missed it. The root-finder works
on log ε against log σ, which is nearly linear, with false position
(Illinois) steps, so a calibration costs a handful of accountant calls.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

from secagg.privacy.accountant import PrivacyAccountant, _validate_delta
from secagg.privacy.events import GaussianEvent, PoissonSampledEvent
from secagg.privacy.pld import PLDAccountant
from secagg.privacy.rdp import RDPAccountant

__all__ = ["calibrate_noise_multiplier"]

#: Search range for σ. Below it ε is astronomically large, above it any
#: reasonable target is met; targets needing σ outside it are refused.
_SIGMA_MIN = 1e-3
_SIGMA_MAX = 1e4


def _epsilon_fn(
    factory: Callable[[], PrivacyAccountant], q: float, steps: int, delta: float
) -> Callable[[float], float]:
    def eps(sigma: float) -> float:
        acct = factory()
        acct.compose(PoissonSampledEvent(q, GaussianEvent(sigma)), steps)
        return acct.get_epsilon(delta)

    return eps


class _LogLog:
    """f(x) = log ε(e^x) - log target: decreasing in x = log σ, nearly linear.

    Caches evaluations; clamps ε = 0 / ∞ to finite surrogates so the
    root-finder can interpolate.
    """

    def __init__(self, eps: Callable[[float], float], target: float) -> None:
        self.eps, self.log_target = eps, math.log(target)
        self.memo: dict[float, float] = {}

    def __call__(self, x: float) -> float:
        if x not in self.memo:
            self.memo[x] = self._eval(x)
        return self.memo[x]

    def _eval(self, x: float) -> float:
        if x < math.log(_SIGMA_MIN):
            raise ValueError(
                f"target_epsilon is met even with noise_multiplier < {_SIGMA_MIN}; "
                "the target is too large to calibrate meaningfully"
            )
        if x > math.log(_SIGMA_MAX):
            raise ValueError(
                f"target_epsilon is not reachable with noise_multiplier <= {_SIGMA_MAX}"
            )
        e = self.eps(math.exp(x))
        if e <= 0:
            return -50.0
        if math.isinf(e):
            return 50.0
        return math.log(e) - self.log_target


def _solve(f: _LogLog, a: float, b: float, width: float) -> tuple[float, float, float, float]:
    """Bracket the root of decreasing ``f`` starting from guesses a < b, then shrink.

    Returns (a, b, f(a), f(b)) with f(a) > 0 ≥ f(b) and b - a ≤ ``width``.
    Shrinking uses the Illinois variant of false position (superlinear on
    this nearly linear function), with a bisection step whenever false
    position stalls, so the bracket always closes.
    """
    fa, fb = f(a), f(b)
    step = max(b - a, 1e-3)
    while fa <= 0:  # root is below a
        b, fb = a, fa
        step *= 2
        a = b - step
        fa = f(a)
    while fb > 0:  # root is above b
        a, fa = b, fb
        step *= 2
        b = a + step
        fb = f(b)
    side = 0
    ga, gb = fa, fb  # Illinois-weighted values
    while b - a > width:
        w = b - a
        r = (a * gb - b * ga) / (gb - ga)  # false-position root estimate
        if w < 8 * width:
            # Close the bracket: step just across the estimated root from
            # the endpoint nearest to it, so a confirmed guess ends the search.
            c = (
                max(b - 0.98 * width, r - 0.3 * width)
                if b - r < r - a
                else min(a + 0.98 * width, r + 0.3 * width)
            )
        else:
            c = r
        c = min(max(c, a + 0.02 * w), b - 0.02 * w)  # strictly inside
        fc = f(c)
        if fc > 0:
            a, fa, ga = c, fc, fc
            if side == -1:
                gb /= 2
            side = -1
        else:
            b, fb, gb = c, fc, fc
            if side == +1:
                ga /= 2
            side = +1
    return a, b, fa, fb


def calibrate_noise_multiplier(
    target_epsilon: float,
    delta: float,
    sampling_probability: float,
    steps: int,
    accountant: str | Callable[[], PrivacyAccountant] = "pld",
    tolerance: float = 1e-3,
) -> float:
    """Smallest noise multiplier σ (up to ``tolerance``) with ε(σ) ≤ ``target_epsilon``.

    The mechanism is the Poisson-sampled Gaussian (DP-SGD / DP-FedAvg):
    ``PoissonSampledEvent(sampling_probability, GaussianEvent(σ))`` composed
    ``steps`` times, accounted at ``delta``.

    Args:
        target_epsilon: the ε budget (> 0).
        delta: δ in (0, 1).
        sampling_probability: Poisson sampling rate q in (0, 1].
        steps: number of compositions (≥ 1).
        accountant: ``"pld"`` (tight, default), ``"rdp"``, or a zero-argument
            callable returning a fresh :class:`PrivacyAccountant`.
        tolerance: relative precision on σ: the result σ satisfies
            ε(σ) ≤ target and ε(σ / (1 + tolerance)) > target.

    Returns:
        σ, verified with the chosen accountant.

    Raises:
        ValueError: invalid arguments, or a target that no σ in
            [1e-3, 1e4] meets (or that every σ ≥ 1e-3 meets).

    References: dp_accounting ``mechanism_calibration``; accountants as in
    :class:`PLDAccountant` and :class:`RDPAccountant`.
    """
    if isinstance(target_epsilon, bool) or not isinstance(target_epsilon, numbers.Real):
        raise ValueError(f"target_epsilon must be a positive number, got {target_epsilon!r}")
    target = float(target_epsilon)
    if not (target > 0 and math.isfinite(target)):
        raise ValueError(f"target_epsilon must be positive and finite, got {target_epsilon!r}")
    delta = _validate_delta(delta)
    if not 0 < delta < 1:
        raise ValueError(
            f"delta must be in (0, 1): the Gaussian mechanism has no finite ε at δ = 0, got {delta!r}"
        )
    if isinstance(sampling_probability, bool) or not isinstance(sampling_probability, numbers.Real):
        raise ValueError(f"sampling_probability must be in (0, 1], got {sampling_probability!r}")
    q = float(sampling_probability)
    if not 0 < q <= 1:
        raise ValueError(f"sampling_probability must be in (0, 1], got {sampling_probability!r}")
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    steps = int(steps)
    if not (isinstance(tolerance, numbers.Real) and 0 < tolerance < 0.5):
        raise ValueError(f"tolerance must be in (0, 0.5), got {tolerance!r}")
    tol = float(tolerance)

    width = math.log1p(tol)
    if accountant == "pld":
        fine = _LogLog(_epsilon_fn(PLDAccountant, q, steps, delta), target)
        # A looser discretisation (still an upper bound) is several times
        # cheaper; it locates the root and the slope, then a Newton step on
        # the accurate ε starts a bracket of the final width around its root.
        coarse = _LogLog(
            _epsilon_fn(lambda: PLDAccountant(target_error=4e-3), q, steps, delta), target
        )
        a, b, fa, fb = _solve(coarse, 0.0, math.log(2.0), 0.02)
        slope = (fa - fb) / (b - a)  # -d log ε / d log σ > 0
        x0 = b
        f0 = fine(x0)
        x = x0 + f0 / slope if slope > 0 else x0  # Newton step for the accurate root
        # Guess a bracket of 0.98 x width around x, reusing x0 if it is close.
        if f0 <= 0 and x0 - 0.98 * width <= x <= x0:
            lo_x, hi_x = x0 - 0.98 * width, x0
        elif f0 > 0 and x0 <= x <= x0 + 0.98 * width:
            lo_x, hi_x = x0, x0 + 0.98 * width
        else:
            lo_x, hi_x = x - 0.49 * width, x + 0.49 * width
        a, b, _, _ = _solve(fine, lo_x, hi_x, width)
    elif accountant == "rdp" or callable(accountant):
        factory = RDPAccountant if accountant == "rdp" else accountant
        f = _LogLog(_epsilon_fn(factory, q, steps, delta), target)
        a, b, _, _ = _solve(f, 0.0, math.log(2.0), width)
    else:
        raise ValueError(f"accountant must be 'pld', 'rdp' or a factory, got {accountant!r}")
    return math.exp(b)
