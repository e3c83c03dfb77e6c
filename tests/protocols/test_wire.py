"""The wire format: round trips of every registered message, and decoders under fuzzing.

Only :class:`protocols.WireFormatError` may escape ``Message.from_bytes`` for
any input; and whatever decodes must re-encode to the very same bytes (one
canonical encoding per message).
"""

from __future__ import annotations

import math
import struct
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocols
from protocols import Message, WireFormatError, wire
from protocols.messages import message_types
from protocols.plaintext import PlainInput
from protocols.secagg import messages as sm

SETTINGS = dict(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

# Every message type the protocols define (read off the modules, not the registry).
EXPECTED_TYPES = {
    protocols.messages.RoundStart,
    protocols.messages.Abort,
    PlainInput,
    sm.AdvertiseKeys,
    sm.KeysAdvertised,
    sm.ShareKeys,
    sm.SharesDelivered,
    sm.MaskedInput,
    sm.UnmaskRequest,
    sm.UnmaskResponse,
}


# Every type registered once ``protocols`` is imported (new protocols' messages included).
ALL_TYPES = [message_types()[code] for code in sorted(message_types())]


# ---------------------------------------------------------------------------
# strategies per wire kind

u32 = st.integers(0, 2**32 - 1)
ids = st.integers(0, wire.MAX_ID)
sorted_ids = st.lists(ids, unique=True, max_size=12).map(lambda v: tuple(sorted(v)))
small_bytes = st.binary(max_size=80)
finite = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def ring_vectors(draw, bits=None):
    bits = draw(st.integers(1, 64)) if bits is None else bits
    top = (1 << bits) - 1
    values = draw(st.lists(st.one_of(st.integers(0, top), st.sampled_from([0, top])), max_size=24))
    return wire.RingVector(bits, np.array(values, dtype=np.uint64))


def id_pairs():
    return sorted_ids.flatmap(
        lambda keys: st.tuples(*[small_bytes for _ in keys]).map(
            lambda vals: tuple(zip(keys, vals))
        )
    )


def key_records(after: tuple[int, ...]) -> st.SearchStrategy:
    """(id, channel key, run of 1-3 mask keys, *fixed fields); one run length per list."""
    key = st.binary(min_size=32, max_size=32)
    tail = st.tuples(*[st.binary(min_size=size, max_size=size) for size in after])
    return st.integers(1, 3).flatmap(
        lambda run: sorted_ids.flatmap(
            lambda ids: st.tuples(
                *[st.tuples(key, st.binary(min_size=32 * run, max_size=32 * run), tail) for _ in ids]
            ).map(lambda rows: tuple((cid, a, b, *t) for cid, (a, b, t) in zip(ids, rows)))
        )
    )


def strategy_for(kind: wire.FieldKind) -> st.SearchStrategy:
    if isinstance(kind, wire.Fixed):
        return st.binary(min_size=kind.size, max_size=kind.size)
    if isinstance(kind, wire.KeyRecords):  # key advertisements, signed or not
        return key_records(kind.after)
    if isinstance(kind, wire.IdRecords):  # signatures, commitments
        fields = [st.binary(min_size=size, max_size=size) for size in kind.sizes]
        return st.lists(st.tuples(*fields), max_size=5).flatmap(
            lambda rows: st.lists(
                st.integers(0, wire.MAX_ID), min_size=len(rows), max_size=len(rows), unique=True
            ).map(lambda ids: tuple((i, *row) for i, row in zip(sorted(ids), rows)))
        )
    table = {
        id(wire.U8): st.integers(0, 255),
        id(wire.U32): u32,
        id(wire.U64): st.integers(0, 2**64 - 1),
        id(wire.F64): finite,
        id(wire.BYTES): small_bytes,
        id(wire.STR): st.text(max_size=40),
        id(wire.IDS): sorted_ids,
        id(wire.ID_PAIRS): id_pairs(),
        id(wire.KEY_RUN): st.integers(1, 4).flatmap(lambda n: st.binary(min_size=32 * n, max_size=32 * n)),
        id(wire.BLOBS): st.lists(small_bytes, max_size=6).map(tuple),
        id(wire.RING_VECTOR): ring_vectors(),
        id(wire.F64_VECTOR): st.lists(finite, max_size=24).map(
            lambda v: np.array(v, dtype=np.float64)
        ),
    }
    if id(kind) not in table:
        raise AssertionError(f"no strategy for wire kind {kind.name!r}: add one to this test")
    return table[id(kind)]


def message_of(cls: type[Message]) -> st.SearchStrategy:
    return st.builds(cls, u32, u32, u32, *[strategy_for(kind) for _, kind in cls.SCHEMA])


any_message = st.sampled_from(ALL_TYPES).flatmap(message_of)


def canon(value):
    """A comparable, exact form of a field value (floats by their bits)."""
    if isinstance(value, wire.RingVector):
        return ("ring", value.bits, tuple(int(v) for v in value.values))
    if isinstance(value, np.ndarray):
        return (
            "arr",
            str(value.dtype),
            value.astype("<f8").tobytes() if value.dtype.kind == "f" else value.tobytes(),
        )
    if isinstance(value, float):
        return ("f", struct.pack(">d", value))
    if isinstance(value, (tuple, list)):
        return tuple(canon(v) for v in value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return value


# ---------------------------------------------------------------------------
# registry


def test_registry_holds_every_message_type():
    registered = set(message_types().values())
    assert EXPECTED_TYPES <= registered
    codes = [cls.TYPE for cls in registered]
    assert len(codes) == len(set(codes))
    for code, cls in message_types().items():
        assert cls.TYPE == code and 0 <= code <= 255


def test_import_protocols_alone_can_decode_secagg_messages():
    """A transport that only ``import protocols`` must decode every protocol's messages.

    The SecAgg message classes are registered when protocols/secagg/messages.py
    is imported, which ``import protocols`` alone did not do (only creating a
    session did), so a driver decoding bytes before creating sessions got
    "unknown message type 16".
    """
    data = sm.AdvertiseKeys(3, wire.SERVER, 0, bytes(range(32)), bytes(range(1, 33))).to_bytes()
    code = (
        "import sys, protocols\n"
        f"m = protocols.Message.from_bytes({data!r})\n"
        "assert type(m).__name__ == 'AdvertiseKeys', m\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=_repo_root()
    )
    assert proc.returncode == 0, proc.stderr


def _repo_root() -> str:
    import pathlib

    return str(pathlib.Path(protocols.__file__).resolve().parent.parent)


# ---------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda c: c.__name__)
@settings(max_examples=40, **SETTINGS)
@given(data=st.data())
def test_round_trip(cls, data):
    msg = data.draw(message_of(cls))
    encoded = msg.to_bytes()
    for buf in (encoded, bytearray(encoded), memoryview(encoded)):
        back = Message.from_bytes(buf)
        assert type(back) is cls
        assert (back.sender, back.recipient, back.round) == (msg.sender, msg.recipient, msg.round)
        for name, _ in cls.SCHEMA:
            assert canon(getattr(back, name)) == canon(getattr(msg, name)), name
        assert back == msg and hash(back) == hash(msg)
        assert back.to_bytes() == encoded
    assert cls.from_bytes(encoded) == msg
    # Asking for another type is a wire error, not a wrong object.
    other = next(c for c in ALL_TYPES if c is not cls)
    with pytest.raises(WireFormatError):
        other.from_bytes(encoded)


# Every field kind the module offers, used by a message today or not (F64 is not,
# and its writer once looked up a name its own class had shadowed).
FIELD_KINDS = [k for k in vars(wire).values() if isinstance(k, wire.FieldKind)] + [wire.Fixed(3)]


@pytest.mark.parametrize("kind", FIELD_KINDS, ids=lambda k: k.name)
@settings(max_examples=30, **SETTINGS)
@given(data=st.data())
def test_every_field_kind_round_trips_on_its_own(kind, data):
    value = data.draw(strategy_for(kind))
    out = bytearray()
    kind.write(out, value)
    reader = wire.Reader(bytes(out))
    back = kind.read(reader)
    reader.finish()
    assert canon(back) == canon(value)


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (wire.BYTES, 5),
        (wire.Fixed(3), "abc"),
        (wire.F64, "1.5"),
        (wire.F64, True),
        (wire.BLOBS, b"ab"),
        (wire.ID_PAIRS, 7),
    ],
    ids=lambda v: getattr(v, "name", repr(v)),
)
def test_field_kinds_refuse_values_of_the_wrong_type(kind, value):
    with pytest.raises(TypeError):
        kind.write(bytearray(), value)


# ---------------------------------------------------------------------------
# fuzzing


def decode_or_wire_error(data: bytes):
    """Decode; only WireFormatError may escape; a success must be canonical."""
    try:
        msg = Message.from_bytes(data)
    except WireFormatError:
        return None
    assert msg.to_bytes() == bytes(data), "decoded bytes did not re-encode identically"
    return msg


def header(
    type_code: int, sender=1, recipient=wire.SERVER, round=0, magic=wire.MAGIC, version=wire.VERSION
):
    return wire.HEADER.pack(magic, version, type_code, sender, recipient, round)


@settings(max_examples=300, **SETTINGS)
@given(data=st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(data):
    decode_or_wire_error(data)


@settings(max_examples=400, **SETTINGS)
@given(
    code=st.sampled_from(sorted(message_types())) | st.integers(0, 255),
    payload=st.binary(max_size=300),
)
def test_fuzz_valid_header_random_payload(code, payload):
    decode_or_wire_error(header(code) + payload)


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("set"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 8)),
    st.tuples(st.just("append"), st.just(0), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(
        st.just("u32"), st.integers(0, 10**6), st.sampled_from([0, 1, 2**31, 2**32 - 1, 0x10000000])
    ),
)


def mutate(data: bytes, op) -> bytes:
    kind, pos, arg = op
    buf = bytearray(data)
    if not buf and kind != "append":
        return bytes(buf)
    pos = pos % max(1, len(buf))
    if kind == "flip":
        buf[pos] ^= arg
    elif kind == "set":
        buf[pos] = arg
    elif kind == "insert":
        buf[pos:pos] = arg
    elif kind == "delete":
        del buf[pos : pos + arg]
    elif kind == "append":
        buf += arg
    elif kind == "truncate":
        del buf[pos:]
    elif kind == "u32":
        buf[pos : pos + 4] = struct.pack(">I", arg)
    return bytes(buf)


@settings(max_examples=400, **SETTINGS)
@given(msg=any_message, ops=st.lists(mutation, min_size=1, max_size=4))
def test_fuzz_mutated_valid_encodings(msg, ops):
    data = msg.to_bytes()
    for op in ops:
        data = mutate(data, op)
    decode_or_wire_error(data)


def sample_messages() -> list[Message]:
    rv = wire.RingVector(20, np.array([0, 1, 2**20 - 1, 12345], dtype=np.uint64))
    return [
        protocols.messages.RoundStart(wire.SERVER, 4, 7, bytes(range(32)), bytes(32), (0, 4, 9)),
        protocols.messages.Abort(wire.SERVER, 2, 0, "too few clients ✓"),
        PlainInput(1, wire.SERVER, 0, np.array([1.5, -0.0, 3e300])),
        sm.AdvertiseKeys(3, wire.SERVER, 0, bytes(range(32)), bytes(range(1, 33))),
        sm.KeysAdvertised(
            wire.SERVER,
            1,
            0,
            bytes(32),
            ((1, bytes(32), b"\x01" * 32), (5, b"\x02" * 32, b"\x03" * 32)),
        ),
        sm.ShareKeys(1, wire.SERVER, 0, ((2, b"abc"), (7, b""))),
        sm.SharesDelivered(wire.SERVER, 2, 0, ((1, b"xyz"),)),
        sm.MaskedInput(2, wire.SERVER, 0, rv),
        sm.UnmaskRequest(wire.SERVER, 2, 0, (1, 2, 3), (4,)),
        sm.UnmaskResponse(2, wire.SERVER, 0, ((1, b"s" * 33),), ((4, b"k" * 33),)),
    ]


@pytest.mark.parametrize("msg", sample_messages(), ids=lambda m: type(m).__name__)
def test_every_proper_prefix_is_rejected(msg):
    data = msg.to_bytes()
    assert decode_or_wire_error(data) == msg
    for cut in range(len(data)):
        with pytest.raises(WireFormatError):
            Message.from_bytes(data[:cut])
    for extra in (b"\x00", b"\xff" * 7):
        with pytest.raises(WireFormatError):
            Message.from_bytes(data + extra)


@pytest.mark.parametrize("msg", sample_messages(), ids=lambda m: type(m).__name__)
def test_header_fields_are_checked(msg):
    data = bytearray(msg.to_bytes())
    for magic in (b"FS", b"\x00\x00", b"SG"):
        with pytest.raises(WireFormatError, match="magic"):
            Message.from_bytes(bytes(magic) + bytes(data[2:]))
    for version in (0, wire.VERSION - 1, wire.VERSION + 1, 255):
        bad = bytearray(data)
        bad[2] = version
        with pytest.raises(WireFormatError, match="version"):
            Message.from_bytes(bytes(bad))
    for code in set(range(256)) - set(message_types()):
        bad = bytearray(data)
        bad[3] = code
        with pytest.raises(WireFormatError, match="unknown message type"):
            Message.from_bytes(bytes(bad))


def field_spans(msg: Message) -> list[tuple[str, wire.FieldKind, int, int]]:
    """(name, kind, start, end) of every payload field in msg.to_bytes()."""
    pos = wire.HEADER.size
    spans = []
    for name, kind in type(msg).SCHEMA:
        out = bytearray()
        kind.write(out, getattr(msg, name))
        spans.append((name, kind, pos, pos + len(out)))
        pos += len(out)
    assert pos == len(msg.to_bytes())
    return spans


LENGTH_PREFIXED = {
    id(k): off
    for k, off in [
        (wire.BYTES, 0),
        (wire.STR, 0),
        (wire.IDS, 0),
        (wire.ID_PAIRS, 0),
        (wire.KEY_TRIPLES, 0),
        (wire.KEY_RUN, 0),
        (wire.BLOBS, 0),
        (wire.F64_VECTOR, 0),
        (wire.RING_VECTOR, 1),
    ]
}


@pytest.mark.parametrize(
    "msg",
    sample_messages(),
    ids=lambda m: type(m).__name__,
)
def test_oversized_length_fields_are_rejected_without_allocating(msg):
    data = msg.to_bytes()
    spans = [s for s in field_spans(msg) if id(s[1]) in LENGTH_PREFIXED]
    assert spans
    for name, kind, start, _ in spans:
        at = start + LENGTH_PREFIXED[id(kind)]
        (count,) = struct.unpack_from(">I", data, at)
        for lie in (count + 1, 2**31, 2**32 - 1, 0x0FFFFFFF):
            bad = data[:at] + struct.pack(">I", lie) + data[at + 4 :]
            tracemalloc.start()
            try:
                with pytest.raises(WireFormatError):
                    Message.from_bytes(bad)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert peak < 1 << 20, f"{name}: decoding a lying length allocated {peak} bytes"


def test_message_larger_than_the_limit_is_rejected_up_front():
    # A zero-stride view: 2 GiB + 1 long to len(), one byte of real memory.
    huge = np.lib.stride_tricks.as_strided(
        np.zeros(1, np.uint8), shape=(wire.MAX_MESSAGE_BYTES + 1,), strides=(0,)
    )
    with pytest.raises(WireFormatError, match="MAX_MESSAGE_BYTES"):
        Message.from_bytes(memoryview(huge))


@pytest.mark.parametrize("junk", [None, 123, "SF...", [1, 2], 1.5])
def test_non_bytes_input_is_a_wire_error(junk):
    with pytest.raises(WireFormatError):
        Message.from_bytes(junk)


# ---------------------------------------------------------------------------
# reading a header without decoding the payload (what drivers route by)


@pytest.mark.parametrize("msg", sample_messages(), ids=lambda m: type(m).__name__)
def test_read_header_names_what_the_message_is(msg):
    data = msg.to_bytes()
    head = wire.read_header(data)
    assert head.message_class is type(msg)
    assert head.type_code == type(msg).TYPE
    assert head.stage == type(msg).STAGE
    assert (head.sender, head.recipient, head.round) == (msg.sender, msg.recipient, msg.round)
    # Only the header is read: a payload cut short does not matter to it.
    assert wire.read_header(data[: wire.HEADER.size]) == head
    assert wire.read_header(memoryview(data)) == head


def test_read_header_values_written_by_hand():
    data = header(sm.MaskedInput.TYPE, sender=7, recipient=wire.SERVER, round=3) + b"junk"
    head = wire.read_header(data)
    assert (head.message_class, head.stage) == (sm.MaskedInput, "masked_input")
    assert (head.sender, head.recipient, head.round) == (7, wire.SERVER, 3)


@pytest.mark.parametrize("msg", sample_messages(), ids=lambda m: type(m).__name__)
def test_read_header_rejects_truncated_headers(msg):
    data = msg.to_bytes()
    for cut in range(wire.HEADER.size):
        with pytest.raises(WireFormatError, match="truncated"):
            wire.read_header(data[:cut])


@pytest.mark.parametrize("msg", sample_messages(), ids=lambda m: type(m).__name__)
def test_read_header_checks_magic_version_and_type(msg):
    data = msg.to_bytes()
    with pytest.raises(WireFormatError, match="magic"):
        wire.read_header(b"FS" + data[2:])
    for version in (0, wire.VERSION - 1, wire.VERSION + 1, 255):
        with pytest.raises(WireFormatError, match="version"):
            wire.read_header(data[:2] + bytes([version]) + data[3:])
    for code in set(range(256)) - set(message_types()):
        with pytest.raises(WireFormatError, match="unknown message type"):
            wire.read_header(data[:3] + bytes([code]) + data[4:])


@pytest.mark.parametrize("junk", [None, 123, "SF...", [1, 2], 1.5])
def test_read_header_of_non_bytes_is_a_wire_error(junk):
    with pytest.raises(WireFormatError):
        wire.read_header(junk)


def test_read_header_refuses_oversized_messages_up_front():
    huge = np.lib.stride_tricks.as_strided(
        np.zeros(1, np.uint8), shape=(wire.MAX_MESSAGE_BYTES + 1,), strides=(0,)
    )
    with pytest.raises(WireFormatError, match="MAX_MESSAGE_BYTES"):
        wire.read_header(memoryview(huge))


@settings(max_examples=400, **SETTINGS)
@given(msg=any_message, ops=st.lists(mutation, min_size=0, max_size=4), junk=st.binary(max_size=40))
def test_fuzz_read_header_agrees_with_decoding(msg, ops, junk):
    """Only WireFormatError escapes; whatever decodes has the header read_header reports."""
    for data in (junk, msg.to_bytes()):
        for op in ops:
            data = mutate(data, op)
        try:
            head = wire.read_header(data)
        except WireFormatError:
            with pytest.raises(WireFormatError):  # a header that does not read never decodes
                Message.from_bytes(data)
            continue
        decoded = decode_or_wire_error(data)
        if decoded is not None:
            assert head.message_class is type(decoded)
            assert (head.sender, head.recipient, head.round) == (
                decoded.sender,
                decoded.recipient,
                decoded.round,
            )


# ---------------------------------------------------------------------------
# ring vectors


@pytest.mark.parametrize("bits", [8, 16, 24, 32, 40, 64])
@settings(max_examples=10, **SETTINGS)
@given(data=st.data())
def test_ring_vector_packs_at_ceil_bits_over_8_bytes(bits, data):
    rv = data.draw(ring_vectors(bits))
    dim = len(rv.values)
    encoded = sm.MaskedInput(3, wire.SERVER, 0, rv).to_bytes()
    # header | bits (u8) | count (u32) | dim * ceil(bits/8) bytes | failed ids (u32 count,
    # none) | session id (32)
    assert len(encoded) == wire.HEADER.size + 1 + 4 + dim * math.ceil(bits / 8) + 4 + 32
    back = Message.from_bytes(encoded)
    assert back.vector.bits == bits and back.vector.values.dtype == np.uint64
    assert [int(v) for v in back.vector.values] == [int(v) for v in rv.values]


@pytest.mark.parametrize("bits", [1, 7, 9, 12, 20, 33, 47, 63])
@settings(max_examples=15, **SETTINGS)
@given(data=st.data())
def test_ring_vector_entries_of_2_to_the_bits_or_more_are_rejected(bits, data):
    width = math.ceil(bits / 8)
    good = data.draw(st.lists(st.integers(0, (1 << bits) - 1), min_size=1, max_size=8))
    bad_at = data.draw(st.integers(0, len(good) - 1))
    entries = list(good)
    entries[bad_at] = data.draw(st.integers(1 << bits, (1 << (8 * width)) - 1))
    body = b"".join(v.to_bytes(width, "little") for v in entries)
    no_failed = struct.pack(">I", 0) + bytes(32)  # no failed peers, a session id
    raw = header(sm.MaskedInput.TYPE) + struct.pack(">BI", bits, len(entries)) + body + no_failed
    with pytest.raises(WireFormatError, match="fit"):
        Message.from_bytes(raw)
    # ... while the same layout with in-range entries decodes to exactly those entries.
    ok = (
        header(sm.MaskedInput.TYPE)
        + struct.pack(">BI", bits, len(good))
        + b"".join(v.to_bytes(width, "little") for v in good)
        + no_failed
    )
    assert [int(v) for v in Message.from_bytes(ok).vector.values] == good


@pytest.mark.parametrize("bits", [0, 65, 255])
def test_ring_vector_bits_out_of_range_are_rejected(bits):
    raw = header(sm.MaskedInput.TYPE) + struct.pack(">BI", bits, 1) + b"\x00" * 8 + bytes(36)
    with pytest.raises(WireFormatError):
        Message.from_bytes(raw)


@pytest.mark.parametrize(
    "bits, value",
    [(16, 70000), (12, 5000), (40, 2**41)],
)
def test_encoding_refuses_ring_entries_that_do_not_fit(bits, value):
    """to_bytes must not silently wrap (or emit undecodable bytes for) entries >= 2^bits.

    Every other integer wire kind raises ValueError on out-of-range values
    (wire._check_uint); the ring vector writer (wire.pack_ring) instead keeps
    the low ceil(bits/8) bytes, so RingVector(16, [70000]) goes out as 4464.
    """
    rv = wire.RingVector(bits, np.array([1, value], dtype=np.uint64))
    msg = sm.MaskedInput(3, wire.SERVER, 0, rv)
    try:
        encoded = msg.to_bytes()
    except ValueError:
        return  # refused: fine
    back = Message.from_bytes(encoded)  # if it was encoded, it must decode to the same values
    assert [int(v) for v in back.vector.values] == [1, value]


def test_encoding_refuses_non_finite_floats():
    """A PlainInput with NaN encodes, but no peer can decode it: the writer should refuse it."""
    msg = PlainInput(1, wire.SERVER, 0, np.array([1.0, np.nan]))
    try:
        encoded = msg.to_bytes()
    except ValueError:
        return
    Message.from_bytes(encoded)
