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

Modules, one job each (each docstring explains its part and cites its source)
-----------------------------------------------------------------------------
* :mod:`~secagg.paillier.keys`: Paillier (EUROCRYPT 1999) with ``g = n + 1``,
  keys and their byte encodings, key generation under the DJN key conditions,
  CRT decryption (Paillier 1999, §7).
* :mod:`~secagg.paillier.ciphertexts`: ciphertexts as fixed-length bytes,
  with strict decoders.
* :mod:`~secagg.paillier.packing`: :class:`Packer`, many fixed-point values per
  plaintext with headroom for the sum of ``max_summands`` clients.
* :mod:`~secagg.paillier.djn`: the Damgård–Jurik–Nielsen (2010) short-exponent
  randomizer ``h_s^alpha`` with a fixed-base table (Brickell–Gordon–McCurley–
  Wilson, EUROCRYPT 1992), and its security argument.
* :mod:`~secagg.paillier.pool`: the worker processes for large batches (fork,
  reuse, shutdown at exit, recovery from a broken pool).
* :mod:`~secagg.paillier.vector`: encryption, aggregation and decryption of
  vectors, which ties the above together.
* :mod:`~secagg.paillier.threshold`: threshold decryption (Damgård–Jurik,
  PKC 2001, s = 1; Fouque–Poupard–Stern, FC 2000): a key ceremony that deals
  shares of the decryption exponent to ``m`` members and erases the
  factorization, partial decryptions with Chaum–Pedersen proofs, and the
  combination of any ``t`` verified ones. The public key is a plain
  :class:`PaillierPublicKey`, so encryption and packing are unchanged.

Security in one paragraph: IND-CPA under DCR plus a short-exponent assumption
(:mod:`~secagg.paillier.djn`), about 112-bit security for the default 2048-bit
key; malleable and unauthenticated, so clients are assumed semi-honest
(:mod:`~secagg.paillier.packing` says which corruptions decryption catches).
Randomness comes from the OS CSPRNG unless a
:class:`~secagg.randomness.RandomSource` is passed (a seeded
:class:`~secagg.randomness.DeterministicRandom` is for tests only).

Everything public is re-exported here: ``from secagg import paillier as pl``
then ``pl.encrypt_vector``, ``pl.Packer``, ... Importing this package loads
phe and gmpy2; ``import secagg`` alone does not.
"""

from __future__ import annotations

from .ciphertexts import (
    ciphertext_from_bytes,
    ciphertext_to_bytes,
    ciphertexts_from_bytes,
    ciphertexts_to_bytes,
)
from .djn import KAPPA, MIN_EXPONENT_BITS, default_exponent_bits, djn_base
from .keys import (
    DEFAULT_KEY_BITS,
    MAX_KEY_BITS,
    MIN_KEY_BITS,
    PaillierPrivateKey,
    PaillierPublicKey,
    generate_keypair,
)
from .packing import Packer
from .pool import default_workers, shutdown_workers
from .threshold import (
    KeyShare,
    PartialDecryption,
    ThresholdDecryption,
    ThresholdPublicKey,
    combine_partials,
    combine_verified,
    generate_threshold_key,
    partial_decrypt,
    random_safe_prime,
    verify_partial,
)
from .vector import (
    add_encrypted,
    decrypt_packed,
    decrypt_sum,
    encrypt_packed,
    encrypt_vector,
    sum_encrypted,
)

__all__ = [
    "DEFAULT_KEY_BITS",
    "KAPPA",
    "MAX_KEY_BITS",
    "MIN_EXPONENT_BITS",
    "MIN_KEY_BITS",
    "KeyShare",
    "Packer",
    "PaillierPrivateKey",
    "PaillierPublicKey",
    "PartialDecryption",
    "ThresholdDecryption",
    "ThresholdPublicKey",
    "add_encrypted",
    "ciphertext_from_bytes",
    "ciphertext_to_bytes",
    "ciphertexts_from_bytes",
    "ciphertexts_to_bytes",
    "combine_partials",
    "combine_verified",
    "decrypt_packed",
    "decrypt_sum",
    "default_exponent_bits",
    "default_workers",
    "djn_base",
    "encrypt_packed",
    "encrypt_vector",
    "generate_keypair",
    "generate_threshold_key",
    "partial_decrypt",
    "random_safe_prime",
    "shutdown_workers",
    "sum_encrypted",
    "verify_partial",
]
