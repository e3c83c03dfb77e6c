"""Shamir t-of-n secret sharing of byte strings over a prime field (Shamir 1979).

A secret ``s`` (at most :data:`MAX_SECRET_BYTES` bytes, read as a big-endian
integer) becomes the constant term of a random polynomial

    f(X) = s + a_1 X + ... + a_{t-1} X^{t-1}   over GF(p),

with ``a_1 .. a_{t-1}`` drawn independently and uniformly from GF(p) by
rejection sampling from a CSPRNG (:func:`secagg.randomness.random_below`). The
share for the point ``x`` is ``f(x)``, serialized as :data:`SHARE_BYTES`
big-endian bytes.

Guarantees (A. Shamir, "How to share a secret", CACM 22(11), 1979):

* Correctness: any ``t`` distinct shares determine ``f`` and hence ``s``, by
  Lagrange interpolation at 0.
* Perfect secrecy: for any ``t - 1`` points, the map from ``(a_1, .., a_{t-1})``
  to the ``t - 1`` share values is, for every fixed secret, a bijection of
  GF(p)^(t-1) (a Vandermonde system). So the shares are uniform and independent
  of the secret: ``t - 1`` shares carry no information about it.
* Consistency: when more than ``t`` shares are given, :func:`combine` checks
  that all of them lie on one polynomial of degree ``< t`` and raises
  :class:`~secagg.errors.ShamirError` otherwise. With exactly ``t`` shares no
  check is possible (any ``t`` values are consistent with some polynomial).

The field is GF(p) for :data:`FIELD_PRIME` ``= 2^256 + 297``, the smallest prime
above ``2^256``, so every 32-byte secret is a field element and a share takes
33 bytes (the tests check primality and minimality). The secrets shared in
SecAgg (self-mask seeds, X25519 private keys) are 32 bytes.

Share x-coordinates are distinct integers in ``[1, p - 1]``; the protocols use
``client_id + 1`` (0 would reveal the secret itself).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence

from .errors import ShamirError
from .randomness import RandomSource, default_rng, random_below

__all__ = [
    "FIELD_PRIME",
    "MAX_SECRET_BYTES",
    "SHARE_BYTES",
    "combine",
    "combine_many",
    "split",
    "split_many",
]

#: The field modulus: the smallest prime greater than 2^256.
FIELD_PRIME: int = (1 << 256) + 297
#: Byte length of one serialized share value (big-endian, fixed width).
SHARE_BYTES: int = (FIELD_PRIME.bit_length() + 7) // 8
#: The longest secret that always fits in the field (every 32-byte string is < 2^256 < p).
MAX_SECRET_BYTES: int = (FIELD_PRIME.bit_length() - 1) // 8

# Horner evaluation without reduction lets intermediate values grow by
# bit_length(x) bits per step; reduce modulo p once this much growth has built
# up. For the small x used by the protocols (client_id + 1) one reduction at
# the end suffices, which is several times faster than reducing every step.
_GROWTH_BITS_BEFORE_REDUCE = 2048


# ---------------------------------------------------------------------------
# Validation helpers


def _check_threshold(threshold: int) -> int:
    if isinstance(threshold, bool):
        raise TypeError("threshold must be an int, not bool")
    try:
        t = operator.index(threshold)
    except TypeError:
        raise TypeError(f"threshold must be an int, got {type(threshold).__name__}") from None
    if t < 1:
        raise ValueError(f"threshold must be >= 1, got {t}")
    return t


def _as_x(x: object, error: type[Exception]) -> int:
    """An x-coordinate as int in [1, p-1]; ``error`` is raised otherwise."""
    if isinstance(x, bool):
        raise error(f"share x-coordinate must be an int, not bool ({x!r})")
    try:
        xi = operator.index(x)  # type: ignore[arg-type]
    except TypeError:
        raise error(f"share x-coordinate must be an int, got {type(x).__name__}") from None
    if not 1 <= xi < FIELD_PRIME:
        raise error(f"share x-coordinate must be in [1, p-1], got {xi}")
    return xi


def _check_xs(xs: Sequence[int], threshold: int) -> list[int]:
    ints = [_as_x(x, ValueError) for x in xs]
    if len(set(ints)) != len(ints):
        raise ValueError("share x-coordinates must be distinct")
    if threshold > len(ints):
        raise ValueError(f"threshold {threshold} exceeds the number of shares {len(ints)}")
    return ints


def _secret_to_int(secret: bytes) -> int:
    if not isinstance(secret, (bytes, bytearray, memoryview)):
        raise TypeError(f"secret must be bytes, got {type(secret).__name__}")
    data = bytes(secret)
    if len(data) > MAX_SECRET_BYTES:
        raise ValueError(
            f"secret of {len(data)} bytes does not fit in the field (max {MAX_SECRET_BYTES})"
        )
    return int.from_bytes(data, "big")


def _check_secret_len(secret_len: int) -> int:
    if isinstance(secret_len, bool) or not isinstance(secret_len, int):
        raise TypeError(f"secret_len must be an int, got {type(secret_len).__name__}")
    if not 0 <= secret_len <= MAX_SECRET_BYTES:
        raise ValueError(f"secret_len must be in [0, {MAX_SECRET_BYTES}], got {secret_len}")
    return secret_len


def _share_to_int(share: object) -> int:
    if not isinstance(share, (bytes, bytearray, memoryview)):
        raise ShamirError(f"a share must be bytes, got {type(share).__name__}")
    data = bytes(share)
    if len(data) != SHARE_BYTES:
        raise ShamirError(f"a share must be {SHARE_BYTES} bytes, got {len(data)}")
    value = int.from_bytes(data, "big")
    if value >= FIELD_PRIME:
        raise ShamirError("share value is not a field element (>= p)")
    return value


def _int_to_share(value: int) -> bytes:
    return value.to_bytes(SHARE_BYTES, "big")


# ---------------------------------------------------------------------------
# Sharing


def split(
    secret: bytes,
    threshold: int,
    xs: Sequence[int],
    rng: RandomSource | None = None,
) -> dict[int, bytes]:
    """Share ``secret`` so that any ``threshold`` of the shares recover it.

    Args:
        secret: at most :data:`MAX_SECRET_BYTES` (32) bytes. Its length is not
            encoded in the shares: pass it to :func:`combine` as ``secret_len``.
        threshold: ``t``, with ``1 <= t <= len(xs)``.
        xs: distinct share points in ``[1, p - 1]`` (the protocols use
            ``client_id + 1``).
        rng: source of the polynomial coefficients; default the OS CSPRNG.
            A :class:`~secagg.randomness.DeterministicRandom` makes tests
            reproducible and must never be used for real secrets.

    Returns:
        ``{x: f(x)}`` in the order of ``xs``, each value :data:`SHARE_BYTES` bytes.
        Any ``t - 1`` of them are uniformly distributed whatever the secret
        (Shamir 1979).

    Raises:
        ValueError: secret too long, threshold out of range, x out of range or
            repeated.
    """
    return {x: shares[0] for x, shares in split_many([secret], threshold, xs, rng).items()}


def split_many(
    secrets: Sequence[bytes],
    threshold: int,
    xs: Sequence[int],
    rng: RandomSource | None = None,
) -> dict[int, list[bytes]]:
    """Share several secrets at once, each with its own independent random polynomial.

    Equivalent to calling :func:`split` on each secret (same guarantees), but
    validates once and evaluates all polynomials in one pass. Coefficients are
    drawn secret by secret, ``a_1`` first, each with
    :func:`~secagg.randomness.random_below` from ``rng`` (default: OS CSPRNG).

    Returns:
        ``{x: [share of secrets[0], share of secrets[1], ...]}`` in the order of ``xs``.
    """
    t = _check_threshold(threshold)
    points = _check_xs(xs, t)
    values = [_secret_to_int(s) for s in secrets]
    source = default_rng(rng)
    p = FIELD_PRIME
    # Highest-degree coefficient first, for Horner's rule; the secret is the constant term.
    polys = []
    for s in values:
        coeffs = [random_below(p, source) for _ in range(t - 1)]  # a_1 .. a_{t-1}
        polys.append([*reversed(coeffs), s])

    out: dict[int, list[bytes]] = {}
    for x in points:
        # How many Horner steps may run before the accumulator needs reducing.
        step = max(1, _GROWTH_BITS_BEFORE_REDUCE // x.bit_length())
        row: list[bytes] = []
        for coeffs in polys:
            acc = 0
            for start in range(0, t, step):
                for a in coeffs[start : start + step]:
                    acc = acc * x + a
                acc %= p
            row.append(_int_to_share(acc))
        out[x] = row
    return out


# ---------------------------------------------------------------------------
# Reconstruction


def _batch_inverse(values: list[int]) -> list[int]:
    """Inverses of nonzero residues mod p with one modular inversion (Montgomery's trick)."""
    p = FIELD_PRIME
    prefix = [1] * (len(values) + 1)
    for i, v in enumerate(values):
        prefix[i + 1] = prefix[i] * v % p
    inv = pow(prefix[-1], -1, p)
    out = [0] * len(values)
    for i in range(len(values) - 1, -1, -1):
        out[i] = inv * prefix[i] % p
        inv = inv * values[i] % p
    return out


def _interpolator(xs: list[int], ys: list[list[int]]) -> Callable[[int], list[int]]:
    """Return ``eval(e) -> [f_s(e) for each secret s]`` for the polynomials through ``(xs, ys[s])``.

    Barycentric form: f(e) = sum_i y_i * w_i * prod_{j != i} (e - x_j) with
    w_i = 1 / prod_{j != i} (x_i - x_j). The weights (one batched inversion)
    and w_i * y_i are computed once and shared by every evaluation point and
    every secret, so evaluating at 0 and at each extra point for the
    consistency check costs O(t) multiplications per point and secret.
    """
    p = FIELD_PRIME
    denominators = [
        math.prod(xi - xj for j, xj in enumerate(xs) if j != i) % p for i, xi in enumerate(xs)
    ]
    weights = _batch_inverse(denominators)
    weighted = [[w * y % p for w, y in zip(weights, col, strict=True)] for col in ys]

    def evaluate(e: int) -> list[int]:
        diffs = [e - x for x in xs]
        full = math.prod(diffs)
        # e is never one of xs, so every diff is nonzero and the division is exact.
        basis = [full // d for d in diffs]
        return [sum(b * z for b, z in zip(basis, col, strict=True)) % p for col in weighted]

    return evaluate


def combine_many(
    shares: Mapping[int, Sequence[bytes]],
    threshold: int,
    secret_len: int = 32,
) -> list[bytes]:
    """Recover several secrets shared together by :func:`split_many`.

    Interpolates at 0 (Lagrange, barycentric form) from the ``threshold``
    shares with the smallest x, reusing the Lagrange weights for every secret.
    If more than ``threshold`` shares are given, every extra share is checked
    against the interpolated polynomials.

    Args:
        shares: ``{x: [share of secret 0, share of secret 1, ...]}``; every
            list must have the same length.
        threshold: the ``t`` used when sharing.
        secret_len: length of each secret in bytes (at most 32).

    Returns:
        The secrets, each ``secret_len`` bytes.

    Raises:
        ShamirError: fewer than ``threshold`` shares; an x not an int in
            ``[1, p - 1]``; a share of the wrong length, not a field element,
            or lists of different lengths; more than ``threshold`` shares not
            all on one polynomial of degree ``< threshold``; a recovered value
            that does not fit in ``secret_len`` bytes.
        ValueError: ``threshold < 1`` or ``secret_len`` out of range.
    """
    t = _check_threshold(threshold)
    secret_len = _check_secret_len(secret_len)
    parsed, width = _parse_rows(shares, t)

    ordered = sorted(parsed)
    base, extra = ordered[:t], ordered[t:]
    ys = [[parsed[x][s] for x in base] for s in range(width)]
    evaluate = _interpolator(base, ys)

    for x in extra:
        if evaluate(x) != parsed[x]:
            raise ShamirError(
                f"inconsistent shares: the share at x={x} is not on the polynomial "
                f"through the other shares (corrupted or mixed-up shares)"
            )
    return _values_to_secrets(evaluate(0), secret_len)


def _parse_rows(shares: Mapping[int, Sequence[bytes]], t: int) -> tuple[dict[int, list[int]], int]:
    """``{x: [share values as ints]}`` and the number of secrets, validated as :func:`combine_many` documents."""
    if not isinstance(shares, Mapping):
        raise TypeError(f"shares must be a mapping x -> shares, got {type(shares).__name__}")
    if len(shares) < t:
        raise ShamirError(f"need at least {t} shares, got {len(shares)}")
    parsed: dict[int, list[int]] = {}
    width: int | None = None
    for x, row in shares.items():
        xi = _as_x(x, ShamirError)
        if xi in parsed:  # e.g. 3 and numpy.int64(3) as two keys
            raise ShamirError(f"duplicate share x-coordinate {xi}")
        if isinstance(row, (bytes, bytearray, memoryview, str)) or not isinstance(row, Sequence):
            raise ShamirError(f"shares for x={xi} must be a sequence of share byte strings")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise ShamirError("every x must carry a share of every secret (lengths differ)")
        parsed[xi] = [_share_to_int(s) for s in row]
    assert width is not None  # len(shares) >= t >= 1
    return parsed, width


def _values_to_secrets(values: list[int], secret_len: int) -> list[bytes]:
    """Recovered field elements as ``secret_len``-byte strings (ShamirError if one does not fit)."""
    limit = 1 << (8 * secret_len)
    for value in values:
        if value >= limit:
            raise ShamirError(
                f"recovered value does not fit in {secret_len} bytes "
                f"(wrong threshold, secret_len or corrupted shares)"
            )
    return [value.to_bytes(secret_len, "big") for value in values]


def combine(shares: Mapping[int, bytes], threshold: int, secret_len: int = 32) -> bytes:
    """Recover a secret from at least ``threshold`` shares made by :func:`split`.

    Same checks and errors as :func:`combine_many` (which it calls with one
    secret per x): fewer than ``threshold`` shares, bad x, malformed share
    bytes, inconsistent shares when more than ``threshold`` are given, and a
    result longer than ``secret_len`` bytes all raise
    :class:`~secagg.errors.ShamirError`.
    """
    if not isinstance(shares, Mapping):
        raise TypeError(f"shares must be a mapping x -> share, got {type(shares).__name__}")
    wrapped: dict[int, list[bytes]] = {}
    for x, share in shares.items():
        if not isinstance(share, (bytes, bytearray, memoryview)):
            raise ShamirError(f"a share must be bytes, got {type(share).__name__}")
        wrapped[x] = [share]
    return combine_many(wrapped, threshold, secret_len)[0]
