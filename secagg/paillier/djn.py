"""The Damgård–Jurik–Nielsen short-exponent randomizer and its fixed-base table.

* **DJN randomizer** (Damgård, Jurik, Nielsen, "A Generalization of Paillier's
  Public-Key System with Applications to Electronic Voting", Int. J. Inf.
  Secur. 9(6), 2010): instead of ``r^n mod n^2`` for a full-size ``r`` (a
  4096-bit-modulus exponentiation with a 2048-bit exponent) the randomizer is
  ``h_s^alpha mod n^2`` with ``h_s = h^n mod n^2`` for a fixed public
  ``h = -x^2 mod n`` and a *short* random exponent ``alpha``. ABY (Demmler,
  Schneider, Zohner, NDSS 2015) and SecretFlow HEU use the same construction,
  both with ``alpha`` of ``ceil(k/2)`` bits for a ``k``-bit ``n``, which is our
  default (:func:`default_exponent_bits`). A ciphertext is then
  ``(1 + m*n) * h_s^alpha mod n^2`` (:func:`encrypt_chunk`).
* **Fixed-base windowed exponentiation** (Brickell, Gordon, McCurley, Wilson,
  "Fast Exponentiation with Precomputation", EUROCRYPT 1992; Menezes et al.,
  Handbook of Applied Cryptography, Alg. 14.109): since ``h_s`` never changes,
  we precompute ``h_s^(d * 256^i) mod n^2`` for every byte value ``d`` and byte
  position ``i`` (:class:`FixedBaseTable`); then ``h_s^alpha`` is one
  multiplication per non-zero byte of ``alpha`` (128 multiplications for a
  1024-bit ``alpha``, instead of ~1500 for a square-and-multiply ``r^n``).
  ABY's ``djn_encrypt_fb`` does the same. Building a table costs 255
  multiplications per exponent byte, so small batches use plain powmods.

Security
--------
Textbook Paillier with ``r^n`` randomness is IND-CPA under the Decisional
Composite Residuosity (DCR) assumption. The DJN variant is IND-CPA under DCR
**plus a short-exponent assumption**: that ``h_s^alpha`` for ``alpha``
uniform in ``[0, 2^l)`` cannot be told apart from a uniformly random element
of the subgroup ``<h_s>`` of n-th residues (DJN 2010 state the variant's
security under such an assumption; it is the composite-modulus analogue of
short-exponent Diffie–Hellman, van Oorschot–Wiener, EUROCRYPT 1996). The best
known generic attack on a short exponent costs about ``2^(l/2)``, so ``l >=
2*kappa`` is the floor (``kappa = 128``: 256 bits, :data:`MIN_EXPONENT_BITS`);
the default ``l = ceil(k/2)`` (1024 bits for a 2048-bit key) follows the
paper and ABY and leaves a wide margin, at 4x the cost of ``l = 256``.
``h`` is derived from ``n`` by hashing (SHAKE-256, see :func:`djn_base`) rather
than chosen by the key holder, so the public key is just ``n`` and nobody
knows a discrete logarithm relation for ``h`` (the key holder could compute
one, but it can decrypt anyway). :func:`~secagg.paillier.keys.generate_keypair`
enforces DJN's key conditions, under which ``-x^2`` has large order.

The exponents are drawn in the caller's process (:func:`draw_exponents`) from
the OS CSPRNG unless a :class:`~secagg.randomness.RandomSource` is passed (a
seeded :class:`~secagg.randomness.DeterministicRandom` is for tests only);
:func:`encrypt_chunk` takes them as plain bytes, so it can run in a pool
worker and the ciphertexts do not depend on how the batch is split.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from functools import lru_cache

import gmpy2

from ..randomness import RandomSource, default_rng
from .keys import PaillierPublicKey

__all__ = [
    "KAPPA",
    "MIN_EXPONENT_BITS",
    "FixedBaseTable",
    "check_exponent_bits",
    "default_exponent_bits",
    "djn_base",
    "draw_exponents",
    "encrypt_chunk",
    "exponent_bytes",
    "fixed_base_table",
    "worth_a_table",
]

#: Statistical/computational security parameter for the short exponent (bits).
KAPPA = 128
#: Smallest DJN exponent length accepted: generic attacks cost 2^(l/2).
MIN_EXPONENT_BITS = 2 * KAPPA

# Fixed-base table: one row per byte of the exponent, 256 entries per row.
_WINDOW_BITS = 8
# Below this many ciphertexts, building a table (255 multiplications per exponent
# byte) costs more than plain powmods (about 1.5 multiplications per exponent bit).
_TABLE_MIN_CIPHERTEXTS = 16


def default_exponent_bits(key_bits: int) -> int:
    """DJN's exponent length ``ceil(key_bits/2)`` (never below :data:`MIN_EXPONENT_BITS`)."""
    return max(MIN_EXPONENT_BITS, (int(key_bits) + 1) // 2)


def check_exponent_bits(exponent_bits: int | None, public_key: PaillierPublicKey) -> int:
    """``exponent_bits``, or the default for the key if None; must be in ``[256, key_bits]``."""
    if exponent_bits is None:
        return default_exponent_bits(public_key.key_bits)
    if isinstance(exponent_bits, bool) or not isinstance(exponent_bits, int):
        raise TypeError("exponent_bits must be an int")
    if not MIN_EXPONENT_BITS <= exponent_bits <= public_key.key_bits:
        raise ValueError(
            f"exponent_bits must be in [{MIN_EXPONENT_BITS}, {public_key.key_bits}], "
            f"got {exponent_bits}"
        )
    return exponent_bits


@lru_cache(maxsize=8)
def _djn_base(n: int) -> gmpy2.mpz:
    n_mpz = gmpy2.mpz(n)
    nbytes = (n.bit_length() + 7) // 8
    label = b"secagg.paillier.djn-h/v1\x00" + nbytes.to_bytes(2, "big") + n.to_bytes(nbytes, "big")
    counter = 0
    while True:
        # 128 extra bits make x mod n statistically close to uniform.
        digest = hashlib.shake_256(label + counter.to_bytes(4, "big")).digest(nbytes + 16)
        x = gmpy2.mpz(int.from_bytes(digest, "big")) % n_mpz
        if x > 1 and gmpy2.gcd(x, n_mpz) == 1:
            break
        counter += 1
    h = (-(x * x)) % n_mpz
    return gmpy2.powmod(h, n_mpz, n_mpz * n_mpz)


def djn_base(public_key: PaillierPublicKey) -> int:
    """The public DJN base ``h_s = h^n mod n^2`` with ``h = -x^2 mod n``.

    ``x`` is SHAKE-256 of a domain label and ``n`` (counter-mode retries until
    ``gcd(x, n) = 1``), reduced mod ``n``: everyone derives the same ``h``
    from the public key alone and nobody chose it.
    """
    return int(_djn_base(public_key.n))


def exponent_bytes(exponent_bits: int) -> int:
    """Bytes per exponent, as drawn and as read by the table (one table row per byte)."""
    return -(-exponent_bits // _WINDOW_BITS)


def draw_exponents(rng: RandomSource | None, count: int, exponent_bits: int) -> bytes:
    """``count`` exponents uniform in ``[0, 2^exponent_bits)``, little-endian, concatenated.

    Each takes ``ceil(exponent_bits/8)`` bytes; one ``rng.bytes`` call draws them all.
    """
    width = exponent_bytes(exponent_bits)
    raw = bytearray(default_rng(rng).bytes(width * count))
    if exponent_bits % 8:
        top_mask = (1 << (exponent_bits % 8)) - 1
        for i in range(count):  # little-endian: the last byte of each exponent is the top one
            raw[(i + 1) * width - 1] &= top_mask
    return bytes(raw)


class FixedBaseTable:
    """``rows[i][d] = base^(d * 256^i) mod modulus`` for ``d < 256``, ``i < ceil(bits/8)``."""

    __slots__ = ("modulus", "rows")

    def __init__(self, base: gmpy2.mpz, modulus: gmpy2.mpz, exponent_bits: int) -> None:
        self.modulus = modulus
        rows = []
        step = base  # base^(256^i)
        one = gmpy2.mpz(1)
        for _ in range(exponent_bytes(exponent_bits)):
            row = [one, step]
            acc = step
            for _ in range(2, 1 << _WINDOW_BITS):
                acc = acc * step % modulus
                row.append(acc)
            rows.append(row)
            step = acc * step % modulus  # base^(256^(i+1)) = row[255] * base^(256^i)
        self.rows = rows

    def power(self, exponent_le: bytes) -> gmpy2.mpz:
        """``base^e`` for ``e`` given as exactly one little-endian byte per row."""
        modulus = self.modulus
        acc = None
        for row, digit in zip(self.rows, exponent_le, strict=True):
            if digit:
                acc = row[digit] if acc is None else acc * row[digit] % modulus
        return gmpy2.mpz(1) if acc is None else acc


# Memory: ceil(bits/8) * 256 entries of |n^2| bits (16.8 MB for a 2048-bit key and
# 1024-bit exponents), so at most two tables are kept per process.
_TABLES: OrderedDict[tuple[int, int], FixedBaseTable] = OrderedDict()
_TABLES_MAX = 2
_TABLES_LOCK = threading.Lock()


def fixed_base_table(n: int, exponent_bits: int) -> FixedBaseTable:
    """The table of ``h_s`` for modulus ``n``, built on first use and cached per process."""
    key = (n, exponent_bits)
    with _TABLES_LOCK:
        table = _TABLES.get(key)
        if table is not None:
            _TABLES.move_to_end(key)
            return table
    n_mpz = gmpy2.mpz(n)
    table = FixedBaseTable(_djn_base(n), n_mpz * n_mpz, exponent_bits)
    with _TABLES_LOCK:
        _TABLES[key] = table
        while len(_TABLES) > _TABLES_MAX:
            _TABLES.popitem(last=False)
    return table


def worth_a_table(n: int, exponent_bits: int, count: int) -> bool:
    """Whether encrypting ``count`` values should use the table (cached, or pays for itself)."""
    if count >= _TABLE_MIN_CIPHERTEXTS:
        return True
    with _TABLES_LOCK:
        return (n, exponent_bits) in _TABLES


def encrypt_chunk(
    n: int, exponent_bits: int, plaintexts: list[int], alphas: bytes, use_table: bool
) -> list[int]:
    """Encrypt ``plaintexts`` with DJN randomizers from the little-endian ``alphas`` bytes.

    Runs in the caller's process or in a pool worker (all arguments are plain data).
    """
    n_mpz = gmpy2.mpz(n)
    nsquare = n_mpz * n_mpz
    width = exponent_bytes(exponent_bits)
    out = []
    if use_table:
        table = fixed_base_table(n, exponent_bits)
        for i, m in enumerate(plaintexts):
            r = table.power(alphas[i * width : (i + 1) * width])
            # (1 + m n) < n^2 for m < n: g^m with g = n + 1, no reduction needed.
            out.append(int((1 + gmpy2.mpz(m) * n_mpz) * r % nsquare))
    else:
        base = _djn_base(n)
        for i, m in enumerate(plaintexts):
            alpha = gmpy2.mpz(int.from_bytes(alphas[i * width : (i + 1) * width], "little"))
            r = gmpy2.powmod(base, alpha, nsquare)
            out.append(int((1 + gmpy2.mpz(m) * n_mpz) * r % nsquare))
    return out
