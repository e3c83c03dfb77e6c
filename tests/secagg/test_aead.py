"""AES-256-GCM envelopes: round trip, and DecryptionError for every kind of tampering."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg import aead
from secagg.errors import DecryptionError, SecaggError
from secagg.randomness import DeterministicRandom

KEY = hashlib.sha256(b"aead test key").digest()
SID = hashlib.sha256(b"session").digest()
AD = aead.associated_data(sender=3, receiver=7, round=2, session_id=SID)


def test_gcm_known_answer_mcgrew_viega_test_cases_13_and_14():
    # GCM spec (McGrew & Viega) test cases 13 and 14, AES-256, zero key and IV.
    # Our blob is nonce || ciphertext || tag.
    key, iv = bytes(32), bytes(12)
    tag13 = bytes.fromhex("530f8afbc74536b9a963b4f1c4cb738b")
    assert aead.decrypt(key, iv + tag13, associated_data=b"") == b""
    blob14 = iv + bytes.fromhex("cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919")
    assert aead.decrypt(key, blob14, associated_data=b"") == bytes(16)

    class ZeroNonce:
        def bytes(self, n: int) -> bytes:
            return bytes(n)

    assert aead.encrypt(key, bytes(16), associated_data=b"", rng=ZeroNonce()) == blob14


@settings(max_examples=100, deadline=None)
@given(
    plaintext=st.binary(max_size=2000),
    sender=st.integers(0, 2**64 - 1),
    receiver=st.integers(0, 2**64 - 1),
    round_=st.integers(0, 2**64 - 1),
    session=st.binary(max_size=64),
)
def test_round_trip(plaintext, sender, receiver, round_, session):
    ad = aead.associated_data(sender=sender, receiver=receiver, round=round_, session_id=session)
    blob = aead.encrypt(KEY, plaintext, associated_data=ad)
    assert len(blob) == len(plaintext) + aead.OVERHEAD
    assert aead.decrypt(KEY, blob, associated_data=ad) == plaintext


def test_fresh_nonce_per_encryption_and_reproducible_with_deterministic_rng():
    a = aead.encrypt(KEY, b"same", associated_data=AD)
    b = aead.encrypt(KEY, b"same", associated_data=AD)
    assert a[: aead.NONCE_BYTES] != b[: aead.NONCE_BYTES]
    assert a != b
    c = aead.encrypt(KEY, b"same", associated_data=AD, rng=DeterministicRandom(1))
    d = aead.encrypt(KEY, b"same", associated_data=AD, rng=DeterministicRandom(1))
    assert c == d
    assert c[: aead.NONCE_BYTES] == DeterministicRandom(1).bytes(aead.NONCE_BYTES)


def test_every_single_bit_flip_is_detected_exhaustively():
    blob = aead.encrypt(KEY, b"share envelope!", associated_data=AD)
    for bit in range(8 * len(blob)):
        tampered = bytearray(blob)
        tampered[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(DecryptionError):
            aead.decrypt(KEY, bytes(tampered), associated_data=AD)


@settings(max_examples=200, deadline=None)
@given(plaintext=st.binary(min_size=0, max_size=300), data=st.data())
def test_any_bit_flip_is_detected(plaintext, data):
    blob = aead.encrypt(KEY, plaintext, associated_data=AD)
    bit = data.draw(st.integers(0, 8 * len(blob) - 1))
    tampered = bytearray(blob)
    tampered[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(DecryptionError):
        aead.decrypt(KEY, bytes(tampered), associated_data=AD)


def test_truncation_and_extension_are_detected():
    blob = aead.encrypt(KEY, b"0123456789", associated_data=AD)
    for cut in range(len(blob)):
        with pytest.raises(DecryptionError):
            aead.decrypt(KEY, blob[:cut], associated_data=AD)
    for suffix in (b"\x00", b"\x00" * 16):
        with pytest.raises(DecryptionError):
            aead.decrypt(KEY, blob + suffix, associated_data=AD)
    with pytest.raises(DecryptionError):
        aead.decrypt(KEY, blob[1:], associated_data=AD)


def test_wrong_key_is_detected():
    blob = aead.encrypt(KEY, b"secret share", associated_data=AD)
    for other in (bytes(32), KEY[:-1] + bytes([KEY[-1] ^ 1]), hashlib.sha256(b"x").digest()):
        with pytest.raises(DecryptionError):
            aead.decrypt(other, blob, associated_data=AD)


@pytest.mark.parametrize(
    "changed",
    [
        {"sender": 7, "receiver": 3},  # swapped direction
        {"sender": 4},
        {"receiver": 8},
        {"round": 3},
        {"round": 1},
        {"session_id": hashlib.sha256(b"other session").digest()},
        {"session_id": SID[:-1]},
    ],
)
def test_wrong_associated_data_is_detected(changed):
    fields = {"sender": 3, "receiver": 7, "round": 2, "session_id": SID, **changed}
    blob = aead.encrypt(KEY, b"share", associated_data=AD)
    with pytest.raises(DecryptionError):
        aead.decrypt(KEY, blob, associated_data=aead.associated_data(**fields))
    with pytest.raises(DecryptionError):
        aead.decrypt(KEY, blob, associated_data=b"")


def test_malformed_blobs_raise_decryption_error_a_secagg_error():
    assert issubclass(DecryptionError, SecaggError)
    with pytest.raises(DecryptionError):
        aead.decrypt(KEY, b"short", associated_data=AD)
    with pytest.raises(DecryptionError):
        aead.decrypt(KEY, "not bytes", associated_data=AD)


@settings(max_examples=200, deadline=None)
@given(
    a=st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.binary(max_size=8)),
    b=st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.binary(max_size=8)),
)
def test_associated_data_is_injective(a, b):
    def ad(t):
        return aead.associated_data(sender=t[0], receiver=t[1], round=t[2], session_id=t[3])

    assert (ad(a) == ad(b)) == (a == b)


def test_associated_data_rejects_out_of_range_fields():
    for bad in (-1, 2**64):
        with pytest.raises(ValueError):
            aead.associated_data(sender=bad, receiver=0, round=0, session_id=SID)
        with pytest.raises(ValueError):
            aead.associated_data(sender=0, receiver=bad, round=0, session_id=SID)
        with pytest.raises(ValueError):
            aead.associated_data(sender=0, receiver=0, round=bad, session_id=SID)
    with pytest.raises(TypeError):
        aead.associated_data(sender=True, receiver=0, round=0, session_id=SID)
    with pytest.raises(TypeError):
        aead.associated_data(sender=0, receiver=0, round=0, session_id="sid")


@pytest.mark.parametrize("length", [0, 16, 24, 31, 33])
def test_key_of_wrong_length_is_a_value_error(length):
    with pytest.raises(ValueError):
        aead.encrypt(b"\x01" * length, b"p", associated_data=AD)
    with pytest.raises(ValueError):
        aead.decrypt(b"\x01" * length, bytes(40), associated_data=AD)
