"""Robust Shamir reconstruction (secagg.robust): Reed-Solomon decoding names the liars.

The expected secrets and liars come from the test itself (the dealt secrets
and the positions it corrupted), never from the decoder.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secagg import robust, shamir
from secagg.errors import ShamirError, UndecodableSharesError
from secagg.randomness import DeterministicRandom

P = shamir.FIELD_PRIME


def _deal(secrets: list[bytes], t: int, n: int, seed: object) -> dict[int, list[bytes]]:
    return shamir.split_many(secrets, t, list(range(1, n + 1)), rng=DeterministicRandom(repr(seed)))


def _shift(share: bytes, delta: int) -> bytes:
    """The share plus a nonzero delta mod p: always a different, valid field element."""
    assert delta % P
    return ((int.from_bytes(share, "big") + delta) % P).to_bytes(shamir.SHARE_BYTES, "big")


def _corrupt(
    shares: dict[int, list[bytes]], pattern: list[set[int]], deltas: list[int]
) -> dict[int, list[bytes]]:
    out = {x: list(row) for x, row in shares.items()}
    k = 0
    for s, liars in enumerate(pattern):
        for x in sorted(liars):
            out[x][s] = _shift(out[x][s], deltas[k % len(deltas)])
            k += 1
    return out


def _eval(coeffs: list[int], x: int) -> int:
    return sum(c * pow(x, i, P) for i, c in enumerate(coeffs)) % P


# ---------------------------------------------------------------------------
# Within the correction radius: the true secret and exactly the liars


@st.composite
def _decodable(draw):
    t = draw(st.integers(1, 7))
    e = draw(st.integers(0, 3))
    n = t + 2 * e + draw(st.integers(0, 3))
    width = draw(st.integers(1, 4))
    secrets = [draw(st.binary(min_size=32, max_size=32)) for _ in range(width)]
    xs = list(range(1, n + 1))
    # Each secret its own error pattern of at most e_max = (n - t) // 2 >= e shares.
    pattern = [
        set(draw(st.lists(st.sampled_from(xs), max_size=e, unique=True))) for _ in range(width)
    ]
    deltas = draw(st.lists(st.integers(1, P - 1), min_size=1, max_size=4))
    return t, n, secrets, pattern, deltas, draw(st.integers(0, 2**32))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_decodable())
def test_up_to_e_max_liars_are_corrected_and_named_exactly(case):
    t, n, secrets, pattern, deltas, seed = case
    honest = _deal(secrets, t, n, seed)
    received = _corrupt(honest, pattern, deltas)
    result = robust.decode_many(received, t)
    assert list(result.secrets) == secrets
    assert [set(liars) for liars in result.liars] == pattern
    assert result.all_liars == frozenset().union(*pattern)
    # Combining an honest subset (the shares off the liar list) agrees.
    for s, liars in enumerate(result.liars):
        kept = {x: received[x][s] for x in received if x not in liars}
        assert shamir.combine(kept, t) == secrets[s]
        one = robust.decode({x: row[s] for x, row in received.items()}, t)
        assert one == robust.Decoded(secrets[s], liars)


@settings(max_examples=40, deadline=None)
@given(
    t=st.integers(1, 8),
    extra=st.integers(0, 8),
    secrets=st.lists(st.binary(max_size=32), min_size=1, max_size=5),
)
def test_honest_shares_decode_like_combine_many(t, extra, secrets):
    padded = [s.rjust(32, b"\x00") for s in secrets]
    shares = _deal(padded, t, t + extra, (t, extra))
    result = robust.decode_many(shares, t)
    assert list(result.secrets) == shamir.combine_many(shares, t) == padded
    assert result.liars == (frozenset(),) * len(secrets) and not result.all_liars


def test_the_secagg_plus_group_with_six_liars_on_every_secret():
    # t = 17 of n' = 29 (SecAgg+ at n = 943): e_max = 6.
    t, n = 17, 29
    secrets = [bytes([i]) * 32 for i in range(12)]
    honest = _deal(secrets, t, n, "group")
    liars = {2, 5, 11, 17, 23, 29}
    received = _corrupt(honest, [liars] * len(secrets), [1, P - 1, 12345])
    assert robust.max_errors(n, t) == 6
    result = robust.decode_many(received, t)
    assert list(result.secrets) == secrets
    assert set(result.all_liars) == liars and all(set(x) == liars for x in result.liars)


def test_liars_that_lie_on_some_secrets_only_are_named_per_secret():
    t, n = 3, 9  # e_max = 3
    secrets = [bytes([i + 1]) * 32 for i in range(6)]
    honest = _deal(secrets, t, n, "partial")
    pattern = [{1}, set(), {1, 2}, {9, 4, 5}, {5}, {2, 3, 4}]
    result = robust.decode_many(_corrupt(honest, pattern, [7]), t)
    assert list(result.secrets) == secrets
    assert [set(x) for x in result.liars] == pattern
    assert result.all_liars == {1, 2, 3, 4, 5, 9}


# ---------------------------------------------------------------------------
# Beyond the radius: an error, or (only for crafted lies) another codeword


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_more_than_e_max_random_liars_raise_unless_they_form_a_closer_codeword(data):
    t = data.draw(st.integers(1, 6))
    n = t + data.draw(st.integers(0, 6))
    e_max = (n - t) // 2
    secret = data.draw(st.binary(min_size=32, max_size=32))
    honest = _deal([secret], t, n, data.draw(st.integers(0, 2**32)))
    count = data.draw(st.integers(e_max + 1, n))
    liars = set(data.draw(st.permutations(range(1, n + 1)))[:count])
    deltas = data.draw(st.lists(st.integers(1, P - 1), min_size=1, max_size=4))
    received = _corrupt(honest, [liars], deltas)
    try:
        result = robust.decode_many(received, t)
    except UndecodableSharesError as exc:
        assert exc.secret_index == 0 and exc.max_errors == e_max
        assert exc.n_shares == n and exc.threshold == t
        assert isinstance(exc, ShamirError)
        return
    except ShamirError as exc:
        # Decoded to another polynomial whose value at 0 is not a 32-byte secret.
        assert "does not fit" in str(exc)
        assert count >= n - t + 1 - e_max
        return
    # A result is only possible when the lies moved the word within e_max of
    # another polynomial: that needs at least n - t + 1 - e_max liars.
    assert count >= n - t + 1 - e_max
    assert len(result.liars[0]) <= e_max
    # What was returned is the polynomial through every share not named a liar
    # (which need not have a different value at 0 from the dealer's).
    kept = {x: row[0] for x, row in received.items() if x not in result.liars[0]}
    assert shamir.combine(kept, t) == result.secrets[0]


def test_between_the_radius_and_the_crafting_bound_decoding_always_raises():
    t, n = 3, 10  # e_max = 3; a wrong answer needs >= n - t + 1 - e_max = 5 liars
    secret = b"\x42" * 32
    honest = _deal([secret], t, n, "raise")
    for liars in ({1, 2, 3, 4}, {2, 4, 6, 8}, {7, 8, 9, 10}):
        with pytest.raises(UndecodableSharesError, match="more than 3 of the 10"):
            robust.decode({x: row[0] for x, row in _corrupt(honest, [liars], [5]).items()}, t)


def test_colluding_liars_holding_another_codeword_are_decoded_to_it_as_documented():
    # t = 3, n' = 7, e_max = 2. The liars (3 = n - t + 1 - e_max of them) hand in
    # f'(x) for an f' that agrees with f at two honest points: f' is then 2 away
    # from the received word, f is 3 away, and unique decoding must answer f'.
    t, n = 3, 7
    f = [11, 22, 33]
    # f' - f = c (X - 1)(X - 2): vanishes at the honest points 1 and 2.
    c = 5
    diff = [2 * c % P, (-3 * c) % P, c]
    f_prime = [(a + b) % P for a, b in zip(f, diff, strict=True)]
    received = {x: _eval(f, x) for x in range(1, n + 1)}
    for x in (5, 6, 7):
        received[x] = _eval(f_prime, x)
    shares = {x: v.to_bytes(shamir.SHARE_BYTES, "big") for x, v in received.items()}
    result = robust.decode(shares, t)
    assert result.secret == f_prime[0].to_bytes(32, "big")
    assert result.liars == {3, 4}  # honest shares, named because they are off f'
    # With one more share (n' = 8, still 3 liars, e_max = 2) it raises instead.
    shares[8] = _eval(f, 8).to_bytes(shamir.SHARE_BYTES, "big")
    with pytest.raises(UndecodableSharesError):
        robust.decode(shares, t)


def test_the_first_undecodable_secret_is_named():
    t, n = 2, 6  # e_max = 2
    secrets = [b"\x01" * 32, b"\x02" * 32, b"\x03" * 32]
    honest = _deal(secrets, t, n, "name")
    received = _corrupt(honest, [{1}, {1, 2, 3}, set()], [9])
    with pytest.raises(UndecodableSharesError) as info:
        robust.decode_many(received, t)
    assert info.value.secret_index == 1


# ---------------------------------------------------------------------------
# Input checks (shared with shamir.combine_many)


def test_exactly_t_shares_decode_without_any_check():
    secret = b"\x07" * 32
    shares = _deal([secret], 4, 4, "t")
    assert robust.decode_many(shares, 4).secrets == (secret,)
    wrong = _corrupt(shares, [{2}], [1])
    # Nothing can be detected with n' = t: the result is combine's.
    assert robust.decode_many(wrong, 4).secrets == tuple(shamir.combine_many(wrong, 4))


def test_input_errors_are_those_of_combine_many():
    shares = _deal([b"\x01" * 32], 3, 5, "input")
    with pytest.raises(ShamirError, match="at least 3"):
        robust.decode_many({x: shares[x] for x in (1, 2)}, 3)
    with pytest.raises(ShamirError):
        robust.decode_many({0: shares[1], 2: shares[2], 3: shares[3]}, 3)
    with pytest.raises(ShamirError):
        robust.decode_many({1: [b"\x00" * 5], 2: shares[2], 3: shares[3]}, 3)
    with pytest.raises(ShamirError):
        robust.decode({1: P.to_bytes(33, "big"), 2: shares[2][0], 3: shares[3][0]}, 3)
    with pytest.raises(ShamirError, match="lengths differ"):
        robust.decode_many({1: shares[1] * 2, 2: shares[2], 3: shares[3]}, 3)
    with pytest.raises(ValueError):
        robust.decode_many(shares, 0)
    with pytest.raises(TypeError):
        robust.decode_many([(1, shares[1])], 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        robust.decode([(1, shares[1][0])], 1)  # type: ignore[arg-type]
    # A recovered value longer than secret_len is refused, as by combine.
    with pytest.raises(ShamirError, match="does not fit"):
        robust.decode_many(_deal([b"\xff" * 32], 2, 5, "len"), 2, secret_len=16)


def test_max_errors():
    assert [robust.max_errors(n, 3) for n in range(3, 10)] == [0, 0, 1, 1, 2, 2, 3]
    assert robust.max_errors(29, 17) == 6
    with pytest.raises(ValueError):
        robust.max_errors(2, 3)
    with pytest.raises(TypeError):
        robust.max_errors(True, 1)


def test_large_x_coordinates_decode_too():
    # x anywhere in [1, p - 1], not only the protocols' small client_id + 1.
    t, xs = 3, [P - 1, P - 2, 2**200 + 7, 2**40, 5, 2**33 + 1, 12345678901234567]
    secrets = [b"\x11" * 32, b"\x22" * 32]
    shares = shamir.split_many(secrets, t, xs, rng=DeterministicRandom("large x"))
    liars = [{P - 1, 2**40}, {2**200 + 7}]
    result = robust.decode_many(_corrupt(shares, liars, [3, P - 5]), t)
    assert list(result.secrets) == secrets
    assert [set(x) for x in result.liars] == liars
