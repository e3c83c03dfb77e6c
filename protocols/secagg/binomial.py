"""Binomial tail probabilities for the SecAgg+ degree search, without scipy.

:func:`~protocols.secagg.graph.choose_degree` compares union bounds of
binomial tails with targets such as 2^-40 / n, so the tails must be accurate
far out (a value that underflows or loses its relative precision would change
the chosen degree, which is a security parameter). Here each tail is summed
from the probability mass function term by term, in decimal arithmetic with
40 significant digits and an exponent range no tail can leave: the terms are
all positive (no cancellation), so for n up to millions the sum is exact to
far better than 1e-30 relative before its one rounding to a float. scipy's
``binom.cdf``/``binom.sf`` (Boost's incomplete beta) agree to 1e-12 relative
where the degree search decides (tails above 1e-100) and drift further out
(4e-12 at 1e-290, where these sums still match a 50-digit mpmath sum);
``tests/protocols/test_binomial.py`` checks against scipy, exact rationals and
mpmath, and that the search picks what the scipy-based one picked.

The mass function of one (n, p) is computed once and kept with its prefix and
suffix sums, because the degree search asks many tails of the same group size.
"""

from __future__ import annotations

import decimal
import functools

__all__ = ["cdf", "sf"]

_CONTEXT = decimal.Context(prec=40, Emin=-(10**9), Emax=10**9)


def _check(x: int, n: int, p: float) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    if isinstance(x, bool) or not isinstance(x, int):
        raise ValueError(f"x must be an int, got {x!r}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p!r}")


@functools.lru_cache(maxsize=128)
def _tails(n: int, p: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(P[X <= x] for x = 0..n, P[X > x] for x = 0..n) with X ~ Bin(n, p), 0 < p < 1."""
    ctx = _CONTEXT
    # Every operation rounds to 40 digits: n terms carry a relative error of about
    # n * 1e-40, far below the one rounding of each tail to a float (1e-16).
    dp = ctx.create_decimal_from_float(p)
    dq = ctx.subtract(1, dp)
    ratio = ctx.divide(dp, dq)
    term = ctx.power(dq, n)  # P[X = 0]
    pmf = [term]
    for i in range(n):
        # P[X = i + 1] = P[X = i] * (n - i) / (i + 1) * p / q
        term = ctx.multiply(ctx.divide(ctx.multiply(term, n - i), i + 1), ratio)
        pmf.append(term)
    lower, total = [], decimal.Decimal(0)
    for term in pmf:
        total = ctx.add(total, term)
        lower.append(float(total))
    upper, total = [0.0], decimal.Decimal(0)  # P[X > n] = 0
    for term in reversed(pmf[1:]):
        total = ctx.add(total, term)
        upper.append(float(total))
    upper.reverse()
    return tuple(lower), tuple(upper)


def cdf(x: int, n: int, p: float) -> float:
    """P[X <= x] for X ~ Bin(n, p) (``scipy.stats.binom.cdf(x, n, p)``)."""
    _check(x, n, p)
    if x < 0:
        return 0.0
    if x >= n:
        return 1.0
    if p == 0.0 or p == 1.0:  # a point mass at 0 or at n
        return 1.0 if p == 0.0 else 0.0
    return _tails(n, float(p))[0][x]


def sf(x: int, n: int, p: float) -> float:
    """P[X > x] for X ~ Bin(n, p) (``scipy.stats.binom.sf(x, n, p)``)."""
    _check(x, n, p)
    if x < 0:
        return 1.0
    if x >= n:
        return 0.0
    if p == 0.0 or p == 1.0:
        return 0.0 if p == 0.0 else 1.0
    return _tails(n, float(p))[1][x]
