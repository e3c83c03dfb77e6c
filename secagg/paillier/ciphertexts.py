"""Ciphertexts as bytes: fixed-length big-endian integers below ``n^2``.

One ciphertext is ``public_key.ciphertext_bytes`` bytes (512 for a 2048-bit
key); a vector of ciphertexts is their concatenation, so its length alone
gives the count. The decoders are strict: every value must be a unit mod
``n^2`` (below ``n^2`` and coprime to ``n``), as every honest ciphertext is;
anything else is garbage, and a value sharing a factor with ``n`` would even
reveal that factor to whoever decrypts it.
"""

from __future__ import annotations

from collections.abc import Sequence

import gmpy2

from .keys import PaillierPublicKey, check_ciphertexts

__all__ = [
    "ciphertext_from_bytes",
    "ciphertext_to_bytes",
    "ciphertexts_from_bytes",
    "ciphertexts_to_bytes",
]


def ciphertext_to_bytes(public_key: PaillierPublicKey, ciphertext: int) -> bytes:
    """One ciphertext as fixed-length big-endian bytes (``public_key.ciphertext_bytes``)."""
    (c,) = check_ciphertexts(public_key, [ciphertext])
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
    return b"".join(c.to_bytes(width, "big") for c in check_ciphertexts(public_key, ciphertexts))


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
