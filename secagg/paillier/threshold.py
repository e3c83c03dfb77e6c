"""Threshold Paillier: any ``t`` of ``m`` committee members decrypt, with proofs.

The scheme is Paillier with ``s = 1`` of Damgård and Jurik ("A Generalisation,
a Simplification and Some Applications of Paillier's Probabilistic Public-Key
System", PKC 2001, §4; Damgård–Jurik–Nielsen, Int. J. Inf. Secur. 2010, §4),
which is the Fouque–Poupard–Stern scheme ("Sharing Decryption in the Context
of Voting or Lotteries", FC 2000) with Shoup's integer Lagrange trick
("Practical Threshold Signatures", EUROCRYPT 2000, §2). Section numbers below
are DJ 2001's.

The public key is an ordinary :class:`~secagg.paillier.PaillierPublicKey`, so
encryption (the DJN short-exponent randomizer, :mod:`secagg.paillier.djn`),
packing (:class:`~secagg.paillier.Packer`) and homomorphic sums are exactly
today's: same slots per ciphertext, same cost per value. Only decryption
changes.

Key ceremony (:func:`generate_threshold_key`; DJ 2001 §4.1, key generation)
---------------------------------------------------------------------------
* safe primes ``p = 2p' + 1``, ``q = 2q' + 1`` (:func:`random_safe_prime`),
  ``N = pq``, ``m' = p'q'``; safe primes also meet the DJN key conditions
  (``p = q = 3 mod 4``, ``gcd(p-1, q-1) = 2``), so the DJN base keeps its
  large order;
* the secret ``d`` with ``d = 0 (mod m')`` and ``d = 1 (mod N)`` (CRT);
* Shamir shares ``s_i = f(i) mod N m'`` of ``d``, ``f`` of degree ``t - 1``
  with uniform coefficients in ``Z_{N m'}``, for members ``i = 1..m``;
* a verification base ``v``, a random square mod ``N^2``, and verification
  keys ``v_i = v^(Delta s_i) mod N^2`` with ``Delta = m!``.

The ceremony returns the :class:`ThresholdPublicKey` (``N``, ``t``, ``v``,
the ``v_i``) and one :class:`KeyShare` per member, then drops every reference
to ``p, q, p', q', m', d`` and the polynomial. **Trust:** whoever runs the
ceremony sees the factorization while it runs and could keep it (and so
decrypt everything under the key); run it on a machine that is neither the
server nor a committee member, and destroy that process afterwards. Python
cannot overwrite the memory of an ``int``, so "erased" means "no reference
left", not "zeroized". A dealer-free generation would remove this trust; see
the README for why this module does not provide one.

Before it returns, the ceremony checks its own output: every share against
its verification key, the verification keys against one polynomial of degree
``t - 1`` (:meth:`ThresholdPublicKey.check_consistency`), and a test
decryption by ``t`` members.

Decryption (DJ 2001 §4.1, decryption; §5, proofs)
-------------------------------------------------
* Member ``i`` computes ``c_i = c^(2 Delta s_i) mod N^2`` for each ciphertext
  (:func:`partial_decrypt`) with a non-interactive Chaum–Pedersen proof
  ("Wallet Databases with Observers", CRYPTO 1992) that
  ``log_(c^4) (c_i^2) = log_v (v_i)``, made non-interactive by Fiat–Shamir
  with SHA-256 over a domain-separated transcript that binds the public key,
  the member index, a caller-supplied ``context`` (session id and round), the
  ciphertexts and the partial decryptions.
* A vector of ``L`` ciphertexts gets *one* proof, for the random linear
  combination ``X = prod c_j^(4 rho_j)``, ``W = prod c_ij^(2 rho_j)`` with
  128-bit ``rho_j`` derived from the transcript (the small-exponent batch test
  of Bellare, Garay and Rabin, "Fast Batch Verification for Modular
  Exponentiation and Digital Signatures", EUROCRYPT 1998, §3.3). It is sound
  because the squares mod ``N^2`` form a cyclic group of order ``N m' = p q
  p' q'`` with no prime factor below ``2^(key_bits/2 - 2)``: if some
  ``c_ij^2 != c_j^(4 Delta s_i)``, the ratio has order at least that large,
  so at most one value of ``rho_j`` modulo that order hides it, and a cheating
  member who fixed ``c_ij`` before ``rho`` was known succeeds with
  probability about ``2^-128``.
* Any ``t`` verified partial decryptions in a set ``S`` combine
  (:func:`combine_partials`) as ``c' = prod_{i in S} c_i^(2 lambda_i)`` with
  the integer Lagrange coefficients ``lambda_i = Delta prod_{j in S, j != i}
  j / (j - i)`` (Shoup 2000, §2), so ``c' = c^(4 Delta^2 d)`` and the
  plaintext is ``L(c') * (4 Delta^2)^-1 mod N`` with ``L(u) = (u - 1) / N``.

With fewer than ``t`` shares the secret ``d`` is information-theoretically
hidden (Shamir's argument over ``Z_{N m'}``: every difference of member
indices is invertible there because ``m`` is far below every prime factor of
``N m'``), and partial decryptions reveal nothing beyond the plaintext they
decrypt to (DJ 2001, Theorem 2, under DCR in the random-oracle model). The
scheme is *not* robust against a dealer that lies (the ceremony is trusted),
and it decrypts whatever it is given: deciding *what* to decrypt (only
aggregates of enough signed contributions) is the protocol's job.

Verification raises :class:`~secagg.errors.PartialDecryptionError` naming the
member (there is no boolean to forget to check); the combiner excludes and
names every member whose partial decryption fails and raises
:class:`~secagg.errors.ThresholdDecryptionError` if fewer than ``t`` remain.

Byte encodings (big-endian; every decoder is strict)::

    threshold key:  b"SATK" || version || t (u16) || m (u16) || len(pk) (u16) || pk
                    || v || v_1 .. v_m                  (each nsquare-width bytes)
    key share:      b"SATS" || version || index (u16) || SHA-256(threshold key)
                    || len(s_i) (u16) || s_i            (SECRET)
    partial:        b"SAPD" || version || index (u16) || count (u32)
                    || c_i1 .. c_iL (nsquare-width) || e (32 bytes) || len(z) (u16) || z
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import gmpy2
import numpy as np

from ..errors import PartialDecryptionError, ThresholdDecryptionError
from ..framing import length_prefixed, require_bytes
from ..randomness import RandomSource, default_rng, random_below
from . import pool
from .keys import DEFAULT_KEY_BITS, MAX_KEY_BITS, MIN_KEY_BITS, PaillierPublicKey
from .vector import encrypt_packed

__all__ = [
    "BATCH_BITS",
    "CHALLENGE_BITS",
    "MAX_MEMBERS",
    "KeyShare",
    "PartialDecryption",
    "ThresholdDecryption",
    "ThresholdPublicKey",
    "combine_partials",
    "combine_verified",
    "generate_threshold_key",
    "partial_decrypt",
    "random_safe_prime",
    "verify_partial",
]

#: Largest committee: ``Delta = m!`` appears in every exponent, and member
#: indices must stay far below every prime factor of ``N``.
MAX_MEMBERS = 255
#: Fiat–Shamir challenge length (bits): SHA-256.
CHALLENGE_BITS = 256
#: Length of the batch coefficients ``rho_j`` (bits): soundness error ~2^-128.
BATCH_BITS = 128
#: Statistical hiding of ``Delta s_i`` in the proof response ``z = r + e Delta s_i``.
_HIDING_BITS = 128

_TK_MAGIC = b"SATK"
_SHARE_MAGIC = b"SATS"
_PARTIAL_MAGIC = b"SAPD"
_VERSION = 1
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_DOMAIN = b"secagg.paillier.threshold/v1"


# ---------------------------------------------------------------------------
# Public key


@dataclass(frozen=True)
class ThresholdPublicKey:
    """The public side of a threshold key: the Paillier key plus what checks the members.

    Attributes:
        public_key: the ordinary Paillier public key everybody encrypts under.
        threshold: ``t``, how many members must take part in a decryption.
        verification_base: ``v``, a square mod ``N^2`` chosen by the ceremony.
        verification_keys: ``(v_1, .., v_m)`` with ``v_i = v^(Delta s_i) mod N^2``;
            member ``i`` is at position ``i - 1``.

    Building one checks ranges only; :meth:`check_consistency` (run by the
    ceremony and by :meth:`from_bytes`) checks the verification keys lie on
    one polynomial of degree ``t - 1``.
    """

    public_key: PaillierPublicKey
    threshold: int
    verification_base: int
    verification_keys: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.public_key, PaillierPublicKey):
            raise TypeError("public_key must be a PaillierPublicKey")
        object.__setattr__(self, "verification_keys", tuple(self.verification_keys))
        members = len(self.verification_keys)
        _check_committee(members, self.threshold)
        n, nsquare = self.public_key.n, self.public_key.nsquare
        for name, value in [("verification base", self.verification_base)] + [
            (f"verification key {i + 1}", v) for i, v in enumerate(self.verification_keys)
        ]:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int")
            if not 1 < value < nsquare or math.gcd(value, n) != 1:
                raise ValueError(f"{name} is not a unit mod n^2")

    @property
    def members(self) -> int:
        """``m``, the committee size."""
        return len(self.verification_keys)

    @property
    def delta(self) -> int:
        """``Delta = m!``, which makes every Lagrange coefficient an integer."""
        return math.factorial(self.members)

    def verification_key(self, index: int) -> int:
        """``v_i`` of member ``index`` (1..m)."""
        return self.verification_keys[_check_index(index, self.members) - 1]

    def check_consistency(self) -> None:
        """Check that ``v_1..v_m`` are ``v^(Delta f(i))`` for one ``f`` of degree ``< t``.

        Interpolation in the exponent (Shoup 2000, §2): for the set ``S`` of
        the first ``t`` members and every other member ``k``,
        ``v_k^Delta = prod_{j in S} v_j^(lambda^S_{k,j})``. A dealer that hands
        out verification keys of inconsistent shares, so that different sets
        of ``t`` members would decrypt to different values, is caught here.
        Raises ValueError.
        """
        nsquare = gmpy2.mpz(self.public_key.nsquare)
        delta = self.delta
        base = list(range(1, self.threshold + 1))
        for k in range(self.threshold + 1, self.members + 1):
            acc = gmpy2.mpz(1)
            for j, lam in zip(base, _lagrange_at(base, k, delta), strict=True):
                acc = acc * gmpy2.powmod(self.verification_keys[j - 1], lam, nsquare) % nsquare
            if acc != gmpy2.powmod(self.verification_keys[k - 1], delta, nsquare):
                raise ValueError(
                    f"verification key {k} is inconsistent with those of members 1..{self.threshold}"
                )

    def to_bytes(self) -> bytes:
        """The encoding in the module docstring (``b"SATK"``...)."""
        width = self.public_key.ciphertext_bytes
        pk = self.public_key.to_bytes()
        out = bytearray(_TK_MAGIC + bytes([_VERSION]))
        out += _U16.pack(self.threshold) + _U16.pack(self.members) + _U16.pack(len(pk)) + pk
        for value in (self.verification_base, *self.verification_keys):
            out += value.to_bytes(width, "big")
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> ThresholdPublicKey:
        """Decode :meth:`to_bytes` output and run :meth:`check_consistency`.

        Raises ValueError on a wrong magic, version or length, a bad embedded
        public key, a committee size or threshold out of range, a value that
        is not a unit mod ``n^2``, or inconsistent verification keys.
        """
        data = require_bytes(data, "threshold public key")
        head = len(_TK_MAGIC) + 1 + 3 * _U16.size
        if len(data) < head:
            raise ValueError(f"threshold public key truncated: {len(data)} bytes")
        if data[: len(_TK_MAGIC)] != _TK_MAGIC:
            raise ValueError("not a threshold Paillier public key (bad magic)")
        if data[len(_TK_MAGIC)] != _VERSION:
            raise ValueError(f"unsupported threshold public key version {data[len(_TK_MAGIC)]}")
        pos = len(_TK_MAGIC) + 1
        (threshold,) = _U16.unpack_from(data, pos)
        (members,) = _U16.unpack_from(data, pos + 2)
        (pk_len,) = _U16.unpack_from(data, pos + 4)
        _check_committee(members, threshold)
        pos = head
        if len(data) < pos + pk_len:
            raise ValueError("threshold public key truncated inside the Paillier key")
        public_key = PaillierPublicKey.from_bytes(data[pos : pos + pk_len])
        pos += pk_len
        width = public_key.ciphertext_bytes
        if len(data) != pos + width * (members + 1):
            raise ValueError(
                f"threshold public key length mismatch: {members} members need "
                f"{pos + width * (members + 1)} bytes, got {len(data)}"
            )
        values = [
            int.from_bytes(data[pos + i * width : pos + (i + 1) * width], "big")
            for i in range(members + 1)
        ]
        key = cls(public_key, threshold, values[0], tuple(values[1:]))
        key.check_consistency()
        return key

    def digest(self) -> bytes:
        """SHA-256 of :meth:`to_bytes`: what a key share and every proof bind to."""
        return _key_digest(self)

    def __repr__(self) -> str:
        return (
            f"ThresholdPublicKey(key_bits={self.public_key.key_bits}, "
            f"threshold={self.threshold}, members={self.members})"
        )


@lru_cache(maxsize=16)
def _key_digest(key: ThresholdPublicKey) -> bytes:
    return hashlib.sha256(key.to_bytes()).digest()


def _check_committee(members: object, threshold: object) -> None:
    for name, value in (("members", members), ("threshold", threshold)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int")
    assert isinstance(members, int) and isinstance(threshold, int)
    if not 1 <= members <= MAX_MEMBERS:
        raise ValueError(f"members must be in [1, {MAX_MEMBERS}], got {members}")
    if not 1 <= threshold <= members:
        raise ValueError(f"threshold must be in [1, members={members}], got {threshold}")


def _check_index(index: object, members: int) -> int:
    if isinstance(index, bool) or not isinstance(index, int):
        raise TypeError("member index must be an int")
    if not 1 <= index <= members:
        raise ValueError(f"member index must be in [1, {members}], got {index}")
    return index


def _lagrange_at(points: Sequence[int], x: int, delta: int) -> list[int]:
    """``Delta * prod_{j != i} (x - j) / (i - j)`` for each ``i`` in ``points``: integers.

    ``Delta = m!`` clears every denominator (Shoup 2000, Lemma 2), so the
    division is exact.
    """
    out = []
    for i in points:
        num, den = delta, 1
        for j in points:
            if j != i:
                num *= x - j
                den *= i - j
        out.append(num // den)
    return out


# ---------------------------------------------------------------------------
# Key shares


class KeyShare:
    """Member ``index``'s share ``s_i`` of the decryption exponent. SECRET.

    Building one checks ``v^(Delta s_i) = v_i``, so a share that does not
    match its published verification key is refused at once. ``repr`` does
    not show the share; :meth:`to_bytes` is for the member's own storage.
    """

    __slots__ = ("_share", "index", "threshold_key")

    def __init__(self, threshold_key: ThresholdPublicKey, index: int, share: int) -> None:
        if not isinstance(threshold_key, ThresholdPublicKey):
            raise TypeError("threshold_key must be a ThresholdPublicKey")
        _check_index(index, threshold_key.members)
        if isinstance(share, bool) or not isinstance(share, int):
            raise TypeError("share must be an int")
        nsquare = threshold_key.public_key.nsquare
        if not 0 < share < nsquare:
            raise ValueError("share out of range")
        expected = threshold_key.verification_key(index)
        if gmpy2.powmod(threshold_key.verification_base, threshold_key.delta * share, nsquare) != (
            expected
        ):
            raise ValueError(f"share of member {index} does not match its verification key")
        self.threshold_key = threshold_key
        self.index = index
        self._share = gmpy2.mpz(share)

    def to_bytes(self) -> bytes:
        """``b"SATS" || version || index || SHA-256(threshold key) || len(s_i) || s_i``. SECRET."""
        body = int(self._share).to_bytes((self._share.bit_length() + 7) // 8, "big")
        return (
            _SHARE_MAGIC
            + bytes([_VERSION])
            + _U16.pack(self.index)
            + self.threshold_key.digest()
            + _U16.pack(len(body))
            + body
        )

    @classmethod
    def from_bytes(cls, threshold_key: ThresholdPublicKey, data: bytes) -> KeyShare:
        """Decode :meth:`to_bytes` output for ``threshold_key``.

        Raises ValueError on a wrong magic, version, length or key digest, a
        non-minimal share, or a share that does not match its verification key.
        """
        data = require_bytes(data, "key share")
        head = len(_SHARE_MAGIC) + 1 + _U16.size + 32 + _U16.size
        if len(data) < head:
            raise ValueError("key share truncated")
        if data[: len(_SHARE_MAGIC)] != _SHARE_MAGIC:
            raise ValueError("not a threshold Paillier key share (bad magic)")
        if data[len(_SHARE_MAGIC)] != _VERSION:
            raise ValueError(f"unsupported key share version {data[len(_SHARE_MAGIC)]}")
        pos = len(_SHARE_MAGIC) + 1
        (index,) = _U16.unpack_from(data, pos)
        if data[pos + 2 : pos + 34] != threshold_key.digest():
            raise ValueError("key share belongs to a different threshold key")
        (length,) = _U16.unpack_from(data, pos + 34)
        body = data[head:]
        if len(body) != length or length == 0 or body[0] == 0:
            raise ValueError("key share value truncated or not minimally encoded")
        return cls(
            threshold_key, _check_index(index, threshold_key.members), int.from_bytes(body, "big")
        )

    def __repr__(self) -> str:
        return f"KeyShare(index={self.index}, {self.threshold_key!r}, <secret>)"


# ---------------------------------------------------------------------------
# Key ceremony


@lru_cache(maxsize=1)
def _sieve_primes() -> tuple[int, ...]:
    """Odd primes below 2^15, for sieving safe-prime candidates."""
    limit = 1 << 15
    flags = np.ones(limit, dtype=bool)
    flags[:2] = False
    for k in range(2, int(limit**0.5) + 1):
        if flags[k]:
            flags[k * k :: k] = False
    return tuple(int(p) for p in np.flatnonzero(flags) if p > 2)


# Candidates per sieve window (p' = start + 2k for k < this).
_SIEVE_WINDOW = 1 << 14
# Miller–Rabin rounds on top of gmpy2's own tests (error below 4^-40 per number).
_PRIME_REPS = 40


def random_safe_prime(bits: int, rng: RandomSource | None = None) -> int:
    """A random safe prime ``p = 2p' + 1`` (``p'`` prime) of exactly ``bits`` bits, top two set.

    Incremental search (Brandt and Damgård, "On Generation of Probable Primes
    by Incremental Search", CRYPTO 1992) from a uniform odd start ``p'``,
    sieving ``p'`` and ``2p' + 1`` together by the odd primes below 2^15, then
    a base-2 Fermat test of each, then :func:`gmpy2.is_prime` with
    :data:`_PRIME_REPS` rounds on both. The top two bits are set so that the
    product of two such primes has exactly ``2 * bits`` bits. ``rng``
    defaults to the OS CSPRNG (a seeded source is for tests only).
    """
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise TypeError("bits must be an int")
    if bits < 32:
        raise ValueError(f"bits must be at least 32, got {bits}")
    rng = default_rng(rng)
    primes = _sieve_primes()
    # p' in [lo, hi), so p = 2p' + 1 has exactly `bits` bits with the top two set.
    lo, hi = 3 << (bits - 3), 1 << (bits - 1)
    two = gmpy2.mpz(2)
    while True:
        start = (lo + random_below(hi - lo - 2 * _SIEVE_WINDOW, rng)) | 1
        alive = np.ones(_SIEVE_WINDOW, dtype=bool)
        for r in primes:
            s = start % r
            half = (r + 1) // 2  # 2^-1 mod r
            alive[(-s) * half % r :: r] = False  # r | p'
            alive[((r - 1) // 2 - s) * half % r :: r] = False  # r | 2p' + 1
        for k in np.flatnonzero(alive):
            pp = gmpy2.mpz(start + 2 * int(k))
            p = 2 * pp + 1
            if gmpy2.powmod(two, pp - 1, pp) != 1 or gmpy2.powmod(two, p - 1, p) != 1:
                continue
            if gmpy2.is_prime(pp, _PRIME_REPS) and gmpy2.is_prime(p, _PRIME_REPS):
                return int(p)


def generate_threshold_key(
    key_bits: int = DEFAULT_KEY_BITS,
    members: int = 5,
    threshold: int = 3,
    *,
    insecure: bool = False,
    rng: RandomSource | None = None,
) -> tuple[ThresholdPublicKey, tuple[KeyShare, ...]]:
    """Run the key ceremony: a threshold key and one share per member, factorization erased.

    Run it apart from the server and from the committee (its host sees the
    factorization while it runs; see the module docstring for the trust this
    implies and what "erased" means in Python). Deliver share ``i`` only to
    member ``i`` (e.g. :meth:`KeyShare.to_bytes` over an authenticated,
    encrypted channel) and publish the :class:`ThresholdPublicKey`.

    Args:
        key_bits: bit length of ``N``, even; at least 2048 (about 112-bit
            security) unless ``insecure=True``.
        members: committee size ``m``.
        threshold: ``t``, members needed to decrypt (``1 <= t <= m``).
        insecure: allow ``key_bits`` below 2048 (down to
            :data:`~secagg.paillier.keys.MIN_KEY_BITS`): for tests only.
        rng: randomness for primes, polynomial and verification base; the OS
            CSPRNG by default. A seeded source makes the key known to whoever
            knows the seed: tests only.

    With the joint sieve of :func:`random_safe_prime` a 2048-bit ceremony
    (two 1024-bit safe primes, dealing, self-test) took 0.9 to 1.9 s on one
    core here (``benchmarks/he.py --threshold-only`` reports it), with a wide
    spread: the search is a geometric number of trials.
    """
    if isinstance(key_bits, bool) or not isinstance(key_bits, int):
        raise TypeError("key_bits must be an int")
    if key_bits % 2 or not MIN_KEY_BITS <= key_bits <= MAX_KEY_BITS:
        raise ValueError(f"key_bits must be even and in [{MIN_KEY_BITS}, {MAX_KEY_BITS}]")
    if key_bits < DEFAULT_KEY_BITS and not insecure:
        raise ValueError(
            f"key_bits={key_bits} is below {DEFAULT_KEY_BITS} (about 112-bit security); "
            "pass insecure=True to allow it (tests only)"
        )
    _check_committee(members, threshold)
    rng = default_rng(rng)
    while True:
        p = random_safe_prime(key_bits // 2, rng)
        q = random_safe_prime(key_bits // 2, rng)
        if p != q:
            break
    key, shares = _deal(p, q, members, threshold, rng)
    del p, q  # no reference to the factorization survives this call
    _self_test(shares, rng)
    return key, shares


def _deal(
    p: int, q: int, members: int, threshold: int, rng: RandomSource
) -> tuple[ThresholdPublicKey, tuple[KeyShare, ...]]:
    """Share the decryption exponent of ``N = pq`` for safe primes ``p``, ``q`` (DJ 2001 §4.1).

    Everything secret is local to this frame and gone when it returns.
    """
    pp, qq = (p - 1) // 2, (q - 1) // 2
    n = p * q
    m_prime = pp * qq
    if math.gcd(n, m_prime) != 1 or members >= min(pp, qq):
        raise ValueError("p and q must be distinct safe primes far larger than the committee")
    modulus = n * m_prime
    # d = 0 mod m', d = 1 mod N (CRT; gcd(N, m') = 1).
    d = m_prime * pow(m_prime, -1, n) % modulus
    coefficients = [d] + [random_below(modulus, rng) for _ in range(threshold - 1)]
    shares = []
    for i in range(1, members + 1):
        acc = 0
        for a in reversed(coefficients):  # Horner
            acc = (acc * i + a) % modulus
        shares.append(acc)
    public_key = PaillierPublicKey(n)
    nsquare = gmpy2.mpz(public_key.nsquare)
    while True:
        r = random_below(public_key.nsquare, rng)
        if r > 1 and math.gcd(r, n) == 1:
            break
    v = gmpy2.powmod(r, 2, nsquare)
    delta = math.factorial(members)
    v_keys = tuple(int(x) for x in gmpy2.powmod_exp_list(v, [delta * s for s in shares], nsquare))
    key = ThresholdPublicKey(public_key, threshold, int(v), v_keys)
    key.check_consistency()
    out = tuple(KeyShare(key, i, s) for i, s in enumerate(shares, start=1))
    del pp, qq, m_prime, d, coefficients, shares, modulus
    return key, out


def _self_test(shares: Sequence[KeyShare], rng: RandomSource) -> None:
    """Decrypt a random plaintext with the first ``t`` shares; ValueError if it comes out wrong."""
    key = shares[0].threshold_key
    message = random_below(key.public_key.n, rng)
    ct = encrypt_packed(key.public_key, [message], rng=rng, workers=1)
    context = b"key ceremony self-test"
    partials = [
        partial_decrypt(s, ct, context, rng=rng, workers=1) for s in shares[: key.threshold]
    ]
    if combine_partials(key, ct, partials, context).plaintexts != (message,):
        raise ValueError("threshold key failed its test decryption")


# ---------------------------------------------------------------------------
# Partial decryptions and their proofs


@dataclass(frozen=True)
class PartialDecryption:
    """Member ``index``'s partial decryptions ``c^(2 Delta s_i) mod N^2`` and one proof.

    Attributes:
        index: the member (1..m).
        values: one partial decryption per ciphertext, in order.
        challenge: the Fiat–Shamir challenge ``e`` (:data:`CHALLENGE_BITS` bits).
        response: ``z = r + e Delta s_i`` (a non-negative integer).
    """

    index: int
    values: tuple[int, ...]
    challenge: int
    response: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))
        for name in ("index", "challenge", "response"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int")

    def to_bytes(self, threshold_key: ThresholdPublicKey) -> bytes:
        """The encoding in the module docstring (``b"SAPD"``...)."""
        width = threshold_key.public_key.ciphertext_bytes
        z = self.response.to_bytes(max(1, (self.response.bit_length() + 7) // 8), "big")
        if len(z) > 0xFFFF or self.challenge >> CHALLENGE_BITS:
            raise ValueError("proof values out of range")
        return b"".join(
            [
                _PARTIAL_MAGIC,
                bytes([_VERSION]),
                _U16.pack(self.index),
                _U32.pack(len(self.values)),
                *(value.to_bytes(width, "big") for value in self.values),
                self.challenge.to_bytes(CHALLENGE_BITS // 8, "big"),
                _U16.pack(len(z)),
                z,
            ]
        )

    @classmethod
    def from_bytes(
        cls, threshold_key: ThresholdPublicKey, data: bytes, count: int | None = None
    ) -> PartialDecryption:
        """Decode :meth:`to_bytes` output.

        Args:
            count: if given, the exact number of partial decryptions expected.

        Raises ValueError on a wrong magic, version or length, a member index
        outside the committee, a value that is not a unit mod ``n^2``, or a
        response longer than any honest one. (Whether the proof verifies is
        :func:`verify_partial`'s question.)
        """
        data = require_bytes(data, "partial decryption")
        head = len(_PARTIAL_MAGIC) + 1 + _U16.size + _U32.size
        if len(data) < head:
            raise ValueError("partial decryption truncated")
        if data[: len(_PARTIAL_MAGIC)] != _PARTIAL_MAGIC:
            raise ValueError("not a partial decryption (bad magic)")
        if data[len(_PARTIAL_MAGIC)] != _VERSION:
            raise ValueError(f"unsupported partial decryption version {data[len(_PARTIAL_MAGIC)]}")
        pos = len(_PARTIAL_MAGIC) + 1
        (index,) = _U16.unpack_from(data, pos)
        (k,) = _U32.unpack_from(data, pos + 2)
        _check_index(index, threshold_key.members)
        if count is not None and k != count:
            raise ValueError(f"expected {count} partial decryptions, got {k}")
        width = threshold_key.public_key.ciphertext_bytes
        fixed = head + k * width + CHALLENGE_BITS // 8 + _U16.size
        if len(data) < fixed:
            raise ValueError("partial decryption truncated")
        n, nsquare = threshold_key.public_key.n, threshold_key.public_key.nsquare
        values = []
        for j in range(k):
            value = int.from_bytes(data[head + j * width : head + (j + 1) * width], "big")
            if not 0 < value < nsquare or math.gcd(value, n) != 1:
                raise ValueError(f"partial decryption {j} is not a unit mod n^2")
            values.append(value)
        pos = head + k * width
        challenge = int.from_bytes(data[pos : pos + CHALLENGE_BITS // 8], "big")
        (z_len,) = _U16.unpack_from(data, pos + CHALLENGE_BITS // 8)
        z = data[fixed:]
        if len(z) != z_len or z_len == 0 or (z_len > 1 and z[0] == 0):
            raise ValueError("proof response truncated or not minimally encoded")
        response = int.from_bytes(z, "big")
        if response.bit_length() > _response_bits(threshold_key):
            raise ValueError("proof response is longer than any honest one")
        return cls(index, tuple(values), challenge, response)


def _nonce_bits(key: ThresholdPublicKey) -> int:
    # r must hide e * Delta * s_i < 2^CHALLENGE_BITS * Delta * N^2 statistically.
    return (key.delta * key.public_key.nsquare).bit_length() + CHALLENGE_BITS + _HIDING_BITS


def _response_bits(key: ThresholdPublicKey) -> int:
    return _nonce_bits(key) + 1


def _transcript(
    key: ThresholdPublicKey,
    index: int,
    context: bytes,
    ciphertexts: Sequence[int],
    values: Sequence[int],
) -> bytes:
    """SHA-256 of everything the proof is about: key, member, context, ciphertexts, values."""
    width = key.public_key.ciphertext_bytes
    h = hashlib.sha256(
        length_prefixed(_DOMAIN + b"/transcript", key.digest(), _U16.pack(index), context)
    )
    h.update(_U32.pack(len(ciphertexts)))
    for c in ciphertexts:
        h.update(int(c).to_bytes(width, "big"))
    for y in values:
        h.update(int(y).to_bytes(width, "big"))
    return h.digest()


def _batch_coefficients(transcript: bytes, count: int) -> list[int]:
    """``rho_1..rho_L``, :data:`BATCH_BITS` bits each, from SHAKE-256 of the transcript."""
    width = BATCH_BITS // 8
    stream = hashlib.shake_256(_DOMAIN + b"/rho\x00" + transcript).digest(width * count)
    return [int.from_bytes(stream[j * width : (j + 1) * width], "big") for j in range(count)]


def _challenge(transcript: bytes, key: ThresholdPublicKey, *elements: gmpy2.mpz) -> int:
    width = key.public_key.ciphertext_bytes
    parts = [int(x).to_bytes(width, "big") for x in elements]
    return int.from_bytes(
        hashlib.sha256(length_prefixed(_DOMAIN + b"/challenge", transcript, *parts)).digest(), "big"
    )


def _combined_bases(
    key: ThresholdPublicKey, ciphertexts: Sequence[int], values: Sequence[int], rho: Sequence[int]
) -> tuple[gmpy2.mpz, gmpy2.mpz]:
    """``X = prod c_j^(4 rho_j)`` and ``W = prod y_j^(2 rho_j)`` mod ``N^2``."""
    nsquare = gmpy2.mpz(key.public_key.nsquare)
    x = w = gmpy2.mpz(1)
    for c, y, r in zip(ciphertexts, values, rho, strict=True):
        x = x * gmpy2.powmod(c, 4 * r, nsquare) % nsquare
        w = w * gmpy2.powmod(y, 2 * r, nsquare) % nsquare
    return x, w


def _check_ciphertexts(key: ThresholdPublicKey, ciphertexts: Sequence[int]) -> list[gmpy2.mpz]:
    n, nsquare = key.public_key.n, key.public_key.nsquare
    out = []
    for c in ciphertexts:
        if isinstance(c, bool) or not isinstance(c, (int, type(gmpy2.mpz(0)))):
            raise TypeError("ciphertexts must be ints")
        if not 0 < c < nsquare or math.gcd(int(c), n) != 1:
            raise ValueError("ciphertext is not a unit mod n^2")
        out.append(gmpy2.mpz(c))
    if not out:
        raise ValueError("nothing to decrypt")
    return out


# Below this many ciphertexts threads cost more than they save.
_PARALLEL_MIN = 16


def _powmod_all(
    bases: list[gmpy2.mpz], exponent: gmpy2.mpz, modulus: gmpy2.mpz, workers: int
) -> list[gmpy2.mpz]:
    """``b^exponent mod modulus`` for each base; gmpy2 releases the GIL, so threads help."""
    if workers == 1 or len(bases) < _PARALLEL_MIN:
        return list(gmpy2.powmod_base_list(bases, exponent, modulus))
    with ThreadPoolExecutor(max_workers=workers) as threads:
        parts = threads.map(
            lambda ab: gmpy2.powmod_base_list(bases[ab[0] : ab[1]], exponent, modulus),
            pool.split(len(bases), workers),
        )
        return [y for part in parts for y in part]


def partial_decrypt(
    share: KeyShare,
    ciphertexts: Sequence[int],
    context: bytes,
    *,
    rng: RandomSource | None = None,
    workers: int | None = None,
) -> PartialDecryption:
    """Member ``share.index``'s partial decryptions of ``ciphertexts`` with their proof.

    ``c_i = c^(2 Delta s_i) mod N^2`` for every ciphertext (DJ 2001 §4.1), and
    one Chaum–Pedersen proof, made non-interactive by Fiat–Shamir over the
    transcript, that ``log_X W = log_v v_i`` for the batch combination
    ``X``, ``W`` (module docstring). ``context`` must name what is being
    decrypted (e.g. session id and round): a proof made for one context never
    verifies for another.

    Args:
        share: this member's key share.
        ciphertexts: units mod ``n^2`` (e.g. a homomorphic sum).
        context: the caller's binding (bytes).
        rng: source of the proof's nonce; the OS CSPRNG by default (a seeded
            source is for tests only: a repeated nonce reveals the share).
        workers: threads for the exponentiations (default
            :func:`~secagg.paillier.pool.default_workers`).
    """
    if not isinstance(share, KeyShare):
        raise TypeError("share must be a KeyShare")
    key = share.threshold_key
    context = require_bytes(context, "context")
    cts = _check_ciphertexts(key, ciphertexts)
    nsquare = gmpy2.mpz(key.public_key.nsquare)
    sigma = key.delta * share._share
    values = _powmod_all(cts, 2 * sigma, nsquare, pool.resolve_workers(workers))
    transcript = _transcript(key, share.index, context, cts, values)
    x, w = _combined_bases(key, cts, values, _batch_coefficients(transcript, len(cts)))
    r = gmpy2.mpz(random_below(1 << _nonce_bits(key), default_rng(rng)))
    a = gmpy2.powmod(x, r, nsquare)
    b = gmpy2.powmod(key.verification_base, r, nsquare)
    e = _challenge(transcript, key, x, w, a, b)
    return PartialDecryption(share.index, tuple(int(y) for y in values), e, int(r + e * sigma))


def verify_partial(
    threshold_key: ThresholdPublicKey,
    ciphertexts: Sequence[int],
    partial: PartialDecryption,
    context: bytes,
) -> None:
    """Check member ``partial.index``'s proof of correct decryption of ``ciphertexts``.

    Recomputes ``X``, ``W``, then ``a = X^z W^-e``, ``b = v^z v_i^-e`` and
    checks ``e = H(transcript, X, W, a, b)``.

    Raises:
        PartialDecryptionError: naming ``partial.index``, if the index is not
            a member, the count does not match, a value is not a unit mod
            ``n^2``, or the proof does not verify (wrong value, other
            ciphertexts, other context, other member, replayed proof).
    """
    if not isinstance(partial, PartialDecryption):
        raise TypeError("partial must be a PartialDecryption")
    key = threshold_key
    context = require_bytes(context, "context")
    cts = _check_ciphertexts(key, ciphertexts)
    member = partial.index
    if not 1 <= member <= key.members:
        raise PartialDecryptionError(f"{member} is not a committee member index", member=member)
    if len(partial.values) != len(cts):
        raise PartialDecryptionError(
            f"member {member} sent {len(partial.values)} partial decryptions for {len(cts)} "
            "ciphertexts",
            member=member,
        )
    n, nsquare = key.public_key.n, gmpy2.mpz(key.public_key.nsquare)
    for y in partial.values:
        if (
            isinstance(y, bool)
            or not isinstance(y, int)
            or not 0 < y < nsquare
            or math.gcd(y, n) != 1
        ):
            raise PartialDecryptionError(
                f"member {member} sent a partial decryption that is not a unit mod n^2",
                member=member,
            )
    if partial.challenge >> CHALLENGE_BITS or partial.response.bit_length() > _response_bits(key):
        raise PartialDecryptionError(f"member {member}'s proof is out of range", member=member)
    transcript = _transcript(key, member, context, cts, partial.values)
    x, w = _combined_bases(key, cts, partial.values, _batch_coefficients(transcript, len(cts)))
    e, z = gmpy2.mpz(partial.challenge), gmpy2.mpz(partial.response)
    a = gmpy2.powmod(x, z, nsquare) * gmpy2.powmod(w, -e, nsquare) % nsquare
    b = (
        gmpy2.powmod(key.verification_base, z, nsquare)
        * gmpy2.powmod(key.verification_key(member), -e, nsquare)
        % nsquare
    )
    if _challenge(transcript, key, x, w, a, b) != partial.challenge:
        raise PartialDecryptionError(
            f"member {member}'s proof of correct decryption does not verify", member=member
        )


@dataclass(frozen=True)
class ThresholdDecryption:
    """What :func:`combine_partials` returns.

    Attributes:
        plaintexts: one plaintext in ``[0, n)`` per ciphertext.
        used: the ``t`` members whose partial decryptions were combined.
        invalid: member index -> why its partial decryption was refused (liars).
    """

    plaintexts: tuple[int, ...]
    used: tuple[int, ...]
    invalid: dict[int, str]


def combine_partials(
    threshold_key: ThresholdPublicKey,
    ciphertexts: Sequence[int],
    partials: Iterable[PartialDecryption],
    context: bytes,
) -> ThresholdDecryption:
    """Verify every partial decryption, exclude the liars, and decrypt with ``t`` valid ones.

    The first ``t`` verified members (by index) are combined with the integer
    Lagrange coefficients (module docstring; DJ 2001 §4.1). Members that are
    absent are simply not used (dropouts down to ``t`` decrypt).

    Raises:
        ValueError: two partial decryptions claim the same member index
            (the caller must pass at most one per member).
        ThresholdDecryptionError: fewer than ``t`` partial decryptions
            verify; it names the valid and the refused members.
    """
    key = threshold_key
    context = require_bytes(context, "context")
    cts = _check_ciphertexts(key, ciphertexts)
    by_member: dict[int, PartialDecryption] = {}
    for partial in partials:
        if not isinstance(partial, PartialDecryption):
            raise TypeError("partials must be PartialDecryption objects")
        if partial.index in by_member:
            raise ValueError(f"two partial decryptions claim member {partial.index}")
        by_member[partial.index] = partial
    valid: list[int] = []
    invalid: dict[int, str] = {}
    for member in sorted(by_member):
        try:
            verify_partial(key, cts, by_member[member], context)
        except PartialDecryptionError as exc:
            invalid[member] = str(exc)
        else:
            valid.append(member)
    if len(valid) < key.threshold:
        raise ThresholdDecryptionError(
            f"{len(valid)} valid partial decryptions, {key.threshold} needed"
            + (f"; refused members {sorted(invalid)}" if invalid else ""),
            threshold=key.threshold,
            valid=tuple(valid),
            invalid=invalid,
        )
    used = valid[: key.threshold]
    plaintexts = _combine(key, cts, [by_member[i] for i in used])
    return ThresholdDecryption(plaintexts, tuple(used), invalid)


def combine_verified(
    threshold_key: ThresholdPublicKey,
    ciphertexts: Sequence[int],
    partials: Sequence[PartialDecryption],
) -> tuple[int, ...]:
    """Decrypt from exactly ``t`` partial decryptions the caller has already verified.

    For a caller that ran :func:`verify_partial` on each one as it arrived,
    against these ciphertexts and its context (a server collecting answers),
    so that nothing is verified twice. An unverified wrong partial makes the
    result wrong; it reveals no key material. Raises ValueError unless the
    partials are ``t`` of distinct members, one value per ciphertext.
    """
    key = threshold_key
    cts = _check_ciphertexts(key, ciphertexts)
    members = [p.index for p in partials]
    if len(set(members)) != len(members) or len(members) != key.threshold:
        raise ValueError(f"need partial decryptions of {key.threshold} distinct members")
    if any(len(p.values) != len(cts) for p in partials):
        raise ValueError("every partial decryption needs one value per ciphertext")
    return _combine(key, cts, sorted(partials, key=lambda p: p.index))


def _combine(
    key: ThresholdPublicKey, cts: Sequence[gmpy2.mpz], partials: Sequence[PartialDecryption]
) -> tuple[int, ...]:
    """``L(prod c_i^(2 lambda_i)) * (4 Delta^2)^-1 mod N`` per ciphertext (DJ 2001 §4.1)."""
    used = [p.index for p in partials]
    n = gmpy2.mpz(key.public_key.n)
    nsquare = n * n
    delta = key.delta
    lambdas = [2 * lam for lam in _lagrange_at(used, 0, delta)]
    scale = gmpy2.invert(4 * delta * delta, n)
    plaintexts = []
    for j in range(len(cts)):
        acc = gmpy2.mpz(1)
        for partial, lam in zip(partials, lambdas, strict=True):
            acc = acc * gmpy2.powmod(partial.values[j], lam, nsquare) % nsquare
        plaintexts.append(int((acc - 1) // n * scale % n))
    return tuple(plaintexts)
