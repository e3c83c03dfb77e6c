"""Snapshots of client sessions: persist a session between messages, never pickle.

Why: a driver may not be able to keep a session object alive between two
messages of a round. Flower, for one, keeps a ClientApp's state only in
``context.state`` records, and a ClientApp may run in a different process for
each message. ``session.snapshot()`` turns a client session into bytes and
``proto.restore_client(data)`` turns them back into a session that continues
the round exactly where the original stood::

    data = client.snapshot()                 # bytes; store them with the node
    client = proto.restore_client(data)      # later, maybe in another process
    client.receive(next_message)

**A snapshot holds the client's secrets** (X25519 private keys, Shamir shares
of its own and its peers' masks, the Paillier or CKKS secret key of a
decryptor). It must stay on the client: Flower's node state does (it never
leaves the SuperNode). To store it anywhere else, pass ``key=`` (32 bytes):
the snapshot is then encrypted and authenticated with AES-256-GCM
(:mod:`secagg.aead`), and the same key is needed to restore it.

**Never restore a snapshot twice.** Each snapshot is a point of no return:
after the session has answered the next message, the old snapshot must be
replaced, never restored again. A session rolled back to an earlier snapshot
could answer a stage twice, e.g. two different unmasking requests, which
would reveal both shares of a peer; a client cannot detect a rollback of its
own storage, so the driver must not perform one.

**Randomness.** A snapshot stores no random generator. The restored session
draws from the ``rng`` given to :meth:`~protocols.AggregationProtocol.restore_client`
(default: the OS CSPRNG), so it continues with fresh randomness. That is
sound because every random value already drawn (keys, seeds, shares, nonces)
is part of the stored state; only future draws (stochastic rounding, the
encryption randomness of an input not yet sent) come from the new source.

Errors: restoring raises :class:`~protocols.errors.SnapshotError` (a
:class:`~protocols.errors.LocalProtocolError`: the bytes come from the
caller's own storage, not from a peer) for anything that is not a valid
snapshot of this protocol configuration: truncated, oversized, trailing or
corrupted bytes (plain snapshots carry a SHA-256 checksum), a wrong key, a
wrong version, unknown tags or classes, or a snapshot made by another
configuration, client class or dimension.

Format (version 1; integers big-endian unless stated)::

    magic "SFSN" (4) | version (1) | mode (1) | body
    mode 0, plain:     body = payload || SHA-256(magic | version | mode | payload)
    mode 1, AES-GCM:   body = nonce (12) || ciphertext || tag (16) of payload,
                       associated data = magic | version | mode

The payload is one tagged value (:func:`dumps`): a dict naming the protocol,
its config digest (which covers the dimension), the client id, the round,
the session class, and the session's fields. Tags (one byte each):

    0x00 None   0x01 False   0x02 True
    0x03 int    sign (1: 0 or 1) | length (u32) | magnitude, minimal big-endian
    0x04 float  IEEE-754 binary64
    0x05 str    length (u32) | UTF-8        0x06 bytes  length (u32) | raw
    0x07 tuple, 0x08 list: count (u32) | items
    0x0A frozenset  count (u32) | items, sorted by their encoding (canonical)
    0x09 dict   count (u32) | key, value pairs (in insertion order)
    0x0B ndarray  dtype code (1) | ndim (1) | dims (u64 each) | raw little-endian
    0x0C enum member  class name (str) | member name (str)
    0x0D dataclass    class name (str) | count (u32) | (field name (str), value) pairs
    0x0E X25519 key pair: the 32 private-key bytes
    0x0F Paillier public key: n (int)    0x10 Paillier private key: p, q (ints)
    0x11 CKKS public context, 0x12 CKKS secret context: TenSEAL serialization
    0x13 protocol message: its wire bytes (:mod:`protocols.wire`)

Enums and dataclasses decode only from a closed registry: session modules
register their state classes with :func:`state` (``@snapshot.state``), and
the decoder rebuilds an object only if its class name is registered and its
field names are exactly the class's fields.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import math
import struct
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import tenseal as ts

from secagg import aead, ckks, keys
from secagg import paillier as pl
from secagg.encoding import FixedPointEncoder
from secagg.errors import DecryptionError

from . import wire
from .errors import SnapshotError, WireFormatError
from .messages import Message

__all__ = [
    "KEY_BYTES",
    "MAGIC",
    "MAX_DEPTH",
    "MAX_SNAPSHOT_BYTES",
    "VERSION",
    "dump_client",
    "dumps",
    "load_client",
    "loads",
    "registered_classes",
    "state",
]

MAGIC = b"SFSN"
VERSION = 1
KEY_BYTES = aead.KEY_BYTES
"""Length of the optional snapshot encryption key (AES-256)."""
MAX_SNAPSHOT_BYTES = 1 << 31
"""Snapshots larger than this (2 GiB) are rejected before decoding."""
MAX_DEPTH = 32
"""Nesting limit of the decoder (a bound on recursion, far above what sessions use)."""

_PLAIN, _ENCRYPTED = 0, 1
_HEADER = struct.Struct(">4sBB")
_DIGEST_BYTES = hashlib.sha256().digest_size
_U8 = struct.Struct(">B")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_F64 = struct.Struct(">d")

# Tags of the value codec.
_NONE, _FALSE, _TRUE, _INT, _FLOAT, _STR, _BYTES = range(7)
_TUPLE, _LIST, _DICT, _FROZENSET, _NDARRAY, _ENUM, _DATACLASS = range(7, 14)
_KEYPAIR, _PAILLIER_PUBLIC, _PAILLIER_PRIVATE, _CKKS_PUBLIC, _CKKS_SECRET, _MESSAGE = range(14, 20)

# numpy dtypes a snapshot may hold (a closed list: no object arrays, ever).
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.bool_),
    2: np.dtype(np.int8),
    3: np.dtype(np.int16),
    4: np.dtype(np.int32),
    5: np.dtype(np.int64),
    6: np.dtype(np.uint8),
    7: np.dtype(np.uint16),
    8: np.dtype(np.uint32),
    9: np.dtype(np.uint64),
    10: np.dtype(np.float32),
    11: np.dtype(np.float64),
}
_DTYPE_CODES = {dt: code for code, dt in _DTYPES.items()}
_MAX_NDIM = 32


# -- the closed registry of state classes ------------------------------------------

_CLASSES: dict[str, type] = {}
_NAMES: dict[type, str] = {}
T = TypeVar("T", bound=type)


def _register(cls: type, name: str) -> None:
    if name in _CLASSES or cls in _NAMES:
        raise RuntimeError(f"snapshot class {name!r} registered twice")
    if issubclass(cls, enum.Enum):
        pass
    elif dataclasses.is_dataclass(cls):
        if any(not f.init for f in dataclasses.fields(cls)):
            # The decoder rebuilds objects through __init__; a non-init field would be lost.
            raise RuntimeError(f"{cls.__qualname__}: every field must be an __init__ field")
    else:
        raise RuntimeError(f"{cls.__qualname__}: only dataclasses and enums can be registered")
    _CLASSES[name] = cls
    _NAMES[cls] = name


def state(cls: T | None = None, *, name: str | None = None) -> Any:
    """Class decorator: allow a dataclass or enum in snapshots.

    ``@snapshot.state`` registers the class under ``module:qualname``;
    ``@snapshot.state(name="...")`` under an explicit, stable name. Only
    registered classes are ever rebuilt from a snapshot.
    """

    def decorate(c: T) -> T:
        _register(c, name or f"{c.__module__}:{c.__qualname__}")
        return c

    return decorate if cls is None else decorate(cls)


def registered_classes() -> dict[str, type]:
    """Every class a snapshot may contain, by registered name (for tests and docs)."""
    return dict(_CLASSES)


_register(FixedPointEncoder, "secagg.encoding:FixedPointEncoder")


# -- encoding ---------------------------------------------------------------------


def _write_int(out: bytearray, value: int) -> None:
    magnitude = abs(value)
    body = magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "big")
    out += _U8.pack(1 if value < 0 else 0)
    out += _U32.pack(len(body))
    out += body


def _write_bytes(out: bytearray, data: bytes) -> None:
    out += _U32.pack(len(data))
    out += data


def _write_str(out: bytearray, text: str) -> None:
    _write_bytes(out, text.encode("utf-8"))


def _write(out: bytearray, value: object, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"value nested deeper than {MAX_DEPTH} levels")
    # Order matters: bool before int, the special codecs before generic dataclasses.
    if value is None:
        out += _U8.pack(_NONE)
    elif isinstance(value, (bool, np.bool_)):
        out += _U8.pack(_TRUE if value else _FALSE)
    elif isinstance(value, (int, np.integer)):
        out += _U8.pack(_INT)
        _write_int(out, int(value))
    elif isinstance(value, (float, np.floating)):
        out += _U8.pack(_FLOAT)
        out += _F64.pack(float(value))
    elif isinstance(value, str):
        out += _U8.pack(_STR)
        _write_str(out, value)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        out += _U8.pack(_BYTES)
        _write_bytes(out, bytes(value))
    elif isinstance(value, (tuple, list)):
        out += _U8.pack(_TUPLE if isinstance(value, tuple) else _LIST)
        out += _U32.pack(len(value))
        for item in value:
            _write(out, item, depth + 1)
    elif isinstance(value, frozenset):
        # A set's iteration order depends on its history: sort the encoded items so
        # equal sets give equal bytes (and a restored session snapshots identically).
        items = []
        for item in value:
            buf = bytearray()
            _write(buf, item, depth + 1)
            items.append(bytes(buf))
        out += _U8.pack(_FROZENSET)
        out += _U32.pack(len(items))
        for item in sorted(items):
            out += item
    elif isinstance(value, dict):
        out += _U8.pack(_DICT)
        out += _U32.pack(len(value))
        for k, v in value.items():
            _write(out, k, depth + 1)
            _write(out, v, depth + 1)
    elif isinstance(value, np.ndarray):
        code = _DTYPE_CODES.get(value.dtype.newbyteorder("="))  # any byte order of an allowed dtype
        if code is None:
            raise TypeError(f"snapshots do not hold arrays of dtype {value.dtype}")
        if value.ndim > _MAX_NDIM:
            raise ValueError(f"array has {value.ndim} dimensions (at most {_MAX_NDIM})")
        out += _U8.pack(_NDARRAY)
        out += _U8.pack(code)
        out += _U8.pack(value.ndim)
        for n in value.shape:
            out += _U64.pack(n)
        out += np.ascontiguousarray(value, dtype=_DTYPES[code].newbyteorder("<")).tobytes()
    elif isinstance(value, enum.Enum):
        name = _NAMES.get(type(value))
        if name is None:
            raise TypeError(f"enum {type(value).__qualname__} is not registered for snapshots")
        out += _U8.pack(_ENUM)
        _write_str(out, name)
        _write_str(out, value.name)
    elif isinstance(value, keys.KeyPair):
        out += _U8.pack(_KEYPAIR)
        out += value.private_bytes()
    elif isinstance(value, pl.PaillierPublicKey):
        out += _U8.pack(_PAILLIER_PUBLIC)
        _write_int(out, value.n)
    elif isinstance(value, pl.PaillierPrivateKey):
        # phe's key exposes the factors publicly; ours keeps them in private slots.
        phe_key = value.to_phe()
        out += _U8.pack(_PAILLIER_PRIVATE)
        _write_int(out, int(phe_key.p))
        _write_int(out, int(phe_key.q))
    elif isinstance(value, ts.Context):
        secret = value.is_private()
        out += _U8.pack(_CKKS_SECRET if secret else _CKKS_PUBLIC)
        _write_bytes(
            out, ckks.export_secret_context(value) if secret else ckks.export_public_context(value)
        )
    elif isinstance(value, Message):
        out += _U8.pack(_MESSAGE)
        _write_bytes(out, value.to_bytes())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = _NAMES.get(type(value))
        if name is None:
            raise TypeError(f"class {type(value).__qualname__} is not registered for snapshots")
        fields = dataclasses.fields(value)
        out += _U8.pack(_DATACLASS)
        _write_str(out, name)
        out += _U32.pack(len(fields))
        for f in fields:
            _write_str(out, f.name)
            _write(out, getattr(value, f.name), depth + 1)
    else:
        raise TypeError(f"snapshots cannot hold a {type(value).__qualname__}")


def dumps(value: object) -> bytes:
    """Encode one value with the tagged codec (no envelope, no checksum).

    Raises TypeError for a type the codec does not hold (a programming error:
    register the class, or keep it out of session state).
    """
    out = bytearray()
    _write(out, value, 0)
    return bytes(out)


# -- decoding ---------------------------------------------------------------------


class _Reader(wire.Reader):
    """wire.Reader, but every failure is a SnapshotError."""

    def take(self, n: int) -> memoryview:
        try:
            return super().take(n)
        except WireFormatError as exc:
            raise SnapshotError(f"truncated snapshot: {exc}") from None

    def count(self, item_size: int) -> int:
        (n,) = self.unpack(_U32)
        if n * max(item_size, 1) > self.remaining:
            raise SnapshotError(f"length field says {n} items, only {self.remaining} bytes left")
        return n


def _read_int(r: _Reader) -> int:
    (sign,) = r.unpack(_U8)
    (n,) = r.unpack(_U32)
    body = bytes(r.take(n))
    if sign > 1 or (n and body[0] == 0) or (sign and not n):
        raise SnapshotError("non-canonical integer encoding")
    value = int.from_bytes(body, "big")
    return -value if sign else value


def _read_bytes(r: _Reader) -> bytes:
    (n,) = r.unpack(_U32)
    return bytes(r.take(n))


def _read_str(r: _Reader) -> str:
    try:
        return _read_bytes(r).decode("utf-8")
    except UnicodeDecodeError:
        raise SnapshotError("invalid UTF-8 string in snapshot") from None


def _hashable(value: object) -> object:
    try:
        hash(value)
    except TypeError:
        raise SnapshotError(
            f"unhashable {type(value).__name__} as a dict key or set item"
        ) from None
    return value


def _rebuild(what: str, build: Callable[[], object]) -> object:
    """Run a constructor on decoded values; its validation errors become SnapshotErrors."""
    try:
        return build()
    except SnapshotError:
        raise
    except (ValueError, TypeError, OverflowError, WireFormatError) as exc:
        raise SnapshotError(f"invalid {what} in snapshot: {exc}") from None


def _read(r: _Reader, depth: int) -> object:
    if depth > MAX_DEPTH:
        raise SnapshotError(f"snapshot nested deeper than {MAX_DEPTH} levels")
    (tag,) = r.unpack(_U8)
    if tag == _NONE:
        return None
    if tag in (_FALSE, _TRUE):
        return tag == _TRUE
    if tag == _INT:
        return _read_int(r)
    if tag == _FLOAT:
        return r.unpack(_F64)[0]
    if tag == _STR:
        return _read_str(r)
    if tag == _BYTES:
        return _read_bytes(r)
    if tag in (_TUPLE, _LIST, _FROZENSET):
        n = r.count(1)  # every item takes at least its tag byte
        items = [_read(r, depth + 1) for _ in range(n)]
        if tag == _TUPLE:
            return tuple(items)
        if tag == _LIST:
            return items
        result = frozenset(_hashable(v) for v in items)
        if len(result) != n:
            raise SnapshotError("duplicate item in a frozenset")
        return result
    if tag == _DICT:
        n = r.count(2)
        out: dict = {}
        for _ in range(n):
            k = _hashable(_read(r, depth + 1))
            if k in out:
                raise SnapshotError(f"duplicate dict key {k!r}")
            out[k] = _read(r, depth + 1)
        return out
    if tag == _NDARRAY:
        return _read_array(r)
    if tag == _ENUM:
        cls = _registered(_read_str(r), enum.Enum)
        member = _read_str(r)
        try:
            return cls[member]  # type: ignore[index]
        except KeyError:
            raise SnapshotError(f"{cls.__qualname__} has no member {member!r}") from None
    if tag == _DATACLASS:
        return _read_dataclass(r, depth)
    if tag == _KEYPAIR:
        data = bytes(r.take(keys.KEY_BYTES))
        return _rebuild("X25519 key", lambda: keys.KeyPair.from_private_bytes(data))
    if tag == _PAILLIER_PUBLIC:
        n = _read_int(r)

        def public_key() -> pl.PaillierPublicKey:
            if n <= 1:
                raise ValueError("modulus must be positive")
            return pl.PaillierPublicKey(n)

        return _rebuild("Paillier public key", public_key)
    if tag == _PAILLIER_PRIVATE:
        p, q = _read_int(r), _read_int(r)

        def private_key() -> pl.PaillierPrivateKey:
            if not (1 < p and 1 < q):
                raise ValueError("factors must be > 1")
            return pl.PaillierPrivateKey(pl.PaillierPublicKey(p * q), p, q)

        return _rebuild("Paillier private key", private_key)
    if tag in (_CKKS_PUBLIC, _CKKS_SECRET):
        data = _read_bytes(r)
        load = ckks.load_secret_context if tag == _CKKS_SECRET else ckks.load_public_context
        return _rebuild("CKKS context", lambda: load(data))
    if tag == _MESSAGE:
        data = _read_bytes(r)
        return _rebuild("protocol message", lambda: Message.from_bytes(data))
    raise SnapshotError(f"unknown snapshot tag 0x{tag:02x}")


def _read_array(r: _Reader) -> np.ndarray:
    (code,) = r.unpack(_U8)
    dtype = _DTYPES.get(code)
    if dtype is None:
        raise SnapshotError(f"array dtype code {code} is not allowed")
    (ndim,) = r.unpack(_U8)
    if ndim > _MAX_NDIM:
        raise SnapshotError(f"array has {ndim} dimensions (at most {_MAX_NDIM})")
    shape = tuple(r.unpack(_U64)[0] for _ in range(ndim))
    nbytes = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if nbytes > r.remaining:
        raise SnapshotError(f"array of shape {shape} needs {nbytes} bytes, {r.remaining} left")
    raw = r.take(nbytes)
    if dtype == np.bool_ and nbytes and max(raw) > 1:
        raise SnapshotError("boolean array holds a byte other than 0 or 1")
    # A zero-size array may still name absurd dimensions; numpy refuses those.
    return _rebuild(  # type: ignore[return-value]
        "array",
        lambda: np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape),
    )


def _registered(name: str, kind: type) -> type:
    cls = _CLASSES.get(name)
    if cls is None:
        raise SnapshotError(f"class {name!r} is not registered for snapshots")
    if kind is enum.Enum and not issubclass(cls, enum.Enum):
        raise SnapshotError(f"{name!r} is not an enum")
    if kind is not enum.Enum and issubclass(cls, enum.Enum):
        raise SnapshotError(f"{name!r} is an enum, not a dataclass")
    return cls


def _read_dataclass(r: _Reader, depth: int) -> object:
    cls = _registered(_read_str(r), object)
    n = r.count(5)  # a name length (4) and a tag (1) at least
    values: dict[str, object] = {}
    for _ in range(n):
        name = _read_str(r)
        if name in values:
            raise SnapshotError(f"{cls.__qualname__}: field {name!r} repeated")
        values[name] = _read(r, depth + 1)
    expected = [f.name for f in dataclasses.fields(cls)]
    if sorted(values) != sorted(expected):
        raise SnapshotError(
            f"{cls.__qualname__}: snapshot has fields {sorted(values)}, the class has {sorted(expected)}"
        )
    return _rebuild(cls.__qualname__, lambda: cls(**values))


def loads(data: bytes | bytearray | memoryview) -> object:
    """Decode one value made by :func:`dumps`; raise SnapshotError on any malformed input."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SnapshotError(f"a snapshot is bytes, got {type(data).__name__}")
    r = _Reader(data)
    try:
        value = _read(r, 0)
    except RecursionError:
        raise SnapshotError("snapshot nested too deeply") from None
    if r.remaining:
        raise SnapshotError(f"{r.remaining} trailing bytes after the snapshot value")
    return value


# -- the envelope: version, checksum or AES-GCM --------------------------------------


def _check_key(key: object) -> bytes:
    if not isinstance(key, (bytes, bytearray, memoryview)) or len(key) != KEY_BYTES:
        raise ValueError(f"snapshot key must be {KEY_BYTES} bytes")
    return bytes(key)


def seal(payload: bytes, key: bytes | None = None) -> bytes:
    """Wrap an encoded payload: a SHA-256 checksum, or AES-256-GCM under ``key``."""
    if key is None:
        header = _HEADER.pack(MAGIC, VERSION, _PLAIN)
        return header + payload + hashlib.sha256(header + payload).digest()
    header = _HEADER.pack(MAGIC, VERSION, _ENCRYPTED)
    return header + aead.encrypt(_check_key(key), payload, associated_data=header)


def unseal(data: bytes | bytearray | memoryview, key: bytes | None = None) -> bytes:
    """Check a snapshot's envelope and return its payload (SnapshotError if it is not valid)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SnapshotError(f"a snapshot is bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_SNAPSHOT_BYTES:
        raise SnapshotError("snapshot exceeds MAX_SNAPSHOT_BYTES")
    if len(data) < _HEADER.size:
        raise SnapshotError(f"truncated snapshot: {len(data)} bytes")
    magic, version, mode = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise SnapshotError("not a secagg-fl session snapshot (bad magic)")
    if version != VERSION:
        raise SnapshotError(f"unsupported snapshot version {version} (this is {VERSION})")
    header, body = data[: _HEADER.size], data[_HEADER.size :]
    if mode == _PLAIN:
        if key is not None:
            # The caller expects an encrypted snapshot: a plain one means it was swapped.
            raise SnapshotError("snapshot is not encrypted, but a key was given")
        if len(body) < _DIGEST_BYTES:
            raise SnapshotError("truncated snapshot: no checksum")
        payload, digest = body[:-_DIGEST_BYTES], body[-_DIGEST_BYTES:]
        if hashlib.sha256(header + payload).digest() != digest:
            raise SnapshotError("snapshot checksum mismatch (corrupted or truncated)")
        return payload
    if mode == _ENCRYPTED:
        if key is None:
            raise SnapshotError("snapshot is encrypted: pass its key")
        try:
            return aead.decrypt(_check_key(key), body, associated_data=header)
        except DecryptionError:
            raise SnapshotError("snapshot does not decrypt: wrong key or modified bytes") from None
    raise SnapshotError(f"unknown snapshot mode {mode}")


# -- client sessions -----------------------------------------------------------------

_RECORD_KEYS = ("protocol", "digest", "session", "client_id", "dim", "round", "fields")


def dump_client(session: Any, *, key: bytes | None = None) -> bytes:
    """Snapshot a client session (what ``session.snapshot()`` calls).

    The session provides ``proto``, ``party_id``, ``dim``, ``round`` and
    ``_snapshot_fields()`` (its state object and the attributes that change
    during a round).
    """
    proto = session.proto
    record = {
        "protocol": proto.NAME,
        "digest": proto.config_digest(session.dim),
        "session": type(session).__qualname__,
        "client_id": session.party_id,
        "dim": session.dim,
        "round": session.round,
        "fields": session._snapshot_fields(),
    }
    return seal(dumps(record), key)


def load_client(proto: Any, data: bytes, *, rng=None, key: bytes | None = None) -> Any:
    """Restore a client session of ``proto`` (what ``proto.restore_client()`` calls).

    Builds a fresh session with ``proto.client(...)`` (so everything derived
    from the configuration is recomputed, not trusted from the bytes) and then
    puts the stored state into it.
    """
    record = loads(unseal(data, key))
    if not isinstance(record, dict) or sorted(record) != sorted(_RECORD_KEYS):
        raise SnapshotError("snapshot does not hold a client session record")
    name, dim, cid, round_ = record["protocol"], record["dim"], record["client_id"], record["round"]
    if not isinstance(name, str) or not isinstance(record["digest"], bytes):
        raise SnapshotError("snapshot header has the wrong types")
    limits = (
        ("dim", dim, 1 << 63),
        ("client id", cid, wire.MAX_ID + 1),
        ("round", round_, 1 << 32),
    )
    for what, value, bound in limits:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < bound:
            raise SnapshotError(f"snapshot {what} out of range: {value!r}")
    if name != proto.NAME:
        raise SnapshotError(f"snapshot of a {name!r} session, this protocol is {proto.NAME!r}")
    if dim < 1 or record["digest"] != proto.config_digest(dim):
        raise SnapshotError("snapshot was made under another protocol configuration")
    session = _rebuild("session", lambda: proto.client(cid, dim, rng=rng, round=round_))
    if type(session).__qualname__ != record["session"]:
        raise SnapshotError(
            f"snapshot of a {record['session']!r}, this protocol makes {type(session).__qualname__!r}"
        )
    fields = record["fields"]
    if not isinstance(fields, dict):
        raise SnapshotError("snapshot fields are not a dict")
    session._restore_fields(fields)
    return session
