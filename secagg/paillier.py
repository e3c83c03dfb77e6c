"""Paillier encryption with slot packing and fast (DJN) encryption, for aggregation.

Keys come from :mod:`phe` (python-paillier); all arithmetic goes through
:mod:`gmpy2`. No protocol state, no I/O. The intended flow::

    pk, sk = generate_keypair(2048)                   # decryptor
    wire = pk.to_bytes()                              # -> server and clients
    pk = PaillierPublicKey.from_bytes(wire)           # clients, server

    packer = Packer.for_encoder(encoder, pk.key_bits) # everyone, same encoder
    cts = encrypt_vector(pk, encoder.quantize(x), packer)      # each client
    blob = ciphertexts_to_bytes(pk, cts)                        # -> server
    total = sum_encrypted(pk, [ciphertexts_from_bytes(pk, b) for b in blobs])
    ints = decrypt_sum(sk, total, packer, summands=len(blobs), dim=d)  # decryptor
    x_sum = ints / encoder.scale

Building blocks and where they come from
----------------------------------------
* **Paillier** (Paillier, "Public-Key Cryptosystems Based on Composite Degree
  Residuosity Classes", EUROCRYPT 1999) with generator ``g = n + 1``, so that
  ``g^m = 1 + m*n (mod n^2)`` costs one multiplication instead of an
  exponentiation (Damgård–Jurik, PKC 2001, §3; python-paillier does the same).
* **Decryption by CRT** (Paillier 1999, §7): ``m_p = L_p(c^(p-1) mod p^2) * h_p
  mod p`` and likewise mod ``q``, recombined by CRT. Exponents and moduli are
  half as long, so it is about 4x faster than ``c^lambda mod n^2``.
* **DJN randomizer** (Damgård, Jurik, Nielsen, "A Generalization of Paillier's
  Public-Key System with Applications to Electronic Voting", Int. J. Inf.
  Secur. 9(6), 2010): instead of ``r^n mod n^2`` for a full-size ``r`` (a
  4096-bit-modulus exponentiation with a 2048-bit exponent) the randomizer is
  ``h_s^alpha mod n^2`` with ``h_s = h^n mod n^2`` for a fixed public
  ``h = -x^2 mod n`` and a *short* random exponent ``alpha``. ABY (Demmler,
  Schneider, Zohner, NDSS 2015) and SecretFlow HEU use the same construction,
  both with ``alpha`` of ``ceil(k/2)`` bits for a ``k``-bit ``n``, which is our
  default (:func:`default_exponent_bits`).
* **Fixed-base windowed exponentiation** (Brickell, Gordon, McCurley, Wilson,
  "Fast Exponentiation with Precomputation", EUROCRYPT 1992; Menezes et al.,
  Handbook of Applied Cryptography, Alg. 14.109): since ``h_s`` never changes,
  we precompute ``h_s^(d * 256^i) mod n^2`` for every byte value ``d`` and byte
  position ``i``; then ``h_s^alpha`` is one multiplication per non-zero byte of
  ``alpha`` (128 multiplications for a 1024-bit ``alpha``, instead of ~1500 for a
  square-and-multiply ``r^n``). ABY's ``djn_encrypt_fb`` does the same.
* **Packing**: many fixed-point integers per plaintext, each in a slot with
  headroom for the sum of ``max_summands`` clients, so one 512-byte ciphertext
  carries tens of values (e.g. 63 values for 32-bit slots under a 2048-bit key).

Security
--------
Textbook Paillier with ``r^n`` randomness is IND-CPA under the Decisional
Composite Residuosity (DCR) assumption. The DJN variant used here is IND-CPA
under DCR **plus a short-exponent assumption**: that ``h_s^alpha`` for ``alpha``
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
one, but it can decrypt anyway). :func:`generate_keypair` also enforces DJN's
key conditions ``p = q = 3 (mod 4)`` and ``gcd(p-1, q-1) = 2`` (as ABY's
``djn_keygen`` does), under which the Jacobi-symbol-1 subgroup ``J_n`` is cyclic
and ``-x^2`` has large order; decryption is correct for any Paillier key.

Paillier is malleable and unauthenticated: this module assumes semi-honest
clients. A malicious client can corrupt the aggregate (e.g. overfill its
slots); :meth:`Packer.unpack` rejects sums that no honest set of ``k``
clients can produce (a slot above ``2*k*q_max``, non-zero padding, bits above
the packing width), which catches many but not all such corruptions.

A 2048-bit ``n`` gives about 112-bit security (NIST SP 800-57); keys below
2048 bits are accepted only for tests. Randomness comes from the OS CSPRNG
unless a :class:`~secagg.randomness.RandomSource` is passed (a seeded
:class:`~secagg.randomness.DeterministicRandom` is for tests only).

Parallelism
-----------
gmpy2 multiplications are a few microseconds each, too short for releasing
the GIL to pay off (measured: two threads are no faster than one), so large
batches are split over a pool of worker *processes* (``workers``, default:
the CPUs this process may use, at most 8). Small batches never start a pool.
Workers are forked (POSIX ``fork`` start method, so scripts without an
``if __name__ == "__main__"`` guard still work), kept for reuse, and shut
down at exit or by :func:`shutdown_workers`. Decryption needs no pool: it
batches its exponentiations through ``gmpy2.powmod_base_list``, which
releases the GIL, so it runs on threads and ``p``, ``q`` never leave the
process.
"""

from __future__ import annotations

import atexit
import hashlib
import math
import multiprocessing
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import lru_cache

import gmpy2
import numpy as np
from phe import paillier as _phe

from .encoding import FixedPointEncoder
from .randomness import RandomSource, default_rng

__all__ = [
    "DEFAULT_KEY_BITS",
    "KAPPA",
    "MIN_EXPONENT_BITS",
    "MIN_KEY_BITS",
    "Packer",
    "PaillierPrivateKey",
    "PaillierPublicKey",
    "add_encrypted",
    "ciphertext_from_bytes",
    "ciphertext_to_bytes",
    "ciphertexts_from_bytes",
    "ciphertexts_to_bytes",
    "decrypt_packed",
    "decrypt_sum",
    "default_exponent_bits",
    "default_workers",
    "djn_base",
    "encrypt_packed",
    "encrypt_vector",
    "generate_keypair",
    "shutdown_workers",
    "sum_encrypted",
]

#: Statistical/computational security parameter for the short exponent (bits).
KAPPA = 128
#: Smallest DJN exponent length accepted: generic attacks cost 2^(l/2).
MIN_EXPONENT_BITS = 2 * KAPPA
#: Default modulus size (about 112-bit security).
DEFAULT_KEY_BITS = 2048
#: Smallest modulus accepted anywhere; anything below 2048 bits is for tests only.
MIN_KEY_BITS = 512
#: Largest modulus accepted by the decoders (bounds memory and time per ciphertext).
MAX_KEY_BITS = 8192

_PK_MAGIC = b"SAPK"
_SK_MAGIC = b"SASK"
_PK_VERSION = 1
_PK_HEADER = len(_PK_MAGIC) + 1 + 2  # magic, version, uint16 length of n

# Fixed-base table: one row per byte of the exponent, 256 entries per row.
_WINDOW_BITS = 8
# Below this many ciphertexts, building a table (255 multiplications per exponent
# byte) costs more than plain powmods (about 1.5 multiplications per exponent bit).
_TABLE_MIN_CIPHERTEXTS = 16
# Below these sizes a process pool costs more than it saves (fork + table build).
_PARALLEL_MIN_ENCRYPT = 128
_PARALLEL_MIN_DECRYPT = 16
_MAX_DEFAULT_WORKERS = 8

# Primes below 2^10: a cheap sanity check on decoded moduli (an honest n has none).
_SMALL_PRIMES_PRODUCT = math.prod(p for p in range(3, 1024, 2) if gmpy2.is_prime(p))


# --------------------------------------------------------------------------- keys


class PaillierPublicKey:
    """A Paillier public key: the modulus ``n`` (``g = n + 1`` is implied).

    Holds no private material and offers no decryption. Equality and hashing
    are by ``n``. Serialize with :meth:`to_bytes`; never pickle for the wire.
    """

    __slots__ = ("_n", "_nsquare")

    def __init__(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, (int, type(gmpy2.mpz(0)))):
            raise TypeError(f"n must be an int, got {type(n).__name__}")
        n = int(n)
        _check_modulus(n)
        self._n = gmpy2.mpz(n)
        self._nsquare = self._n * self._n

    @property
    def n(self) -> int:
        """The modulus."""
        return int(self._n)

    @property
    def nsquare(self) -> int:
        """``n^2``, the ciphertext modulus."""
        return int(self._nsquare)

    @property
    def key_bits(self) -> int:
        """Bit length of ``n``."""
        return self._n.bit_length()

    @property
    def ciphertext_bytes(self) -> int:
        """Length of one serialized ciphertext: the byte length of ``n^2``."""
        return (self._nsquare.bit_length() + 7) // 8

    @property
    def max_plaintext_bits(self) -> int:
        """Plaintexts below ``2^max_plaintext_bits`` are always below ``n``."""
        return self._n.bit_length() - 1

    def to_bytes(self) -> bytes:
        """``b"SAPK" || version (1 byte) || len(n) (uint16 BE) || n (big-endian)``."""
        body = int(self._n).to_bytes((self._n.bit_length() + 7) // 8, "big")
        return _PK_MAGIC + bytes([_PK_VERSION]) + len(body).to_bytes(2, "big") + body

    @classmethod
    def from_bytes(cls, data: bytes) -> PaillierPublicKey:
        """Decode :meth:`to_bytes` output.

        Raises ValueError on a wrong magic, version or length, a non-minimal
        encoding, or a modulus that cannot be a Paillier modulus (even, too
        small or large, prime, a perfect square, or with a prime factor below
        1024). These checks catch garbage, not a malicious key holder.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"public key must be bytes, got {type(data).__name__}")
        data = bytes(data)
        if len(data) < _PK_HEADER:
            raise ValueError(f"public key truncated: {len(data)} bytes")
        if data[: len(_PK_MAGIC)] != _PK_MAGIC:
            raise ValueError("not a Paillier public key (bad magic)")
        if data[len(_PK_MAGIC)] != _PK_VERSION:
            raise ValueError(f"unsupported public key version {data[len(_PK_MAGIC)]}")
        length = int.from_bytes(data[len(_PK_MAGIC) + 1 : _PK_HEADER], "big")
        if len(data) != _PK_HEADER + length:
            raise ValueError(
                f"public key length mismatch: header says {length} bytes of n, "
                f"got {len(data) - _PK_HEADER}"
            )
        body = data[_PK_HEADER:]
        if length == 0 or body[0] == 0:
            raise ValueError("public key modulus is not minimally encoded")
        return cls(int.from_bytes(body, "big"))

    @classmethod
    def from_phe(cls, public_key: _phe.PaillierPublicKey) -> PaillierPublicKey:
        """Wrap a :class:`phe.paillier.PaillierPublicKey` (only ``n`` is kept)."""
        if public_key.g != public_key.n + 1:
            raise ValueError("only g = n + 1 Paillier keys are supported")
        return cls(public_key.n)

    def to_phe(self) -> _phe.PaillierPublicKey:
        """The same key as a :class:`phe.paillier.PaillierPublicKey`."""
        return _phe.PaillierPublicKey(int(self._n))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PaillierPublicKey) and self._n == other._n

    def __hash__(self) -> int:
        return hash(("PaillierPublicKey", int(self._n)))

    def __repr__(self) -> str:
        return (
            f"PaillierPublicKey(key_bits={self.key_bits}, n=0x{int(self._n) & 0xFFFFFFFF:08x}...)"
        )


class PaillierPrivateKey:
    """A Paillier private key: the factors ``p``, ``q`` plus CRT constants.

    Only the decryptor holds one. ``repr`` does not show the factors.
    :meth:`to_bytes` exists for the key holder's own storage (it *is* the
    secret key: never send it anywhere).
    """

    __slots__ = ("_hp", "_hq", "_p", "_psquare", "_q", "_q_inv_p", "_qsquare", "public_key")

    def __init__(self, public_key: PaillierPublicKey, p: int, q: int) -> None:
        if not isinstance(public_key, PaillierPublicKey):
            raise TypeError("public_key must be a PaillierPublicKey")
        p, q = int(p), int(q)
        if p * q != public_key.n or p <= 1 or q <= 1 or p == q:
            raise ValueError("p and q are not distinct factors of the public modulus")
        self.public_key = public_key
        self._p, self._q = gmpy2.mpz(p), gmpy2.mpz(q)
        self._psquare, self._qsquare = self._p * self._p, self._q * self._q
        self._hp, self._hq, self._q_inv_p = _crt_constants(self._p, self._q)

    @classmethod
    def from_phe(cls, private_key: _phe.PaillierPrivateKey) -> PaillierPrivateKey:
        """Wrap a :class:`phe.paillier.PaillierPrivateKey`."""
        public_key = PaillierPublicKey.from_phe(private_key.public_key)
        return cls(public_key, private_key.p, private_key.q)

    def to_phe(self) -> _phe.PaillierPrivateKey:
        """The same key as a :class:`phe.paillier.PaillierPrivateKey`."""
        return _phe.PaillierPrivateKey(self.public_key.to_phe(), int(self._p), int(self._q))

    def to_bytes(self) -> bytes:
        """``b"SASK" || version || len(p) (uint16) || p || len(q) (uint16) || q``, big-endian.

        SECRET: whoever has these bytes can decrypt everything under this key.
        """
        out = bytearray(_SK_MAGIC + bytes([_PK_VERSION]))
        for f in (int(self._p), int(self._q)):
            body = f.to_bytes((f.bit_length() + 7) // 8, "big")
            out += len(body).to_bytes(2, "big") + body
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> PaillierPrivateKey:
        """Decode :meth:`to_bytes` output.

        Raises ValueError on a wrong magic, version or length, non-minimal
        encodings, or factors that are not distinct probable primes whose
        product is a valid modulus.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"private key must be bytes, got {type(data).__name__}")
        data = bytes(data)
        if data[: len(_SK_MAGIC)] != _SK_MAGIC or len(data) < len(_SK_MAGIC) + 1:
            raise ValueError("not a Paillier private key (bad magic)")
        if data[len(_SK_MAGIC)] != _PK_VERSION:
            raise ValueError(f"unsupported private key version {data[len(_SK_MAGIC)]}")
        pos, factors = len(_SK_MAGIC) + 1, []
        for _ in range(2):
            if len(data) < pos + 2:
                raise ValueError("private key truncated")
            length = int.from_bytes(data[pos : pos + 2], "big")
            body = data[pos + 2 : pos + 2 + length]
            if length == 0 or len(body) != length or body[0] == 0:
                raise ValueError("private key factor truncated or not minimally encoded")
            factors.append(int.from_bytes(body, "big"))
            pos += 2 + length
        if pos != len(data):
            raise ValueError("trailing bytes after the private key")
        p, q = factors
        if p == q or not (gmpy2.is_prime(p, 25) and gmpy2.is_prime(q, 25)):
            raise ValueError("private key factors are not distinct primes")
        return cls(PaillierPublicKey(p * q), p, q)

    def decrypt_raw(self, ciphertext: int) -> int:
        """Decrypt one ciphertext to its plaintext in ``[0, n)`` (CRT, Paillier 1999 §7)."""
        return decrypt_packed(self, [ciphertext], workers=1)[0]

    def __repr__(self) -> str:
        return f"PaillierPrivateKey(key_bits={self.public_key.key_bits}, <secret>)"


def _check_modulus(n: int) -> None:
    bits = n.bit_length()
    if not MIN_KEY_BITS <= bits <= MAX_KEY_BITS:
        raise ValueError(f"modulus must have {MIN_KEY_BITS}..{MAX_KEY_BITS} bits, got {bits}")
    if n % 2 == 0:
        raise ValueError("modulus must be odd")
    if math.gcd(n, _SMALL_PRIMES_PRODUCT) != 1:
        raise ValueError("modulus has a small prime factor")
    if gmpy2.is_square(n):
        raise ValueError("modulus is a perfect square")
    if gmpy2.is_prime(n, 25):
        raise ValueError("modulus is prime")


def _crt_constants(p: gmpy2.mpz, q: gmpy2.mpz) -> tuple[gmpy2.mpz, gmpy2.mpz, gmpy2.mpz]:
    # With g = n + 1: g^(p-1) = 1 + (p-1) n (mod p^2), so L_p(g^(p-1) mod p^2) = (p-1) q
    # = -q (mod p) and h_p = (-q)^-1 mod p; no exponentiation needed.
    hp = gmpy2.invert((-q) % p, p)
    hq = gmpy2.invert((-p) % q, q)
    return hp, hq, gmpy2.invert(q, p)


def generate_keypair(
    key_bits: int = DEFAULT_KEY_BITS, *, djn_conditions: bool = True
) -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    """Generate a key pair with :func:`phe.paillier.generate_paillier_keypair`.

    Args:
        key_bits: bit length of ``n``; 2048 or more for real use (smaller sizes,
            down to :data:`MIN_KEY_BITS`, are for tests only).
        djn_conditions: redraw phe's primes until ``p = q = 3 (mod 4)`` and
            ``gcd(p-1, q-1) = 2``, the key conditions of DJN 2010 (and ABY)
            under which ``h = -x^2`` generates a large cyclic subgroup. About
            5 draws on average; phe draws primes from ``random.SystemRandom``.
    """
    if isinstance(key_bits, bool) or not isinstance(key_bits, int):
        raise TypeError(f"key_bits must be an int, got {type(key_bits).__name__}")
    if not MIN_KEY_BITS <= key_bits <= MAX_KEY_BITS:
        raise ValueError(f"key_bits must be in [{MIN_KEY_BITS}, {MAX_KEY_BITS}], got {key_bits}")
    while True:
        phe_pk, phe_sk = _phe.generate_paillier_keypair(n_length=key_bits)
        p, q = phe_sk.p, phe_sk.q
        if not djn_conditions or (p % 4 == 3 and q % 4 == 3 and math.gcd(p - 1, q - 1) == 2):
            break
    public_key = PaillierPublicKey(phe_pk.n)
    return public_key, PaillierPrivateKey(public_key, p, q)


# -------------------------------------------------------------- ciphertext bytes


def ciphertext_to_bytes(public_key: PaillierPublicKey, ciphertext: int) -> bytes:
    """One ciphertext as fixed-length big-endian bytes (``public_key.ciphertext_bytes``)."""
    c = int(ciphertext)
    if not 0 < c < public_key.nsquare:
        raise ValueError("ciphertext out of range [1, n^2)")
    return c.to_bytes(public_key.ciphertext_bytes, "big")


def ciphertext_from_bytes(public_key: PaillierPublicKey, data: bytes) -> int:
    """Decode one ciphertext.

    Raises ValueError unless ``data`` has exactly ``public_key.ciphertext_bytes``
    bytes and encodes ``c`` with ``0 < c < n^2`` and ``gcd(c, n) = 1`` (every
    honest ciphertext is a unit mod ``n^2``; anything else is garbage and
    would even reveal a factor of ``n``).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"ciphertext must be bytes, got {type(data).__name__}")
    if len(data) != public_key.ciphertext_bytes:
        raise ValueError(f"ciphertext must be {public_key.ciphertext_bytes} bytes, got {len(data)}")
    c = gmpy2.mpz(int.from_bytes(data, "big"))
    if c >= public_key._nsquare:
        raise ValueError("ciphertext value is not below n^2")
    if gmpy2.gcd(c, public_key._n) != 1:
        raise ValueError("ciphertext is not coprime to n")
    return int(c)


def ciphertexts_to_bytes(public_key: PaillierPublicKey, ciphertexts: Sequence[int]) -> bytes:
    """A vector of ciphertexts, concatenated, each :func:`ciphertext_to_bytes`."""
    width = public_key.ciphertext_bytes
    nsquare = public_key.nsquare
    parts = []
    for c in ciphertexts:
        c = int(c)
        if not 0 < c < nsquare:
            raise ValueError("ciphertext out of range [1, n^2)")
        parts.append(c.to_bytes(width, "big"))
    return b"".join(parts)


def ciphertexts_from_bytes(
    public_key: PaillierPublicKey, data: bytes, count: int | None = None
) -> list[int]:
    """Decode :func:`ciphertexts_to_bytes` output; each element as :func:`ciphertext_from_bytes`.

    Args:
        count: if given, the exact number of ciphertexts expected.

    Raises ValueError on a length that is not a multiple of the ciphertext
    size (or not ``count`` of them) and on any invalid element.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"ciphertexts must be bytes, got {type(data).__name__}")
    data = bytes(data)
    width = public_key.ciphertext_bytes
    if len(data) % width:
        raise ValueError(f"ciphertext vector length {len(data)} is not a multiple of {width}")
    k = len(data) // width
    if count is not None and k != count:
        raise ValueError(f"expected {count} ciphertexts, got {k}")
    n, nsquare = public_key._n, public_key._nsquare
    out = []
    for i in range(k):
        c = gmpy2.mpz(int.from_bytes(data[i * width : (i + 1) * width], "big"))
        if c >= nsquare:
            raise ValueError(f"ciphertext {i} is not below n^2")
        if gmpy2.gcd(c, n) != 1:
            raise ValueError(f"ciphertext {i} is not coprime to n")
        out.append(int(c))
    return out


# ------------------------------------------------------------------------ packing


@dataclass(frozen=True)
class Packer:
    """Pack signed integers in ``[-q_max, q_max]`` many to a Paillier plaintext.

    Each value ``v`` is stored as ``v + q_max`` (non-negative) in a slot of
    ``slot_bits`` bits; slot ``j`` of a plaintext occupies bits
    ``[j*slot_bits, (j+1)*slot_bits)``. A sum of ``k <= max_summands`` packed
    vectors has slot contents ``sum(v_i) + k*q_max`` in ``[0, 2*k*q_max]``,
    which fits the slot because ``slot_bits >= bitlen(2*q_max*max_summands)``:
    no carry crosses slots and nothing is negative, by construction. A
    plaintext uses ``slots * slot_bits <= key_bits - 1`` bits, so it is below
    any ``key_bits``-bit ``n``, and so is any such sum.

    Build it with :meth:`for_encoder` (from a
    :class:`~secagg.encoding.FixedPointEncoder`) or :meth:`for_range`. Unused
    slots of the last plaintext are zero and are checked to be zero on unpack.
    """

    q_max: int
    max_summands: int
    slot_bits: int
    slots: int

    def __post_init__(self) -> None:
        for name in ("q_max", "max_summands", "slot_bits", "slots"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        needed = (2 * int(self.q_max) * int(self.max_summands)).bit_length()
        if self.slot_bits < needed:
            raise ValueError(
                f"slot_bits={self.slot_bits} cannot hold a sum of {self.max_summands} values "
                f"in [-{self.q_max}, {self.q_max}]: need {needed} bits"
            )
        if self.slot_bits > 64:
            # Slots are moved through uint64 numpy arrays; FixedPointEncoder never needs more.
            raise ValueError(f"slot_bits must be <= 64, got {self.slot_bits}")
        if int(self.q_max) * int(self.max_summands) > (1 << 63) - 1:
            raise ValueError("q_max * max_summands must fit in int64")

    @staticmethod
    def slot_bits_for(q_max: int, max_summands: int) -> int:
        """``ceil(log2(2*q_max*max_summands + 1))``: bits for a sum of that many values."""
        return (2 * int(q_max) * int(max_summands)).bit_length()

    @classmethod
    def for_range(cls, q_max: int, max_summands: int, key_bits: int) -> Packer:
        """As many slots as fit in ``key_bits - 1`` bits for values in ``[-q_max, q_max]``."""
        slot_bits = cls.slot_bits_for(q_max, max_summands)
        slots = (int(key_bits) - 1) // slot_bits
        if slots < 1:
            raise ValueError(f"a {key_bits}-bit key cannot hold a {slot_bits}-bit slot")
        return cls(
            q_max=int(q_max), max_summands=int(max_summands), slot_bits=slot_bits, slots=slots
        )

    @classmethod
    def for_encoder(cls, encoder: FixedPointEncoder, key_bits: int = DEFAULT_KEY_BITS) -> Packer:
        """The packer for ``encoder.quantize`` output: ``q_max`` and ``max_summands`` from it."""
        return cls.for_range(encoder.q_max, encoder.max_summands, key_bits)

    @property
    def plaintext_bits(self) -> int:
        """Bits used per plaintext; needs ``plaintext_bits < key_bits``."""
        return self.slots * self.slot_bits

    def num_plaintexts(self, dim: int) -> int:
        """Plaintexts (= ciphertexts) needed for ``dim`` values."""
        return -(-int(dim) // self.slots)

    def check_key(self, public_key: PaillierPublicKey) -> None:
        """Raise ValueError if packed plaintexts could reach ``n``."""
        if self.plaintext_bits > public_key.max_plaintext_bits:
            raise ValueError(
                f"packer needs {self.plaintext_bits}-bit plaintexts, "
                f"a {public_key.key_bits}-bit key allows {public_key.max_plaintext_bits}"
            )

    def pack(self, values: np.ndarray) -> list[int]:
        """Pack a 1-D integer vector with entries in ``[-q_max, q_max]`` into plaintexts.

        Vectorized: values are offset in uint64, spread to bits with numpy and
        regrouped into ``slots * slot_bits``-bit little-endian integers.
        """
        q = np.asarray(values)
        if q.ndim != 1:
            raise ValueError(f"values must be a 1-D vector, got shape {q.shape}")
        if q.size == 0:
            return []
        if not np.issubdtype(q.dtype, np.integer):
            raise TypeError(f"values must be integers (quantize first), got dtype {q.dtype}")
        # Range-check in the input dtype: casting first would wrap large uint64 values.
        if int(q.min()) < -self.q_max or int(q.max()) > self.q_max:
            raise ValueError(f"values must lie in [-{self.q_max}, {self.q_max}]")
        q = q.astype(np.int64, copy=False)
        # v + q_max in [0, 2 q_max] computed modulo 2^64 (no int64 overflow for q_max ~ 2^63).
        offset = q.view(np.uint64) + np.uint64(self.q_max)
        count = self.num_plaintexts(q.size)
        padded = np.zeros(count * self.slots, dtype="<u8")
        padded[: q.size] = offset
        return _slots_to_ints(padded, self.slots, self.slot_bits)

    def unpack(self, plaintexts: Sequence[int], dim: int, summands: int = 1) -> np.ndarray:
        """Unpack a sum of ``summands`` packed vectors to ``dim`` signed integers (int64).

        Raises ValueError if ``summands`` is outside ``[1, max_summands]``, if
        the plaintexts are too few or too many for ``dim``, or if any slot (or
        bit above the last slot) holds a value no such sum can produce: a sign
        of a wrong ``summands``, a wrong key or a corrupted ciphertext.
        """
        if isinstance(summands, bool) or not isinstance(summands, (int, np.integer)):
            raise TypeError("summands must be an int")
        if not 1 <= summands <= self.max_summands:
            raise ValueError(f"summands must be in [1, {self.max_summands}], got {summands}")
        dim = int(dim)
        if dim < 0:
            raise ValueError("dim must be non-negative")
        if len(plaintexts) != self.num_plaintexts(dim):
            raise ValueError(
                f"{dim} values need {self.num_plaintexts(dim)} plaintexts, got {len(plaintexts)}"
            )
        if dim == 0:
            return np.zeros(0, dtype=np.int64)
        limit = 1 << self.plaintext_bits
        for m in plaintexts:
            if not 0 <= int(m) < limit:
                raise ValueError(
                    "plaintext exceeds the packing width (wrong key or corrupted data)"
                )
        raw = _ints_to_slots(plaintexts, self.slots, self.slot_bits)
        if np.any(raw[dim:] != 0):
            raise ValueError("padding slots are not zero (wrong dim or corrupted data)")
        raw = raw[:dim]
        bound = 2 * int(summands) * self.q_max
        if int(raw.max()) > bound:
            raise ValueError(f"slot value exceeds the range of a sum of {summands} vectors")
        # sum - k*q_max lies in [-k q_max, k q_max], inside int64; compute mod 2^64 and reinterpret.
        return (raw - np.uint64(int(summands) * self.q_max)).view(np.int64)


def _slots_to_ints(slots: np.ndarray, per_int: int, width: int) -> list[int]:
    bits = np.unpackbits(slots.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    rows = bits[:, :width].reshape(-1, per_int * width)
    packed = np.packbits(rows, axis=1, bitorder="little")  # pads each row to whole bytes
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def _ints_to_slots(values: Sequence[int], per_int: int, width: int) -> np.ndarray:
    nbytes = (per_int * width + 7) // 8
    buf = b"".join(int(v).to_bytes(nbytes, "little") for v in values)
    rows = np.frombuffer(buf, dtype=np.uint8).reshape(len(values), nbytes)
    bits = np.unpackbits(rows, axis=1, bitorder="little")[:, : per_int * width]
    wide = np.zeros((len(values) * per_int, 64), dtype=np.uint8)
    wide[:, :width] = bits.reshape(-1, width)
    return np.packbits(wide, axis=1, bitorder="little").view("<u8").reshape(-1).astype(np.uint64)


# ------------------------------------------------------------ DJN randomizer


def default_exponent_bits(key_bits: int) -> int:
    """DJN's exponent length ``ceil(key_bits/2)`` (never below :data:`MIN_EXPONENT_BITS`)."""
    return max(MIN_EXPONENT_BITS, (int(key_bits) + 1) // 2)


def _check_exponent_bits(exponent_bits: int | None, public_key: PaillierPublicKey) -> int:
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


class _FixedBaseTable:
    """``rows[i][d] = base^(d * 256^i) mod modulus`` for ``d < 256``, ``i < ceil(bits/8)``."""

    __slots__ = ("modulus", "nbytes", "rows")

    def __init__(self, base: gmpy2.mpz, modulus: gmpy2.mpz, exponent_bits: int) -> None:
        self.modulus = modulus
        self.nbytes = -(-exponent_bits // _WINDOW_BITS)
        rows = []
        step = base  # base^(256^i)
        one = gmpy2.mpz(1)
        for _ in range(self.nbytes):
            row = [one, step]
            acc = step
            for _ in range(2, 1 << _WINDOW_BITS):
                acc = acc * step % modulus
                row.append(acc)
            rows.append(row)
            step = acc * step % modulus  # base^(256^(i+1)) = row[255] * base^(256^i)
        self.rows = rows

    def power(self, exponent_le: bytes) -> gmpy2.mpz:
        """``base^e`` for ``e`` given as little-endian bytes (at most ``nbytes`` of them)."""
        modulus = self.modulus
        acc = None
        for row, digit in zip(self.rows, exponent_le, strict=True):
            if digit:
                acc = row[digit] if acc is None else acc * row[digit] % modulus
        return gmpy2.mpz(1) if acc is None else acc


# Memory: ceil(bits/8) * 256 entries of |n^2| bits (16.8 MB for a 2048-bit key and
# 1024-bit exponents), so at most two tables are kept per process.
_TABLES: OrderedDict[tuple[int, int], _FixedBaseTable] = OrderedDict()
_TABLES_MAX = 2
_TABLES_LOCK = threading.Lock()


def _table(n: int, exponent_bits: int) -> _FixedBaseTable:
    key = (n, exponent_bits)
    with _TABLES_LOCK:
        table = _TABLES.get(key)
        if table is not None:
            _TABLES.move_to_end(key)
            return table
    n_mpz = gmpy2.mpz(n)
    table = _FixedBaseTable(_djn_base(n), n_mpz * n_mpz, exponent_bits)
    with _TABLES_LOCK:
        _TABLES[key] = table
        while len(_TABLES) > _TABLES_MAX:
            _TABLES.popitem(last=False)
    return table


def _table_is_cached(n: int, exponent_bits: int) -> bool:
    with _TABLES_LOCK:
        return (n, exponent_bits) in _TABLES


def _encrypt_chunk(
    n: int, exponent_bits: int, plaintexts: list[int], alphas: bytes, use_table: bool
) -> list[int]:
    """Encrypt ``plaintexts`` with DJN randomizers from the little-endian ``alphas`` bytes.

    Runs in the caller's process or in a pool worker (all arguments are plain data).
    """
    n_mpz = gmpy2.mpz(n)
    nsquare = n_mpz * n_mpz
    width = -(-exponent_bits // 8)
    out = []
    if use_table:
        table = _table(n, exponent_bits)
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


def _decrypt_batch(private_key: PaillierPrivateKey, ciphertexts: list[int]) -> list[int]:
    """CRT-decrypt a batch; the two big exponentiations per ciphertext run without the GIL."""
    p, q = private_key._p, private_key._q
    psquare, qsquare = private_key._psquare, private_key._qsquare
    cts = [gmpy2.mpz(c) for c in ciphertexts]
    # powmod_base_list releases the GIL for the whole batch (gmpy2 >= 2.1).
    xp = gmpy2.powmod_base_list([c % psquare for c in cts], p - 1, psquare)
    xq = gmpy2.powmod_base_list([c % qsquare for c in cts], q - 1, qsquare)
    hp, hq, q_inv_p = private_key._hp, private_key._hq, private_key._q_inv_p
    out = []
    for a, b in zip(xp, xq, strict=True):
        mp = (a - 1) // p * hp % p
        mq = (b - 1) // q * hq % q
        out.append(int(mq + q * ((mp - mq) * q_inv_p % p)))
    return out


# ------------------------------------------------------------------ worker pool

_POOL_LOCK = threading.Lock()
_POOL: ProcessPoolExecutor | None = None
_POOL_SIZE = 0


def default_workers() -> int:
    """CPUs this process may run on (``os.sched_getaffinity``), capped at 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, _MAX_DEFAULT_WORKERS))


def _resolve_workers(workers: int | None) -> int:
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int or None, got {workers!r}")
    return workers


def _pool(size: int) -> ProcessPoolExecutor:
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE != size:
            if _POOL is not None:
                _POOL.shutdown(wait=True, cancel_futures=True)
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
            _POOL = ProcessPoolExecutor(max_workers=size, mp_context=ctx)
            _POOL_SIZE = size
        return _POOL


def shutdown_workers() -> None:
    """Stop the worker processes (they are restarted on demand)."""
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is not None:
            _POOL.shutdown(wait=True, cancel_futures=True)
        _POOL, _POOL_SIZE = None, 0


def _forget_pool_in_child() -> None:
    # A forked child must not reuse its parent's executor (its processes are not ours).
    global _POOL, _POOL_SIZE, _POOL_LOCK
    _POOL, _POOL_SIZE, _POOL_LOCK = None, 0, threading.Lock()


atexit.register(shutdown_workers)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def _split(count: int, parts: int) -> list[tuple[int, int]]:
    bounds = [count * i // parts for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(parts) if bounds[i + 1] > bounds[i]]


def _run_parallel(fn: Callable[..., list[int]], jobs: list[tuple], workers: int) -> list[list[int]]:
    """Run ``fn(*job)`` for every job in the pool, in order; serial if the pool breaks."""
    try:
        pool = _pool(workers)
        futures = [pool.submit(fn, *job) for job in jobs]
        return [f.result() for f in futures]
    except BrokenProcessPool:
        # A killed worker (OOM, signal) must not lose the batch: redo it here.
        shutdown_workers()
        return [fn(*job) for job in jobs]


# ------------------------------------------------------------------ operations


def encrypt_packed(
    public_key: PaillierPublicKey,
    plaintexts: Sequence[int],
    rng: RandomSource | None = None,
    workers: int | None = None,
    *,
    exponent_bits: int | None = None,
) -> list[int]:
    """Encrypt plaintexts in ``[0, n)`` (e.g. :meth:`Packer.pack` output), DJN-style.

    ``c = (1 + m*n) * h_s^alpha mod n^2`` with a fresh ``alpha`` uniform in
    ``[0, 2^exponent_bits)`` per ciphertext, drawn from ``rng`` (default: the
    OS CSPRNG) in this process, so results do not depend on ``workers``.

    Args:
        public_key: the recipient's key.
        plaintexts: integers in ``[0, n)``.
        rng: source of the exponents; a seeded source is for tests only.
        workers: processes to use for large batches (default
            :func:`default_workers`); batches under 128 ciphertexts stay in
            this process.
        exponent_bits: DJN exponent length, default ``ceil(key_bits/2)``;
            at least :data:`MIN_EXPONENT_BITS` (see the module docstring).

    Returns:
        Ciphertexts as Python ints in ``[1, n^2)``.
    """
    if not isinstance(public_key, PaillierPublicKey):
        raise TypeError("public_key must be a PaillierPublicKey")
    ell = _check_exponent_bits(exponent_bits, public_key)
    workers = _resolve_workers(workers)
    n = public_key.n
    values = [int(m) for m in plaintexts]
    for m in values:
        if not 0 <= m < n:
            raise ValueError("plaintext out of range [0, n)")
    count = len(values)
    if count == 0:
        return []
    width = -(-ell // 8)
    raw = bytearray(default_rng(rng).bytes(width * count))
    if ell % 8:
        top_mask = (1 << (ell % 8)) - 1
        for i in range(count):  # little-endian: the last byte of each exponent is the top one
            raw[(i + 1) * width - 1] &= top_mask
    alphas = bytes(raw)
    use_table = count >= _TABLE_MIN_CIPHERTEXTS or _table_is_cached(n, ell)
    if workers == 1 or count < _PARALLEL_MIN_ENCRYPT:
        return _encrypt_chunk(n, ell, values, alphas, use_table)
    if use_table and _POOL is None:
        # Build the table before the pool forks, so every worker inherits it.
        _table(n, ell)
    # Two chunks per worker balance uneven progress without much pickling overhead.
    jobs = [
        (n, ell, values[a:b], alphas[a * width : b * width], use_table)
        for a, b in _split(count, 2 * workers)
    ]
    return [c for part in _run_parallel(_encrypt_chunk, jobs, workers) for c in part]


def add_encrypted(public_key: PaillierPublicKey, a: Sequence[int], b: Sequence[int]) -> list[int]:
    """Slotwise sum of two encrypted vectors: ``a_i * b_i mod n^2``. Needs only the public key."""
    if len(a) != len(b):
        raise ValueError(f"ciphertext vectors differ in length: {len(a)} != {len(b)}")
    nsquare = public_key._nsquare
    return [int(gmpy2.mpz(x) * gmpy2.mpz(y) % nsquare) for x, y in zip(a, b, strict=True)]


def sum_encrypted(public_key: PaillierPublicKey, vectors: Sequence[Sequence[int]]) -> list[int]:
    """Sum of many encrypted vectors (product mod ``n^2`` per position). Public key only.

    The result decrypts to the sum of the plaintexts; with packed inputs, to
    the slotwise sum. Raises ValueError on an empty list or unequal lengths.
    """
    if len(vectors) == 0:
        raise ValueError("nothing to sum")
    length = len(vectors[0])
    for v in vectors:
        if len(v) != length:
            raise ValueError("ciphertext vectors differ in length")
    nsquare = public_key._nsquare
    acc = [gmpy2.mpz(c) for c in vectors[0]]
    for v in vectors[1:]:
        acc = [x * gmpy2.mpz(y) % nsquare for x, y in zip(acc, v, strict=True)]
    return [int(x) for x in acc]


def decrypt_packed(
    private_key: PaillierPrivateKey, ciphertexts: Sequence[int], workers: int | None = None
) -> list[int]:
    """Decrypt ciphertexts to plaintexts in ``[0, n)`` by CRT (Paillier 1999 §7).

    Batches of 16 or more are split over ``workers`` threads (default
    :func:`default_workers`); the exponentiations release the GIL, and the
    factors stay in this process.
    """
    if not isinstance(private_key, PaillierPrivateKey):
        raise TypeError("decryption needs a PaillierPrivateKey")
    workers = _resolve_workers(workers)
    nsquare = private_key.public_key.nsquare
    cts = [int(c) for c in ciphertexts]
    for c in cts:
        if not 0 < c < nsquare:
            raise ValueError("ciphertext out of range [1, n^2)")
    if workers == 1 or len(cts) < _PARALLEL_MIN_DECRYPT:
        return _decrypt_batch(private_key, cts)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = pool.map(
            lambda ab: _decrypt_batch(private_key, cts[ab[0] : ab[1]]),
            _split(len(cts), workers),
        )
        return [m for part in parts for m in part]


def encrypt_vector(
    public_key: PaillierPublicKey,
    values: np.ndarray,
    packer: Packer,
    rng: RandomSource | None = None,
    workers: int | None = None,
    *,
    exponent_bits: int | None = None,
) -> list[int]:
    """Pack quantized integers (``FixedPointEncoder.quantize`` output) and encrypt them.

    Returns ``packer.num_plaintexts(len(values))`` ciphertexts.
    """
    packer.check_key(public_key)
    return encrypt_packed(
        public_key, packer.pack(values), rng=rng, workers=workers, exponent_bits=exponent_bits
    )


def decrypt_sum(
    private_key: PaillierPrivateKey,
    ciphertexts: Sequence[int],
    packer: Packer,
    summands: int,
    dim: int,
    workers: int | None = None,
) -> np.ndarray:
    """Decrypt a sum of ``summands`` encrypted vectors to the exact integer sum (int64, ``dim``).

    Raises ValueError if the decrypted slots cannot come from ``summands``
    vectors of ``dim`` values (see :meth:`Packer.unpack`).
    """
    if not isinstance(private_key, PaillierPrivateKey):
        raise TypeError("decryption needs a PaillierPrivateKey")
    packer.check_key(private_key.public_key)
    return packer.unpack(decrypt_packed(private_key, ciphertexts, workers), dim, summands)
