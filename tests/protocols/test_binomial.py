"""The SecAgg+ degree search's binomial tails, against scipy and exact rationals.

``protocols.secagg.binomial`` replaced ``scipy.stats.binom`` in the degree
search (so a SecAgg+ round needs no scipy). The degree is a security
parameter, so the replacement is checked three ways: its tails agree with
scipy's to a relative 1e-12 where the search decides (scipy's own error is of
that order far out in a tail), they are correctly rounded (within one ulp)
against exact rational sums and within two ulps of 50-digit mpmath sums, and ``choose_degree``/``auto_threshold`` pick exactly what the previous,
scipy-based search picked.
"""

from __future__ import annotations

import math
from fractions import Fraction
from unittest import mock

import mpmath
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from protocols.secagg import binomial, graph

probabilities = st.floats(0.0, 1.0) | st.sampled_from([0.0, 0.01, 0.05, 0.5, 0.95, 0.99, 1.0])


@st.composite
def tails(draw, max_n: int):
    n = draw(st.integers(0, max_n))
    x = draw(st.integers(-2, n + 2))
    return x, n, draw(probabilities)


def _close(ours: float, theirs: float) -> bool:
    # Far out in a tail scipy's own relative error grows (4e-12 at 1e-290, where
    # these sums are exact to the last digit: see the mpmath test), so compare
    # where the degree search decides: its targets are >= 2^-128 / n.
    if theirs < 1e-100:
        return ours < 1e-99
    return math.isclose(ours, theirs, rel_tol=1e-12)


@settings(max_examples=400, deadline=None)
@given(case=tails(max_n=2000))
def test_tails_agree_with_scipy(case):
    x, n, p = case
    assert _close(binomial.cdf(x, n, p), float(binom.cdf(x, n, p)))
    assert _close(binomial.sf(x, n, p), float(binom.sf(x, n, p)))


@settings(max_examples=200, deadline=None)
@given(case=tails(max_n=80))
def test_tails_are_correctly_rounded_against_exact_rationals(case):
    x, n, p = case
    q = Fraction(p)
    pmf = [math.comb(n, i) * q**i * (1 - q) ** (n - i) for i in range(n + 1)]
    exact_cdf = float(sum(pmf[: max(x + 1, 0)], Fraction(0)))
    exact_sf = float(sum(pmf[max(x + 1, 0) :], Fraction(0)))
    assert abs(binomial.cdf(x, n, p) - exact_cdf) <= math.ulp(exact_cdf)
    assert abs(binomial.sf(x, n, p) - exact_sf) <= math.ulp(exact_sf)


@settings(max_examples=40, deadline=None)
@given(case=tails(max_n=2000))
def test_tails_match_a_high_precision_sum(case):
    x, n, p = case
    mpmath.mp.dps = 50
    q = mpmath.mpf(p)

    def tail(lo: int, hi: int) -> float:
        terms = (mpmath.binomial(n, i) * q**i * (1 - q) ** (n - i) for i in range(lo, min(hi, n) + 1))
        return float(mpmath.fsum(terms))

    lo = max(x + 1, 0)
    for ours, exact in (
        (binomial.cdf(x, n, p), tail(0, lo - 1)),
        (binomial.sf(x, n, p), tail(lo, n)),
    ):
        assert abs(ours - exact) <= 2 * math.ulp(exact)


def test_tails_reject_nonsense_arguments():
    for bad in [(0, -1, 0.5), (0, 3, 1.5), (0, 3, -0.1), (0.5, 3, 0.5), (0, True, 0.5)]:
        with pytest.raises(ValueError):
            binomial.cdf(*bad)
        with pytest.raises(ValueError):
            binomial.sf(*bad)


# -- the degree search itself ----------------------------------------------------------


class _ScipyTails:
    """The tails the search used before, from scipy.stats.binom (the reference)."""

    @staticmethod
    def cdf(x: int, n: int, p: float) -> float:
        return float(binom.cdf(x, n, p))

    @staticmethod
    def sf(x: int, n: int, p: float) -> float:
        return float(binom.sf(x, n, p))


def _with_scipy_tails(fn, *args, **kwargs):
    """Run a graph search with scipy's tails in place of protocols.secagg.binomial."""
    with mock.patch.object(graph, "binomial", _ScipyTails):
        return fn(*args, **kwargs)


targets = st.fixed_dictionaries(
    {
        "corrupt_fraction": st.sampled_from([0.0, 0.01, 0.05, 0.1, 0.2])
        | st.floats(0.0, 0.3, exclude_max=True),
        "dropout_rate": st.sampled_from([0.0, 0.01, 0.05, 0.1, 0.3])
        | st.floats(0.0, 0.4, exclude_max=True),
        "security_bits": st.integers(1, 128),
        "correctness_bits": st.integers(1, 64),
    }
)
thresholds = st.none() | st.floats(0.05, 1.0) | st.integers(1, 40)


@settings(max_examples=150, deadline=None)
@given(n=st.integers(3, 1500), threshold=thresholds, targets=targets)
def test_degree_search_picks_what_the_scipy_search_picked(n, threshold, targets):
    assert graph.choose_degree(n, threshold, **targets) == _with_scipy_tails(
        graph.choose_degree, n, threshold, **targets
    )


@settings(max_examples=150, deadline=None)
@given(
    group_size=st.integers(1, 400),
    n=st.integers(1, 10_000),
    dropout_rate=st.floats(0.0, 0.5),
    correctness_bits=st.integers(1, 128),
)
def test_auto_threshold_picks_what_the_scipy_search_picked(
    group_size, n, dropout_rate, correctness_bits
):
    kwargs = {"dropout_rate": dropout_rate, "correctness_bits": correctness_bits}
    assert graph.auto_threshold(group_size, n, **kwargs) == _with_scipy_tails(
        graph.auto_threshold, group_size, n, **kwargs
    )
