"""Vectorized Z_{2^bits} arithmetic against Python big-integer arithmetic, for every bits in [1, 64]."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg import modular


@st.composite
def residues(draw, min_size: int = 0, max_size: int = 12):
    bits = draw(st.integers(1, 64))
    n = draw(st.integers(min_size, max_size))
    vec = st.lists(st.integers(0, (1 << bits) - 1), min_size=n, max_size=n)
    return bits, draw(vec), draw(vec)


def _arr(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


@settings(max_examples=200, deadline=None)
@given(case=residues())
def test_add_sub_neg_match_big_integers(case):
    bits, a, b = case
    m = 1 << bits
    A, B = _arr(a), _arr(b)
    assert modular.add(A, B, bits).tolist() == [(x + y) % m for x, y in zip(a, b, strict=True)]
    assert modular.sub(A, B, bits).tolist() == [(x - y) % m for x, y in zip(a, b, strict=True)]
    assert modular.neg(A, bits).tolist() == [(-x) % m for x in a]
    # Inputs are untouched and outputs are fresh uint64 arrays.
    assert A.tolist() == a and B.tolist() == b
    assert modular.add(A, B, bits).dtype == np.uint64


@settings(max_examples=100, deadline=None)
@given(
    bits=st.integers(1, 64),
    n=st.integers(1, 8),
    k=st.integers(0, 20),
    data=st.data(),
)
def test_sum_vectors_matches_big_integers(bits, n, k, data):
    m = 1 << bits
    vectors = [data.draw(st.lists(st.integers(0, m - 1), min_size=n, max_size=n)) for _ in range(k)]
    total = modular.sum_vectors([_arr(v) for v in vectors], bits, dim=n)
    expected = [sum(col) % m for col in zip(*vectors, strict=True)] if vectors else [0] * n
    assert total.tolist() == expected
    assert total.dtype == np.uint64


@settings(max_examples=200, deadline=None)
@given(bits=st.integers(1, 64), data=st.data())
def test_reduce_and_mask_for_arbitrary_uint64(bits, data):
    values = data.draw(st.lists(st.integers(0, 2**64 - 1), max_size=10))
    assert modular.reduce(_arr(values), bits).tolist() == [v % (1 << bits) for v in values]
    assert int(modular.mask(bits)) == (1 << bits) - 1


@settings(max_examples=300, deadline=None)
@given(case=residues(min_size=1))
def test_to_signed_matches_twos_complement(case):
    bits, a, _ = case
    half = 1 << (bits - 1)
    expected = [v - (1 << bits) if v >= half else v for v in a]
    got = modular.to_signed(_arr(a), bits)
    assert got.dtype == np.int64
    assert got.tolist() == expected
    assert all(-half <= v < half for v in got.tolist())


@settings(max_examples=200, deadline=None)
@given(bits=st.integers(1, 64), data=st.data())
def test_signed_round_trip(bits, data):
    half = 1 << (bits - 1)
    signed = data.draw(st.lists(st.integers(-half, half - 1), max_size=10))
    ring = np.array(signed, dtype=np.int64).view(np.uint64) & modular.mask(bits)
    assert modular.to_signed(ring, bits).tolist() == signed


def test_extreme_values():
    top = np.array([2**64 - 1, 2**63, 0], dtype=np.uint64)
    assert modular.add(top, top, 64).tolist() == [2**64 - 2, 0, 0]
    assert modular.neg(top, 64).tolist() == [1, 2**63, 0]
    assert modular.to_signed(top, 64).tolist() == [-1, -(2**63), 0]
    assert modular.to_signed(np.array([1], dtype=np.uint64), 1).tolist() == [-1]
    # bits = 63: 2^63 does not fit in int64, a past overflow in to_signed.
    near = np.array([0, 2**62 - 1, 2**62, 2**63 - 1], dtype=np.uint64)
    assert modular.to_signed(near, 63).tolist() == [0, 2**62 - 1, -(2**62), -1]


@pytest.mark.parametrize("bits", [0, 65, -1])
def test_bits_out_of_range_raise(bits):
    with pytest.raises(ValueError):
        modular.check_bits(bits)
    with pytest.raises(ValueError):
        modular.add(_arr([1]), _arr([1]), bits)


@pytest.mark.parametrize("bits", [True, 32.0, "32", None])
def test_bits_of_wrong_type_raise(bits):
    with pytest.raises(TypeError):
        modular.check_bits(bits)


def test_non_uint64_inputs_raise():
    with pytest.raises(TypeError):
        modular.add(np.array([1], dtype=np.int64), _arr([1]), 8)
    with pytest.raises(TypeError):
        modular.to_signed(np.array([1.0]), 8)
    with pytest.raises(TypeError):
        modular.sum_vectors([np.array([1], dtype=np.uint32)], 8)


def test_sum_vectors_edge_cases():
    with pytest.raises(ValueError):
        modular.sum_vectors([], 8)
    assert modular.sum_vectors([], 8, dim=3).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="shape"):
        modular.sum_vectors([_arr([1, 2]), _arr([1])], 8)
    first = _arr([250, 7])
    modular.sum_vectors([first, _arr([10, 1])], 8)
    assert first.tolist() == [250, 7]  # the first vector is not modified in place
