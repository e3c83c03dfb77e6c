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

The payload is one tagged value (:mod:`protocols.codec`, whose docstring
defines the generic tags 0x00-0x0D): a dict naming the protocol, its config
digest (which covers the dimension), the client id, the round, the session
class, and the session's fields. The tags from 0x0E up are registered by the
modules that own the values (:func:`protocols.codec.register_codec`)::

    0x0E X25519 key pair: the 32 private-key bytes      (protocols.secagg.client)
    0x0F Paillier public key: n (int)                   (protocols.paillier)
    0x10 Paillier private key: p, q (ints)              (protocols.paillier)
    0x11 CKKS public context, 0x12 CKKS secret context:
         length (u32) | TenSEAL serialization           (protocols.ckks)
    0x13 protocol message: length (u32) | its wire bytes (:mod:`protocols.wire`; here)

A snapshot holding a scheme's values is restored through that scheme's
protocol config, whose module registered them; a tag nobody registered is a
SnapshotError.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

from secagg import aead
from secagg.errors import DecryptionError
from secagg.randomness import RandomSource

from . import codec, wire
from .codec import MAX_DEPTH, dumps, loads, rebuild, register_codec, registered_classes, state
from .errors import SnapshotError
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
    "register_codec",
    "registered_classes",
    "seal",
    "state",
    "unseal",
]

MAGIC = b"SFSN"
VERSION = 1
KEY_BYTES = aead.KEY_BYTES
"""Length of the optional snapshot encryption key (AES-256)."""
MAX_SNAPSHOT_BYTES = 1 << 31
"""Snapshots larger than this (2 GiB) are rejected before decoding."""

_PLAIN, _ENCRYPTED = 0, 1
_HEADER = struct.Struct(">4sBB")
_DIGEST_BYTES = hashlib.sha256().digest_size

# Every protocol's sessions may hold messages (a server's RoundStart, say): their
# codec lives with the session machinery, not with one scheme.
register_codec(
    Message,
    0x13,
    lambda out, m: codec.write_bytes(out, m.to_bytes()),
    lambda r: Message.from_bytes(r.read_bytes()),
    name="protocol message",
)


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


def load_client(
    proto: Any,
    data: bytes,
    *,
    rng: RandomSource | None = None,
    key: bytes | None = None,
    **client_options: Any,
) -> Any:
    """Restore a client session of ``proto`` (what ``proto.restore_client()`` calls).

    ``client_options`` go to ``proto.client`` (e.g. an active SecAgg client's
    identity key, which a snapshot never holds).

    Builds a fresh session with ``proto.client(...)`` (so everything derived
    from the configuration is recomputed, not trusted from the bytes) and then
    puts the stored state into it.
    """
    record = loads(unseal(data, key))
    if (
        not isinstance(record, dict)
        or not all(isinstance(k, str) for k in record)  # sorted() of mixed keys would raise
        or sorted(record) != sorted(_RECORD_KEYS)
    ):
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
    session: Any = rebuild("session", lambda: proto.client(cid, dim, rng=rng, round=round_, **client_options))
    if type(session).__qualname__ != record["session"]:
        raise SnapshotError(
            f"snapshot of a {record['session']!r}, this protocol makes {type(session).__qualname__!r}"
        )
    fields = record["fields"]
    if not isinstance(fields, dict):
        raise SnapshotError("snapshot fields are not a dict")
    session._restore_fields(fields)
    return session
