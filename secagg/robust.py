"""Robust Shamir reconstruction: recover the secret despite lying shares, and name the liars.

Shamir shares ``f(x_1), .., f(x_n')`` of a polynomial of degree ``< t`` are a
codeword of the Reed-Solomon code of length ``n'`` and dimension ``t`` over
GF(p) (McEliece and Sarwate, "On sharing secrets and Reed-Solomon codes",
CACM 24(9), 1981), whose minimum distance is ``n' - t + 1``. So when at most

    e_max = (n' - t) // 2                  (:func:`max_errors`)

shares are wrong, exactly one polynomial of degree ``< t`` is within distance
``e_max`` of the received shares, and it is the dealer's: decoding returns the
true secret and the x-coordinates of exactly the wrong shares. Equivalently, to
correct ``e`` liars a reconstructor needs ``n' >= t + 2e`` shares.

Decoding is Gao's algorithm (S. Gao, "A new algorithm for decoding
Reed-Solomon codes", in Communications, Information and Network Security,
Kluwer 2003, pp. 55-68): interpolate ``g1`` through all ``n'`` shares, run the
extended Euclidean algorithm on ``g0 = prod (X - x_i)`` and ``g1`` until the
remainder ``g = u g0 + v g1`` has degree ``< (n' + t) / 2``, and divide:
``f = g / v`` if the division is exact and ``deg f < t``. It costs ``O(n'^2)``
field operations per secret, with Python ints over the field of
:mod:`secagg.shamir` (GF(2^256 + 297)).

The honest path costs what :func:`secagg.shamir.combine_many` costs: the
shares are first checked for consistency (interpolate through ``t``, evaluate
at the others), and only the secrets that fail are decoded. In a batch, the
liars found so far are tried first, on the next secret alone and, if they
explain it, on every pending secret at once: when the shares
outside a suspect set ``S`` with ``|S| <= e_max`` all lie on one polynomial
``f'``, then ``f'`` is within distance ``e_max`` of the received word, hence
the unique decoding (the same answer Gao's algorithm would give) at the cost
of one consistency check.

What is guaranteed, with ``e`` wrong shares:

* ``e <= e_max``: the true secret and exactly the wrong shares are returned.
* ``e_max < e < n' - t + 1 - e_max``: :class:`~secagg.errors.UndecodableSharesError`
  is raised; no secret is returned. (A wrong result ``f' != f`` must agree
  with ``n' - e_max`` shares, at most ``t - 1`` of them honest, so it needs at
  least ``n' - t + 1 - e_max`` wrong shares.)
* ``e >= n' - t + 1 - e_max`` (for ``n' - t`` even that is just ``e_max + 1``):
  the error is raised, except when the wrong shares were chosen to agree
  with another polynomial ``f'`` of degree ``< t`` on enough points that
  ``f'`` is within ``e_max`` of the received word; then ``f'(0)`` is returned
  and honest shares are named as liars. No decoder can do better, since the
  received word is then closer to ``f'`` than to ``f``. Colluding liars can
  arrange this; independent garbage does so with probability about
  ``p^-(t - e_max)`` or less. Size ``n'`` so that the liars you must survive
  number at most ``e_max``.
* ``n' == t``: nothing can be checked (``e_max = 0`` and any ``t`` values
  interpolate); the result is that of :func:`secagg.shamir.combine`.

Liars are named by share x-coordinate (the protocols use ``client_id + 1``).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .errors import UndecodableSharesError

# The field, parsing and interpolation are secagg.shamir's: one place for each rule.
from .shamir import (
    FIELD_PRIME,
    _batch_inverse,
    _check_secret_len,
    _check_threshold,
    _interpolator,
    _parse_rows,
    _values_to_secrets,
)

__all__ = ["Decoded", "DecodedMany", "decode", "decode_many", "max_errors"]

_P = FIELD_PRIME
# A polynomial is its list of coefficients, constant term first, without
# trailing zeros (the zero polynomial is []).
_Poly = list[int]


@dataclass(frozen=True)
class Decoded:
    """One recovered secret and the x-coordinates of the shares not on its polynomial."""

    secret: bytes
    liars: frozenset[int]


@dataclass(frozen=True)
class DecodedMany:
    """Secrets recovered together, with the liars of each secret (by share x-coordinate)."""

    secrets: tuple[bytes, ...]
    liars: tuple[frozenset[int], ...]

    @property
    def all_liars(self) -> frozenset[int]:
        """Every x whose share was wrong for at least one secret."""
        return frozenset().union(*self.liars)


def max_errors(n_shares: int, threshold: int) -> int:
    """``(n' - t) // 2``: how many wrong shares among ``n_shares`` decoding corrects.

    Raises ValueError if ``n_shares < threshold`` or ``threshold < 1``.
    """
    t = _check_threshold(threshold)
    if isinstance(n_shares, bool) or not isinstance(n_shares, int):
        raise TypeError(f"n_shares must be an int, got {type(n_shares).__name__}")
    if n_shares < t:
        raise ValueError(f"{n_shares} shares cannot reconstruct with threshold {t}")
    return (n_shares - t) // 2


def decode(shares: Mapping[int, bytes], threshold: int, secret_len: int = 32) -> Decoded:
    """Recover one secret from shares of which up to :func:`max_errors` may be wrong.

    Same arguments and input checks as :func:`secagg.shamir.combine`; see the
    module docstring for what is guaranteed with more wrong shares.

    Raises:
        UndecodableSharesError: too many wrong shares to decode uniquely.
        ShamirError: fewer than ``threshold`` shares, a bad x or share, or a
            recovered value that does not fit in ``secret_len`` bytes.
    """
    if not isinstance(shares, Mapping):
        raise TypeError(f"shares must be a mapping x -> share, got {type(shares).__name__}")
    result = decode_many({x: [share] for x, share in shares.items()}, threshold, secret_len)
    return Decoded(result.secrets[0], result.liars[0])


def decode_many(
    shares: Mapping[int, Sequence[bytes]], threshold: int, secret_len: int = 32
) -> DecodedMany:
    """Recover several secrets shared at the same points, each despite up to ``e_max`` liars.

    The wrong shares may differ from secret to secret; each secret's liars are
    reported, and :attr:`DecodedMany.all_liars` is their union.

    Args:
        shares: ``{x: [share of secret 0, share of secret 1, ...]}`` as for
            :func:`secagg.shamir.combine_many`.
        threshold: the ``t`` used when sharing.
        secret_len: length of each secret in bytes (at most 32).

    Raises:
        UndecodableSharesError: some secret has too many wrong shares to
            decode uniquely (its index is ``secret_index``).
        ShamirError: the input checks of :func:`secagg.shamir.combine_many`.
    """
    t = _check_threshold(threshold)
    secret_len = _check_secret_len(secret_len)
    parsed, width = _parse_rows(shares, t)
    xs = sorted(parsed)
    e_max = (len(xs) - t) // 2
    values: list[int | None] = [None] * width
    liars: list[frozenset[int]] = [frozenset()] * width

    # Each step takes the next undecoded secret and first tries the current
    # suspects (initially none: the honest path) on it alone, which is cheap;
    # if they explain it, they are tried on every pending secret at once (one
    # interpolation for all of them). Otherwise the secret is decoded by Gao's
    # algorithm and its liars join the suspects. Honest shares thus cost one
    # consistency check per secret, and liars who lie on every secret one
    # decoding plus one check per secret.
    pending = list(range(width))
    gao: _Gao | None = None
    suspects: set[int] = set()
    tried: frozenset[int] | None = None
    while pending:
        s = pending.pop(0)
        if len(suspects) <= e_max and suspects != tried:
            if not _fit(xs, parsed, [s], frozenset(suspects), t, values, liars):
                tried = frozenset(suspects)
                pending = _fit(xs, parsed, pending, tried, t, values, liars)
                continue
        if gao is None:
            gao = _Gao(xs, t)
        decoded = gao.decode([parsed[x][s] for x in xs])
        if decoded is None:
            raise UndecodableSharesError(
                f"cannot decode secret {s}: more than {e_max} of the {len(xs)} shares are "
                f"wrong (threshold {t}; correcting e wrong shares needs at least t + 2e)",
                n_shares=len(xs),
                threshold=t,
                max_errors=e_max,
                secret_index=s,
            )
        values[s], liars[s] = decoded
        suspects |= decoded[1]

    secrets = _values_to_secrets([v for v in values if v is not None], secret_len)
    assert len(secrets) == width
    return DecodedMany(tuple(secrets), tuple(liars))


def _fit(
    xs: list[int],
    parsed: dict[int, list[int]],
    which: Sequence[int],
    excluded: frozenset[int],
    t: int,
    values: list[int | None],
    liars: list[frozenset[int]],
) -> list[int]:
    """Decode the secrets ``which`` whose shares outside ``excluded`` lie on one polynomial.

    Interpolates through the first ``t`` trusted x (one set of weights for all
    secrets), checks the other trusted shares, and for those that pass stores
    the value at 0 and the excluded x whose share is off the polynomial.
    Returns the secrets that did not pass, in order. Callers keep
    ``len(excluded) <= e_max``, which makes a pass the unique decoding.
    """
    which = list(which)
    if not which:
        return []
    # `which` is increasing; when it is a run of consecutive secrets, slice.
    first, last = which[0], which[-1]
    run = last - first + 1 == len(which)

    def row(x: int) -> list[int]:
        return parsed[x][first : last + 1] if run else [parsed[x][s] for s in which]

    trusted = [x for x in xs if x not in excluded]
    base, extra = trusted[:t], trusted[t:]
    evaluate = _interpolator(base, [[parsed[x][s] for x in base] for s in which])
    ok = [True] * len(which)
    for x in extra:
        got, want = evaluate(x), row(x)
        if got != want:  # compare element by element only when something is off
            for i, (g, w) in enumerate(zip(got, want, strict=True)):
                if g != w:
                    ok[i] = False
    at_zero = evaluate(0)
    # Only the secrets with a liar get a set (no per-secret containers on the honest path).
    off: dict[int, set[int]] = {}
    for x in sorted(excluded):
        for i, (g, w) in enumerate(zip(evaluate(x), row(x), strict=True)):
            if g != w:
                off.setdefault(i, set()).add(x)
    failed = []
    for i, s in enumerate(which):
        if ok[i]:
            values[s], liars[s] = at_zero[i], frozenset(off.get(i, ()))
        else:
            failed.append(s)
    return failed


# ---------------------------------------------------------------------------
# Polynomials over GF(p) and Gao's decoder


def _trim(a: _Poly) -> _Poly:
    while a and a[-1] == 0:
        a.pop()
    return a


def _sub(a: _Poly, b: _Poly) -> _Poly:
    n = max(len(a), len(b))
    a, b = a + [0] * (n - len(a)), b + [0] * (n - len(b))
    return _trim([(u - v) % _P for u, v in zip(a, b, strict=True)])


def _mul(a: _Poly, b: _Poly) -> _Poly:
    if not a or not b:
        return []
    out = [0] * (len(a) + len(b) - 1)
    for i, u in enumerate(a):
        for j, v in enumerate(b):
            out[i + j] += u * v
    return _trim([c % _P for c in out])


def _divmod(a: _Poly, b: _Poly) -> tuple[_Poly, _Poly]:
    """Quotient and remainder of ``a / b`` (``b`` nonzero), by long division."""
    rem = list(a)
    if len(rem) < len(b):
        return [], rem
    lead_inv = pow(b[-1], -1, _P)
    quotient = [0] * (len(rem) - len(b) + 1)
    # Entries are reduced only when read as a leading coefficient and at the
    # end: each absorbs at most len(quotient) unreduced products.
    for shift in range(len(quotient) - 1, -1, -1):
        coeff = rem[shift + len(b) - 1] % _P * lead_inv % _P
        quotient[shift] = coeff
        if coeff:
            for j, v in enumerate(b):
                rem[shift + j] -= coeff * v
    return _trim(quotient), _trim([c % _P for c in rem[: len(b) - 1]])


def _horner(a: _Poly) -> Callable[[int], int]:
    coeffs = a[::-1]

    def evaluate(x: int) -> int:
        acc = 0
        if x.bit_length() <= 32:
            # Small x (the protocols use client_id + 1): one reduction at the
            # end; the accumulator grows by at most 32 bits per coefficient.
            for c in coeffs:
                acc = acc * x + c
            return acc % _P
        for c in coeffs:
            acc = (acc * x + c) % _P
        return acc

    return evaluate


class _Gao:
    """Gao's Reed-Solomon decoder (Gao 2003, section 2) for fixed points ``xs`` and dimension ``t``.

    What depends only on the points is computed once: ``g0 = prod (X - x_i)``
    and the Lagrange basis polynomials ``L_i`` (``L_i(x_j) = [i == j]``), so
    that interpolating ``g1`` for each secret is a matrix-vector product.
    """

    def __init__(self, xs: list[int], t: int) -> None:
        self.xs, self.t, self.n = xs, t, len(xs)
        self.e_max = (self.n - t) // 2
        g0: _Poly = [1]
        for x in xs:
            g0 = _mul(g0, [(-x) % _P, 1])
        self.g0 = g0
        # L_i = w_i * g0 / (X - x_i), with w_i = 1 / prod_{j != i} (x_i - x_j).
        denominators = [
            _prod_mod([xi - xj for j, xj in enumerate(xs) if j != i]) for i, xi in enumerate(xs)
        ]
        weights = _batch_inverse(denominators)
        basis = []
        for xi, w in zip(xs, weights, strict=True):
            quotient, _ = _divmod(g0, [(-xi) % _P, 1])
            quotient += [0] * (self.n - len(quotient))
            basis.append([c * w % _P for c in quotient])
        # Transposed: columns[j][i] is the X^j coefficient of L_i.
        self.columns = [list(column) for column in zip(*basis, strict=True)]

    def decode(self, ys: list[int]) -> tuple[int, frozenset[int]] | None:
        """``(f(0), liars)`` for the unique ``f`` within ``e_max`` of ``ys``, or None."""
        n, t = self.n, self.t
        g1 = _trim([sum(map(operator.mul, column, ys)) % _P for column in self.columns])
        r0, r1 = self.g0, g1
        v0: _Poly = []
        v1: _Poly = [1]
        # Stop at the first remainder of degree < (n + t) / 2 (deg [] = -1).
        while 2 * (len(r1) - 1) >= n + t:
            q, r = _divmod(r0, r1)
            r0, r1 = r1, r
            v0, v1 = v1, _sub(v0, _mul(q, v1))
        f, remainder = _divmod(r1, v1)
        if remainder or len(f) > t:
            return None
        evaluate = _horner(f)
        liars = frozenset(x for x, y in zip(self.xs, ys, strict=True) if evaluate(x) != y)
        if len(liars) > self.e_max:  # cannot happen for a correct decoder; never trust it blindly
            return None
        return (f[0] if f else 0), liars


def _prod_mod(values: list[int]) -> int:
    acc = 1
    for v in values:
        acc = acc * v % _P
    return acc
