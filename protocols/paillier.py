"""Packed Paillier aggregation (``protocols.Paillier``).

Each client quantizes its clipped input to ``bits``-bit signed integers
(unbiased stochastic rounding), packs as many as fit per plaintext with
headroom for the sum of every invited client (slot = bits + log2(n) bits,
so about ``key_bits / (bits + log2 n)`` values per ciphertext), and encrypts
with the DJN fixed-base randomizer (:mod:`secagg.paillier`). The server
multiplies ciphertexts (it holds only the public key) and the decryptor
decrypts only the aggregate, giving the exact integer sum.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from secagg import paillier as pl
from secagg.encoding import FixedPointEncoder
from secagg.randomness import RandomSource

from . import codec
from .base import check_positive
from .cost import CostEstimate
from .he import HEProtocol, check_decryptor, check_min_clients

__all__ = ["Paillier"]


# -- snapshot codecs of the keys a session holds (tags 0x0F, 0x10) ------------------


def _encode_private_key(out: bytearray, key: pl.PaillierPrivateKey) -> None:
    # phe's key exposes the factors publicly; ours keeps them in private slots.
    phe_key = key.to_phe()
    codec.write_int(out, int(phe_key.p))
    codec.write_int(out, int(phe_key.q))


def _decode_public_key(r: codec.Reader) -> pl.PaillierPublicKey:
    n = r.read_int()
    if n <= 1:
        raise ValueError("modulus must be positive")
    return pl.PaillierPublicKey(n)


def _decode_private_key(r: codec.Reader) -> pl.PaillierPrivateKey:
    p, q = r.read_int(), r.read_int()
    if not (1 < p and 1 < q):
        raise ValueError("factors must be > 1")
    return pl.PaillierPrivateKey(pl.PaillierPublicKey(p * q), p, q)


codec.register_codec(
    pl.PaillierPublicKey,
    0x0F,
    lambda out, key: codec.write_int(out, key.n),
    _decode_public_key,
    name="Paillier public key",
)
codec.register_codec(
    pl.PaillierPrivateKey,
    0x10,
    _encode_private_key,
    _decode_private_key,
    name="Paillier private key",
)


@dataclass(frozen=True)
class Paillier(HEProtocol):
    """Paillier aggregation with packing.

    Args:
        key_bits: modulus size (2048 gives ~112-bit security; 3072 ~128-bit).
        bits: quantization bits per value (2..52); the packer adds the
            headroom for the sum.
        clip: each coordinate is clipped to [-clip, clip].
        decryptor: the key-holding client (default: the smallest client id).
        min_clients: the decryptor refuses aggregates of fewer clients.
        workers: processes for encryption and decryption (None: automatic).
    """

    key_bits: int = 2048
    bits: int = 32
    clip: float = 1.0
    decryptor: int | None = None
    min_clients: int = 2
    workers: int | None = None

    NAME: ClassVar[str] = "paillier"
    QUANTIZATION_BITS: ClassVar[tuple[int, int] | None] = (2, 52)

    def __post_init__(self) -> None:
        if (
            isinstance(self.key_bits, bool)
            or not isinstance(self.key_bits, int)
            or not (pl.MIN_KEY_BITS <= self.key_bits <= pl.MAX_KEY_BITS)
        ):
            raise ValueError(
                f"key_bits must be in [{pl.MIN_KEY_BITS}, {pl.MAX_KEY_BITS}], got {self.key_bits!r}"
            )
        if (
            isinstance(self.bits, bool)
            or not isinstance(self.bits, int)
            or not 2 <= self.bits <= 52
        ):
            raise ValueError(f"bits must be an int in [2, 52], got {self.bits!r}")
        check_positive(self.clip, "clip")
        check_decryptor(self.decryptor)
        check_min_clients(self.min_clients)
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            raise ValueError(f"workers must be a positive int or None, got {self.workers!r}")

    def _digest_fields(self) -> tuple[bytes, ...]:
        return (
            struct.pack(">IBd", self.key_bits, self.bits, float(self.clip)),
            struct.pack(">q", -1 if self.decryptor is None else self.decryptor),
            struct.pack(">I", self.min_clients),
        )

    def cost(self, n_clients: float, dim: int) -> CostEstimate:
        """Ciphertexts of ``2 * key_bits`` bits, each packing ``key_bits / (bits + log2 n)``
        values; ~6e-5 s of encryption per value on a client; the server multiplies
        ciphertexts and the decryptor decrypts the sum (~2e-4 s per value)."""
        n = max(float(n_clients), 1.0)
        slot = self.bits + math.ceil(math.log2(n + 1)) + 1
        per_ciphertext = max((self.key_bits - 2) // slot, 1)
        return CostEstimate(
            upload_bytes=math.ceil(dim / per_ciphertext) * self.key_bits / 4,
            download_bytes=200.0,
            client_seconds=6e-5 * dim,
            server_seconds=1e-6 * dim * n / 30 + 2e-4 * dim,
        )

    @property
    def encoder(self) -> FixedPointEncoder:
        """Quantization of one input (the packer adds headroom for the sum)."""
        return FixedPointEncoder(clip=float(self.clip), bits=self.bits, max_summands=1)

    def packer(self, n_clients: int) -> pl.Packer:
        return pl.Packer.for_range(self.encoder.q_max, n_clients, self.key_bits)

    def check_round(self, n_clients: int) -> None:
        if n_clients * self.encoder.q_max >= 2**63:
            raise ValueError(f"the sum of {n_clients} {self.bits}-bit values does not fit in int64")
        self.packer(n_clients)

    def scale(self, n_clients: int) -> float:
        return self.encoder.scale

    def make_keys(self, rng: RandomSource) -> tuple[bytes, pl.PaillierPrivateKey]:
        # phe draws the primes from the OS CSPRNG itself; rng is for the schemes that take one.
        public, private = pl.generate_keypair(self.key_bits)
        return public.to_bytes(), private

    def load_public(self, data: bytes) -> pl.PaillierPublicKey:
        key = pl.PaillierPublicKey.from_bytes(data)
        if key.key_bits != self.key_bits:
            raise ValueError(f"public key has {key.key_bits} bits, the config says {self.key_bits}")
        return key

    def encrypt(
        self, public: pl.PaillierPublicKey, x: np.ndarray, n_clients: int, rng: RandomSource
    ) -> tuple[bytes, ...]:
        q = self.encoder.quantize(x, rng)
        cts = pl.encrypt_vector(public, q, self.packer(n_clients), rng=rng, workers=self.workers)
        return (pl.ciphertexts_to_bytes(public, cts),)

    def parse_ciphertexts(
        self, public: pl.PaillierPublicKey, blobs: tuple[bytes, ...], dim: int, n_clients: int
    ) -> list[int]:
        if len(blobs) != 1:
            raise ValueError(f"expected one ciphertext blob, got {len(blobs)}")
        return pl.ciphertexts_from_bytes(
            public, blobs[0], self.packer(n_clients).num_plaintexts(dim)
        )

    def aggregate(self, public: pl.PaillierPublicKey, parsed: list[list[int]]) -> tuple[bytes, ...]:
        return (pl.ciphertexts_to_bytes(public, pl.sum_encrypted(public, parsed)),)

    def decrypt(
        self,
        secret: pl.PaillierPrivateKey,
        blobs: tuple[bytes, ...],
        dim: int,
        n_clients: int,
        summands: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        packer = self.packer(n_clients)
        cts = self.parse_ciphertexts(secret.public_key, blobs, dim, n_clients)
        integers = pl.decrypt_sum(secret, cts, packer, summands, dim, workers=self.workers)
        return integers.astype(np.float64) / self.encoder.scale, integers
