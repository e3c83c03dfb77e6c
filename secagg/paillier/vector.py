"""Vector operations: encrypt, aggregate and decrypt many values at once.

Encryption (:func:`encrypt_packed`) draws every DJN exponent in the calling
process, then encrypts in this process for small batches or in the worker
pool (:mod:`secagg.paillier.pool`) for large ones, so the result depends only
on the randomness, never on ``workers``. Aggregation needs only the public
key: the product of ciphertexts mod ``n^2`` decrypts to the sum of the
plaintexts (with packed inputs, the slotwise sum). Decryption
(:func:`decrypt_packed`) is CRT decryption (Paillier 1999, §7) on threads.
:func:`encrypt_vector` and :func:`decrypt_sum` add the slot packing of
:mod:`secagg.paillier.packing` on either side.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import gmpy2
import numpy as np

from ..randomness import RandomSource
from . import djn, pool
from .keys import PaillierPrivateKey, PaillierPublicKey, check_ciphertexts, crt_decrypt
from .packing import Packer

__all__ = [
    "add_encrypted",
    "decrypt_packed",
    "decrypt_sum",
    "encrypt_packed",
    "encrypt_vector",
    "sum_encrypted",
]

# Below these sizes a process pool costs more than it saves (fork + table build).
_PARALLEL_MIN_ENCRYPT = 128
_PARALLEL_MIN_DECRYPT = 16


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
            :func:`~secagg.paillier.pool.default_workers`); batches under 128
            ciphertexts stay in this process.
        exponent_bits: DJN exponent length, default ``ceil(key_bits/2)``;
            at least :data:`~secagg.paillier.djn.MIN_EXPONENT_BITS` (see
            :mod:`secagg.paillier.djn`).

    Returns:
        Ciphertexts as Python ints in ``[1, n^2)``.
    """
    if not isinstance(public_key, PaillierPublicKey):
        raise TypeError("public_key must be a PaillierPublicKey")
    ell = djn.check_exponent_bits(exponent_bits, public_key)
    workers = pool.resolve_workers(workers)
    n = public_key.n
    values = [int(m) for m in plaintexts]
    for m in values:
        if not 0 <= m < n:
            raise ValueError("plaintext out of range [0, n)")
    count = len(values)
    if count == 0:
        return []
    alphas = djn.draw_exponents(rng, count, ell)
    use_table = djn.worth_a_table(n, ell, count)
    if workers == 1 or count < _PARALLEL_MIN_ENCRYPT:
        return djn.encrypt_chunk(n, ell, values, alphas, use_table)
    if use_table and not pool.pool_started():
        # Build the table before the pool forks, so every worker inherits it.
        djn.fixed_base_table(n, ell)
    width = djn.exponent_bytes(ell)
    # Two chunks per worker balance uneven progress without much pickling overhead.
    jobs = [
        (n, ell, values[a:b], alphas[a * width : b * width], use_table)
        for a, b in pool.split(count, 2 * workers)
    ]
    return [c for part in pool.run_parallel(djn.encrypt_chunk, jobs, workers) for c in part]


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
    :func:`~secagg.paillier.pool.default_workers`); the exponentiations
    release the GIL, and the factors stay in this process.
    """
    if not isinstance(private_key, PaillierPrivateKey):
        raise TypeError("decryption needs a PaillierPrivateKey")
    workers = pool.resolve_workers(workers)
    cts = check_ciphertexts(private_key.public_key, ciphertexts)
    if workers == 1 or len(cts) < _PARALLEL_MIN_DECRYPT:
        return crt_decrypt(private_key, cts)
    with ThreadPoolExecutor(max_workers=workers) as threads:
        parts = threads.map(
            lambda ab: crt_decrypt(private_key, cts[ab[0] : ab[1]]),
            pool.split(len(cts), workers),
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
