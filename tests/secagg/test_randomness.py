"""Randomness sources and unbiased sampling helpers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from secagg.randomness import (
    DeterministicRandom,
    RandomSource,
    SystemRandom,
    default_rng,
    random_below,
    random_below_array,
    uniform_floats,
)


@settings(max_examples=50, deadline=None)
@given(seed=st.one_of(st.integers(), st.binary(max_size=16), st.text(max_size=16)))
def test_deterministic_random_is_reproducible_per_seed(seed):
    a, b = DeterministicRandom(seed), DeterministicRandom(seed)
    assert a.bytes(100) == b.bytes(100)
    # A stream, not a function of the call: chunking does not change it.
    c = DeterministicRandom(seed)
    whole = DeterministicRandom(seed).bytes(64)
    assert c.bytes(10) + c.bytes(0) + c.bytes(54) == whole


@settings(max_examples=50, deadline=None)
@given(s1=st.integers(), s2=st.integers())
def test_deterministic_random_differs_across_seeds(s1, s2):
    assert (DeterministicRandom(s1).bytes(32) == DeterministicRandom(s2).bytes(32)) == (s1 == s2)


def test_seed_types_are_domain_separated():
    streams = {DeterministicRandom(s).bytes(32) for s in (1, "1", b"1", 0, "", b"")}
    assert len(streams) == 6


def test_deterministic_random_rejects_bad_input():
    with pytest.raises(TypeError):
        DeterministicRandom(1.5)
    with pytest.raises(ValueError):
        DeterministicRandom(0).bytes(-1)
    assert "DeterministicRandom" in repr(DeterministicRandom(3))


def test_system_random():
    r = SystemRandom()
    assert isinstance(r, RandomSource)
    a, b = r.bytes(32), r.bytes(32)
    assert len(a) == 32 and a != b
    assert r.bytes(0) == b""
    with pytest.raises(ValueError):
        r.bytes(-1)


def test_system_random_large_requests_are_a_fresh_chacha20_stream_per_call(monkeypatch):
    """Above DIRECT_OS_BYTES the bytes are ChaCha20 under a key drawn from os.urandom per call."""
    import os

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    from secagg import randomness

    n = randomness.DIRECT_OS_BYTES + 1000
    keys = [bytes([i]) * 32 for i in (1, 2)]
    drawn = []

    def fake_urandom(k):
        assert k == 32  # only the key comes from the OS
        drawn.append(keys[len(drawn)])
        return drawn[-1]

    monkeypatch.setattr(os, "urandom", fake_urandom)
    r = SystemRandom()
    a, b = r.bytes(n), r.bytes(n)
    for key, out in zip(keys, (a, b)):
        # Independent reference: RFC 8439 ChaCha20 with a zero counter and nonce.
        ref = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor().update(bytes(n))
        assert out == ref
    assert a != b


def test_system_random_large_requests_look_uniform():
    data = np.frombuffer(SystemRandom().bytes(1 << 20), dtype=np.uint8)
    assert len(data) == 1 << 20
    assert stats.chisquare(np.bincount(data, minlength=256)).pvalue > 1e-6
    assert SystemRandom().bytes(1 << 16) != SystemRandom().bytes(1 << 16)


def test_default_rng():
    assert isinstance(default_rng(None), SystemRandom)
    d = DeterministicRandom(0)
    assert default_rng(d) is d
    with pytest.raises(TypeError):
        default_rng(object())


@pytest.mark.parametrize("numpy_rng", [np.random.default_rng(0), np.random.RandomState(0)])
def test_numpy_generators_are_refused_although_they_have_a_bytes_method(numpy_rng):
    # Both have .bytes(n), so duck typing alone would accept them for secrets.
    assert callable(numpy_rng.bytes)
    with pytest.raises(TypeError, match="not cryptographically secure"):
        default_rng(numpy_rng)
    with pytest.raises(TypeError):
        random_below(10, numpy_rng)


@settings(max_examples=100, deadline=None)
@given(bound=st.integers(1, 2**300), seed=st.integers(0, 2**32))
def test_random_below_stays_in_range(bound, seed):
    rng = DeterministicRandom(seed)
    for _ in range(5):
        assert 0 <= random_below(bound, rng) < bound


def test_random_below_bound_one_and_invalid_bounds():
    assert random_below(1) == 0
    for bad in (0, -5):
        with pytest.raises(ValueError):
            random_below(bad)


@pytest.mark.parametrize("bound", [2, 3, 10, 129, 1000])
def test_random_below_is_uniform_chi_square(bound):
    # Bounds just above a power of two reject ~half the candidates: a modulo
    # shortcut would be visibly biased there.
    rng = DeterministicRandom(f"chi2-{bound}")
    n = 30 * bound + 10_000
    counts = np.bincount([random_below(bound, rng) for _ in range(n)], minlength=bound)
    assert counts.size == bound
    assert stats.chisquare(counts).pvalue > 1e-4


def test_random_below_large_non_power_of_two_bound_is_uniform_by_sixths():
    bound = 3 * 2**200 + 12345
    rng = DeterministicRandom("large")
    samples = [random_below(bound, rng) for _ in range(12_000)]
    buckets = np.bincount([s * 6 // bound for s in samples], minlength=6)
    assert buckets.size == 6
    assert stats.chisquare(buckets).pvalue > 1e-4


def test_random_below_array():
    out = random_below_array(17, 500, DeterministicRandom(1))
    assert len(out) == 500
    assert all(0 <= v < 17 for v in out)
    assert out == random_below_array(17, 500, DeterministicRandom(1))


def test_uniform_floats():
    u = uniform_floats(100_000, DeterministicRandom(5))
    assert u.dtype == np.float64 and u.shape == (100_000,)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / u.size)
    assert stats.kstest(u, "uniform").pvalue > 1e-4
    assert uniform_floats(0).shape == (0,)
    with pytest.raises(ValueError):
        uniform_floats(-1)


def test_standard_normals_follow_the_normal_law():
    import statistics

    from secagg.randomness import DeterministicRandom, standard_normals

    n = 20_000
    z = np.sort(standard_normals(n, DeterministicRandom("normals")))
    assert z.shape == (n,) and np.isfinite(z).all()
    # Kolmogorov-Smirnov against the standard normal CDF of the standard library
    # (an independent implementation): D < 1.63 / sqrt(n) at the 1% level.
    cdf = np.array([statistics.NormalDist().cdf(float(v)) for v in z])
    ranks = np.arange(1, n + 1) / n
    distance = max(np.max(ranks - cdf), np.max(cdf - (ranks - 1 / n)))
    assert distance < 1.63 / np.sqrt(n)
    assert len(standard_normals(3, DeterministicRandom(1))) == 3
    assert len(standard_normals(0)) == 0
