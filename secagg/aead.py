"""AES-256-GCM authenticated encryption of share envelopes (NIST SP 800-38D).

:func:`encrypt` returns ``nonce || ciphertext || tag`` with a fresh random
96-bit nonce and a 128-bit tag. :func:`decrypt` either returns the exact
plaintext that was encrypted under the same key and associated data, or raises
:class:`~secagg.errors.DecryptionError`; it never returns unauthenticated
bytes.

The associated data built by :func:`associated_data` binds the sender, the
receiver, the protocol round and the session id, so an envelope cannot be
replayed to another receiver, attributed to another sender, or moved to
another round or session: any such change makes decryption fail.

Nonces: random 96-bit nonces are safe for up to 2^32 encryptions under one key
(SP 800-38D section 8.3). Each channel key in SecAgg is derived per session
and pair and encrypts a handful of envelopes, far below that bound.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import DecryptionError
from .framing import length_prefixed
from .randomness import RandomSource, default_rng

__all__ = [
    "AD_DOMAIN",
    "KEY_BYTES",
    "NONCE_BYTES",
    "OVERHEAD",
    "TAG_BYTES",
    "associated_data",
    "decrypt",
    "encrypt",
]

#: AES-256 key length.
KEY_BYTES = 32
#: GCM nonce (IV) length: 96 bits, the length SP 800-38D recommends.
NONCE_BYTES = 12
#: GCM authentication tag length (full 128 bits).
TAG_BYTES = 16
#: Bytes added to a plaintext by :func:`encrypt`.
OVERHEAD = NONCE_BYTES + TAG_BYTES
#: Domain tag starting every associated-data string of this library.
AD_DOMAIN = b"secagg-fl/v1 aead"

_U64_MAX = (1 << 64) - 1


def _check_key(key: object) -> bytes:
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise TypeError(f"key must be bytes, got {type(key).__name__}")
    data = bytes(key)
    if len(data) != KEY_BYTES:
        raise ValueError(f"AES-256-GCM key must be {KEY_BYTES} bytes, got {len(data)}")
    return data


def _check_bytes(value: object, name: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name} must be bytes, got {type(value).__name__}")
    return bytes(value)


def _u64(value: object, name: str) -> bytes:
    if type(value) is int and 0 <= value <= _U64_MAX:  # fast path: a plain in-range int
        return value.to_bytes(8, "big")
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not 0 <= value <= _U64_MAX:
        raise ValueError(f"{name} must be in [0, 2^64), got {value}")
    return value.to_bytes(8, "big")


def associated_data(*, sender: int, receiver: int, round: int, session_id: bytes) -> bytes:
    """Canonical associated data binding an envelope to its sender, receiver, round and session.

    ``length_prefixed(AD_DOMAIN, sender, receiver, round, session_id)`` with
    the integers as 8-byte big-endian. Distinct argument tuples give distinct
    byte strings (the fields are fixed-width or length-prefixed), so changing
    any one of them makes :func:`decrypt` fail.
    """
    return length_prefixed(
        AD_DOMAIN,
        _u64(sender, "sender"),
        _u64(receiver, "receiver"),
        _u64(round, "round"),
        _check_bytes(session_id, "session_id"),
    )


def encrypt(
    key: bytes,
    plaintext: bytes,
    *,
    associated_data: bytes,
    rng: RandomSource | None = None,
) -> bytes:
    """AES-256-GCM encryption (SP 800-38D): ``nonce (12) || ciphertext || tag (16)``.

    The nonce is 12 fresh bytes from ``rng`` (default: the OS CSPRNG). A
    deterministic ``rng`` is for reproducible tests only: reusing a nonce under
    one key breaks GCM's confidentiality and authenticity.

    Raises:
        ValueError: ``key`` is not 32 bytes.
    """
    k = _check_key(key)
    data = _check_bytes(plaintext, "plaintext")
    ad = _check_bytes(associated_data, "associated_data")
    nonce = default_rng(rng).bytes(NONCE_BYTES)
    if len(nonce) != NONCE_BYTES:
        raise ValueError("rng returned the wrong number of bytes")
    return nonce + AESGCM(k).encrypt(nonce, data, ad)


def decrypt(key: bytes, blob: bytes, *, associated_data: bytes) -> bytes:
    """Authenticated decryption of a blob made by :func:`encrypt`.

    Returns the plaintext only if the tag verifies under ``key`` and
    ``associated_data``.

    Raises:
        DecryptionError: the blob is too short, or was encrypted under another
            key or associated data, or was modified in any way.
        ValueError: ``key`` is not 32 bytes (a local programming error, not
            something a peer can cause).
    """
    k = _check_key(key)
    ad = _check_bytes(associated_data, "associated_data")
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise DecryptionError(f"ciphertext must be bytes, got {type(blob).__name__}")
    data = bytes(blob)
    if len(data) < OVERHEAD:
        raise DecryptionError(
            f"ciphertext of {len(data)} bytes is shorter than nonce + tag ({OVERHEAD} bytes)"
        )
    try:
        return AESGCM(k).decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], ad)
    except InvalidTag:
        # Deliberately uninformative: which check failed is not revealed.
        raise DecryptionError(
            "authentication failed: wrong key, associated data, or tampered ciphertext"
        ) from None
