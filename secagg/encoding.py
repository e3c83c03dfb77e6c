"""Fixed-point encoding of real vectors into Z_{2^bits}, built so that sums cannot wrap.

A value ``x`` is clipped to ``[-clip, clip]``, scaled by ``scale``, and rounded
stochastically to an integer ``q`` with ``E[q] = x * scale`` (unbiased), then
stored in two's complement modulo ``2^bits``. The scale is chosen from the
maximum number of summands ``m``::

    q_max = floor((2^(bits-1) - 1) / m)      scale = q_max / clip

so every encoding lies in ``[-q_max, q_max]`` and any sum of at most ``m``
encodings lies in ``[-(2^(bits-1) - 1), 2^(bits-1) - 1]``: the modular sum never
wraps, and decoding is exact in the integer domain.

Error bound (stated and tested): for ``k <= m`` encodings of clipped values
``c_i``, the decoded sum ``s`` satisfies ``|s - sum(c_i)| < k / scale`` per
coordinate (each stochastic rounding moves a value by less than one unit),
plus floating-point error of order ``k * clip * 2^-52``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import modular
from .randomness import RandomSource, uniform_floats

__all__ = ["FixedPointEncoder", "check_finite", "clip_values", "stochastic_round"]


def check_finite(x: np.ndarray, name: str = "x") -> np.ndarray:
    """Return ``x`` as a float64 1-D array; raise ValueError on NaN/inf or wrong rank."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D vector, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def clip_values(x: np.ndarray, clip: float) -> np.ndarray:
    """Clip every coordinate to ``[-clip, clip]``."""
    return np.clip(x, -clip, clip)


def stochastic_round(y: np.ndarray, rng: RandomSource | None = None) -> np.ndarray:
    """Round each value to floor or ceil with probabilities making the result unbiased.

    Returns int64; ``|result - y| < 1`` and ``E[result] = y``.
    """
    y = np.asarray(y, dtype=np.float64)
    low = np.floor(y)
    frac = y - low
    up = uniform_floats(y.size, rng).reshape(y.shape) < frac
    return low.astype(np.int64) + up.astype(np.int64)


@dataclass(frozen=True)
class FixedPointEncoder:
    """Encode clipped reals into Z_{2^bits} with headroom for ``max_summands`` summands.

    Args:
        clip: values are clipped to ``[-clip, clip]``; must be positive and finite.
        bits: modulus exponent, 2 <= bits <= 64.
        max_summands: the largest number of encodings that will ever be summed.
    """

    clip: float
    bits: int
    max_summands: int

    def __post_init__(self) -> None:
        if not (isinstance(self.clip, (int, float)) and np.isfinite(self.clip) and self.clip > 0):
            raise ValueError(f"clip must be a positive finite number, got {self.clip!r}")
        modular.check_bits(self.bits)
        if self.bits < 2:
            raise ValueError(f"bits must be in [2, 64], got {self.bits}")
        if not isinstance(self.max_summands, (int, np.integer)) or self.max_summands < 1:
            raise ValueError(f"max_summands must be a positive int, got {self.max_summands!r}")
        if self.q_max < 1:
            raise ValueError(
                f"bits={self.bits} leaves no room for {self.max_summands} summands; "
                f"use more bits or fewer summands"
            )

    @property
    def q_max(self) -> int:
        """The largest magnitude of one encoded integer."""
        return ((1 << (self.bits - 1)) - 1) // int(self.max_summands)

    @property
    def scale(self) -> float:
        """Integer units per unit of the real value."""
        return self.q_max / float(self.clip)

    def error_bound(self, summands: int) -> float:
        """Strict per-coordinate bound on |decode(sum) - sum(clipped)| for ``summands`` terms."""
        return summands / self.scale

    def quantize(self, x: np.ndarray, rng: RandomSource | None = None) -> np.ndarray:
        """Clip, scale and round stochastically: int64 values in ``[-q_max, q_max]``."""
        arr = check_finite(x)
        scaled = clip_values(arr, self.clip) * self.scale
        # float(q_max) rounds up when q_max has more than 53 bits (bits=64, max_summands=1:
        # 2^63 - 1 -> 2^63), and 2^63 overflows the int64 cast in stochastic_round, turning
        # +clip into -clip. Clamp in the float domain to the largest float <= q_max first.
        limit = float(self.q_max)
        if int(limit) > self.q_max:
            limit = float(np.nextafter(limit, 0.0))
        scaled = np.clip(scaled, -limit, limit)
        # Multiplication may overshoot q_max by an ulp; clamp so the headroom proof holds.
        q = stochastic_round(scaled, rng)
        return np.clip(q, -self.q_max, self.q_max)

    def encode(self, x: np.ndarray, rng: RandomSource | None = None) -> np.ndarray:
        """Quantize and map into Z_{2^bits} (uint64, two's complement)."""
        return self.to_ring(self.quantize(x, rng))

    def to_ring(self, q: np.ndarray) -> np.ndarray:
        """Map signed integers into Z_{2^bits} (uint64)."""
        return np.asarray(q, dtype=np.int64).view(np.uint64) & modular.mask(self.bits)

    def decode_integers(self, total: np.ndarray) -> np.ndarray:
        """A modular sum back to signed integers (int64)."""
        return modular.to_signed(total, self.bits)

    def decode(self, total: np.ndarray, summands: int | None = None) -> np.ndarray:
        """Decode a modular sum of up to ``max_summands`` encodings to float64."""
        if summands is not None and not 0 <= summands <= self.max_summands:
            raise ValueError(
                f"summands={summands} exceeds max_summands={self.max_summands}: the sum may have wrapped"
            )
        return self.decode_integers(total).astype(np.float64) / self.scale
