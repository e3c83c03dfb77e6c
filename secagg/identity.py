"""Long-term Ed25519 identities, domain-separated signed statements and rosters.

* :class:`IdentityKeyPair`: a client's long-term Ed25519 signing key (RFC 8032
  section 5.1, from ``cryptography``), generated from the OS CSPRNG by default.
* :class:`IdentityPublicKey`: the 32-byte public key, validated when it is
  built: the encoding must be canonical and decode to a curve point (RFC 8032
  section 5.1.3) that is not of small order. ``cryptography``/OpenSSL accept
  any 32 bytes here and only fail later, at verification, and they accept
  small-order keys, under which signatures can be forged without any private
  key (the all-zero key and the all-zero signature verify for some messages;
  tests/secagg/test_identity.py shows one). Keys with a small-order component
  added to a point of prime order are accepted: only their owner, who knows
  the discrete log of the prime-order part, can sign for them.
* :class:`Statement`: what the protocols sign. Its encoding is
  ``length_prefixed(SIGNATURE_DOMAIN, context, session_id, round, config_digest,
  payload)`` (:func:`secagg.framing.length_prefixed`, injective), so a
  signature made for one context label, session, round or configuration never
  verifies for another (tested with known-answer vectors in
  ``secagg/vectors/statement_signatures.json``). :meth:`IdentityKeyPair.sign`
  refuses raw messages that start like a statement, so raw signatures cannot be
  passed off as statements either.
* :class:`Roster`: the caller-supplied map client id -> identity public key
  (from device registration; no CA), immutable, with a canonical SHA-256
  digest and a byte encoding whose decoder refuses anything but the canonical
  form.

Verification raises :class:`~secagg.errors.SignatureError` (pyca style: there
is no boolean to forget to check). Ed25519 verification is OpenSSL's, which
requires ``S < L`` (RFC 8032 section 5.1.7), so signatures are not malleable.
"""

from __future__ import annotations

import hashlib
import operator
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import InvalidKeyError, RosterError, SignatureError
from .framing import length_prefixed, require_bytes
from .randomness import RandomSource, default_rng

__all__ = [
    "ADVERTISE_CONTEXT",
    "CONSISTENCY_CONTEXT",
    "MAX_CLIENT_ID",
    "PUBLIC_KEY_BYTES",
    "ROSTER_DOMAIN",
    "SEED_BYTES",
    "SIGNATURE_BYTES",
    "SIGNATURE_DOMAIN",
    "IdentityKeyPair",
    "IdentityPublicKey",
    "Roster",
    "Statement",
    "check_identity_key",
    "enroll",
    "verify",
]

#: Length of an Ed25519 public key and of a private-key seed (RFC 8032 section 5.1.5).
PUBLIC_KEY_BYTES = 32
SEED_BYTES = 32
#: Length of an Ed25519 signature, ``R || S`` (RFC 8032 section 5.1.6).
SIGNATURE_BYTES = 64
#: First part of every :class:`Statement` encoding: this library, this format.
SIGNATURE_DOMAIN = b"secagg-fl/v1 ed25519 statement"
#: Context label of a signed key advertisement (issue 13, item 2).
ADVERTISE_CONTEXT = b"secagg-fl/advertise/v1"
#: Context label of a signature on the announced set of survivors (the
#: consistency check round of Bonawitz et al., CCS 2017, section 4).
CONSISTENCY_CONTEXT = b"secagg-fl/consistency/v1"
#: Domain tag of :attr:`Roster.digest`.
ROSTER_DOMAIN = b"secagg-fl/v1 roster"
#: The largest client id, as in the protocols' wire format (2^32 - 1 is the server).
MAX_CLIENT_ID = 0xFFFFFFFF - 1

# The prefix every statement encoding starts with (the framed domain).
_STATEMENT_PREFIX = length_prefixed(SIGNATURE_DOMAIN)
_ROUND = struct.Struct(">Q")
_COUNT = struct.Struct(">I")
_ID = struct.Struct(">I")
_ENTRY_BYTES = _ID.size + PUBLIC_KEY_BYTES

# edwards25519 (RFC 8032 section 5.1): p, d and sqrt(-1) mod p.
_P = (1 << 255) - 19
_D = -121665 * pow(121666, -1, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


# ---------------------------------------------------------------------------
# Public-key validation (RFC 8032 section 5.1.3 decoding, then a small-order check)


def _decode_point(data: bytes) -> tuple[int, int]:
    """The affine point ``(x, y)`` encoded by ``data``, decoded as in RFC 8032 section 5.1.3.

    Stricter than the RFC's step 1 only in that it never reduces: ``y >= p``
    is refused (the RFC says decoding fails then too).
    """
    n = int.from_bytes(data, "little")
    sign, y = n >> 255, n & ((1 << 255) - 1)
    if y >= _P:
        raise InvalidKeyError("Ed25519 public key is not canonical (y >= p)")
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    # x = u v^3 (u v^7)^((p-5)/8), then fix up by sqrt(-1) (RFC 8032 section 5.1.3, step 3).
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    vxx = v * x * x % _P
    if vxx == (-u) % _P:
        x = x * _SQRT_M1 % _P
    elif vxx != u:
        raise InvalidKeyError("Ed25519 public key is not a point on the curve")
    if x == 0 and sign:
        raise InvalidKeyError("Ed25519 public key is not canonical (x = 0 with sign bit 1)")
    if x & 1 != sign:
        x = _P - x
    return x, y


def _double(point: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """2P in extended coordinates (X, Y, Z, T), the unified addition of RFC 8032 section 5.1.4."""
    x, y, z, t = point
    a = (y - x) * (y - x) % _P
    b = (y + x) * (y + x) % _P
    c = 2 * t * t * _D % _P
    d = 2 * z * z % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


def check_identity_key(public: bytes) -> bytes:
    """Return ``public`` as bytes if it is a usable Ed25519 identity public key.

    The key must be 32 bytes, the canonical encoding of a point of
    edwards25519 (RFC 8032 section 5.1.3), and not of small order: ``[8]A``
    must not be the neutral element. (The eight points of order dividing 8
    would let anyone forge signatures, since ``[8][k]A`` vanishes.)

    Raises:
        InvalidKeyError: wrong length, non-canonical, not on the curve, or of small order.
        TypeError: ``public`` is not bytes-like.
    """
    data = require_bytes(public, "public key")
    if len(data) != PUBLIC_KEY_BYTES:
        raise InvalidKeyError(
            f"an Ed25519 public key is {PUBLIC_KEY_BYTES} bytes, got {len(data)}"
        )
    x, y = _decode_point(data)
    point = (x, y, 1, x * y % _P)
    for _ in range(3):
        point = _double(point)
    px, py, pz, _ = point
    if px == 0 and (py - pz) % _P == 0:  # the neutral element (0, 1)
        raise InvalidKeyError("Ed25519 public key is a small-order point")
    return data


# ---------------------------------------------------------------------------
# Statements


@dataclass(frozen=True)
class Statement:
    """What a protocol signs: a context label, the round's binding values and a payload.

    Attributes:
        context: a non-empty label naming the purpose and its version, e.g.
            :data:`ADVERTISE_CONTEXT`.
        session_id: the round's session id (:func:`secagg.keys.session_id`).
        round: the round number, ``0 <= round < 2**64``.
        config_digest: the digest of the configuration the signer checked.
        payload: the signed content (e.g. the advertised public keys).
    """

    context: bytes
    session_id: bytes
    round: int
    config_digest: bytes
    payload: bytes

    def __post_init__(self) -> None:
        for name in ("context", "session_id", "config_digest", "payload"):
            object.__setattr__(self, name, require_bytes(getattr(self, name), name))
        if not self.context:
            raise ValueError("a statement needs a non-empty context label")
        if isinstance(self.round, bool) or not isinstance(self.round, int):
            raise TypeError(f"round must be an int, got {type(self.round).__name__}")
        if not 0 <= self.round < 1 << 64:
            raise ValueError(f"round must be in [0, 2**64), got {self.round}")

    def encode(self) -> bytes:
        """The signed bytes: ``length_prefixed(SIGNATURE_DOMAIN, context, session_id,
        round as 8 bytes big-endian, config_digest, payload)``."""
        return length_prefixed(
            SIGNATURE_DOMAIN,
            self.context,
            self.session_id,
            _ROUND.pack(self.round),
            self.config_digest,
            self.payload,
        )


def _check_signature_bytes(signature: object) -> bytes:
    if not isinstance(signature, (bytes, bytearray, memoryview)):
        raise TypeError(f"signature must be bytes, got {type(signature).__name__}")
    data = bytes(signature)
    if len(data) != SIGNATURE_BYTES:
        raise SignatureError(f"an Ed25519 signature is {SIGNATURE_BYTES} bytes, got {len(data)}")
    return data


# ---------------------------------------------------------------------------
# Keys


@dataclass(frozen=True, repr=False)
class IdentityPublicKey:
    """A validated Ed25519 public key (:func:`check_identity_key`). Compares by its bytes."""

    raw: bytes
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        raw = check_identity_key(self.raw)
        object.__setattr__(self, "raw", raw)
        object.__setattr__(self, "_key", Ed25519PublicKey.from_public_bytes(raw))

    def __repr__(self) -> str:
        return f"IdentityPublicKey({self.raw.hex()})"

    def verify(self, signature: bytes, message: bytes) -> None:
        """Check an RFC 8032 signature on the raw ``message``; raise SignatureError if it fails."""
        sig = _check_signature_bytes(signature)
        try:
            self._key.verify(sig, require_bytes(message, "message"))
        except InvalidSignature:
            raise SignatureError("Ed25519 signature does not verify") from None

    def verify_statement(self, signature: bytes, statement: Statement) -> None:
        """Check a signature made by :meth:`IdentityKeyPair.sign_statement`; raise SignatureError."""
        if not isinstance(statement, Statement):
            raise TypeError(f"statement must be a Statement, got {type(statement).__name__}")
        sig = _check_signature_bytes(signature)
        try:
            self._key.verify(sig, statement.encode())
        except InvalidSignature:
            raise SignatureError(
                f"signature on the {statement.context!r} statement does not verify"
            ) from None


@dataclass(frozen=True)
class IdentityKeyPair:
    """A long-term Ed25519 identity (RFC 8032 section 5.1). The private key stays out of ``repr``."""

    public_key: IdentityPublicKey
    _private: Ed25519PrivateKey = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self._private, Ed25519PrivateKey):
            raise TypeError("IdentityKeyPair needs an Ed25519PrivateKey; use generate()")
        if self._private.public_key().public_bytes_raw() != self.public_key.raw:
            raise ValueError("public_key does not match the private key")

    @classmethod
    def generate(cls, rng: RandomSource | None = None) -> IdentityKeyPair:
        """A fresh identity.

        With ``rng=None`` (the default and the only choice for real use) the
        key comes from ``Ed25519PrivateKey.generate()`` (OpenSSL's CSPRNG).
        With an ``rng`` the 32-byte seed is ``rng.bytes(32)``: for
        reproducible tests only, since whoever knows the rng's seed can sign.
        """
        if rng is None:
            return cls._from_key(Ed25519PrivateKey.generate())
        return cls.from_private_bytes(default_rng(rng).bytes(SEED_BYTES))

    @classmethod
    def from_private_bytes(cls, seed: bytes) -> IdentityKeyPair:
        """The identity for a 32-byte private-key seed (RFC 8032 section 5.1.5)."""
        data = require_bytes(seed, "seed")
        if len(data) != SEED_BYTES:
            raise ValueError(f"an Ed25519 private key seed is {SEED_BYTES} bytes, got {len(data)}")
        return cls._from_key(Ed25519PrivateKey.from_private_bytes(data))

    @classmethod
    def _from_key(cls, key: Ed25519PrivateKey) -> IdentityKeyPair:
        # A key derived from a seed is a multiple of the base point: never small order.
        return cls(IdentityPublicKey(key.public_key().public_bytes_raw()), key)

    def private_bytes(self) -> bytes:
        """The 32-byte seed (to store the identity on the device). Handle with care."""
        return self._private.private_bytes_raw()

    def sign(self, message: bytes) -> bytes:
        """The 64-byte RFC 8032 signature of the raw ``message``.

        Refuses (ValueError) a message that starts like a :class:`Statement`
        encoding, so that a raw signature can never verify as a statement.
        Protocol code should sign statements (:meth:`sign_statement`).
        """
        data = require_bytes(message, "message")
        if data.startswith(_STATEMENT_PREFIX):
            raise ValueError("this message is framed as a statement; use sign_statement()")
        return self._private.sign(data)

    def sign_statement(self, statement: Statement) -> bytes:
        """The 64-byte signature of ``statement.encode()``."""
        if not isinstance(statement, Statement):
            raise TypeError(f"statement must be a Statement, got {type(statement).__name__}")
        return self._private.sign(statement.encode())


def verify(public_key: IdentityPublicKey | bytes, signature: bytes, message: bytes) -> None:
    """Check an RFC 8032 Ed25519 signature on a raw message.

    Raises:
        InvalidKeyError: ``public_key`` is given as bytes and is not a valid key.
        SignatureError: the signature is not 64 bytes or does not verify.
    """
    key = public_key if isinstance(public_key, IdentityPublicKey) else IdentityPublicKey(public_key)
    key.verify(signature, message)


# ---------------------------------------------------------------------------
# Roster


def _check_client_id(cid: object) -> int:
    if isinstance(cid, bool):
        raise TypeError("client ids must be ints, not bool")
    try:
        value = operator.index(cid)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"client ids must be ints, got {type(cid).__name__}") from None
    if not 0 <= value <= MAX_CLIENT_ID:
        raise RosterError(f"client ids must be in [0, {MAX_CLIENT_ID}], got {value}")
    return value


class Roster(Mapping[int, IdentityPublicKey]):
    """Client id -> identity public key, fixed by the caller (device registration). Immutable.

    Built from a mapping whose values are :class:`IdentityPublicKey` or 32
    raw bytes. Ids are ints in ``[0, MAX_CLIENT_ID]``; every key is validated
    (:func:`check_identity_key`) and belongs to one client only.

    :attr:`digest` is ``SHA-256(length_prefixed(ROSTER_DOMAIN, e_1, ..., e_n))``
    over the entries ``e_i = id (4 bytes big-endian) || key`` in increasing id
    order; :meth:`to_bytes` is ``n (4 bytes big-endian) || e_1 || ... || e_n``.

    Raises (on construction):
        RosterError: empty, an id out of range or given twice, a key used by
            two clients, or an invalid key.
        TypeError: an id that is not an int, a key that is neither bytes nor
            IdentityPublicKey.
    """

    __slots__ = ("_digest", "_entries", "_ids")

    def __init__(self, entries: Mapping[int, IdentityPublicKey | bytes]) -> None:
        if not isinstance(entries, Mapping):
            raise TypeError(f"a roster is built from a mapping, got {type(entries).__name__}")
        parsed: dict[int, IdentityPublicKey] = {}
        for cid, key in entries.items():
            value = _check_client_id(cid)
            if value in parsed:  # e.g. 3 and numpy.int64(3)
                raise RosterError(f"client id {value} is given twice")
            if isinstance(key, IdentityPublicKey):
                parsed[value] = key
            elif isinstance(key, (bytes, bytearray, memoryview)):
                try:
                    parsed[value] = IdentityPublicKey(bytes(key))
                except InvalidKeyError as exc:
                    raise RosterError(f"identity key of client {value}: {exc}") from exc
            else:
                raise TypeError(
                    f"roster keys must be IdentityPublicKey or bytes, got {type(key).__name__}"
                )
        if not parsed:
            raise RosterError("a roster needs at least one client")
        owners: dict[bytes, int] = {}
        for cid in sorted(parsed):
            other = owners.setdefault(parsed[cid].raw, cid)
            if other != cid:
                raise RosterError(f"clients {other} and {cid} have the same identity key")
        self._ids = tuple(sorted(parsed))
        self._entries = {cid: parsed[cid] for cid in self._ids}
        framed = [_ID.pack(cid) + self._entries[cid].raw for cid in self._ids]
        self._digest = hashlib.sha256(length_prefixed(ROSTER_DOMAIN, *framed)).digest()

    # Mapping interface (immutable: no __setitem__)
    def __getitem__(self, client_id: int) -> IdentityPublicKey:
        return self._entries[client_id]

    def __iter__(self) -> Iterator[int]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Roster):
            return NotImplemented
        return self._digest == other._digest and self._entries == other._entries

    def __hash__(self) -> int:
        return hash(self._digest)

    def __repr__(self) -> str:
        return f"Roster({len(self)} clients, digest={self._digest.hex()[:16]}...)"

    @property
    def ids(self) -> tuple[int, ...]:
        """The client ids, increasing."""
        return self._ids

    @property
    def digest(self) -> bytes:
        """The canonical 32-byte SHA-256 digest (see the class docstring)."""
        return self._digest

    def to_bytes(self) -> bytes:
        """The canonical encoding: a 4-byte count, then each id (4 bytes) and key, by id."""
        return _COUNT.pack(len(self)) + b"".join(
            _ID.pack(cid) + self._entries[cid].raw for cid in self._ids
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Roster:
        """Decode :meth:`to_bytes`; only the canonical encoding is accepted.

        Raises:
            RosterError: truncated, trailing bytes, a count of zero, ids not
                strictly increasing (duplicates or unsorted), an id out of
                range, or an invalid or repeated key.
            TypeError: ``data`` is not bytes-like.
        """
        raw = require_bytes(data, "data")
        if len(raw) < _COUNT.size:
            raise RosterError("roster encoding is truncated (no count)")
        (count,) = _COUNT.unpack_from(raw)
        expected = _COUNT.size + count * _ENTRY_BYTES
        if len(raw) < expected:
            raise RosterError(f"roster encoding is truncated: {count} entries need {expected} bytes")
        if len(raw) > expected:
            raise RosterError(f"roster encoding has {len(raw) - expected} trailing bytes")
        entries: dict[int, bytes] = {}
        last = -1
        for offset in range(_COUNT.size, expected, _ENTRY_BYTES):
            (cid,) = _ID.unpack_from(raw, offset)
            if cid <= last:
                raise RosterError(f"roster ids are not strictly increasing at id {cid}")
            last = cid
            entries[cid] = raw[offset + _ID.size : offset + _ENTRY_BYTES]
        return cls(entries)

    def verify_statement(self, client_id: int, signature: bytes, statement: Statement) -> None:
        """Check that ``client_id``'s identity key signed ``statement``.

        Raises:
            SignatureError: ``client_id`` is not in the roster, or the
                signature does not verify under its key.
        """
        key = self._entries.get(client_id)
        if key is None:
            raise SignatureError(f"client {client_id} is not in the roster")
        key.verify_statement(signature, statement)


def enroll(
    client_ids: Iterable[int], rng: RandomSource | None = None
) -> tuple[Roster, dict[int, IdentityKeyPair]]:
    """Simulated device registration: a fresh identity per client, and their roster.

    For simulations and tests: in a deployment each device generates its own
    key and registers only the public half. Keys come from the OS CSPRNG
    unless ``rng`` is given (reproducible, so for tests only).
    """
    source = None if rng is None else default_rng(rng)
    identities = {int(cid): IdentityKeyPair.generate(source) for cid in client_ids}
    return Roster({cid: pair.public_key for cid, pair in identities.items()}), identities
