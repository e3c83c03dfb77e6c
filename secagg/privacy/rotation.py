"""Randomized Hadamard rotation: a public, orthonormal, fast "flattening" transform.

Before quantizing a client update for secure aggregation we rotate it by
``U = H · D`` where ``D`` is a diagonal of random signs and ``H`` the
orthonormal Walsh–Hadamard matrix (size padded to a power of two). ``U`` is
orthonormal, so L2 norms (hence DP sensitivities) are unchanged, and it
spreads the vector's energy evenly: for any fixed ``s``, each coordinate of
``U s`` is ``Σ_l ±s_l / sqrt(D)`` with independent signs, a sub-Gaussian
variable with variance proxy ``||s||² / D`` (Hoeffding). That bound on the
largest coordinate is what lets a small modulus ``2^bits`` hold the sum without
wrapping (Kairouz, Liu, Steinke, "The Distributed Discrete Gaussian Mechanism
for Federated Learning with Secure Aggregation", ICML 2021, Section 4; the
same transform is used by Suresh et al., "Distributed Mean Estimation with
Limited Communication", ICML 2017).

The rotation is **public**: every client and the server derive the same signs
from a per-round seed (for example the session id), with SHAKE-256 as the PRG,
never numpy's RNG. Public is fine for privacy (DP never relied on it); the
flattening argument needs the inputs to be chosen independently of the seed,
so the seed should be fixed by the protocol after clients' updates are
determined (or at least not by a party that also picks inputs).
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

__all__ = ["RandomizedHadamard", "fwht", "next_power_of_two", "rademacher_signs"]

_SIGN_DOMAIN = b"secagg.privacy.rotation.signs.v1\x00"


def next_power_of_two(n: int) -> int:
    """The smallest power of two ``>= n`` (``n >= 1``)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return 1 << (int(n) - 1).bit_length()


def fwht(x: np.ndarray) -> np.ndarray:
    """Orthonormal fast Walsh–Hadamard transform along the last axis (float64 copy).

    Computes ``H x / sqrt(D)`` for the Sylvester–Hadamard matrix
    ``H_{2h} = [[H_h, H_h], [H_h, -H_h]]`` in ``O(D log D)`` with one numpy
    butterfly per level. The normalized transform is symmetric and orthogonal,
    hence its own inverse. ``D`` (the last axis) must be a power of two; leading
    axes are a batch (e.g. many clients at once).
    """
    y = np.array(x, dtype=np.float64, copy=True)
    if y.ndim == 0:
        raise ValueError("fwht needs at least one axis")
    size = y.shape[-1]
    if size < 1 or size & (size - 1):
        raise ValueError(f"the last axis must have a power-of-two length, got {size}")
    shape = y.shape
    flat = y.reshape(-1, size)
    h = 1
    while h < size:
        blocks = flat.reshape(flat.shape[0], size // (2 * h), 2, h)
        top = blocks[:, :, 0, :].copy()
        blocks[:, :, 0, :] += blocks[:, :, 1, :]
        blocks[:, :, 1, :] = top - blocks[:, :, 1, :]
        h *= 2
    flat *= 1.0 / math.sqrt(size)
    return flat.reshape(shape)


def _seed_material(seed: bytes | int | str) -> bytes:
    # Typed prefixes keep seed 1, "1" and b"1" apart (as DeterministicRandom does).
    if isinstance(seed, bool):
        raise TypeError("seed must be bytes, int or str, not bool")
    if isinstance(seed, (bytes, bytearray)):
        return b"bytes:" + bytes(seed)
    if isinstance(seed, (int, np.integer)):
        return b"int:" + str(int(seed)).encode()
    if isinstance(seed, str):
        return b"str:" + seed.encode()
    raise TypeError(f"seed must be bytes, int or str, got {type(seed).__name__}")


def rademacher_signs(seed: bytes | int | str, n: int) -> np.ndarray:
    """``n`` public pseudorandom signs in {-1.0, +1.0}, expanded from ``seed`` by SHAKE-256.

    Deterministic: every party with the seed gets the same signs. The seed is
    length-prefixed under a domain label so it cannot collide with any other
    use of SHAKE-256 in the code base.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    material = _seed_material(seed)
    xof = hashlib.shake_256(_SIGN_DOMAIN + len(material).to_bytes(8, "big") + material)
    bits = np.unpackbits(np.frombuffer(xof.digest((int(n) + 7) // 8), dtype=np.uint8))
    return 1.0 - 2.0 * bits[: int(n)].astype(np.float64)


class RandomizedHadamard:
    """The public rotation ``x -> H · D · pad(x)`` on vectors of length ``dim``.

    Args:
        dim: input dimension; outputs have ``padded_dim = next_power_of_two(dim)``.
        seed: the public per-round seed (bytes, int or str).

    :meth:`forward` maps ``(..., dim)`` to ``(..., padded_dim)`` and preserves
    the L2 norm exactly in real arithmetic (to ~1e-15 relative in float64);
    :meth:`inverse` maps back and drops the padding, so
    ``inverse(forward(x)) == x`` up to rounding. Both accept a batch of vectors
    (leading axes). Reference: Kairouz, Liu, Steinke (ICML 2021), Section 4.
    """

    def __init__(self, dim: int, seed: bytes | int | str) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        self._dim = int(dim)
        self._padded = next_power_of_two(self._dim)
        self._signs = rademacher_signs(seed, self._padded)
        self._signs.setflags(write=False)

    @property
    def dim(self) -> int:
        """Input dimension."""
        return self._dim

    @property
    def padded_dim(self) -> int:
        """Output dimension: the next power of two >= ``dim``."""
        return self._padded

    @property
    def signs(self) -> np.ndarray:
        """The public diagonal ``D`` (read-only, length ``padded_dim``)."""
        return self._signs

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Rotate: zero-pad the last axis to ``padded_dim``, flip signs, Hadamard."""
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim == 0 or arr.shape[-1] != self._dim:
            raise ValueError(f"expected last axis of length {self._dim}, got shape {arr.shape}")
        padded = np.zeros((*arr.shape[:-1], self._padded), dtype=np.float64)
        padded[..., : self._dim] = arr
        padded *= self._signs
        return fwht(padded)

    def inverse(self, y: np.ndarray) -> np.ndarray:
        """Unrotate (``D · H · y``, as H/√D and D are involutions) and drop the padding."""
        arr = np.asarray(y, dtype=np.float64)
        if arr.ndim == 0 or arr.shape[-1] != self._padded:
            raise ValueError(f"expected last axis of length {self._padded}, got shape {arr.shape}")
        out = fwht(arr)
        out *= self._signs
        return out[..., : self._dim].copy()

    def __repr__(self) -> str:
        return f"RandomizedHadamard(dim={self._dim}, padded_dim={self._padded})"
