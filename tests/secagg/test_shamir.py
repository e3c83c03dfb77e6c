"""Shamir sharing: correctness for every t-subset, error handling, secrecy of t-1 shares.

The reference arithmetic here (Lagrange interpolation, Miller-Rabin) is written
independently of secagg.shamir so that the tests do not check the code against
itself.
"""

from __future__ import annotations

import itertools

import gmpy2
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from secagg import shamir
from secagg.errors import ShamirError
from secagg.randomness import DeterministicRandom

P = shamir.FIELD_PRIME


# ---------------------------------------------------------------------------
# Independent reference arithmetic


def _miller_rabin(n: int, bases: list[int]) -> bool:
    """Textbook Miller-Rabin with fixed bases (deterministic, reproducible)."""
    if n < 2:
        return False
    d, r = n - 1, 0
    while d % 2 == 0:
        d //= 2
        r += 1
    for a in bases:
        if a % n == 0:
            continue
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _first_primes(k: int) -> list[int]:
    out, c = [], 2
    while len(out) < k:
        if all(c % q for q in out):
            out.append(c)
        c += 1
    return out


def _lagrange_eval(points: dict[int, int], at: int) -> int:
    """Value at ``at`` of the unique polynomial of degree < len(points) through ``points`` (mod P)."""
    total = 0
    for xi, yi in points.items():
        num, den = 1, 1
        for xj in points:
            if xj != xi:
                num = num * (at - xj) % P
                den = den * (xi - xj) % P
        total = (total + yi * num * pow(den, -1, P)) % P
    return total


def _poly_coefficients(points: dict[int, int]) -> list[int]:
    """Coefficients c_0..c_{k-1} (mod P) of the interpolating polynomial, by Gaussian elimination."""
    xs = list(points)
    k = len(xs)
    rows = [[pow(x, j, P) for j in range(k)] + [points[x]] for x in xs]
    for col in range(k):
        pivot = next(r for r in range(col, k) if rows[r][col] % P)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        inv = pow(rows[col][col], -1, P)
        rows[col] = [v * inv % P for v in rows[col]]
        for r in range(k):
            if r != col and rows[r][col]:
                f = rows[r][col]
                rows[r] = [(a - f * b) % P for a, b in zip(rows[r], rows[col], strict=True)]
    return [rows[i][k] for i in range(k)]


def _to_int(share: bytes) -> int:
    return int.from_bytes(share, "big")


def _to_share(value: int) -> bytes:
    return value.to_bytes(shamir.SHARE_BYTES, "big")


# ---------------------------------------------------------------------------
# The field


def test_field_prime_is_prime_and_large_enough():
    assert P > 2**256
    assert gmpy2.is_prime(P, 64)
    # Independent check: 64 fixed prime bases (error probability < 4^-64 for a composite).
    assert _miller_rabin(P, _first_primes(64))
    assert shamir.SHARE_BYTES == (P.bit_length() + 7) // 8 == 33
    assert 256**shamir.MAX_SECRET_BYTES <= P  # every MAX_SECRET_BYTES-byte string is a field element
    assert shamir.MAX_SECRET_BYTES == 32


def test_field_prime_is_the_smallest_prime_above_2_256():
    # Documented as "the smallest prime above 2^256": every number in between has a witness.
    for n in range(2**256 + 1, P):
        assert not _miller_rabin(n, [2, 3, 5, 7, 11, 13])


def test_miller_rabin_reference_is_sound():
    # The reference test itself: knows small primes, Carmichael numbers and a Mersenne prime.
    assert _miller_rabin(2**127 - 1, _first_primes(20))
    assert not _miller_rabin(561, [2, 3, 5])  # Carmichael
    assert not _miller_rabin(2**128 + 1, _first_primes(20))  # = 59649589127497217 * ...


# ---------------------------------------------------------------------------
# Round trips


@st.composite
def sharing_setup(draw, max_n: int = 9):
    n = draw(st.integers(1, max_n))
    t = draw(st.integers(1, n))
    # Small x (the protocols' client_id + 1) and huge x near p both allowed.
    x_strategy = st.one_of(st.integers(1, 2000), st.integers(P - 2000, P - 1))
    xs = draw(st.lists(x_strategy, min_size=n, max_size=n, unique=True))
    secret = draw(st.binary(min_size=0, max_size=32))
    seed = draw(st.integers(0, 2**32))
    return n, t, xs, secret, seed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(setup=sharing_setup(), data=st.data())
def test_combine_recovers_secret_from_any_large_enough_subset(setup, data):
    n, t, xs, secret, seed = setup
    shares = shamir.split(secret, t, xs, rng=DeterministicRandom(seed))
    assert list(shares) == xs
    assert all(len(s) == shamir.SHARE_BYTES and _to_int(s) < P for s in shares.values())
    size = data.draw(st.integers(t, n), label="subset size")
    subset = data.draw(st.permutations(xs), label="order")[:size]
    got = shamir.combine({x: shares[x] for x in subset}, t, secret_len=len(secret))
    assert got == secret


def test_every_t_subset_recovers_the_secret():
    secret = bytes(range(32))
    xs = [1, 2, 3, 5, 8, 13, 21]
    for t in range(1, len(xs) + 1):
        shares = shamir.split(secret, t, xs, rng=DeterministicRandom(t))
        for subset in itertools.combinations(xs, t):
            assert shamir.combine({x: shares[x] for x in subset}, t) == secret


def test_shares_lie_on_a_degree_t_minus_1_polynomial_with_the_secret_at_zero():
    secret = b"\xff" * 32
    t, xs = 4, list(range(1, 11))
    shares = shamir.split(secret, t, xs, rng=DeterministicRandom("poly"))
    values = {x: _to_int(s) for x, s in shares.items()}
    first = dict(itertools.islice(values.items(), t))
    assert _lagrange_eval(first, 0) == int.from_bytes(secret, "big")
    for x, y in values.items():
        assert _lagrange_eval(first, x) == y
    # Not degenerate: the shares are not all equal to the secret.
    assert len(set(values.values())) == len(values)


def test_threshold_one_means_every_share_is_the_secret():
    secret = b"abc"
    shares = shamir.split(secret, 1, [4, 9, 11])
    for x, s in shares.items():
        assert _to_int(s) == int.from_bytes(secret, "big")
        assert shamir.combine({x: s}, 1, secret_len=3) == secret


def test_default_rng_gives_fresh_polynomials():
    a = shamir.split(b"k" * 32, 3, [1, 2, 3])
    b = shamir.split(b"k" * 32, 3, [1, 2, 3])
    assert a != b  # fails only with probability ~ 2^-256
    assert shamir.combine(a, 3) == shamir.combine(b, 3) == b"k" * 32


def test_deterministic_rng_is_reproducible():
    a = shamir.split(b"s" * 32, 3, [1, 2, 3, 4], rng=DeterministicRandom(7))
    b = shamir.split(b"s" * 32, 3, [1, 2, 3, 4], rng=DeterministicRandom(7))
    c = shamir.split(b"s" * 32, 3, [1, 2, 3, 4], rng=DeterministicRandom(8))
    assert a == b
    assert a != c


# ---------------------------------------------------------------------------
# split_many


@settings(max_examples=40, deadline=None)
@given(
    secrets=st.lists(st.binary(min_size=32, max_size=32), min_size=0, max_size=4),
    n=st.integers(1, 8),
    data=st.data(),
)
def test_split_many_agrees_with_split_per_secret(secrets, n, data):
    t = data.draw(st.integers(1, n))
    xs = data.draw(st.lists(st.integers(1, 10_000), min_size=n, max_size=n, unique=True))
    seed = data.draw(st.integers(0, 2**32))
    many = shamir.split_many(secrets, t, xs, rng=DeterministicRandom(seed))
    assert list(many) == xs
    assert all(len(row) == len(secrets) for row in many.values())
    # Documented: split_many draws the coefficients secret by secret, exactly as
    # consecutive split() calls on the same rng would.
    rng = DeterministicRandom(seed)
    for i, secret in enumerate(secrets):
        single = shamir.split(secret, t, xs, rng=rng)
        assert {x: row[i] for x, row in many.items()} == single
        assert shamir.combine(single, t) == secret
    if secrets:
        assert shamir.combine_many(many, t) == list(secrets)


def test_split_many_uses_independent_polynomials_per_secret():
    # Two equal secrets must still get different shares (independent coefficients).
    many = shamir.split_many([b"\x01" * 32, b"\x01" * 32], 3, [1, 2, 3])
    assert all(row[0] != row[1] for row in many.values())


def test_split_many_hot_path_shape():
    secrets = [bytes([i]) * 32 for i in (1, 2)]
    xs = list(range(1, 101))
    many = shamir.split_many(secrets, 50, xs, rng=DeterministicRandom("hot"))
    subset = {x: many[x] for x in xs[25:75]}
    assert shamir.combine_many(subset, 50) == secrets
    assert shamir.combine_many(many, 50) == secrets  # all 100: consistency check passes


# ---------------------------------------------------------------------------
# Errors


def test_fewer_than_threshold_shares_raise():
    shares = shamir.split(b"x" * 32, 4, [1, 2, 3, 4, 5])
    for k in range(4):
        subset = dict(itertools.islice(shares.items(), k))
        with pytest.raises(ShamirError, match="at least 4"):
            shamir.combine(subset, 4)


@pytest.mark.parametrize("bad_x", [0, -1, P, P + 1, 2**300])
def test_x_out_of_range_raises(bad_x):
    with pytest.raises(ValueError):
        shamir.split(b"s", 2, [1, bad_x])
    shares = shamir.split(b"s", 2, [1, 2])
    with pytest.raises(ShamirError, match=r"\[1, p-1\]"):
        shamir.combine({1: shares[1], bad_x: shares[2]}, 2, secret_len=1)


@pytest.mark.parametrize("bad_x", [True, 1.0, "1", None])
def test_x_of_wrong_type_raises(bad_x):
    with pytest.raises(ValueError):
        shamir.split(b"s", 1, [bad_x])
    share = shamir.split(b"s", 1, [5])[5]
    with pytest.raises(ShamirError):
        shamir.combine({bad_x: share}, 1, secret_len=1)


def test_duplicate_x_raises():
    with pytest.raises(ValueError, match="distinct"):
        shamir.split(b"s", 2, [1, 2, 2])
    with pytest.raises(ValueError, match="distinct"):
        shamir.split_many([b"s"], 1, [3, 3])


@pytest.mark.parametrize("threshold", [0, -1, 4])
def test_threshold_out_of_range_raises_value_error(threshold):
    with pytest.raises(ValueError):
        shamir.split(b"s", threshold, [1, 2, 3])
    with pytest.raises(ValueError):
        shamir.split_many([b"s"], threshold, [1, 2, 3])


def test_combine_with_bad_threshold_raises():
    shares = shamir.split(b"s", 1, [1, 2])
    with pytest.raises(ValueError):
        shamir.combine(shares, 0)
    with pytest.raises(TypeError):
        shamir.combine(shares, 1.5)


def test_secret_too_long_raises():
    with pytest.raises(ValueError, match="does not fit"):
        shamir.split(b"\x00" * 33, 2, [1, 2])
    with pytest.raises(ValueError, match="does not fit"):
        shamir.split_many([b"ok", b"\x01" * 40], 2, [1, 2])


def test_secret_of_wrong_type_raises():
    with pytest.raises(TypeError):
        shamir.split("text", 1, [1])


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"\x00" * (shamir.SHARE_BYTES - 1),
        b"\x00" * (shamir.SHARE_BYTES + 1),
        P.to_bytes(shamir.SHARE_BYTES, "big"),  # value == p: not a field element
        (P + 5).to_bytes(shamir.SHARE_BYTES, "big"),
        b"\xff" * shamir.SHARE_BYTES,
    ],
)
def test_malformed_share_bytes_raise(bad):
    shares = shamir.split(b"q" * 32, 2, [1, 2, 3])
    shares[2] = bad
    with pytest.raises(ShamirError):
        shamir.combine(shares, 2)


def test_share_of_wrong_type_raises():
    with pytest.raises(ShamirError):
        shamir.combine({1: "not bytes"}, 1)
    with pytest.raises(ShamirError):
        shamir.combine_many({1: b"\x00" * shamir.SHARE_BYTES}, 1)  # bytes, not a list


def test_combine_many_rows_of_different_lengths_raise():
    many = shamir.split_many([b"a" * 32, b"b" * 32], 2, [1, 2, 3])
    many[3] = many[3][:1]
    with pytest.raises(ShamirError, match="lengths differ"):
        shamir.combine_many(many, 2)


def test_recovered_value_longer_than_secret_len_raises():
    secret = b"\x80" + bytes(31)
    shares = shamir.split(secret, 2, [1, 2])
    with pytest.raises(ShamirError, match="does not fit"):
        shamir.combine(shares, 2, secret_len=16)
    with pytest.raises(ValueError):
        shamir.combine(shares, 2, secret_len=33)


def test_short_secret_round_trips_with_its_length_and_pads_otherwise():
    shares = shamir.split(b"\x00\x07", 2, [1, 2])
    assert shamir.combine(shares, 2, secret_len=2) == b"\x00\x07"
    assert shamir.combine(shares, 2, secret_len=5) == b"\x00\x00\x00\x00\x07"


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(3, 9),
    data=st.data(),
    delta=st.integers(1, P - 1),
)
def test_a_corrupted_share_among_more_than_t_shares_raises(n, data, delta):
    t = data.draw(st.integers(1, n - 1))
    xs = list(range(1, n + 1))
    secret = data.draw(st.binary(min_size=32, max_size=32))
    shares = shamir.split(secret, t, xs, rng=DeterministicRandom(n * 1000 + t))
    size = data.draw(st.integers(t + 1, n))
    subset = data.draw(st.permutations(xs))[:size]
    victim = data.draw(st.sampled_from(subset))
    given_shares = {x: shares[x] for x in subset}
    given_shares[victim] = _to_share((_to_int(shares[victim]) + delta) % P)
    with pytest.raises(ShamirError, match="inconsistent"):
        shamir.combine(given_shares, t)


def test_shares_from_two_different_sharings_are_inconsistent():
    a = shamir.split(b"z" * 32, 3, [1, 2, 3, 4], rng=DeterministicRandom("a"))
    b = shamir.split(b"z" * 32, 3, [1, 2, 3, 4], rng=DeterministicRandom("b"))
    mixed = {1: a[1], 2: a[2], 3: a[3], 4: b[4]}
    with pytest.raises(ShamirError, match="inconsistent"):
        shamir.combine(mixed, 3)


def test_corruption_with_exactly_t_shares_is_undetectable_but_changes_the_secret():
    # Documented limitation: with exactly t shares there is nothing to check against.
    secret = b"\x11" * 32
    shares = shamir.split(secret, 3, [1, 2, 3], rng=DeterministicRandom(1))
    shares[2] = _to_share((_to_int(shares[2]) + 1) % P)
    try:
        got = shamir.combine(shares, 3)
    except ShamirError:
        return  # the wrong value happened not to fit in 32 bytes
    assert got != secret


def test_consistency_check_uses_every_extra_share():
    # Corrupt the share with the largest x (never among the interpolation base).
    secret = b"\x22" * 32
    xs = list(range(1, 8))
    shares = shamir.split(secret, 3, xs, rng=DeterministicRandom(2))
    shares[7] = _to_share((_to_int(shares[7]) + 1) % P)
    with pytest.raises(ShamirError):
        shamir.combine(shares, 3)
    del shares[7]
    assert shamir.combine(shares, 3) == secret


# ---------------------------------------------------------------------------
# Secrecy: t - 1 shares are consistent with every secret, in exactly one way


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    t=st.integers(2, 6),
    data=st.data(),
    s1=st.binary(min_size=32, max_size=32),
    s2=st.binary(min_size=32, max_size=32),
)
def test_t_minus_1_shares_are_consistent_with_any_other_secret(t, data, s1, s2):
    xs = data.draw(st.lists(st.integers(1, 10**6), min_size=t, max_size=t, unique=True))
    seen_xs, fresh_x = xs[:-1], xs[-1]
    shares = shamir.split(s1, t, xs, rng=DeterministicRandom(data.draw(st.integers(0, 999))))
    seen = {x: _to_int(shares[x]) for x in seen_xs}

    # The polynomial of degree <= t-1 through (0, s2) and the seen shares.
    v2 = int.from_bytes(s2, "big")
    points = {0: v2, **seen}
    coeffs = _poly_coefficients(points)
    assert len(coeffs) == t  # degree <= t - 1

    def g(x: int) -> int:
        return sum(c * pow(x, j, P) for j, c in enumerate(coeffs)) % P

    assert g(0) == v2
    assert all(g(x) == y for x, y in seen.items())
    # Completing the seen shares with g's share at a fresh point makes combine return s2:
    # the t-1 shares an adversary holds are equally consistent with s1 and s2.
    forged = {**{x: shares[x] for x in seen_xs}, fresh_x: _to_share(g(fresh_x))}
    assert shamir.combine(forged, t) == s2
    assert shamir.combine(shares, t) == s1


class _ScriptedRandom:
    """Returns bytes that make random_below(P) yield the given values, in order.

    random_below reads ceil(bits/8) bytes and drops the excess low bits, so a
    value c is produced by the bytes of c << excess. A test double for showing
    which coefficients split() would need; not a random source.
    """

    def __init__(self, values: list[int]):
        nbits = (P - 1).bit_length()
        self._nbytes = (nbits + 7) // 8
        self._excess = self._nbytes * 8 - nbits
        self._values = list(values)

    def bytes(self, n: int) -> bytes:
        assert n == self._nbytes
        return (self._values.pop(0) << self._excess).to_bytes(n, "big")


@settings(max_examples=30, deadline=None)
@given(
    t=st.integers(2, 5),
    data=st.data(),
    s1=st.binary(min_size=32, max_size=32),
    s2=st.binary(min_size=32, max_size=32),
)
def test_for_each_polynomial_for_one_secret_exactly_one_gives_the_same_shares_for_another(
    t, data, s1, s2
):
    """Perfect secrecy, concretely: a bijection between coefficient vectors for s1 and s2.

    For the random coefficients a used with s1, build a' = the coefficients of
    the polynomial through (0, s2) and the t-1 shares; splitting s2 with a'
    gives exactly the same t-1 shares. Since a -> a' is invertible (same
    construction back), the t-1 shares have the same distribution for s1 and s2.
    """
    # split needs at least t points; the adversary sees the first t - 1 of them.
    xs = data.draw(st.lists(st.integers(1, 10**6), min_size=t, max_size=t, unique=True))
    seen = xs[:-1]
    a = [data.draw(st.integers(0, P - 1)) for _ in range(t - 1)]
    shares1 = shamir.split(s1, t, xs, rng=_ScriptedRandom(a))
    # The shares really are f1(x) = s1 + a_1 x + ... (coefficients drawn a_1 first).
    v1 = int.from_bytes(s1, "big")
    for x in xs:
        expected = (v1 + sum(c * pow(x, j + 1, P) for j, c in enumerate(a))) % P
        assert _to_int(shares1[x]) == expected

    points = {0: int.from_bytes(s2, "big"), **{x: _to_int(shares1[x]) for x in seen}}
    a_prime = _poly_coefficients(points)[1:]
    shares2 = shamir.split(s2, t, xs, rng=_ScriptedRandom(a_prime))
    assert {x: shares2[x] for x in seen} == {x: shares1[x] for x in seen}
    assert shamir.combine(shares2, t) == s2
    # And back: from s2's polynomial, s1's coefficients are recovered uniquely.
    back = _poly_coefficients({0: v1, **{x: _to_int(shares2[x]) for x in seen}})[1:]
    assert back == a
    assume(s1 != s2)
    assert a_prime != a
