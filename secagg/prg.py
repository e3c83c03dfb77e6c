"""Cryptographic PRG: expand a 32-byte seed into uniform words in Z_{2^bits}.

Construction (all primitives from ``cryptography``):

1. Per-label subkey: ``K_label = HKDF-Expand-SHA256(key, info, 32)`` with
   ``info = length_prefixed(b"secagg-fl/v1 prg", label)`` (RFC 5869 section 2.3;
   one block, i.e. ``HMAC-SHA256(key, info || 0x01)``). ``key`` must already be
   uniformly random (a CSPRNG output or an HKDF output), which is what
   HKDF-Expand requires of its PRK. Different labels give independent subkeys,
   so two labels never share an AES key.
2. Keystream: AES-256 in CTR mode (NIST SP 800-38A section 6.5) under
   ``K_label`` with initial counter block 0, i.e. the encryption of zero bytes.
   A fixed counter start is safe because every ``(key, label)`` pair has its
   own AES key; the same pair deliberately gives the same stream (both ends
   of a pairwise mask must expand the same seed to the same mask). Callers
   that need a fresh mask per round put the round's session id in ``label``.
3. Words: 4 little-endian keystream bytes per word when ``bits <= 32``,
   8 otherwise, masked to the low ``bits`` bits. Masking a uniform 32- or
   64-bit word to ``bits`` bits is exactly uniform because ``2^bits`` divides
   ``2^32`` (resp. ``2^64``); no rejection sampling is needed.

The output is indistinguishable from uniform as long as AES-256 is a PRP and
HMAC-SHA256 a PRF; the 128-bit counter cannot wrap for any feasible ``n``.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from . import modular
from .framing import length_prefixed

__all__ = ["KEY_BYTES", "PRG_DOMAIN", "MaskSum", "expand", "keystream", "subkey"]

#: Length of the PRG seed (an AES-256 key's worth of entropy).
KEY_BYTES = 32
#: Domain tag of the per-label subkey derivation.
PRG_DOMAIN = b"secagg-fl/v1 prg"

_ZERO_COUNTER = bytes(16)
# Keystream is produced by encrypting this many zero bytes at a time.
_CHUNK_BYTES = 1 << 16
_ZEROS = bytes(_CHUNK_BYTES)
# Spare output bytes that update_into may require (AES block size - 1).
_SLACK = 15
_SLACK_WORDS_4 = 4  # >= 15 spare bytes in 4-byte words
_SLACK_WORDS_8 = 2  # >= 15 spare bytes in 8-byte words


def _check_key(key: object) -> bytes:
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise TypeError(f"key must be bytes, got {type(key).__name__}")
    data = bytes(key)
    if len(data) != KEY_BYTES:
        raise ValueError(f"PRG key must be exactly {KEY_BYTES} bytes, got {len(data)}")
    return data


def subkey(key: bytes, label: bytes) -> bytes:
    """The AES-256 key for ``(key, label)``: HKDF-Expand-SHA256 (RFC 5869) with a bound label."""
    k = _check_key(key)
    if not isinstance(label, (bytes, bytearray, memoryview)):
        raise TypeError(f"label must be bytes, got {type(label).__name__}")
    info = length_prefixed(PRG_DOMAIN, bytes(label))
    return HKDFExpand(algorithm=hashes.SHA256(), length=KEY_BYTES, info=info).derive(k)


def _keystream_into(aes_key: bytes, buf: memoryview, nbytes: int, counter: bytes) -> None:
    """Write ``nbytes`` of AES-256-CTR keystream into ``buf`` (which has >= 15 spare bytes).

    The keystream is the encryption of zeros. Working in fixed-size chunks from
    one shared zero buffer into a caller-owned buffer avoids allocating (and
    page-faulting) large temporary buffers, which otherwise costs more than
    the AES itself. Older ``cryptography`` releases require ``update_into``'s
    output to have ``block_size - 1`` spare bytes, hence the slack.
    """
    encryptor = Cipher(algorithms.AES(aes_key), modes.CTR(counter)).encryptor()
    zeros = memoryview(_ZEROS)
    pos = 0
    while pos < nbytes:
        m = min(_CHUNK_BYTES, nbytes - pos)
        written = encryptor.update_into(zeros[:m], buf[pos : pos + m + _SLACK])
        # CTR is a stream mode: exactly as many bytes out as in.
        if written != m:
            raise RuntimeError("AES-CTR produced an unexpected number of bytes")
        pos += m
    encryptor.finalize()


def keystream(aes_key: bytes, nbytes: int, initial_counter: bytes = _ZERO_COUNTER) -> bytes:
    """``nbytes`` of raw AES-256-CTR keystream (NIST SP 800-38A section 6.5).

    The counter block is 16 bytes, incremented as one 128-bit big-endian
    integer (the "standard incrementing function" of SP 800-38A appendix B.1).
    Exposed so the construction can be checked against the SP 800-38A F.5.5
    known-answer vector; :func:`expand` uses counter 0 under a per-label key.
    """
    k = _check_key(aes_key)
    if not isinstance(initial_counter, (bytes, bytearray)) or len(initial_counter) != 16:
        raise ValueError("the initial counter block must be 16 bytes")
    nbytes = _check_count(nbytes, "nbytes")
    buf = bytearray(nbytes + _SLACK)
    _keystream_into(k, memoryview(buf), nbytes, bytes(initial_counter))
    return bytes(buf[:nbytes])


def _check_count(n: object, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"{name} must be a non-negative int, got {n!r}")
    return int(n)


def expand(key: bytes, label: bytes, n: int, bits: int) -> np.ndarray:
    """``n`` uniform words in ``[0, 2^bits)`` as a uint64 array, from a 32-byte seed.

    Deterministic in ``(key, label, n, bits)``; a prefix of a longer expansion
    with the same ``(key, label, bits)``. Different labels or keys give
    independent streams (see the module docstring). Never use numpy's RNG for
    masks: this is the only mask generator.

    Args:
        key: exactly 32 uniformly random bytes (ValueError otherwise).
        label: purpose of the stream, e.g. ``length_prefixed(b"pairwise", session_id)``.
        n: number of words, ``n >= 0``.
        bits: word size, ``1 <= bits <= 64``.
    """
    bits = modular.check_bits(bits)
    n = _check_count(n, "n")
    aes_key = subkey(key, label)
    if bits <= 32:
        # 4 bytes per word: half the AES work of 8-byte words.
        raw = np.empty(n + _SLACK_WORDS_4, dtype="<u4")
        _keystream_into(aes_key, raw.view(np.uint8).data, 4 * n, _ZERO_COUNTER)
        out = raw[:n].astype(np.uint64)  # fresh, native-endian uint64 array
    else:
        raw = np.empty(n + _SLACK_WORDS_8, dtype="<u8")
        _keystream_into(aes_key, raw.view(np.uint8).data, 8 * n, _ZERO_COUNTER)
        # Little-endian words on every host: a no-op view on little-endian machines.
        out = raw[:n].astype(np.uint64, copy=False)
    if bits < 64:
        out &= modular.mask(bits)
    return out


class MaskSum:
    """A running sum of words and of ``±expand(key, label, n, bits)`` masks in Z_{2^bits}.

    Equal to adding and subtracting :func:`expand` outputs with
    :mod:`secagg.modular`, but built for the masking loop of secure
    aggregation, where one vector receives dozens of masks: each mask's
    keystream goes into one reusable scratch buffer (no allocation or page
    faults per mask) and is added in the narrowest word type that works.
    For ``bits <= 32`` that is uint32: arithmetic mod 2^32 is exact mod
    2^bits because 2^bits divides 2^32, so the raw 4-byte keystream words
    (whose low ``bits`` bits are exactly :func:`expand`'s words) are added
    without masking or widening, and the sum is reduced once in :meth:`result`.
    """

    __slots__ = ("_acc", "_bits", "_n", "_raw", "_word")

    def __init__(self, n: int, bits: int) -> None:
        self._bits = modular.check_bits(bits)
        self._n = _check_count(n, "n")
        self._word = 4 if self._bits <= 32 else 8
        dtype = np.dtype("<u4") if self._word == 4 else np.dtype("<u8")
        self._acc = np.zeros(self._n, dtype=dtype.newbyteorder("="))
        self._raw = np.empty(
            self._n + (_SLACK_WORDS_4 if self._word == 4 else _SLACK_WORDS_8), dtype
        )

    def add_words(self, words: np.ndarray, *, subtract: bool = False) -> None:
        """Add (or subtract) ``n`` words, e.g. an encoded input (integers; taken mod 2^bits)."""
        arr = np.asarray(words)
        if arr.shape != (self._n,) or arr.dtype.kind != "u":
            raise ValueError(f"words must be an unsigned integer vector of length {self._n}")
        part = arr.astype(self._acc.dtype, copy=False)  # wraps mod 2^32 or 2^64, exact mod 2^bits
        if subtract:
            self._acc -= part
        else:
            self._acc += part

    def add_mask(self, key: bytes, label: bytes, *, subtract: bool = False) -> None:
        """Add (or subtract) ``expand(key, label, n, bits)``."""
        aes_key = subkey(key, label)
        _keystream_into(
            aes_key, self._raw.view(np.uint8).data, self._word * self._n, _ZERO_COUNTER
        )
        # Little-endian words on every host: a no-op view on little-endian machines.
        words = self._raw[: self._n].astype(self._acc.dtype, copy=False)
        if subtract:
            self._acc -= words
        else:
            self._acc += words

    def result(self) -> np.ndarray:
        """The sum mod 2^bits as a fresh uint64 array."""
        out = self._acc.astype(np.uint64)
        if self._bits < 64:
            out &= modular.mask(self._bits)
        return out
