"""Fixed-point encoding: stated error bound, no wrap-around, input validation, unbiased rounding."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secagg import modular
from secagg.encoding import FixedPointEncoder, stochastic_round
from secagg.randomness import DeterministicRandom


def _slack(k: int, clip: float) -> float:
    """Floating-point allowance on top of error_bound (the docstring's k * clip * 2^-52 order).

    Float rounding in scale, in clip * scale, and in converting the integer sum
    to float each contribute a relative error of about 2^-53 per term.
    """
    return 16 * k * clip * 2.0**-52


def _clipped_sum(vectors: list[list[float]], clip: float) -> list[float]:
    return [math.fsum(min(max(v, -clip), clip) for v in col) for col in zip(*vectors, strict=True)]


@st.composite
def encoding_case(draw):
    bits = draw(st.integers(2, 64))
    max_summands = draw(st.integers(1, min(40, 2 ** (bits - 1) - 1)))
    clip = draw(st.floats(1e-3, 1e3))
    k = draw(st.integers(1, max_summands))
    dim = draw(st.integers(1, 5))
    value = st.one_of(
        st.floats(-2 * clip, 2 * clip),
        st.floats(allow_nan=False, allow_infinity=False),  # anything finite, up to ±1.8e308
    )
    vectors = [draw(st.lists(value, min_size=dim, max_size=dim)) for _ in range(k)]
    seed = draw(st.integers(0, 2**32))
    return bits, max_summands, clip, vectors, seed


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=encoding_case())
def test_decoded_sum_is_within_the_stated_error_bound(case):
    bits, m, clip, vectors, seed = case
    enc = FixedPointEncoder(clip=clip, bits=bits, max_summands=m)
    rng = DeterministicRandom(seed)
    encoded = [enc.encode(np.array(v), rng) for v in vectors]
    for e in encoded:
        assert e.dtype == np.uint64
        assert np.all(e <= modular.mask(bits))
    k = len(vectors)
    total = modular.sum_vectors(encoded, bits)
    decoded = enc.decode(total, summands=k)
    expected = _clipped_sum(vectors, clip)
    bound = enc.error_bound(k) + _slack(k, clip)
    for got, want in zip(decoded.tolist(), expected, strict=True):
        assert abs(got - want) <= bound, (got, want, bound)


@settings(max_examples=150, deadline=None)
@given(
    bits=st.integers(2, 64),
    data=st.data(),
    clip=st.floats(1e-3, 1e3),
)
def test_quantized_values_stay_within_q_max(bits, data, clip):
    m = data.draw(st.integers(1, min(1000, 2 ** (bits - 1) - 1)))
    enc = FixedPointEncoder(clip=clip, bits=bits, max_summands=m)
    x = np.array(data.draw(st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=8)))
    q = enc.quantize(x, DeterministicRandom(0))
    assert q.dtype == np.int64
    assert np.all(np.abs(q) <= enc.q_max)
    assert enc.q_max * m <= 2 ** (bits - 1) - 1  # the headroom the no-wrap argument needs


def _summand_counts(bits: int) -> list[int]:
    top = 2 ** (bits - 1) - 1
    return sorted({c for c in (1, 2, 3, 7, 100, top) if 1 <= c <= min(top, 300)})


@pytest.mark.parametrize("bits", range(2, 65))
def test_sums_never_wrap_at_the_extremes(bits):
    """Every coordinate at +clip or -clip (or far beyond) for max_summands summands."""
    clip = 0.75
    push = np.array([clip, -clip, 10 * clip, -10 * clip, 1e308, -1e308, clip, -clip])
    signs = np.sign(push)
    for m in _summand_counts(bits):
        enc = FixedPointEncoder(clip=clip, bits=bits, max_summands=m)
        rng = DeterministicRandom(f"extreme-{bits}-{m}")
        total = modular.sum_vectors([enc.encode(push, rng) for _ in range(m)], bits)
        decoded = enc.decode(total, summands=m)
        assert np.all(np.sign(decoded) == signs), (bits, m, decoded)
        err = np.abs(decoded - signs * m * clip)
        assert np.all(err <= enc.error_bound(m) + _slack(m, clip)), (bits, m, decoded)
        # The integer sum is ±m * q_max up to float rounding of clip * scale
        # (q_max has more than 53 bits when bits > 54): no wrap, nothing lost.
        ints = [int(v) for v in enc.decode_integers(total)]
        units = max(1, int(enc.q_max * 2.0**-50))
        for got, s in zip(ints, signs.tolist(), strict=True):
            assert abs(got - int(s) * m * enc.q_max) <= m * units, (bits, m, got)


def test_bits_64_single_summand_keeps_the_sign_of_plus_clip():
    # Regression: float(q_max) = 2^63 used to overflow the int64 cast, turning +clip into -clip.
    enc = FixedPointEncoder(clip=1.0, bits=64, max_summands=1)
    decoded = enc.decode(enc.encode(np.array([1.0, 5.0, -1.0])))
    assert decoded == pytest.approx([1.0, 1.0, -1.0], abs=1e-15)


@pytest.mark.parametrize("y", [0.1, 0.5, 0.75, -0.3, 2.25, -7.9, 1e6 + 0.375])
def test_stochastic_rounding_is_unbiased(y):
    n = 200_000
    out = stochastic_round(np.full(n, y), DeterministicRandom(f"unbiased-{y}"))
    lo = math.floor(y)
    assert set(np.unique(out).tolist()) <= {lo, lo + 1}
    frac = y - lo
    sigma = math.sqrt(frac * (1 - frac) / n)
    # Deterministic seed; 6 sigma is generous, a biased rounding (e.g. floor or
    # round-half) would be off by up to ~0.5.
    assert abs(out.mean() - y) <= 6 * sigma + 1e-9


def test_stochastic_rounding_of_integers_is_exact_and_errors_are_below_one():
    y = np.array([-3.0, 0.0, 5.0, 2.0**40])
    assert stochastic_round(y, DeterministicRandom(1)).tolist() == [-3, 0, 5, 2**40]
    z = np.linspace(-50, 50, 1001)
    r = stochastic_round(z, DeterministicRandom(2))
    assert np.all(np.abs(r - z) < 1)


def test_encoder_is_unbiased_end_to_end():
    enc = FixedPointEncoder(clip=1.0, bits=8, max_summands=1)  # coarse: 127 units per 1.0
    x = 0.5 / 127 + 0.3  # between grid points
    n = 100_000
    decoded = enc.decode_integers(enc.encode(np.full(n, x), DeterministicRandom("e2e"))) / enc.scale
    step = 1 / enc.scale
    assert abs(decoded.mean() - x) <= 6 * 0.5 * step / math.sqrt(n)


def test_same_seed_same_encoding():
    enc = FixedPointEncoder(clip=2.0, bits=32, max_summands=10)
    x = np.linspace(-3, 3, 50)
    a = enc.encode(x, DeterministicRandom(9))
    b = enc.encode(x, DeterministicRandom(9))
    assert np.array_equal(a, b)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_raise(bad):
    enc = FixedPointEncoder(clip=1.0, bits=32, max_summands=4)
    with pytest.raises(ValueError, match="NaN or infinite"):
        enc.encode(np.array([0.0, bad]))


def test_non_vector_inputs_raise():
    enc = FixedPointEncoder(clip=1.0, bits=32, max_summands=4)
    with pytest.raises(ValueError):
        enc.encode(np.zeros((2, 2)))
    with pytest.raises(ValueError):
        enc.encode(np.float64(1.0))


@pytest.mark.parametrize("clip", [0.0, -1.0, np.nan, np.inf, -np.inf])
def test_bad_clip_raises(clip):
    with pytest.raises(ValueError, match="clip"):
        FixedPointEncoder(clip=clip, bits=32, max_summands=4)


@pytest.mark.parametrize("bits", [0, 1, 65, 100, -3])
def test_bits_out_of_range_raise(bits):
    with pytest.raises(ValueError):
        FixedPointEncoder(clip=1.0, bits=bits, max_summands=1)


@pytest.mark.parametrize("m", [0, -1, 1.5])
def test_bad_max_summands_raise(m):
    with pytest.raises(ValueError):
        FixedPointEncoder(clip=1.0, bits=32, max_summands=m)


def test_too_many_summands_for_the_bits_raise():
    with pytest.raises(ValueError, match="no room"):
        FixedPointEncoder(clip=1.0, bits=2, max_summands=2)
    with pytest.raises(ValueError, match="no room"):
        FixedPointEncoder(clip=1.0, bits=8, max_summands=128)
    FixedPointEncoder(clip=1.0, bits=8, max_summands=127)  # q_max = 1: still fine


def test_decode_refuses_more_summands_than_planned():
    enc = FixedPointEncoder(clip=1.0, bits=16, max_summands=3)
    total = np.zeros(2, dtype=np.uint64)
    with pytest.raises(ValueError, match="wrapped"):
        enc.decode(total, summands=4)
    with pytest.raises(ValueError):
        enc.decode(total, summands=-1)
    assert enc.decode(total, summands=0).tolist() == [0.0, 0.0]
