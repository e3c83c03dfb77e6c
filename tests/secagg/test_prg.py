"""PRG mask expansion: determinism, independence of labels and keys, range, uniformity.

Known answers: the raw AES-256-CTR keystream is checked against NIST SP 800-38A
F.5.5, and expand() against a direct computation written here from the
documented construction (hmac for HKDF-Expand, cryptography's AES-CTR used
directly, Python ints for the word layout).
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from secagg import prg

KEY = hashlib.sha256(b"prg test key").digest()


def _reference_expand(key: bytes, label: bytes, n: int, bits: int) -> list[int]:
    info = b"".join(struct.pack(">I", len(p)) + p for p in (b"secagg-fl/v1 prg", label))
    aes_key = hmac.new(key, info + b"\x01", hashlib.sha256).digest()  # HKDF-Expand, one block
    width = 4 if bits <= 32 else 8
    enc = Cipher(algorithms.AES(aes_key), modes.CTR(bytes(16))).encryptor()
    stream = enc.update(bytes(n * width)) + enc.finalize()
    return [
        int.from_bytes(stream[i * width : (i + 1) * width], "little") % (1 << bits)
        for i in range(n)
    ]


def test_aes256_ctr_keystream_matches_nist_sp800_38a_f55():
    # NIST SP 800-38A, appendix F.5.5 CTR-AES256.Encrypt.
    key = bytes.fromhex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
    counter = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
    plaintext = bytes.fromhex(
        "6bc1bee22e409f96e93d7e117393172a"
        "ae2d8a571e03ac9c9eb76fac45af8e51"
        "30c81c46a35ce411e5fbc1191a0a52ef"
        "f69f2445df4f9b17ad2b417be66c3710"
    )
    ciphertext = bytes.fromhex(
        "601ec313775789a5b7a7f504bbf3d228"
        "f443e3ca4d62b59aca84e990cacaf5c5"
        "2b0930daa23de94ce87017ba2d84988d"
        "dfc9c58db67aada613c2dd08457941a6"
    )
    expected = bytes(p ^ c for p, c in zip(plaintext, ciphertext, strict=True))
    assert prg.keystream(key, 64, initial_counter=counter) == expected
    # The counter wraps past ...ff into the next block exactly as SP 800-38A's B.1.
    assert prg.keystream(key, 20, initial_counter=counter) == expected[:20]


@pytest.mark.parametrize("bits", [1, 7, 8, 31, 32, 33, 52, 63, 64])
@pytest.mark.parametrize("n", [0, 1, 5, 1000])
def test_expand_matches_an_independent_computation(bits, n):
    got = prg.expand(KEY, b"label", n, bits)
    assert got.dtype == np.uint64
    assert got.shape == (n,)
    assert got.tolist() == _reference_expand(KEY, b"label", n, bits)


def test_expand_matches_reference_across_internal_chunk_boundaries():
    # 40_000 4-byte words = 160_000 bytes spans several 64 KiB chunks.
    n = 40_000
    got = prg.expand(KEY, b"chunks", n, 32)
    assert got.tolist() == _reference_expand(KEY, b"chunks", n, 32)
    got64 = prg.expand(KEY, b"chunks", 9_000, 64)
    assert got64.tolist() == _reference_expand(KEY, b"chunks", 9_000, 64)


def test_expand_is_deterministic_and_prefix_consistent():
    a = prg.expand(KEY, b"mask", 5000, 32)
    b = prg.expand(KEY, b"mask", 5000, 32)
    assert np.array_equal(a, b)
    assert np.array_equal(prg.expand(KEY, b"mask", 123, 32), a[:123])
    # Returned arrays are independent and writable.
    a[0] ^= np.uint64(1)
    assert not np.array_equal(a, prg.expand(KEY, b"mask", 5000, 32))


@settings(max_examples=60, deadline=None)
@given(
    key=st.binary(min_size=32, max_size=32),
    label=st.binary(max_size=40),
    n=st.integers(0, 300),
    bits=st.integers(1, 64),
)
def test_values_are_below_two_to_the_bits(key, label, n, bits):
    out = prg.expand(key, label, n, bits)
    assert out.dtype == np.uint64 and out.shape == (n,)
    assert all(int(v) < (1 << bits) for v in out)


@settings(max_examples=50, deadline=None)
@given(
    label_a=st.binary(max_size=20),
    label_b=st.binary(max_size=20),
    bits=st.sampled_from([16, 32, 64]),
)
def test_different_labels_give_different_streams(label_a, label_b, bits):
    a = prg.expand(KEY, label_a, 64, bits)
    b = prg.expand(KEY, label_b, 64, bits)
    # 64 words of >= 16 bits agree by chance with probability < 2^-1000.
    assert np.array_equal(a, b) == (label_a == label_b)


def test_different_keys_give_different_streams():
    k2 = bytes(31) + b"\x01"
    a = prg.expand(KEY, b"l", 64, 32)
    b = prg.expand(k2, b"l", 64, 32)
    c = prg.expand(bytes(32), b"l", 64, 32)
    assert not np.array_equal(a, b)
    assert not np.array_equal(b, c)
    # No correlation shortcut: the streams do not share words at all positions.
    assert np.count_nonzero(a == b) < 3


def test_labels_are_not_ambiguous_and_subkeys_differ():
    assert prg.subkey(KEY, b"ab") != prg.subkey(KEY, b"ab\x00")
    assert prg.subkey(KEY, b"") != prg.subkey(KEY, b"\x00")
    assert len(prg.subkey(KEY, b"x")) == 32


def test_word_width_follows_bits():
    # bits <= 32 uses 4 bytes per word, so 32-bit and 20-bit words share low bits;
    # bits > 32 uses 8 bytes per word.
    w32 = prg.expand(KEY, b"w", 100, 32)
    w20 = prg.expand(KEY, b"w", 100, 20)
    w64 = prg.expand(KEY, b"w", 50, 64)
    assert np.array_equal(w20, w32 & np.uint64((1 << 20) - 1))
    assert np.array_equal(w64 & np.uint64(0xFFFFFFFF), w32[0::2][:50])
    assert np.array_equal(w64 >> np.uint64(32), w32[1::2][:50])


@pytest.mark.parametrize("bits", [1, 4, 8])
def test_small_word_values_are_uniform_chi_square(bits):
    n = 200_000
    words = prg.expand(KEY, f"uniform-{bits}".encode(), n, bits)
    counts = np.bincount(words.astype(np.int64), minlength=1 << bits)
    assert counts.size == 1 << bits
    # Fixed key: deterministic. A broken PRG (bias, stuck bits) gives p ~ 0.
    assert stats.chisquare(counts).pvalue > 1e-4


@pytest.mark.parametrize("bits", [32, 64])
def test_every_byte_of_wide_words_is_uniform(bits):
    n = 100_000
    words = prg.expand(KEY, b"bytes", n, bits)
    width = bits // 8
    as_bytes = words.astype("<u8").view(np.uint8).reshape(n, 8)[:, :width]
    for pos in range(width):
        counts = np.bincount(as_bytes[:, pos], minlength=256)
        assert stats.chisquare(counts).pvalue > 1e-5, f"byte {pos} of {bits}-bit words"
    # Top bit of the word is set about half the time (exercises the 8-byte path).
    top = (words >> np.uint64(bits - 1)) & np.uint64(1)
    assert abs(top.mean() - 0.5) < 5 * 0.5 / np.sqrt(n)


def test_bits_not_dividing_a_byte_are_uniform():
    # 2^bits divides the word range, so masking is exactly uniform for any bits.
    bits, n = 3, 90_000
    counts = np.bincount(prg.expand(KEY, b"b3", n, bits).astype(np.int64), minlength=8)
    assert counts.size == 8
    assert stats.chisquare(counts).pvalue > 1e-4


@pytest.mark.parametrize("key", [b"", b"\x00" * 16, b"\x00" * 31, b"\x00" * 33, b"\x00" * 64])
def test_key_must_be_exactly_32_bytes(key):
    with pytest.raises(ValueError, match="32 bytes"):
        prg.expand(key, b"l", 10, 32)


def test_bad_arguments_raise():
    with pytest.raises(TypeError):
        prg.expand("k" * 32, b"l", 10, 32)
    with pytest.raises(TypeError):
        prg.expand(KEY, "label", 10, 32)
    for bits in (0, 65, -1):
        with pytest.raises(ValueError):
            prg.expand(KEY, b"l", 10, bits)
    for n in (-1, 1.5, True):
        with pytest.raises(ValueError):
            prg.expand(KEY, b"l", n, 32)
    with pytest.raises(ValueError):
        prg.keystream(KEY, 16, initial_counter=bytes(8))


def test_numpy_integer_arguments_are_accepted():
    a = prg.expand(KEY, b"l", np.int64(10), np.int32(32))
    assert np.array_equal(a, prg.expand(KEY, b"l", 10, 32))


@settings(max_examples=60, deadline=None)
@given(
    bits=st.integers(1, 64),
    n=st.integers(0, 3000),
    ops=st.lists(st.tuples(st.booleans(), st.booleans()), max_size=6),
)
def test_mask_sum_equals_python_int_sum_of_expansions(bits, n, ops):
    """MaskSum (narrow in-place words) equals the exact sum mod 2^bits of ±expand and ±words."""
    acc = prg.MaskSum(n, bits)
    expected = [0] * n
    for i, (is_mask, subtract) in enumerate(ops):
        if is_mask:
            label = f"mask-{i}".encode()
            acc.add_mask(KEY, label, subtract=subtract)
            values = _reference_expand(KEY, label, n, bits)
        else:
            words = prg.expand(KEY, f"words-{i}".encode(), n, 64)  # may exceed 2^bits
            acc.add_words(words, subtract=subtract)
            values = [int(w) for w in words]
        sign = -1 if subtract else 1
        expected = [e + sign * v for e, v in zip(expected, values)]
    out = acc.result()
    assert out.dtype == np.uint64 and out.shape == (n,)
    assert out.tolist() == [e % (1 << bits) for e in expected]


def test_mask_sum_rejects_bad_words():
    acc = prg.MaskSum(4, 32)
    for bad in (np.zeros(3, np.uint64), np.zeros(4, np.int64), np.zeros(4)):
        with pytest.raises(ValueError):
            acc.add_words(bad)
    with pytest.raises(ValueError):
        acc.add_mask(b"short", b"l")
    assert acc.result().tolist() == [0, 0, 0, 0]  # nothing half-applied
