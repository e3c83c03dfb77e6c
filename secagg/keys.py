"""X25519 key agreement and HKDF-SHA256 key derivation, from ``cryptography``.

* X25519 (RFC 7748, section 5 and 6.1) gives two parties the same 32-byte
  shared secret from one's private key and the other's public key.
* The raw shared secret is never used as a key directly: it is not uniform (it
  is a curve coordinate) and it is the same for every purpose. Every key is
  derived with HKDF-SHA256 (RFC 5869), whose ``info`` binds a version tag, the
  purpose (``label``) and the round's ``session_id``
  (:func:`secagg.framing.length_prefixed`), so keys for different purposes or
  rounds are independent and nothing from one round can be replayed into
  another.
* Peer public keys are validated by :func:`check_public_key` before use, and
  refused with :class:`~secagg.errors.InvalidKeyError` (never a bare
  ``ValueError``): wrong length, a non-canonical encoding (top bit set or
  ``u >= p``; RFC 7748 section 5 has the X25519 *function* mask the top bit
  and reduce mod p, and OpenSSL does; this check is a protocol-level rule on
  top of it: the library's own keys are always canonical, so such a key is
  either corrupt or a second spelling of another key), or one of the five canonical
  u-coordinates of small order (:data:`SMALL_ORDER_U`). Those yield the
  all-zero shared secret for every clamped private key, which RFC 7748
  section 6.1 says to check for and abort on; the explicit check lets a server
  refuse such a key when it is advertised, before forwarding it, and the
  all-zero check after the exchange stays as defence in depth.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import InvalidKeyError
from .framing import length_prefixed, require_bytes
from .randomness import RandomSource, default_rng

__all__ = [
    "HKDF_DOMAIN",
    "KEY_BYTES",
    "SESSION_DOMAIN",
    "SMALL_ORDER_U",
    "KeyPair",
    "agree",
    "check_public_key",
    "hkdf",
    "hkdf_info",
    "session_id",
]

#: Length of X25519 private keys, public keys and shared secrets.
KEY_BYTES = 32
#: Version/domain tag that starts every HKDF ``info`` of this library.
HKDF_DOMAIN = b"secagg-fl/v1"
#: Domain tag of :func:`session_id` (distinct from every HKDF info).
SESSION_DOMAIN = b"secagg-fl/v1 session-id"

#: The field prime of Curve25519, 2^255 - 19 (RFC 7748 section 4.1).
_P25519 = (1 << 255) - 19

#: The canonical u-coordinates of the points of order dividing 8 on Curve25519
#: and its quadratic twist: u = 0 (order 2), u = 1 and u = p - 1 (order 4) and
#: two points of order 8. D. J. Bernstein's Curve25519 page (cr.yp.to/ecdh.html,
#: "How do I validate Curve25519 public keys?") lists twelve 32-byte strings
#: to reject where a protocol needs contributory behaviour, as SecAgg does (a
#: peer must not be able to force a known shared secret); libsodium's
#: ``has_small_order`` refuses the same points. The other seven are non-canonical
#: spellings of these five (u + p or u + 2p, read with all 256 bits), refused here
#: as non-canonical. X25519 clamps every private key to a multiple of 8, so
#: each of them gives the all-zero shared secret. tests/secagg/test_keys.py
#: checks every order with an independent Montgomery ladder.
SMALL_ORDER_U: frozenset[int] = frozenset(
    {
        0,
        1,
        _P25519 - 1,
        325606250916557431795983626356110631294008115727848805560023387167927233504,
        39382357235489614581723060781553021112529911719440698176882885853963445705823,
    }
)

# HKDF-Expand produces at most 255 hash blocks (RFC 5869 section 2.3).
_MAX_HKDF_LENGTH = 255 * hashes.SHA256.digest_size


def check_public_key(public: bytes) -> bytes:
    """Return ``public`` as bytes if it is an X25519 public key a peer may advertise.

    Run it on every advertised key before using or forwarding it (a server can
    refuse a client's key at advertisement, so one malicious client cannot make
    its peers fail later). :meth:`KeyPair.exchange` and :func:`agree` run it too.

    Raises:
        InvalidKeyError: not 32 bytes; not the canonical little-endian encoding
            of a u-coordinate (top bit set, or ``u >= 2^255 - 19``; RFC 7748
            section 5); or a point of small order (:data:`SMALL_ORDER_U`), for
            which X25519 gives the all-zero shared secret (RFC 7748 section 6.1).
        TypeError: ``public`` is not bytes-like.
    """
    data = require_bytes(public, "public key")
    if len(data) != KEY_BYTES:
        raise InvalidKeyError(f"an X25519 public key is {KEY_BYTES} bytes, got {len(data)}")
    u = int.from_bytes(data, "little")
    if u >= _P25519:
        raise InvalidKeyError("X25519 public key is not canonical (top bit set or u >= p)")
    if u in SMALL_ORDER_U:
        raise InvalidKeyError("X25519 public key is a small-order point")
    return data


@dataclass(frozen=True)
class KeyPair:
    """An X25519 key pair (RFC 7748). Compares and hashes by its public key.

    Build one with :meth:`generate` or :meth:`from_private_bytes`. The private
    key is kept inside a ``cryptography`` key object and left out of ``repr``.
    """

    public_bytes: bytes
    _private: X25519PrivateKey = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self._private, X25519PrivateKey):
            raise TypeError("KeyPair needs an X25519PrivateKey; use KeyPair.generate()")
        derived = self._private.public_key().public_bytes_raw()
        if self.public_bytes != derived:
            raise ValueError("public_bytes does not match the private key")

    @classmethod
    def generate(cls, rng: RandomSource | None = None) -> KeyPair:
        """A fresh key pair.

        With ``rng=None`` (the default and the only choice for real use) the
        private key comes from ``X25519PrivateKey.generate()`` (OpenSSL's
        CSPRNG). With an ``rng`` the 32 private-key bytes are ``rng.bytes(32)``:
        this exists for reproducible simulations and tests only, since whoever
        knows the rng's seed knows the key.
        """
        if rng is None:
            return cls._from_key(X25519PrivateKey.generate())
        return cls.from_private_bytes(default_rng(rng).bytes(KEY_BYTES))

    @classmethod
    def from_private_bytes(cls, private: bytes) -> KeyPair:
        """The key pair for 32 raw private-key bytes (clamped by X25519 as in RFC 7748)."""
        data = require_bytes(private, "private")
        if len(data) != KEY_BYTES:
            raise ValueError(f"an X25519 private key is {KEY_BYTES} bytes, got {len(data)}")
        return cls._from_key(X25519PrivateKey.from_private_bytes(data))

    @classmethod
    def _from_key(cls, key: X25519PrivateKey) -> KeyPair:
        return cls(public_bytes=key.public_key().public_bytes_raw(), _private=key)

    def private_bytes(self) -> bytes:
        """The 32 raw private-key bytes (e.g. to Shamir-share the mask key). Handle with care."""
        return self._private.private_bytes_raw()

    def exchange(self, peer_public: bytes) -> bytes:
        """The raw X25519 shared secret with ``peer_public``; prefer :func:`agree`.

        Raises:
            InvalidKeyError: ``peer_public`` fails :func:`check_public_key`, or
                the exchange gives the all-zero shared secret.
            TypeError: ``peer_public`` is not bytes-like.
        """
        peer = check_public_key(require_bytes(peer_public, "peer_public"))
        try:
            shared = self._private.exchange(X25519PublicKey.from_public_bytes(peer))
        except ValueError as exc:
            # OpenSSL refuses an all-zero output with a bare ValueError ("Error
            # computing shared key."); it is the peer's fault, so say so.
            raise InvalidKeyError(f"X25519 with this peer public key failed: {exc}") from None
        # RFC 7748 section 6.1: check for the all-zero value and abort. (Recent
        # OpenSSL already refuses it; the check does not rely on that.)
        # compare_digest avoids leaking the position of the first nonzero byte.
        if hmac.compare_digest(shared, bytes(KEY_BYTES)):
            raise InvalidKeyError(
                "peer public key is a small-order point (all-zero shared secret)"
            )
        return shared


def hkdf_info(label: bytes, session_id: bytes) -> bytes:
    """The HKDF ``info`` used by :func:`hkdf`: ``length_prefixed(HKDF_DOMAIN, label, session_id)``."""
    return length_prefixed(
        HKDF_DOMAIN, require_bytes(label, "label"), require_bytes(session_id, "session_id")
    )


def hkdf(secret: bytes, *, label: bytes, session_id: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 (RFC 5869) of ``secret`` with no salt and a bound ``info``.

    ``info = length_prefixed(b"secagg-fl/v1", label, session_id)``. The salt is
    absent (RFC 5869 section 2.2: a string of HashLen zeros), which is the
    standard choice when the input is already a Diffie-Hellman secret and the
    context goes into ``info``. Distinct ``(label, session_id)`` pairs give
    computationally independent keys; the output is ``length`` bytes,
    ``1 <= length <= 8160``.
    """
    ikm = require_bytes(secret, "secret")
    if isinstance(length, bool) or not isinstance(length, int):
        raise TypeError(f"length must be an int, got {type(length).__name__}")
    if not 1 <= length <= _MAX_HKDF_LENGTH:
        raise ValueError(f"length must be in [1, {_MAX_HKDF_LENGTH}], got {length}")
    kdf = HKDF(
        algorithm=hashes.SHA256(), length=length, salt=None, info=hkdf_info(label, session_id)
    )
    return kdf.derive(ikm)


def agree(
    private: KeyPair,
    peer_public: bytes,
    *,
    label: bytes,
    session_id: bytes,
    length: int = 32,
) -> bytes:
    """A key shared with the owner of ``peer_public``: X25519 (RFC 7748), then :func:`hkdf`.

    ``agree(a, b.public_bytes, ...) == agree(b, a.public_bytes, ...)`` for the
    same label and session id. The derived key is specific to ``label`` and
    ``session_id``.

    Raises:
        InvalidKeyError: ``peer_public`` is not a valid peer key
            (:func:`check_public_key`), or the exchange gives the all-zero
            shared secret (RFC 7748 section 6.1).
    """
    if not isinstance(private, KeyPair):
        raise TypeError(f"private must be a KeyPair, got {type(private).__name__}")
    shared = private.exchange(peer_public)
    return hkdf(shared, label=label, session_id=session_id, length=length)


def session_id(*public_material: bytes) -> bytes:
    """A 32-byte round identifier: SHA-256 of ``length_prefixed(SESSION_DOMAIN, *parts)``.

    Pass every public value that defines the round (e.g. each client's id and
    advertised public keys) in a canonical order fixed by the caller (for
    example sorted by client id): the length prefixes make the encoding
    unambiguous, so different material gives different ids up to SHA-256
    collisions.
    """
    parts = [require_bytes(p, "public material") for p in public_material]
    return hashlib.sha256(length_prefixed(SESSION_DOMAIN, *parts)).digest()
