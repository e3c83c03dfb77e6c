"""Client-session snapshots (protocols.snapshot): restore anywhere, reject anything else.

The main property: at every point of a round (after every delivered
message), snapshot and restore *every* client and carry on with the restored
sessions; the round ends exactly as a plain run does (same survivors; the
exact integer sum for SecAgg, SecAgg+ and Paillier with on-grid inputs; the
same float sum for the plaintext baseline and central DP with the same server
randomness; within the stated bound for CKKS). Then: malformed, fuzzed,
re-keyed and foreign snapshots raise SnapshotError and nothing else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from _protocols_kit import grid, grid_q
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import protocols
from protocols import LocalProtocolError, SnapshotError, codec, snapshot
from protocols.base import Completed
from protocols.secagg import client as sa_client
from secagg.randomness import DeterministicRandom

FAMILIES = ("plaintext", "secagg", "secagg+", "paillier", "ckks", "dp-central", "dp-ddg")
BITS = 24
J = 4  # on-grid inputs are multiples of 2^-J


def make_proto(family: str, n: int, dim: int) -> protocols.AggregationProtocol:
    """A config whose encoder has scale exactly 2^J for ``n`` clients (on-grid inputs are exact)."""
    secagg_clip = grid(n, BITS, J)[0]
    if family == "plaintext":
        return protocols.Plaintext()
    if family == "secagg":
        return protocols.SecAgg(semi_honest=True, threshold=0.5, bits=BITS, clip=secagg_clip)
    if family == "secagg+":
        return protocols.SecAggPlus(
            semi_honest=True, threshold=0.5, bits=BITS, clip=secagg_clip, k=2
        )
    if family == "paillier":
        return protocols.Paillier(key_bits=1024, bits=BITS, clip=grid(1, BITS, J)[0])
    if family == "ckks":
        return protocols.CKKS(clip=4.0)
    inner = protocols.SecAgg(semi_honest=True, threshold=0.5, bits=BITS, clip=secagg_clip)
    if family == "dp-central":
        # A DP clip above every input's norm: clip_l2 leaves on-grid inputs unchanged.
        return protocols.DifferentiallyPrivate(
            inner, mode="central", clip=2 * secagg_clip * dim**0.5 + 1, noise_multiplier=0.7
        )
    return protocols.DifferentiallyPrivate(
        inner, mode="ddg", clip=1.0, noise_multiplier=0.7, expected_clients=n
    )


def on_grid(family: str, n: int, dim: int, seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    if family == "ckks":
        return {c: rng.uniform(-4, 4, dim) for c in range(n)}
    if family == "dp-ddg":
        return {c: rng.uniform(-0.3, 0.3, dim) for c in range(n)}
    _, cap = grid(1 if family == "paillier" else n, BITS, J)
    cap = min(cap, 1 << 20)  # plenty of range, and plaintext sums stay exact in float64
    return {
        c: np.array([grid_q(cap, int(v)) / 2.0**J for v in rng.integers(-cap, cap, dim)])
        for c in range(n)
    }


def drive(proto, inputs, dropout, *, restore: bool, late: bool = False, seed: int = 0, sink=None):
    """Run one round message by message; with ``restore``, snapshot and restore every
    client after every step (appending each snapshot to ``sink``, if given). With
    ``late``, a client gets its input only once it waits for it (stage masked_input).
    Returns (server, number of restore steps)."""
    dim = len(next(iter(inputs.values())))
    order = proto.DROPOUT_STAGES
    server = proto.server(sorted(inputs), dim, rng=DeterministicRandom(f"{seed}/server"))
    clients = {
        c: proto.client(c, dim, rng=DeterministicRandom(f"{seed}/client/{c}")) for c in inputs
    }
    silenced: set[int] = set()
    to_server: deque[bytes] = deque()
    to_clients: deque[tuple[int, bytes]] = deque()
    step = 0

    def restore_all() -> None:
        nonlocal step
        step += 1
        for c in clients:
            data = clients[c].snapshot()
            if sink is not None:
                sink.append(data)
            restored = proto.restore_client(
                data, rng=DeterministicRandom(f"{seed}/restore/{c}/{step}")
            )
            if not isinstance(proto, protocols.CKKS):
                # Canonical encoding: the restored session snapshots to the same bytes.
                assert restored.snapshot() == data
            clients[c] = restored

    def from_client(c: int, messages) -> None:
        for m in messages:
            if c in silenced or (c in dropout and order.index(m.STAGE) >= order.index(dropout[c])):
                silenced.add(c)
                continue
            to_server.append(m.to_bytes())

    waiting = set(inputs)

    def give_inputs(now: bool) -> None:
        for c in sorted(waiting):
            if now or clients[c].stage == "masked_input":
                waiting.discard(c)
                from_client(c, clients[c].provide_input(inputs[c]))

    to_clients.extend((m.recipient, m.to_bytes()) for m in server.start())
    for c in inputs:
        from_client(c, clients[c].start())
        if restore:
            restore_all()
    give_inputs(now=not late)
    while not server.finished:
        if to_server:
            out = server.receive(to_server.popleft())
            to_clients.extend((m.recipient, m.to_bytes()) for m in out)
        elif to_clients:
            c, data = to_clients.popleft()
            if c not in silenced:
                from_client(c, clients[c].receive(data))
        else:
            to_clients.extend((m.recipient, m.to_bytes()) for m in server.close_stage())
        if restore:
            restore_all()
        give_inputs(now=False)
    return server, step


@st.composite
def rounds(draw, family: str):
    n = draw(st.integers(3, 6))
    dim = draw(st.integers(1, 5))
    proto = make_proto(family, n, dim)
    stages = proto.DROPOUT_STAGES
    dropout = draw(
        st.dictionaries(st.integers(0, n - 1), st.sampled_from(stages), max_size=max(0, n - 3))
    )
    late = draw(st.booleans())
    return proto, on_grid(family, n, dim, draw(st.integers(0, 2**32))), dropout, late


@pytest.mark.parametrize("family", FAMILIES)
@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_restore_after_every_message_gives_the_plain_result(family, data):
    proto, inputs, dropout, late = data.draw(rounds(family))
    plain, _ = drive(proto, inputs, dropout, restore=False, late=late)
    restored, steps = drive(proto, inputs, dropout, restore=True, late=late)
    assert steps > len(inputs)
    assert plain.aborted == restored.aborted
    if plain.aborted:
        return
    a, b = plain.result, restored.result
    assert a.survivors == b.survivors
    exact_q = sum(np.round(inputs[c] * 2**J).astype(np.int64) for c in a.survivors)
    if family in ("secagg", "secagg+", "paillier"):
        np.testing.assert_array_equal(b.integer_total, exact_q)
        np.testing.assert_array_equal(b.integer_total, a.integer_total)
    elif family in ("plaintext", "dp-central"):
        # Same inner sum and the same server randomness: bit-identical totals.
        np.testing.assert_array_equal(a.total, b.total)
    elif family == "ckks":
        exact = sum(inputs[c] for c in a.survivors)
        assert np.max(np.abs(b.total - exact)) <= proto.error_bound(len(a.survivors))
    else:  # dp-ddg: client noise comes from the (fresh) restore randomness
        assert a.events == b.events
        assert np.all(np.isfinite(b.total))


# -- snapshots to fuzz ---------------------------------------------------------------


def collect_snapshots(proto, n: int = 4, dim: int = 3) -> list[bytes]:
    """Snapshots of every client after every step of one round (all stages, all roles)."""
    found: list[bytes] = []
    for late in (False, True):
        drive(proto, on_grid("secagg", n, dim, 1), {}, restore=True, late=late, sink=found)
    return found


@pytest.fixture(scope="module")
def secagg_snapshots() -> tuple[protocols.SecAgg, list[bytes]]:
    proto = protocols.SecAgg(semi_honest=True, threshold=0.5, bits=BITS, clip=grid(4, BITS, J)[0])
    return proto, collect_snapshots(proto)


@pytest.fixture(scope="module")
def paillier_snapshots() -> tuple[protocols.Paillier, list[bytes]]:
    proto = protocols.Paillier(key_bits=1024, bits=16, clip=1.0)
    return proto, collect_snapshots(proto)


def test_snapshots_cover_every_client_stage(secagg_snapshots):
    proto, found = secagg_snapshots
    stages = {proto.restore_client(d).stage for d in found}
    assert stages == {
        "round_start",
        "advertise_keys",
        "share_keys",
        "masked_input",
        "unmasking",
        "completed",
    }


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_corrupted_snapshots_are_rejected(secagg_snapshots, data):
    proto, found = secagg_snapshots
    good = bytearray(data.draw(st.sampled_from(found)))
    how = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
    if how == "flip":
        pos = data.draw(st.integers(0, len(good) - 1))
        good[pos] ^= data.draw(st.integers(1, 255))
    elif how == "truncate":
        good = good[: data.draw(st.integers(0, len(good) - 1))]
    else:
        good += data.draw(st.binary(min_size=1, max_size=16))
    with pytest.raises(SnapshotError):
        proto.restore_client(bytes(good))


@settings(max_examples=300, deadline=None)
@given(blob=st.binary(max_size=200), prefix=st.booleans())
def test_random_bytes_are_rejected(blob, prefix):
    proto = protocols.SecAgg(semi_honest=True)
    data = (b"SFSN\x01\x00" if prefix else b"") + blob
    with pytest.raises(SnapshotError):
        proto.restore_client(data)


def _reseal_mutated(payload: bytes, data) -> bytes:
    """A mutated payload under a *valid* checksum: only the codec's own checks stand."""
    buf = bytearray(payload)
    for _ in range(data.draw(st.integers(1, 4))):
        how = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        pos = data.draw(st.integers(0, max(0, len(buf) - 1)))
        if how == "flip" and buf:
            buf[pos] ^= data.draw(st.integers(1, 255))
        elif how == "truncate":
            del buf[pos:]
        elif how == "insert":
            buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        elif buf:
            del buf[pos : pos + data.draw(st.integers(1, 8))]
    return snapshot.seal(bytes(buf))


@pytest.mark.parametrize("which", ["secagg", "paillier"])
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_codec_rejects_mutations_behind_a_valid_checksum(
    secagg_snapshots, paillier_snapshots, which, data
):
    proto, found = secagg_snapshots if which == "secagg" else paillier_snapshots
    payload = snapshot.unseal(data.draw(st.sampled_from(found)))
    mutated = _reseal_mutated(payload, data)
    try:
        proto.restore_client(mutated)
    except SnapshotError:
        pass  # a mutation may also leave a valid snapshot (e.g. a flipped share byte)


@settings(max_examples=300, deadline=None)
@given(blob=st.binary(max_size=300))
def test_loads_rejects_garbage_with_snapshot_error_only(blob):
    try:
        snapshot.loads(blob)
    except SnapshotError:
        pass


# -- the value codec -------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**600), max_value=2**600)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=40)
)
arrays = hnp.arrays(
    dtype=st.sampled_from(
        [
            *("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"),
            *("float32", "float64", ">f8", ">i4"),
        ]
    ),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3),
)
hashables = st.recursive(
    scalars, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3), max_leaves=8
)
values = st.recursive(
    scalars | arrays,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(hashables, inner, max_size=4)
        | st.frozensets(hashables, max_size=4)
    ),
    max_leaves=20,
)


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.dtype.newbyteorder("=") == b.dtype.newbyteorder("=")
            and a.shape == b.shape
            and a.astype(a.dtype.newbyteorder("=")).tobytes()
            == b.astype(b.dtype.newbyteorder("=")).tobytes()
        )
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return type(b) is dict and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@settings(max_examples=300, deadline=None)
@given(value=values)
def test_codec_round_trips_every_supported_value(value):
    data = snapshot.dumps(value)
    assert _same(snapshot.loads(data), value)
    assert snapshot.dumps(snapshot.loads(data)) == data


def test_codec_keeps_non_finite_floats_and_byte_order():
    back = snapshot.loads(snapshot.dumps([float("inf"), -0.0, np.arange(3, dtype=">u4")]))
    assert back[0] == float("inf") and str(back[1]) == "-0.0"
    assert back[2].dtype == np.uint32 and back[2].tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    "value",
    [object(), np.array(["a"]), np.array([1], dtype=object), lambda: 0, {1, 2}, 1j],
    ids=["object", "str-array", "object-array", "function", "set", "complex"],
)
def test_codec_refuses_to_dump_unsupported_types(value):
    with pytest.raises(TypeError):
        snapshot.dumps(value)


def test_unregistered_dataclass_is_neither_dumped_nor_loaded():
    @dataclasses.dataclass
    class Stranger:
        x: int = 1

    with pytest.raises(TypeError, match="not registered"):
        snapshot.dumps(Stranger())
    forged = snapshot.dumps(Completed()).replace(
        b"protocols.base:Completed", b"protocols.base:Completex"
    )
    with pytest.raises(SnapshotError, match="not registered"):
        snapshot.loads(forged)


def test_registered_dataclass_must_match_its_fields():
    good = snapshot.dumps(sa_client.PeerShares((b"a",), (b"b",)))
    assert snapshot.loads(good) == sa_client.PeerShares((b"a",), (b"b",))
    renamed = good.replace(b"mask_key_share", b"mask_key_sharf")
    with pytest.raises(SnapshotError, match="fields"):
        snapshot.loads(renamed)


def test_nesting_limit():
    deep: list = []
    for _ in range(snapshot.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(ValueError, match="nested"):
        snapshot.dumps(deep)
    forged = b"\x08\x00\x00\x00\x01" * (snapshot.MAX_DEPTH + 5) + b"\x00"
    with pytest.raises(SnapshotError, match="nested"):
        snapshot.loads(forged)


@pytest.mark.parametrize(
    "blob",
    [
        b"\x03\x00\x00\x00\x00\x01\x00",  # int with a leading zero byte
        b"\x03\x01\x00\x00\x00\x00",  # negative zero
        b"\x0a\x00\x00\x00\x02\x00\x00",  # frozenset with a duplicate
        b"\x09\x00\x00\x00\x02\x00\x00\x00\x00",  # dict with a duplicate key
        b"\x0b\x01\x01" + (3).to_bytes(8, "big") + b"\x00\x02\x01",  # bool array holding 2
        b"\x0b\x0c\x00\x00",  # dtype code not allowed
        b"\x0b\x0b\x01" + (2**40).to_bytes(8, "big"),  # array longer than the bytes
        b"\x0b\x0b\x02" + bytes(8) + (2**64 - 1).to_bytes(8, "big"),  # absurd empty array
        b"\x0f\x00\x00\x00\x00\x01\x07",  # Paillier modulus 7
        b"\x09\x00\x00\x00\x01\x08\x00\x00\x00\x00\x00",  # unhashable dict key
        b"\xff",  # unknown tag
    ],
)
def test_codec_rejects_malformed_values(blob):
    with pytest.raises(SnapshotError):
        snapshot.loads(blob)


# -- envelope, keys and configurations -------------------------------------------------


def test_encrypted_snapshot_round_trip_and_key_checks(secagg_snapshots):
    proto, found = secagg_snapshots
    session = proto.restore_client(found[len(found) // 2])
    key = bytes(range(32))
    sealed = session.snapshot(key=key)
    plain = session.snapshot()
    restored = proto.restore_client(sealed, key=key)
    assert restored.snapshot() == plain
    with pytest.raises(SnapshotError, match="wrong key"):
        proto.restore_client(sealed, key=bytes(32))
    with pytest.raises(SnapshotError, match="encrypted"):
        proto.restore_client(sealed)
    with pytest.raises(SnapshotError, match="not encrypted"):
        proto.restore_client(plain, key=key)
    with pytest.raises(ValueError, match="32 bytes"):
        session.snapshot(key=b"short")


def test_encryption_hides_the_private_keys(secagg_snapshots):
    proto, found = secagg_snapshots
    for data in found:
        session = proto.restore_client(data)
        if session.stage == "share_keys":
            secret = next(iter(session._state.session.pair_secrets.values()))[0]
            assert secret in data  # plain snapshots hold secrets: keep them on the client
            assert secret not in session.snapshot(key=bytes(32))
            return
    pytest.fail("no share_keys snapshot")


@pytest.mark.parametrize(
    "other",
    [
        protocols.SecAgg(semi_honest=True, threshold=0.5, bits=BITS + 1, clip=grid(4, BITS, J)[0]),
        protocols.SecAgg(semi_honest=True, threshold=0.6, bits=BITS, clip=grid(4, BITS, J)[0]),
        protocols.SecAggPlus(semi_honest=True, threshold=0.5, bits=BITS, clip=grid(4, BITS, J)[0]),
        protocols.Plaintext(),
        protocols.Paillier(key_bits=1024),
        protocols.DifferentiallyPrivate(
            protocols.SecAgg(semi_honest=True, threshold=0.5, bits=BITS)
        ),
    ],
    ids=["bits", "threshold", "secagg+", "plaintext", "paillier", "dp"],
)
def test_snapshot_of_another_configuration_is_rejected(secagg_snapshots, other):
    _, found = secagg_snapshots
    with pytest.raises(SnapshotError, match=r"protocol|configuration"):
        other.restore_client(found[-1])


def test_he_snapshot_of_another_configuration_is_rejected(paillier_snapshots):
    proto, found = paillier_snapshots
    assert isinstance(proto.restore_client(found[-1]), type(proto.client(0, 3)))
    with pytest.raises(SnapshotError, match="configuration"):
        dataclasses.replace(proto, min_clients=3).restore_client(found[-1])


def _forge(record: dict) -> bytes:
    return snapshot.seal(snapshot.dumps(record))


def test_forged_records_are_rejected(secagg_snapshots):
    proto, found = secagg_snapshots
    record = snapshot.loads(snapshot.unseal(found[-1]))
    assert proto.restore_client(_forge(record)).stage == "completed"

    def bad(**changes) -> bytes:
        return _forge({**record, **changes})

    forged = [
        bad(session="HEClient"),
        bad(dim=4),
        bad(dim=True),
        bad(client_id=-1),
        bad(round=2**32),
        bad(protocol=7),
        bad(fields=[]),
        bad(fields={**record["fields"], "extra": 1}),
        bad(fields={**record["fields"], "_started": 1}),
        bad(fields={**record["fields"], "_state": sa_client.PeerShares((b"",), (b"",))}),
        bad(fields={k: v for k, v in record["fields"].items() if k != "_input"}),
        _forge({k: v for k, v in record.items() if k != "round"}),
        _forge([record]),
    ]
    from protocols.he import _AwaitingKey

    forged.append(bad(fields={**record["fields"], "_state": _AwaitingKey(3)}))
    for data in forged:
        with pytest.raises(SnapshotError):
            proto.restore_client(data)


def test_restored_session_rejects_what_the_original_would(secagg_snapshots):
    proto, found = secagg_snapshots
    done = proto.restore_client(found[-1])
    assert done.stage == "completed"
    with pytest.raises(LocalProtocolError):
        done.provide_input(np.zeros(3))
    fresh = proto.restore_client(found[0])
    assert fresh.stage == "round_start"
    with pytest.raises(LocalProtocolError, match="already started"):
        fresh.start()


def test_snapshot_header_names_the_configuration():
    proto = protocols.Plaintext()
    data = proto.client(5, 7, round=3).snapshot()
    record = snapshot.loads(snapshot.unseal(data))
    assert record["protocol"] == "plaintext" and record["client_id"] == 5
    assert record["dim"] == 7 and record["round"] == 3
    assert record["digest"] == proto.config_digest(7)
    assert data[:6] == b"SFSN\x01\x00"
    assert data[-32:] == hashlib.sha256(data[:-32]).digest()


# -- the open codec: schemes register their values ------------------------------------

GOLDEN = Path(__file__).with_name("snapshots_v1.json")


@pytest.mark.parametrize("family", ["secagg+", "paillier"])
def test_version_1_snapshots_made_before_the_codec_split_still_restore(family):
    # Client 0 after RoundStart, snapshotted by the hard-coded codec (see "made_by"):
    # X25519 key pairs and the encoder (secagg+), Paillier public and private keys.
    golden = json.loads(GOLDEN.read_text())[family]
    data = bytes.fromhex(golden["snapshot"])
    proto = (
        protocols.SecAggPlus(semi_honest=True, k=2)
        if family == "secagg+"
        else protocols.Paillier(key_bits=1024)
    )
    restored = proto.restore_client(data)
    assert restored.stage == golden["stage"]
    assert restored.snapshot() == data  # and the same bytes come out again


def test_registered_values_keep_their_documented_bytes():
    from secagg import keys
    from secagg import paillier as pl

    pair = keys.KeyPair.from_private_bytes(bytes(range(32)))
    assert snapshot.dumps(pair) == b"\x0e" + bytes(range(32))
    protocols.Paillier  # noqa: B018 - importing protocols.paillier registers its codecs
    public, _ = pl.generate_keypair(1024)
    size = (public.n.bit_length() + 7) // 8
    body = public.n.to_bytes(size, "big")
    assert snapshot.dumps(public) == b"\x0f\x00" + struct.pack(">I", size) + body
    start = protocols.messages.RoundStart(
        sender=0xFFFFFFFF,
        recipient=1,
        round=0,
        nonce=bytes(32),
        config_digest=bytes(32),
        client_ids=(1, 2),
    )
    wire_bytes = start.to_bytes()
    assert snapshot.dumps(start) == b"\x13" + struct.pack(">I", len(wire_bytes)) + wire_bytes


def test_unregistered_tag_is_a_snapshot_error():
    assert max(codec.registered_codecs()) < 0xFE
    with pytest.raises(SnapshotError, match="unknown snapshot tag 0xfe"):
        snapshot.loads(b"\xfe\x00")


def test_a_tag_or_a_class_registers_once():
    taken = next(iter(codec.registered_codecs()))

    class Fresh:
        pass

    def encode(out: bytearray, value: object) -> None:
        pass

    with pytest.raises(RuntimeError, match="registered twice"):
        codec.register_codec(Fresh, taken, encode, lambda r: Fresh(), name="fresh")
    for bad_tag in (codec.FIRST_CODEC_TAG - 1, 256, True):
        with pytest.raises(RuntimeError, match="tag must be"):
            codec.register_codec(Fresh, bad_tag, encode, lambda r: Fresh(), name="fresh")
    with pytest.raises(RuntimeError, match="registered twice"):
        snapshot.state(sa_client.PeerShares)
    assert Fresh not in {c.cls for c in codec.registered_codecs().values()}


def test_a_registered_codec_round_trips_and_its_errors_are_snapshot_errors():
    @dataclasses.dataclass(frozen=True)
    class Point:
        x: int

    def decode(r):
        x = r.read_int()
        if x < 0:
            raise ValueError("negative")
        return Point(x)

    tag = 0xFD
    codec.register_codec(Point, tag, lambda out, p: codec.write_int(out, p.x), decode, name="point")
    try:
        data = snapshot.dumps([Point(5)])
        assert data == b"\x08\x00\x00\x00\x01\xfd\x00\x00\x00\x00\x01\x05"
        assert snapshot.loads(data) == [Point(5)]
        with pytest.raises(SnapshotError, match="invalid point"):
            snapshot.loads(snapshot.dumps(Point(-1)))
        with pytest.raises(SnapshotError, match="truncated"):
            snapshot.loads(data[:-1])
    finally:
        codec._CODECS.pop(tag)  # keep the registry as the library leaves it
        codec._BY_TYPE.clear()
