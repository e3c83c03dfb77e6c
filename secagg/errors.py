"""Exceptions raised by the building blocks."""

from __future__ import annotations

__all__ = ["DecryptionError", "SecaggError", "ShamirError"]


class SecaggError(Exception):
    """Base class for errors raised by :mod:`secagg`."""


class ShamirError(SecaggError, ValueError):
    """Shares cannot be combined: too few, duplicate or invalid x, or inconsistent shares."""


class DecryptionError(SecaggError):
    """Authenticated decryption failed: wrong key, tampered ciphertext or associated data."""
