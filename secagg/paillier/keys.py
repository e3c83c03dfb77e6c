"""Paillier keys, their byte encodings, key generation and CRT decryption.

* **Paillier** (Paillier, "Public-Key Cryptosystems Based on Composite Degree
  Residuosity Classes", EUROCRYPT 1999) with generator ``g = n + 1``, so that
  ``g^m = 1 + m*n (mod n^2)`` costs one multiplication instead of an
  exponentiation (Damgård–Jurik, PKC 2001, §3; python-paillier does the same).
  The public key is therefore just ``n``.
* **Decryption by CRT** (Paillier 1999, §7): ``m_p = L_p(c^(p-1) mod p^2) * h_p
  mod p`` and likewise mod ``q``, recombined by CRT. Exponents and moduli are
  half as long, so it is about 4x faster than ``c^lambda mod n^2``. The two
  exponentiations of a batch go through ``gmpy2.powmod_base_list``, which
  releases the GIL, so callers may run batches on threads and ``p``, ``q``
  never leave the process.
* **Key generation** draws primes with :mod:`phe` (python-paillier, from
  ``random.SystemRandom``) and, by default, redraws until ``p = q = 3 (mod 4)``
  and ``gcd(p-1, q-1) = 2``, the key conditions of Damgård–Jurik–Nielsen 2010
  (as ABY's ``djn_keygen`` does) under which the Jacobi-symbol-1 subgroup
  ``J_n`` is cyclic and the DJN base ``-x^2`` (:mod:`secagg.paillier.djn`) has
  large order. Decryption is correct for any Paillier key.

A 2048-bit ``n`` gives about 112-bit security (NIST SP 800-57); keys below
2048 bits, down to :data:`MIN_KEY_BITS`, are accepted only for tests.

Byte encodings (big-endian, minimal)::

    public key:  b"SAPK" || version (1 byte) || len(n) (uint16) || n
    private key: b"SASK" || version || len(p) (uint16) || p || len(q) (uint16) || q

The decoders reject anything malformed, and moduli that cannot be Paillier
moduli; these checks catch garbage, not a malicious key holder.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import gmpy2
from phe import paillier as _phe

__all__ = [
    "DEFAULT_KEY_BITS",
    "MAX_KEY_BITS",
    "MIN_KEY_BITS",
    "PaillierPrivateKey",
    "PaillierPublicKey",
    "check_ciphertexts",
    "crt_decrypt",
    "generate_keypair",
]

#: Default modulus size (about 112-bit security).
DEFAULT_KEY_BITS = 2048
#: Smallest modulus accepted anywhere; anything below 2048 bits is for tests only.
MIN_KEY_BITS = 512
#: Largest modulus accepted by the decoders (bounds memory and time per ciphertext).
MAX_KEY_BITS = 8192

_PK_MAGIC = b"SAPK"
_SK_MAGIC = b"SASK"
#: Version byte of both key encodings.
_KEY_VERSION = 1
_PK_HEADER = len(_PK_MAGIC) + 1 + 2  # magic, version, uint16 length of n

# Primes below 2^10: a cheap sanity check on decoded moduli (an honest n has none).
_SMALL_PRIMES_PRODUCT = math.prod(p for p in range(3, 1024, 2) if gmpy2.is_prime(p))


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
        return int(self._n.bit_length())

    @property
    def ciphertext_bytes(self) -> int:
        """Length of one serialized ciphertext: the byte length of ``n^2``."""
        return (int(self._nsquare.bit_length()) + 7) // 8

    @property
    def max_plaintext_bits(self) -> int:
        """Plaintexts below ``2^max_plaintext_bits`` are always below ``n``."""
        return int(self._n.bit_length()) - 1

    def to_bytes(self) -> bytes:
        """``b"SAPK" || version (1 byte) || len(n) (uint16 BE) || n (big-endian)``."""
        body = int(self._n).to_bytes((self._n.bit_length() + 7) // 8, "big")
        return _PK_MAGIC + bytes([_KEY_VERSION]) + len(body).to_bytes(2, "big") + body

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
        if data[len(_PK_MAGIC)] != _KEY_VERSION:
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
        out = bytearray(_SK_MAGIC + bytes([_KEY_VERSION]))
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
        if data[len(_SK_MAGIC)] != _KEY_VERSION:
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
        return crt_decrypt(self, check_ciphertexts(self.public_key, [ciphertext]))[0]

    def __repr__(self) -> str:
        return f"PaillierPrivateKey(key_bits={self.public_key.key_bits}, <secret>)"


def check_ciphertexts(public_key: PaillierPublicKey, ciphertexts: Iterable[int]) -> list[int]:
    """The ciphertexts as ints; ValueError unless each is in ``[1, n^2)``, the ciphertext range."""
    nsquare = public_key.nsquare  # an int: int-to-int comparisons are the fast ones
    out = []
    for ciphertext in ciphertexts:
        c = int(ciphertext)
        if not 0 < c < nsquare:
            raise ValueError("ciphertext out of range [1, n^2)")
        out.append(c)
    return out


def crt_decrypt(private_key: PaillierPrivateKey, ciphertexts: Sequence[int]) -> list[int]:
    """CRT-decrypt a batch of in-range ciphertexts; the exponentiations run without the GIL.

    No range checks (callers apply :func:`check_ciphertexts`).
    """
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
