"""The versioned binary wire format shared by every protocol.

Every message is a 16-byte header followed by a payload::

    magic "SF" (2) | version (1) | type (1) | sender (u32) | recipient (u32) | round (u32)

All integers are big-endian, except vectors, which are little-endian arrays
(numpy's native layout on the platforms we support, and what makes encoding
a copy rather than a loop). The payload is a fixed sequence of typed fields
declared by the message class (its *schema*); :class:`Reader` checks every
length against the bytes that remain before allocating anything, so a
truncated, oversized or lying message is rejected with :class:`WireFormatError`
and never causes a large allocation. Decoding consumes the whole buffer:
trailing bytes are an error too. Nothing is ever pickled.

Ring vectors (masked inputs) are packed at ``ceil(bits / 8)`` bytes per
coordinate; a decoded coordinate must be below ``2^bits`` (one canonical
encoding per message).
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import WireFormatError

__all__ = [
    "BLOBS",
    "BYTES",
    "F64",
    "F64_VECTOR",
    "HEADER",
    "IDS",
    "ID_DIGESTS",
    "ID_PAIRS",
    "KEY_RUN",
    "KEY_TRIPLES",
    "MAGIC",
    "MAX_ID",
    "MAX_KEY_RUN",
    "MAX_MESSAGE_BYTES",
    "RING_VECTOR",
    "SERVER",
    "SIGNATURES",
    "SIGNED_KEYS",
    "STR",
    "U8",
    "U32",
    "U64",
    "VERSION",
    "FieldKind",
    "Fixed",
    "Header",
    "IdRecords",
    "KeyRecords",
    "Reader",
    "check_ids",
    "pack_ring",
    "read_header",
    "unpack_ring",
]

MAGIC = b"SF"
VERSION = 3  # 3: a key advertisement carries one mask key per session round
"""Bumped whenever a message's layout changes (2: the SecAgg messages after the key
advertisement carry the session id, and MaskedInput the peers whose envelopes failed).
The actively secure SecAgg messages are new types, so adding them left every existing layout, and the version, as it was."""
HEADER = struct.Struct(">2sBBIII")
SERVER = 0xFFFFFFFF
"""The id that stands for the server in ``sender``/``recipient``."""
MAX_ID = SERVER - 1
"""Client ids are integers in ``[0, MAX_ID]``."""
MAX_MESSAGE_BYTES = 1 << 31
"""Messages larger than this (2 GiB) are rejected before decoding."""


TYPES: dict[int, Any] = {}
"""Type code -> message class; filled by :func:`protocols.messages.register`."""


@dataclass(frozen=True)
class Header:
    """A message's header, read without decoding its payload (see :func:`read_header`)."""

    type_code: int
    message_class: Any
    sender: int
    recipient: int
    round: int

    @property
    def stage(self) -> str:
        """The protocol stage the message belongs to (its class's ``STAGE``)."""
        return self.message_class.STAGE


def read_header(data: bytes | bytearray | memoryview) -> Header:
    """The header of one encoded message: type, class, stage, sender, recipient, round.

    Checks what :meth:`protocols.Message.from_bytes` checks before it reads
    the payload (bytes, size limit, magic, version, a registered type) and
    raises :class:`WireFormatError` otherwise; the payload itself is not
    looked at, so a message whose header reads may still fail to decode.
    Drivers use it to route and account for messages without decoding them.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireFormatError(f"expected bytes, got {type(data).__name__}")
    if len(data) > MAX_MESSAGE_BYTES:
        raise WireFormatError("message exceeds MAX_MESSAGE_BYTES")
    if len(data) < HEADER.size:
        raise WireFormatError(
            f"truncated message: {len(data)} bytes, the header needs {HEADER.size}"
        )
    magic, version, type_code, sender, recipient, round_ = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise WireFormatError("not a secagg-fl message (bad magic)")
    if version != VERSION:
        raise WireFormatError(f"unsupported wire version {version} (this is {VERSION})")
    cls = TYPES.get(type_code)
    if cls is None:
        raise WireFormatError(f"unknown message type {type_code}")
    return Header(type_code, cls, sender, recipient, round_)


class Reader:
    """A bounds-checked cursor over received bytes."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes | bytearray | memoryview, pos: int = 0) -> None:
        self._data = memoryview(data)
        self._pos = pos

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def take(self, n: int) -> memoryview:
        if n < 0 or n > self.remaining:
            raise WireFormatError(f"truncated message: need {n} bytes, {self.remaining} left")
        view = self._data[self._pos : self._pos + n]
        self._pos += n
        return view

    def rewind(self, n: int) -> None:
        """Give back the last ``n`` bytes taken (a field that read ahead returns the rest)."""
        if not 0 <= n <= self._pos:
            raise ValueError(f"cannot rewind {n} bytes")
        self._pos -= n

    def unpack(self, fmt: struct.Struct) -> tuple:
        return fmt.unpack(self.take(fmt.size))

    def count(self, item_size: int) -> int:
        """Read a u32 element count and check that many items of ``item_size`` bytes fit."""
        (n,) = self.unpack(_U32)
        if item_size and n * item_size > self.remaining:
            raise WireFormatError(f"length field says {n} items, only {self.remaining} bytes left")
        return n

    def finish(self) -> None:
        if self.remaining:
            raise WireFormatError(f"{self.remaining} trailing bytes after the message")


_U8 = struct.Struct(">B")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_DOUBLE = struct.Struct(">d")
_PAIR_HEAD = struct.Struct(">II")


class FieldKind:
    """How one field is written and read. Subclasses are stateless singletons."""

    name = "field"

    def write(self, out: bytearray, value: object) -> None:
        raise NotImplementedError

    def read(self, reader: Reader) -> object:
        raise NotImplementedError


def _check_uint(value: object, bound: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if not 0 <= int(value) < bound:
        raise ValueError(f"{what} out of range [0, {bound}): {value}")
    return int(value)


def _as_bytes(value: object, what: str) -> bytes:
    # Only byte strings: bytes(5) would silently write five zero bytes.
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} field needs bytes, got {type(value).__name__}")
    return bytes(value)


def _as_items(value: object, what: str) -> tuple[Any, ...]:
    """The elements of a list-valued field; each kind checks the elements' types itself."""
    if isinstance(value, (str, bytes, bytearray, memoryview)) or not isinstance(value, Iterable):
        raise TypeError(f"{what} field needs a sequence, got {type(value).__name__}")
    return tuple(value)


class _UInt(FieldKind):
    def __init__(self, fmt: struct.Struct, name: str) -> None:
        self._fmt = fmt
        self._bound = 1 << (8 * fmt.size)
        self.name = name

    def write(self, out: bytearray, value: object) -> None:
        out += self._fmt.pack(_check_uint(value, self._bound, self.name))

    def read(self, reader: Reader) -> int:
        return reader.unpack(self._fmt)[0]


class _F64(FieldKind):
    name = "f64"

    def write(self, out: bytearray, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"f64 field needs a number, got {type(value).__name__}")
        number = float(value)
        if not np.isfinite(number):
            raise ValueError("non-finite float cannot go on the wire")
        out += _DOUBLE.pack(number)

    def read(self, reader: Reader) -> float:
        value = reader.unpack(_DOUBLE)[0]
        if not np.isfinite(value):
            raise WireFormatError("non-finite float on the wire")
        return value


class _Bytes(FieldKind):
    name = "bytes"

    def write(self, out: bytearray, value: object) -> None:
        data = _as_bytes(value, self.name)
        out += _U32.pack(len(data))
        out += data

    def read(self, reader: Reader) -> bytes:
        (n,) = reader.unpack(_U32)
        return bytes(reader.take(n))


class _Str(FieldKind):
    name = "str"

    def write(self, out: bytearray, value: object) -> None:
        BYTES.write(out, str(value).encode("utf-8"))

    def read(self, reader: Reader) -> str:
        try:
            return BYTES.read(reader).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WireFormatError("invalid UTF-8 string") from exc


class Fixed(FieldKind):
    """Exactly ``size`` bytes (keys, nonces, digests)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.name = f"bytes[{size}]"

    def write(self, out: bytearray, value: object) -> None:
        data = _as_bytes(value, self.name)
        if len(data) != self.size:
            raise ValueError(f"{self.name} field got {len(data)} bytes")
        out += data

    def read(self, reader: Reader) -> bytes:
        return bytes(reader.take(self.size))


_BOOL_TYPES = frozenset({bool, np.bool_})


class _Ids(FieldKind):
    """A tuple of client ids (u32 each), strictly increasing: sorted and without duplicates."""

    name = "ids"

    def write(self, out: bytearray, value: object) -> None:
        ids = list(_as_items(value, self.name))
        # Vectorized checks: RoundStart carries every invited id to every client.
        try:
            arr = np.asarray(ids) if ids else np.zeros(0, np.int64)
        except OverflowError as exc:
            raise ValueError(f"client id out of range [0, {MAX_ID}]") from exc
        # np.asarray turns bools into ints, so look at the element types (one C-level pass).
        if (
            arr.ndim != 1
            or arr.dtype.kind not in "iu"
            or not _BOOL_TYPES.isdisjoint(map(type, ids))
        ):
            if arr.dtype == object and all(type(v) is int for v in ids):
                raise ValueError(f"client id out of range [0, {MAX_ID}]")
            raise TypeError("client ids must be ints")
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > MAX_ID):
            raise ValueError(f"client id out of range [0, {MAX_ID}]")
        if arr.size > 1 and not np.all(arr[1:] > arr[:-1]):
            raise ValueError("id lists on the wire must be sorted and unique")
        out += _U32.pack(arr.size)
        out += arr.astype(">u4").tobytes()

    def read(self, reader: Reader) -> tuple[int, ...]:
        n = reader.count(4)
        ids = np.frombuffer(reader.take(4 * n), dtype=">u4")
        if n > 1 and not np.all(ids[1:] > ids[:-1]):
            raise WireFormatError("id list is not sorted and unique")
        if n and int(ids.max()) > MAX_ID:
            raise WireFormatError("id out of range")
        return tuple(ids.tolist())


class _IdPairs(FieldKind):
    """``(id, bytes)`` pairs with unique, increasing ids (share envelopes, shares)."""

    name = "id_pairs"

    def write(self, out: bytearray, value: object) -> None:
        pairs = _as_items(value, self.name)
        IDS.write(bytearray(), [p[0] for p in pairs])  # validates order and range
        out += _U32.pack(len(pairs))
        for cid, data in pairs:
            out += _U32.pack(cid)
            BYTES.write(out, data)

    def read(self, reader: Reader) -> tuple[tuple[int, bytes], ...]:
        n = reader.count(8)
        # One pass over the remaining bytes with unpack_from (share lists are
        # long and on every client's hot path), checking every bound by hand.
        view = reader.take(reader.remaining)
        end, pos, last = len(view), 0, -1
        pairs: list[tuple[int, bytes]] = []
        for _ in range(n):
            if end - pos < 8:
                raise WireFormatError("truncated message: an id pair is cut short")
            cid, size = _PAIR_HEAD.unpack_from(view, pos)
            pos += 8
            if cid <= last or cid > MAX_ID:
                raise WireFormatError("pair ids are not sorted, unique and in range")
            if size > end - pos:
                raise WireFormatError(f"truncated message: need {size} bytes, {end - pos} left")
            pairs.append((cid, bytes(view[pos : pos + size])))
            pos += size
            last = cid
        reader.rewind(end - pos)
        return tuple(pairs)


#: The most mask keys one advertisement may carry: one per round of a multi-round
#: session (protocols.secagg.config.SecAgg.rounds), checked by the decoder.
MAX_KEY_RUN = 1024


def _check_key_run(data: bytes, what: str) -> int:
    """The number of 32-byte keys in ``data`` (ValueError unless 1..MAX_KEY_RUN of them)."""
    count, rest = divmod(len(data), 32)
    if rest or not 1 <= count <= MAX_KEY_RUN:
        raise ValueError(f"{what} needs 1 to {MAX_KEY_RUN} 32-byte keys, got {len(data)} bytes")
    return count


class _KeyRun(FieldKind):
    """One or more 32-byte public keys back to back (a client's mask key per session round)."""

    name = "key_run"

    def write(self, out: bytearray, value: object) -> None:
        data = _as_bytes(value, self.name)
        out += _U32.pack(_check_key_run(data, self.name))
        out += data

    def read(self, reader: Reader) -> bytes:
        (count,) = reader.unpack(_U32)
        if not 1 <= count <= MAX_KEY_RUN:
            raise WireFormatError(f"a key run of {count} keys (1 to {MAX_KEY_RUN} allowed)")
        return bytes(reader.take(32 * count))


class KeyRecords(FieldKind):
    """``(id, channel key, key run, bytes[a_1], ...)`` records with strictly increasing ids,
    every record's key run of the same length (written once, after the count)."""

    def __init__(self, *after: int) -> None:
        self.after = after
        self.name = "key_records[" + ",".join(map(str, after)) + "]"

    def _item(self, run: int) -> struct.Struct:
        return struct.Struct(f">I32s{32 * run}s" + "".join(f"{size}s" for size in self.after))

    def write(self, out: bytearray, value: object) -> None:
        records = _as_items(value, self.name)
        runs = set()
        for record in records:
            if not isinstance(record, tuple) or len(record) != 3 + len(self.after):
                raise TypeError(f"{self.name} entries are tuples of {3 + len(self.after)}")
            sizes = (32, None, *self.after)
            for data, size in zip(record[1:], sizes, strict=True):
                data = _as_bytes(data, self.name)
                if size is None:
                    runs.add(_check_key_run(data, self.name))
                elif len(data) != size:
                    raise ValueError(f"{self.name} field got {len(data)} bytes, needs {size}")
        if len(runs) > 1:
            raise ValueError(f"{self.name} records carry key runs of different lengths")
        run = runs.pop() if runs else 1
        IDS.write(bytearray(), [r[0] for r in records])  # validates order and range
        out += _U32.pack(len(records))
        out += _U32.pack(run)
        item = self._item(run)
        for record in records:
            out += item.pack(*record)

    def read(self, reader: Reader) -> tuple[tuple[Any, ...], ...]:
        (n,) = reader.unpack(_U32)
        (run,) = reader.unpack(_U32)
        if not 1 <= run <= MAX_KEY_RUN:
            raise WireFormatError(f"a key run of {run} keys (1 to {MAX_KEY_RUN} allowed)")
        item = self._item(run)
        if n * item.size > reader.remaining:
            raise WireFormatError(f"length field says {n} items, only {reader.remaining} bytes left")
        records = tuple(item.iter_unpack(reader.take(n * item.size)))
        ids = [r[0] for r in records]
        if any(a >= b for a, b in itertools.pairwise(ids)) or (ids and max(ids) > MAX_ID):
            raise WireFormatError(f"{self.name} ids are not sorted, unique and in range")
        return records


class IdRecords(FieldKind):
    """``(id, bytes[s_1], ..., bytes[s_k])`` records of fixed sizes, strictly increasing ids
    (signatures, commitments, signed key advertisements)."""

    def __init__(self, *sizes: int) -> None:
        self.sizes = sizes
        self._item = struct.Struct(">I" + "".join(f"{size}s" for size in sizes))
        self.name = "id_records[" + ",".join(map(str, sizes)) + "]"

    def write(self, out: bytearray, value: object) -> None:
        records = _as_items(value, self.name)
        for record in records:
            if not isinstance(record, tuple) or len(record) != 1 + len(self.sizes):
                raise TypeError(f"{self.name} entries are tuples of {1 + len(self.sizes)}")
            for data, size in zip(record[1:], self.sizes, strict=True):
                if len(_as_bytes(data, self.name)) != size:
                    raise ValueError(f"{self.name} field got {len(data)} bytes, needs {size}")
        IDS.write(bytearray(), [r[0] for r in records])  # validates order and range
        out += _U32.pack(len(records))
        for record in records:
            out += self._item.pack(*record)

    def read(self, reader: Reader) -> tuple[tuple[Any, ...], ...]:
        n = reader.count(self._item.size)
        records = tuple(self._item.iter_unpack(reader.take(n * self._item.size)))
        ids = [r[0] for r in records]
        if any(a >= b for a, b in itertools.pairwise(ids)) or (ids and max(ids) > MAX_ID):
            raise WireFormatError(f"{self.name} ids are not sorted, unique and in range")
        return records


class _Blobs(FieldKind):
    """A tuple of byte strings (ciphertexts)."""

    name = "blobs"

    def write(self, out: bytearray, value: object) -> None:
        blobs = _as_items(value, self.name)
        out += _U32.pack(len(blobs))
        for blob in blobs:
            BYTES.write(out, blob)

    def read(self, reader: Reader) -> tuple[bytes, ...]:
        n = reader.count(4)
        return tuple(BYTES.read(reader) for _ in range(n))


def pack_ring(values: np.ndarray, bits: int) -> bytes:
    """Pack residues ``< 2^bits`` at ``ceil(bits/8)`` little-endian bytes each."""
    arr = np.ascontiguousarray(values, dtype=np.uint64)
    width = (bits + 7) // 8
    if width in (1, 2, 4, 8):
        return arr.astype(f"<u{width}").tobytes()
    return arr.astype("<u8").view(np.uint8).reshape(-1, 8)[:, :width].tobytes()


def unpack_ring(data: bytes | memoryview, count: int, bits: int) -> np.ndarray:
    """Inverse of :func:`pack_ring`; rejects values that do not fit in ``bits``."""
    width = (bits + 7) // 8
    if len(data) != count * width:
        raise WireFormatError("ring vector length does not match its count")
    if width in (1, 2, 4, 8):
        arr = np.frombuffer(data, dtype=f"<u{width}").astype(np.uint64)
    else:
        padded = np.zeros((count, 8), dtype=np.uint8)
        padded[:, :width] = np.frombuffer(data, dtype=np.uint8).reshape(count, width)
        arr = padded.view("<u8").reshape(count).astype(np.uint64)
    if bits < 64 and count and int(arr.max()) >> bits:
        raise WireFormatError(f"ring vector entry does not fit in {bits} bits")
    return arr


@dataclass(frozen=True)
class RingVector:
    """A vector in Z_{2^bits} as carried on the wire."""

    bits: int
    values: np.ndarray


class _RingVectorKind(FieldKind):
    name = "ring_vector"

    def write(self, out: bytearray, value: object) -> None:
        if not isinstance(value, RingVector):
            raise TypeError("ring vector fields take a RingVector")
        if not 1 <= value.bits <= 64:
            raise ValueError("bits out of range")
        values = np.asarray(value.values)
        if values.dtype != np.uint64:
            raise TypeError(f"ring vector values must be uint64, got {values.dtype}")
        if value.bits < 64 and values.size and int(values.max()) >> value.bits:
            raise ValueError(f"ring vector entry does not fit in {value.bits} bits")
        out += _U8.pack(value.bits)
        out += _U32.pack(len(values))
        out += pack_ring(values, value.bits)

    def read(self, reader: Reader) -> RingVector:
        (bits,) = reader.unpack(_U8)
        if not 1 <= bits <= 64:
            raise WireFormatError(f"ring vector bits out of range: {bits}")
        n = reader.count((bits + 7) // 8)
        return RingVector(bits, unpack_ring(reader.take(n * ((bits + 7) // 8)), n, bits))


class _F64Vector(FieldKind):
    name = "f64_vector"

    def write(self, out: bytearray, value: object) -> None:
        arr = np.ascontiguousarray(value, dtype="<f8")
        if arr.ndim != 1:
            raise ValueError(f"float vectors must be 1-D, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError("non-finite value in a float vector")
        out += _U32.pack(arr.size)
        out += arr.tobytes()

    def read(self, reader: Reader) -> np.ndarray:
        n = reader.count(8)
        arr = np.frombuffer(reader.take(8 * n), dtype="<f8").astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise WireFormatError("non-finite value in a float vector")
        return arr


U8 = _UInt(_U8, "u8")
U32 = _UInt(_U32, "u32")
U64 = _UInt(_U64, "u64")
F64 = _F64()
BYTES = _Bytes()
STR = _Str()
IDS = _Ids()
ID_PAIRS = _IdPairs()
KEY_TRIPLES = KeyRecords()
"""``(id, channel key, mask keys)``: an advertisement, relayed (one mask key per session round)."""
#: One or more 32-byte keys (a client's mask keys, one per session round).
KEY_RUN = _KeyRun()
BLOBS = _Blobs()
SIGNATURES = IdRecords(64)
"""``(signer id, 64-byte Ed25519 signature)`` pairs."""
ID_DIGESTS = IdRecords(32)
"""``(id, 32 bytes)`` pairs: commitments and revealed randomness."""
SIGNED_KEYS = KeyRecords(32, 64)
"""``(id, channel key, mask keys, commitment, signature)``: a signed key advertisement, relayed."""
RING_VECTOR = _RingVectorKind()
F64_VECTOR = _F64Vector()


def check_ids(ids: Sequence[object], what: str = "client ids") -> tuple[int, ...]:
    """Validate a collection of client ids (of any type: each is checked); return them sorted."""
    out = []
    for cid in ids:
        if isinstance(cid, bool) or not isinstance(cid, (int, np.integer)):
            raise TypeError(f"{what} must be ints, got {type(cid).__name__}")
        if not 0 <= int(cid) <= MAX_ID:
            raise ValueError(f"{what} must be in [0, {MAX_ID}], got {cid}")
        out.append(int(cid))
    if len(set(out)) != len(out):
        raise ValueError(f"{what} contain duplicates")
    return tuple(sorted(out))
