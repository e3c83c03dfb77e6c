"""Slot packing: many fixed-point integers per Paillier plaintext.

Each value gets a slot with headroom for the sum of ``max_summands`` clients,
so one 512-byte ciphertext carries tens of values (e.g. 63 values for 32-bit
slots under a 2048-bit key) and the homomorphic sum of packed ciphertexts is
the slotwise sum, with no carry between slots.

Paillier is malleable and unauthenticated, so this assumes semi-honest
clients: a malicious client can corrupt the aggregate (e.g. overfill its
slots). :meth:`Packer.unpack` rejects sums that no honest set of ``k``
clients can produce (a slot above ``2*k*q_max``, non-zero padding, bits above
the packing width), which catches many but not all such corruptions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..encoding import FixedPointEncoder
from .keys import DEFAULT_KEY_BITS, PaillierPublicKey

__all__ = ["Packer"]


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
        needed = self.slot_bits_for(self.q_max, self.max_summands)
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
