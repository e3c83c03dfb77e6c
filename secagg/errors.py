"""Exceptions raised by the building blocks.

Every error a peer's data can cause is a :class:`SecaggError` subclass, so a
protocol layer can tell "this input was bad" (catch ``SecaggError``) from a
programming error (``TypeError`` for a wrong argument type). The errors about
malformed values also subclass ``ValueError``, as they always did, so callers
that caught ``ValueError`` keep working.
"""

from __future__ import annotations

__all__ = [
    "DecryptionError",
    "InvalidKeyError",
    "PartialDecryptionError",
    "RosterError",
    "SecaggError",
    "ShamirError",
    "SignatureError",
    "ThresholdDecryptionError",
    "UndecodableSharesError",
]


class SecaggError(Exception):
    """Base class for errors raised by :mod:`secagg`."""


class ShamirError(SecaggError, ValueError):
    """Shares cannot be combined: too few, duplicate or invalid x, or inconsistent shares."""


class UndecodableSharesError(ShamirError):
    """More shares are wrong than Reed-Solomon decoding can correct (see :mod:`secagg.robust`).

    Attributes:
        n_shares: how many shares were given (``n'``).
        threshold: the sharing threshold ``t``.
        max_errors: how many wrong shares could have been corrected,
            ``(n' - t) // 2``; more than that are wrong.
        secret_index: which secret of a batch could not be decoded (``None``
            for a single secret).
    """

    def __init__(
        self,
        message: str,
        *,
        n_shares: int,
        threshold: int,
        max_errors: int,
        secret_index: int | None = None,
    ) -> None:
        super().__init__(message)
        self.n_shares = n_shares
        self.threshold = threshold
        self.max_errors = max_errors
        self.secret_index = secret_index


class DecryptionError(SecaggError):
    """Authenticated decryption failed: wrong key, tampered ciphertext or associated data."""


class InvalidKeyError(SecaggError, ValueError):
    """A public key (X25519 or Ed25519) is malformed, non-canonical or of small order."""


class SignatureError(SecaggError):
    """An Ed25519 signature does not verify (wrong key, message, context or signer)."""


class RosterError(SecaggError, ValueError):
    """A roster of identity keys cannot be built or decoded (bad id, key or encoding)."""


class PartialDecryptionError(SecaggError):
    """A committee member's threshold-Paillier partial decryption is wrong.

    Its proof of correct decryption does not verify for these ciphertexts,
    this context and this member's verification key, or it does not fit the
    key (wrong member index, count or value range). Raised by
    :func:`secagg.paillier.threshold.verify_partial`.

    Attributes:
        member: the committee index (1..m) of the member whose partial
            decryption failed.
    """

    def __init__(self, message: str, *, member: int) -> None:
        super().__init__(message)
        self.member = member


class ThresholdDecryptionError(SecaggError):
    """Fewer than ``threshold`` valid partial decryptions: nothing can be decrypted.

    Attributes:
        threshold: the number of valid partial decryptions needed (``t``).
        valid: the committee indices whose partial decryptions verified.
        invalid: committee index -> why its partial decryption was refused.
    """

    def __init__(
        self,
        message: str,
        *,
        threshold: int,
        valid: tuple[int, ...],
        invalid: dict[int, str],
    ) -> None:
        super().__init__(message)
        self.threshold = threshold
        self.valid = valid
        self.invalid = invalid
