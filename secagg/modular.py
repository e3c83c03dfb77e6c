"""Vectorized arithmetic in Z_{2^bits} on ``uint64`` numpy arrays, 1 <= bits <= 64.

Every function returns a fresh, fully reduced array (all entries < 2^bits).
numpy's uint64 arithmetic wraps modulo 2^64, and 2^bits divides 2^64, so
reducing with a mask after each operation is exact.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["add", "check_bits", "mask", "neg", "reduce", "sub", "sum_vectors", "to_signed"]


def check_bits(bits: int) -> int:
    """Validate a modulus exponent; return it."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise TypeError(f"bits must be an int, got {type(bits).__name__}")
    if not 1 <= bits <= 64:
        raise ValueError(f"bits must be in [1, 64], got {bits}")
    return int(bits)


def mask(bits: int) -> np.uint64:
    """The mask 2^bits - 1 as a numpy uint64."""
    bits = check_bits(bits)
    return np.uint64((1 << bits) - 1)


def _as_u64(a: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype != np.uint64:
        raise TypeError(f"{name} must be a uint64 array, got dtype {arr.dtype}")
    return arr


def reduce(a: np.ndarray, bits: int) -> np.ndarray:
    """``a mod 2^bits``."""
    return _as_u64(a, "a") & mask(bits)


def add(a: np.ndarray, b: np.ndarray, bits: int) -> np.ndarray:
    """``(a + b) mod 2^bits``."""
    return (_as_u64(a, "a") + _as_u64(b, "b")) & mask(bits)


def sub(a: np.ndarray, b: np.ndarray, bits: int) -> np.ndarray:
    """``(a - b) mod 2^bits``."""
    return (_as_u64(a, "a") - _as_u64(b, "b")) & mask(bits)


def neg(a: np.ndarray, bits: int) -> np.ndarray:
    """``-a mod 2^bits``."""
    return (np.uint64(0) - _as_u64(a, "a")) & mask(bits)


def sum_vectors(vectors: Iterable[np.ndarray], bits: int, dim: int | None = None) -> np.ndarray:
    """The modular sum of many equal-length vectors (the zero vector of ``dim`` if empty)."""
    m = mask(bits)
    total: np.ndarray | None = None
    for v in vectors:
        arr = _as_u64(v, "vector")
        if total is None:
            total = arr.copy()
        else:
            if arr.shape != total.shape:
                raise ValueError(f"shape mismatch: {arr.shape} vs {total.shape}")
            total += arr
    if total is None:
        if dim is None:
            raise ValueError("sum of no vectors needs dim")
        return np.zeros(dim, dtype=np.uint64)
    return total & m


def to_signed(a: np.ndarray, bits: int) -> np.ndarray:
    """Interpret residues in ``[0, 2^bits)`` as signed integers in ``[-2^(bits-1), 2^(bits-1))``.

    Returns int64. (Two's complement with ``bits`` bits.)
    """
    bits = check_bits(bits)
    arr = _as_u64(a, "a") & mask(bits)
    if bits == 64:
        return arr.view(np.int64)
    # Sign extension by (v XOR half) - half: both terms fit in int64 for bits <= 63,
    # whereas subtracting 2^bits directly overflows int64 when bits == 63.
    half = 1 << (bits - 1)
    return (arr ^ np.uint64(half)).astype(np.int64) - np.int64(half)
