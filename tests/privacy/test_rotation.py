"""The randomized Hadamard rotation: orthonormal, invertible, public and seed-determined."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.linalg import hadamard

from secagg.privacy.rotation import (
    RandomizedHadamard,
    fwht,
    next_power_of_two,
    rademacher_signs,
)

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def vectors(draw: st.DrawFn) -> np.ndarray:
    dim = draw(st.integers(min_value=1, max_value=300))
    return draw(hnp.arrays(np.float64, dim, elements=finite))


def test_next_power_of_two() -> None:
    assert [next_power_of_two(n) for n in [1, 2, 3, 4, 5, 1000, 1024, 1025]] == [
        1, 2, 4, 4, 8, 1024, 1024, 2048,
    ]
    with pytest.raises(ValueError):
        next_power_of_two(0)


@pytest.mark.parametrize("size", [1, 2, 8, 64, 512])
def test_fwht_matches_dense_hadamard(size: int) -> None:
    x = np.linspace(-3, 5, 3 * size).reshape(3, size)
    dense = x @ hadamard(size).T / np.sqrt(size)
    assert np.allclose(fwht(x), dense, atol=1e-12)
    # Self-inverse, and the input is not modified.
    before = x.copy()
    assert np.allclose(fwht(fwht(x)), x, atol=1e-12)
    assert np.array_equal(x, before)


def test_fwht_rejects_non_power_of_two() -> None:
    with pytest.raises(ValueError):
        fwht(np.zeros(6))


@settings(max_examples=150, deadline=None)
@given(x=vectors(), seed=st.integers(min_value=0, max_value=2**64))
def test_round_trip_and_norm_preservation(x: np.ndarray, seed: int) -> None:
    rot = RandomizedHadamard(x.size, seed)
    y = rot.forward(x)
    assert y.shape == (next_power_of_two(x.size),)
    norm = float(np.linalg.norm(x))
    assert abs(float(np.linalg.norm(y)) - norm) <= 1e-12 * max(norm, 1.0)
    assert np.allclose(rot.inverse(y), x, rtol=0, atol=1e-12 * max(norm, 1.0))


@settings(max_examples=40, deadline=None)
@given(seed=st.binary(max_size=40), batch=st.integers(1, 5), dim=st.integers(1, 100))
def test_batch_equals_rowwise(seed: bytes, batch: int, dim: int) -> None:
    rot = RandomizedHadamard(dim, seed)
    xs = np.arange(batch * dim, dtype=np.float64).reshape(batch, dim) - 7.5
    ys = rot.forward(xs)
    for i in range(batch):
        assert np.allclose(ys[i], rot.forward(xs[i]), atol=1e-12)
    assert np.allclose(rot.inverse(ys), xs, atol=1e-9)


def test_signs_are_public_deterministic_and_seed_separated() -> None:
    a = rademacher_signs(b"round-1", 4096)
    assert np.array_equal(a, rademacher_signs(b"round-1", 4096))
    assert set(np.unique(a)) == {-1.0, 1.0}
    # Balanced (binomial(4096, 1/2) within 6 sd) and different across seeds/types.
    assert abs(a.sum()) < 6 * np.sqrt(4096)
    assert not np.array_equal(a, rademacher_signs(b"round-2", 4096))
    assert not np.array_equal(rademacher_signs(1, 256), rademacher_signs("1", 256))
    assert not np.array_equal(rademacher_signs(1, 256), rademacher_signs(b"1", 256))
    # A prefix property: asking for fewer signs gives a prefix (SHAKE is an XOF).
    assert np.array_equal(rademacher_signs(b"round-1", 100), a[:100])
    with pytest.raises(TypeError):
        rademacher_signs(True, 8)  # type: ignore[arg-type]


def test_rotation_flattens_a_spike() -> None:
    # A one-hot vector becomes perfectly flat: every coordinate ±1/sqrt(D).
    rot = RandomizedHadamard(1000, b"flat")
    y = rot.forward(np.eye(1000)[17])
    assert np.allclose(np.abs(y), 1 / np.sqrt(1024))


def test_shape_validation_and_read_only_signs() -> None:
    rot = RandomizedHadamard(10, 0)
    with pytest.raises(ValueError):
        rot.forward(np.zeros(11))
    with pytest.raises(ValueError):
        rot.inverse(np.zeros(10))
    with pytest.raises(ValueError):
        rot.signs[0] = 1.0
    with pytest.raises(ValueError):
        RandomizedHadamard(0, 0)
