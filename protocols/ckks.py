"""CKKS aggregation via TenSEAL (``protocols.CKKS``).

The decryptor makes a CKKS context and publishes it without the secret key;
clients encrypt their clipped inputs (split across ciphertexts of N/2 slots),
the server adds ciphertexts with the public context only, and the decryptor
decrypts only the aggregate. The sum is approximate: the error per
coordinate is at most :meth:`secagg.ckks.CKKSParams.error_bound` for the
number of summands and the clip (stated and tested there).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from secagg import ckks
from secagg.ckks import ts  # one import site for tenseal: its ImportError names the extra
from secagg.randomness import RandomSource

from . import codec
from .base import check_positive
from .cost import CostEstimate
from .he import HEProtocol, check_decryptor, check_min_clients

__all__ = ["CKKS"]

# Snapshot codecs of the contexts a session holds: TenSEAL's own serialization,
# tag 0x11 for a public context (clients, server) and 0x12 for the decryptor's
# secret one.
codec.register_codec(
    ts.Context,
    0x11,
    lambda out, ctx: codec.write_bytes(out, ckks.export_public_context(ctx)),
    lambda r: ckks.load_public_context(r.read_bytes()),
    name="CKKS context",
    when=lambda ctx: not ctx.is_private(),
)
codec.register_codec(
    ts.Context,
    0x12,
    lambda out, ctx: codec.write_bytes(out, ckks.export_secret_context(ctx)),
    lambda r: ckks.load_secret_context(r.read_bytes()),
    name="CKKS context",
    when=lambda ctx: ctx.is_private(),
)


@dataclass(frozen=True)
class CKKS(HEProtocol):
    """CKKS aggregation.

    Args:
        poly_modulus_degree, coeff_mod_bit_sizes, global_scale: CKKS
            parameters (defaults: 128-bit secure by the HE standard, sum-only,
            see :class:`secagg.ckks.CKKSParams`).
        clip: each coordinate is clipped to [-clip, clip].
        decryptor: the key-holding client (default: the smallest client id).
        min_clients: the decryptor refuses aggregates of fewer clients.
    """

    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: tuple[int, ...] = (60, 40)
    global_scale: float = 2.0**40
    clip: float = 1.0
    decryptor: int | None = None
    min_clients: int = 2

    NAME: ClassVar[str] = "ckks"

    def __post_init__(self) -> None:
        object.__setattr__(self, "coeff_mod_bit_sizes", tuple(self.coeff_mod_bit_sizes))
        self.params  # noqa: B018 - validates (ValueError on insecure or malformed parameters)
        check_positive(self.clip, "clip")
        check_decryptor(self.decryptor)
        check_min_clients(self.min_clients)

    @property
    def params(self) -> ckks.CKKSParams:
        return ckks.CKKSParams(
            self.poly_modulus_degree, self.coeff_mod_bit_sizes, self.global_scale
        )

    def _digest_fields(self) -> tuple[bytes, ...]:
        return (
            struct.pack(">I", self.poly_modulus_degree),
            bytes(self.coeff_mod_bit_sizes),
            struct.pack(">dd", self.global_scale, float(self.clip)),
            struct.pack(">q", -1 if self.decryptor is None else self.decryptor),
            struct.pack(">I", self.min_clients),
        )

    def cost(self, n_clients: float, dim: int) -> CostEstimate:
        """About 33 bytes per value at N = 8192 (README benchmark: 32.8 B) and
        ~3e-6 s per value to encrypt, and per value and client to add."""
        n = max(float(n_clients), 1.0)
        return CostEstimate(33.0 * dim, 200.0, 3e-6 * dim, 3e-6 * dim * n)

    def error_bound(self, summands: int) -> float:
        """Per-coordinate bound on |decrypted sum - exact sum of clipped inputs|."""
        return self.params.error_bound(summands, float(self.clip))

    def check_round(self, n_clients: int) -> None:
        self.error_bound(n_clients)  # ValueError if the sum of n clipped values could wrap

    def make_keys(self, rng: RandomSource) -> tuple[bytes, ts.Context]:
        # SEAL draws the key material itself; rng is for the schemes that take one.
        ctx = ckks.make_context(self.params)
        return ckks.export_public_context(ctx), ctx

    def load_public(self, data: bytes) -> ts.Context:
        ctx = ckks.load_public_context(data, self.params)
        if ctx.is_private():
            raise ValueError("the published context carries a secret key")
        return ctx

    def encrypt(
        self, public: ts.Context, x: np.ndarray, n_clients: int, rng: RandomSource
    ) -> tuple[bytes, ...]:
        return tuple(ckks.encrypt_vector(public, np.clip(x, -self.clip, self.clip)))

    def parse_ciphertexts(
        self, public: ts.Context, blobs: tuple[bytes, ...], dim: int, n_clients: int
    ) -> list[ts.CKKSVector]:
        return ckks.load_encrypted(public, blobs, dim)

    def aggregate(self, public: ts.Context, parsed: list[list[ts.CKKSVector]]) -> tuple[bytes, ...]:
        return tuple(ckks.add_loaded(parsed))

    def decrypt(
        self,
        secret: ts.Context,
        blobs: tuple[bytes, ...],
        dim: int,
        n_clients: int,
        summands: int,
    ) -> tuple[np.ndarray, None]:
        return ckks.decrypt_vector(secret, blobs, dim), None
