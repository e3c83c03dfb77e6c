"""The tagged-value codec of session snapshots: generic tags and an open registry.

:mod:`protocols.snapshot` stores a client session as one tagged value (this
module) inside an envelope (version, checksum or AES-GCM). The codec itself
knows only generic values; each scheme registers the values it adds (its keys,
contexts, messages) from its own module, where it defines or first uses them,
so the codec never imports a scheme's dependencies (phe, gmpy2, tenseal)::

    codec.register_codec(KeyPair, 0x0E, encode, decode, name="X25519 key")

Generic tags (one byte each; integers big-endian unless stated):

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

Tags from 0x0E up belong to registered codecs (:func:`register_codec`); the
snapshot module's docstring lists the ones in use. A tag is assigned once and
forever: a registered tag's bytes must stay readable, so a changed layout
takes a new tag.

Enums and dataclasses decode only from a closed registry: session modules
register their state classes with :func:`state` (``@snapshot.state``), and
the decoder rebuilds an object only if its class name is registered and its
field names are exactly the class's fields. Every decoding failure, including
a tag nobody registered, is a :class:`~protocols.errors.SnapshotError`.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import struct
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from . import wire
from .errors import SnapshotError, WireFormatError

__all__ = [
    "FIRST_CODEC_TAG",
    "MAX_DEPTH",
    "Reader",
    "ValueCodec",
    "dumps",
    "loads",
    "rebuild",
    "register_codec",
    "registered_classes",
    "registered_codecs",
    "state",
    "write_bytes",
    "write_int",
    "write_str",
]

MAX_DEPTH = 32
"""Nesting limit of the decoder (a bound on recursion, far above what sessions use)."""

_U8 = struct.Struct(">B")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_F64 = struct.Struct(">d")

# Tags of the generic values.
_NONE, _FALSE, _TRUE, _INT, _FLOAT, _STR, _BYTES = range(7)
_TUPLE, _LIST, _DICT, _FROZENSET, _NDARRAY, _ENUM, _DATACLASS = range(7, 14)
FIRST_CODEC_TAG = 14
"""The smallest tag a registered codec may take (the ones below are generic)."""

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


def _register_class(cls: type, name: str) -> None:
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
    registered classes are ever rebuilt from a snapshot. Registering a class
    or a name twice raises RuntimeError.
    """

    def decorate(c: T) -> T:
        _register_class(c, name or f"{c.__module__}:{c.__qualname__}")
        return c

    return decorate if cls is None else decorate(cls)


def registered_classes() -> dict[str, type]:
    """Every class a snapshot may contain, by registered name (for tests and docs)."""
    return dict(_CLASSES)


# -- the open registry of value codecs ---------------------------------------------


@dataclasses.dataclass(frozen=True)
class ValueCodec:
    """How one registered kind of value is written after its tag and read back.

    ``encode(out, value)`` appends the value's bytes to ``out`` (with
    :func:`write_int`, :func:`write_bytes`, :func:`write_str` or raw bytes);
    ``decode(reader)`` reads them back (with :class:`Reader`) and rebuilds
    the value, raising ValueError or TypeError on values it refuses (the codec
    turns those into SnapshotErrors naming ``name``). ``when``, if given,
    picks this codec only for the instances it accepts (two tags for one
    class, e.g. a public and a secret CKKS context).
    """

    cls: type
    tag: int
    encode: Callable[[bytearray, Any], None]
    decode: Callable[[Reader], object]
    name: str
    when: Callable[[Any], bool] | None = None


_CODECS: dict[int, ValueCodec] = {}  # by tag, in registration order


def register_codec(
    cls: type,
    tag: int,
    encode: Callable[[bytearray, Any], None],
    decode: Callable[[Reader], object],
    *,
    name: str,
    when: Callable[[Any], bool] | None = None,
) -> None:
    """Let snapshots hold instances of ``cls`` under ``tag`` (see :class:`ValueCodec`).

    Call it once, at import of the module that defines or first holds such
    values. Raises RuntimeError for a tag registered twice or outside
    ``[FIRST_CODEC_TAG, 255]``. A value matches the first registered codec
    whose class it is an instance of (and whose ``when`` accepts it); the
    generic tags come first, so a registered subclass of a generic type (an
    int, a tuple) is never reached.
    """
    if isinstance(tag, bool) or not isinstance(tag, int) or not FIRST_CODEC_TAG <= tag <= 0xFF:
        raise RuntimeError(f"snapshot codec tag must be in [{FIRST_CODEC_TAG}, 255], got {tag!r}")
    if tag in _CODECS:
        raise RuntimeError(
            f"snapshot tag 0x{tag:02x} registered twice ({_CODECS[tag].name!r}, {name!r})"
        )
    _CODECS[tag] = ValueCodec(cls, tag, encode, decode, name, when)
    _BY_TYPE.clear()


def registered_codecs() -> dict[int, ValueCodec]:
    """Every registered value codec, by tag (for tests and docs)."""
    return dict(_CODECS)


_BY_TYPE: dict[type, tuple[ValueCodec, ...]] = {}  # cache: a value's type -> its candidates


def _codec_for(value: object) -> ValueCodec | None:
    kind = type(value)
    candidates = _BY_TYPE.get(kind)
    if candidates is None:
        candidates = tuple(c for c in _CODECS.values() if issubclass(kind, c.cls))
        _BY_TYPE[kind] = candidates
    for codec in candidates:
        if codec.when is None or codec.when(value):
            return codec
    return None


# -- encoding ---------------------------------------------------------------------


def write_int(out: bytearray, value: int) -> None:
    """Append an integer: sign (1) | length (u32) | minimal big-endian magnitude."""
    magnitude = abs(value)
    body = magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "big")
    out += _U8.pack(1 if value < 0 else 0)
    out += _U32.pack(len(body))
    out += body


def write_bytes(out: bytearray, data: bytes) -> None:
    """Append length (u32) | raw bytes."""
    out += _U32.pack(len(data))
    out += data


def write_str(out: bytearray, text: str) -> None:
    """Append a string as :func:`write_bytes` of its UTF-8."""
    write_bytes(out, text.encode("utf-8"))


def _write(out: bytearray, value: object, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"value nested deeper than {MAX_DEPTH} levels")
    # Order matters: bool before int, registered codecs before generic dataclasses.
    if value is None:
        out += _U8.pack(_NONE)
    elif isinstance(value, (bool, np.bool_)):
        out += _U8.pack(_TRUE if value else _FALSE)
    elif isinstance(value, (int, np.integer)):
        out += _U8.pack(_INT)
        write_int(out, int(value))
    elif isinstance(value, (float, np.floating)):
        out += _U8.pack(_FLOAT)
        out += _F64.pack(float(value))
    elif isinstance(value, str):
        out += _U8.pack(_STR)
        write_str(out, value)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        out += _U8.pack(_BYTES)
        write_bytes(out, bytes(value))
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
        _write_array(out, value)
    elif isinstance(value, enum.Enum):
        name = _NAMES.get(type(value))
        if name is None:
            raise TypeError(f"enum {type(value).__qualname__} is not registered for snapshots")
        out += _U8.pack(_ENUM)
        write_str(out, name)
        write_str(out, value.name)
    elif (codec := _codec_for(value)) is not None:
        out += _U8.pack(codec.tag)
        codec.encode(out, value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = _NAMES.get(type(value))
        if name is None:
            raise TypeError(f"class {type(value).__qualname__} is not registered for snapshots")
        fields = dataclasses.fields(value)
        out += _U8.pack(_DATACLASS)
        write_str(out, name)
        out += _U32.pack(len(fields))
        for f in fields:
            write_str(out, f.name)
            _write(out, getattr(value, f.name), depth + 1)
    else:
        raise TypeError(f"snapshots cannot hold a {type(value).__qualname__}")


def _write_array(out: bytearray, value: np.ndarray) -> None:
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


def dumps(value: object) -> bytes:
    """Encode one value with the tagged codec (no envelope, no checksum).

    Raises TypeError for a type the codec does not hold (a programming error:
    register the class, or keep it out of session state).
    """
    out = bytearray()
    _write(out, value, 0)
    return bytes(out)


# -- decoding ---------------------------------------------------------------------


class Reader(wire.Reader):
    """A bounds-checked cursor over snapshot bytes; every failure is a SnapshotError."""

    __slots__ = ()

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

    def read_int(self) -> int:
        """Read what :func:`write_int` wrote (only its canonical form)."""
        (sign,) = self.unpack(_U8)
        (n,) = self.unpack(_U32)
        body = bytes(self.take(n))
        if sign > 1 or (n and body[0] == 0) or (sign and not n):
            raise SnapshotError("non-canonical integer encoding")
        value = int.from_bytes(body, "big")
        return -value if sign else value

    def read_bytes(self) -> bytes:
        """Read what :func:`write_bytes` wrote."""
        (n,) = self.unpack(_U32)
        return bytes(self.take(n))

    def read_str(self) -> str:
        """Read what :func:`write_str` wrote."""
        try:
            return self.read_bytes().decode("utf-8")
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


def rebuild(what: str, build: Callable[[], object]) -> object:
    """Run a constructor on decoded values; its validation errors become SnapshotErrors."""
    try:
        return build()
    except SnapshotError:
        raise
    except (ValueError, TypeError, OverflowError, WireFormatError) as exc:
        raise SnapshotError(f"invalid {what} in snapshot: {exc}") from None


def _read(r: Reader, depth: int) -> object:
    if depth > MAX_DEPTH:
        raise SnapshotError(f"snapshot nested deeper than {MAX_DEPTH} levels")
    (tag,) = r.unpack(_U8)
    if tag == _NONE:
        return None
    if tag in (_FALSE, _TRUE):
        return tag == _TRUE
    if tag == _INT:
        return r.read_int()
    if tag == _FLOAT:
        return r.unpack(_F64)[0]
    if tag == _STR:
        return r.read_str()
    if tag == _BYTES:
        return r.read_bytes()
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
        cls = _registered(r.read_str(), enum.Enum)
        member = r.read_str()
        try:
            return cls[member]  # type: ignore[index]
        except KeyError:
            raise SnapshotError(f"{cls.__qualname__} has no member {member!r}") from None
    if tag == _DATACLASS:
        return _read_dataclass(r, depth)
    codec = _CODECS.get(tag)
    if codec is None:
        # Also a known scheme's tag whose module was never imported: nothing can rebuild it.
        raise SnapshotError(f"unknown snapshot tag 0x{tag:02x}")
    return rebuild(codec.name, lambda: codec.decode(r))


def _read_array(r: Reader) -> np.ndarray:
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
    return rebuild(  # type: ignore[return-value]
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


def _read_dataclass(r: Reader, depth: int) -> object:
    cls = _registered(r.read_str(), object)
    n = r.count(5)  # a name length (4) and a tag (1) at least
    values: dict[str, object] = {}
    for _ in range(n):
        name = r.read_str()
        if name in values:
            raise SnapshotError(f"{cls.__qualname__}: field {name!r} repeated")
        values[name] = _read(r, depth + 1)
    expected = [f.name for f in dataclasses.fields(cls)]
    if sorted(values) != sorted(expected):
        raise SnapshotError(
            f"{cls.__qualname__}: snapshot has fields {sorted(values)}, the class has {sorted(expected)}"
        )
    return rebuild(cls.__qualname__, lambda: cls(**values))


def loads(data: bytes | bytearray | memoryview) -> object:
    """Decode one value made by :func:`dumps`; raise SnapshotError on any malformed input."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SnapshotError(f"a snapshot is bytes, got {type(data).__name__}")
    r = Reader(data)
    try:
        value = _read(r, 0)
    except RecursionError:
        raise SnapshotError("snapshot nested too deeply") from None
    if r.remaining:
        raise SnapshotError(f"{r.remaining} trailing bytes after the snapshot value")
    return value
