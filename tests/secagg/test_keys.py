"""X25519 key agreement, HKDF-SHA256 derivation, session ids and length-prefixed framing.

Known answers come from the RFCs (RFC 7748 section 6.1 in secagg/vectors, RFC
5869 appendix A inline); the HKDF composition is checked against an HKDF
written here from the RFC with the standard library's hmac module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import struct
from importlib import resources

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg import keys
from secagg.errors import InvalidKeyError, SecaggError
from secagg.framing import length_prefixed, split_length_prefixed
from secagg.randomness import DeterministicRandom

SID = hashlib.sha256(b"test session").digest()


def _load_rfc7748() -> dict[str, bytes]:
    text = resources.files("secagg").joinpath("vectors/x25519_rfc7748.json").read_text()
    raw = json.loads(text)
    return {k: bytes.fromhex(v) for k, v in raw.items() if k not in ("source", "url", "encoding")}


def _hkdf_reference(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 sections 2.2-2.3 with hmac/hashlib only (independent of `cryptography`)."""
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


def _frame(*parts: bytes) -> bytes:
    """The documented framing, spelled out with struct (4-byte big-endian lengths)."""
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


# ---------------------------------------------------------------------------
# Known answers


def test_rfc7748_section_6_1_vector():
    v = _load_rfc7748()
    alice = keys.KeyPair.from_private_bytes(v["alice_private"])
    bob = keys.KeyPair.from_private_bytes(v["bob_private"])
    assert alice.public_bytes == v["alice_public"]
    assert bob.public_bytes == v["bob_public"]
    assert alice.exchange(v["bob_public"]) == v["shared_secret"]
    assert bob.exchange(v["alice_public"]) == v["shared_secret"]
    # agree() is HKDF-SHA256 of exactly that shared secret with the documented info.
    expected = _hkdf_reference(
        v["shared_secret"], b"", _frame(b"secagg-fl/v1", b"channel", SID), 32
    )
    assert keys.agree(alice, v["bob_public"], label=b"channel", session_id=SID) == expected
    assert keys.agree(bob, v["alice_public"], label=b"channel", session_id=SID) == expected


def test_reference_hkdf_matches_rfc5869_test_cases_1_and_3():
    # RFC 5869 appendix A.1 (basic SHA-256 case).
    okm = _hkdf_reference(
        bytes.fromhex("0b" * 22),
        bytes.fromhex("000102030405060708090a0b0c"),
        bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"),
        42,
    )
    assert okm == bytes.fromhex(
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )
    # RFC 5869 appendix A.3 (zero-length salt and info: the salt=None case of keys.hkdf).
    okm = _hkdf_reference(bytes.fromhex("0b" * 22), b"", b"", 42)
    assert okm == bytes.fromhex(
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )


@settings(max_examples=50, deadline=None)
@given(
    secret=st.binary(min_size=0, max_size=64),
    label=st.binary(max_size=20),
    session=st.binary(max_size=40),
    length=st.integers(1, 100),
)
def test_hkdf_is_rfc5869_with_no_salt_and_framed_info(secret, label, session, length):
    got = keys.hkdf(secret, label=label, session_id=session, length=length)
    assert got == _hkdf_reference(secret, b"", _frame(b"secagg-fl/v1", label, session), length)
    assert keys.hkdf_info(label, session) == _frame(b"secagg-fl/v1", label, session)


def test_hkdf_length_bounds():
    assert len(keys.hkdf(b"k", label=b"l", session_id=SID, length=255 * 32)) == 8160
    for bad in (0, -1, 255 * 32 + 1):
        with pytest.raises(ValueError):
            keys.hkdf(b"k", label=b"l", session_id=SID, length=bad)
    with pytest.raises(TypeError):
        keys.hkdf(b"k", label="l", session_id=SID)


def test_hkdf_shorter_output_is_a_prefix_of_longer_output():
    long = keys.hkdf(b"ikm", label=b"x", session_id=SID, length=100)
    assert keys.hkdf(b"ikm", label=b"x", session_id=SID, length=32) == long[:32]


# ---------------------------------------------------------------------------
# Key agreement properties


def test_agreement_is_symmetric_and_pair_specific():
    a, b, c = (keys.KeyPair.generate() for _ in range(3))
    k_ab = keys.agree(a, b.public_bytes, label=b"mask", session_id=SID)
    assert k_ab == keys.agree(b, a.public_bytes, label=b"mask", session_id=SID)
    assert len(k_ab) == 32
    assert k_ab != keys.agree(a, c.public_bytes, label=b"mask", session_id=SID)
    assert k_ab != keys.agree(c, b.public_bytes, label=b"mask", session_id=SID)


@settings(max_examples=25, deadline=None)
@given(seed_a=st.integers(0, 2**32), seed_b=st.integers(0, 2**32), length=st.integers(1, 64))
def test_agreement_is_symmetric_for_any_keys(seed_a, seed_b, length):
    a = keys.KeyPair.generate(DeterministicRandom(seed_a))
    b = keys.KeyPair.generate(DeterministicRandom(f"b{seed_b}"))
    kwargs = {"label": b"l", "session_id": SID, "length": length}
    assert keys.agree(a, b.public_bytes, **kwargs) == keys.agree(b, a.public_bytes, **kwargs)


def test_different_labels_and_sessions_give_different_keys():
    a, b = keys.KeyPair.generate(), keys.KeyPair.generate()
    derived = {
        keys.agree(a, b.public_bytes, label=label, session_id=sid)
        for label in (b"channel", b"mask", b"mask\x00", b"")
        for sid in (SID, bytes(32), SID[:31], b"")
    }
    assert len(derived) == 16


def test_label_and_session_cannot_be_traded_for_each_other():
    # Without length prefixes, ("ab", "c") and ("a", "bc") would collide.
    a, b = keys.KeyPair.generate(), keys.KeyPair.generate()
    k1 = keys.agree(a, b.public_bytes, label=b"ab", session_id=b"c")
    k2 = keys.agree(a, b.public_bytes, label=b"a", session_id=b"bc")
    assert k1 != k2


# Small-order u-coordinates of Curve25519: 0 (order 2), 1 (order 4), two of
# order 8, and the non-canonical encodings p and p + 1 of 0 and 1. Since X25519
# clamps scalars to multiples of 8, any of them yields the all-zero secret.
_P25519 = 2**255 - 19
LOW_ORDER_POINTS = [
    (0).to_bytes(32, "little"),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    _P25519.to_bytes(32, "little"),
    (_P25519 + 1).to_bytes(32, "little"),
]


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda b: b.hex()[:8])
def test_low_order_points_are_rejected(point):
    a = keys.KeyPair.generate()
    with pytest.raises(ValueError):
        keys.agree(a, point, label=b"l", session_id=SID)


def test_all_zero_shared_secret_is_rejected_even_if_the_backend_returned_it():
    # Defence in depth: the explicit RFC 7748 check does not rely on OpenSSL's.
    class ZeroKey:
        def exchange(self, peer):
            return bytes(32)

    a = keys.KeyPair.generate()
    object.__setattr__(a, "_private", ZeroKey())
    with pytest.raises(ValueError, match="small-order"):
        a.exchange(keys.KeyPair.generate().public_bytes)


@pytest.mark.parametrize("length", [0, 1, 31, 33, 64])
def test_peer_public_key_of_wrong_length_is_rejected(length):
    a = keys.KeyPair.generate()
    with pytest.raises(ValueError, match="32 bytes"):
        keys.agree(a, b"\x09" * length, label=b"l", session_id=SID)


def test_peer_public_key_of_wrong_type_is_rejected():
    a = keys.KeyPair.generate()
    with pytest.raises(TypeError):
        keys.agree(a, "ab" * 16, label=b"l", session_id=SID)
    with pytest.raises(TypeError):
        keys.agree(a.private_bytes(), a.public_bytes, label=b"l", session_id=SID)


# ---------------------------------------------------------------------------
# KeyPair


def test_keypair_round_trips_through_private_bytes():
    kp = keys.KeyPair.generate()
    assert len(kp.private_bytes()) == 32
    assert len(kp.public_bytes) == 32
    again = keys.KeyPair.from_private_bytes(kp.private_bytes())
    assert again == kp
    assert again.public_bytes == kp.public_bytes
    assert hash(again) == hash(kp)


def test_keypair_generation_from_rng_is_reproducible_and_seed_specific():
    a1 = keys.KeyPair.generate(DeterministicRandom(1))
    a2 = keys.KeyPair.generate(DeterministicRandom(1))
    b = keys.KeyPair.generate(DeterministicRandom(2))
    assert a1 == a2
    assert a1.private_bytes() == DeterministicRandom(1).bytes(32)
    assert a1 != b
    assert keys.KeyPair.generate() != keys.KeyPair.generate()


def test_keypair_hides_private_key_and_is_frozen():
    kp = keys.KeyPair.generate()
    assert kp.private_bytes().hex() not in repr(kp)
    assert "_private" not in repr(kp)
    with pytest.raises(dataclasses.FrozenInstanceError):
        kp.public_bytes = bytes(32)  # type: ignore[misc]


def test_keypair_rejects_bad_private_keys_and_mismatched_public_keys():
    for length in (0, 16, 31, 33):
        with pytest.raises(ValueError):
            keys.KeyPair.from_private_bytes(b"\x01" * length)
    with pytest.raises(TypeError):
        keys.KeyPair.from_private_bytes("x" * 32)
    a, b = keys.KeyPair.generate(), keys.KeyPair.generate()
    with pytest.raises(ValueError, match="does not match"):
        keys.KeyPair(public_bytes=b.public_bytes, _private=a._private)


# ---------------------------------------------------------------------------
# Session ids


def test_session_id_is_sha256_of_framed_material():
    parts = (b"\x00\x00\x00\x01", b"pk-1", b"\x00\x00\x00\x02", b"pk-2")
    sid = keys.session_id(*parts)
    assert sid == hashlib.sha256(_frame(keys.SESSION_DOMAIN, *parts)).digest()
    assert len(sid) == 32
    assert keys.session_id(*parts) == sid


def test_session_id_depends_on_order_boundaries_and_content():
    ids = {
        keys.session_id(b"a", b"b"),
        keys.session_id(b"b", b"a"),
        keys.session_id(b"ab"),
        keys.session_id(b"a", b"b", b""),
        keys.session_id(b"ab", b""),
        keys.session_id(b"", b"ab"),
        keys.session_id(),
    }
    assert len(ids) == 7
    with pytest.raises(TypeError):
        keys.session_id("text")


# ---------------------------------------------------------------------------
# Framing (secagg.framing), the basis of every info / associated data / session id


@settings(max_examples=200, deadline=None)
@given(a=st.lists(st.binary(max_size=12), max_size=5), b=st.lists(st.binary(max_size=12), max_size=5))
def test_length_prefixed_is_injective(a, b):
    assert (length_prefixed(*a) == length_prefixed(*b)) == (a == b)


@settings(max_examples=100, deadline=None)
@given(parts=st.lists(st.binary(max_size=300), max_size=6))
def test_length_prefixed_round_trips_and_matches_the_documented_layout(parts):
    encoded = length_prefixed(*parts)
    assert encoded == _frame(*parts)
    assert split_length_prefixed(encoded) == parts
    assert len(encoded) == sum(4 + len(p) for p in parts)


def test_length_prefixed_accepts_bytes_likes_and_rejects_text():
    assert length_prefixed(bytearray(b"ab"), memoryview(b"c")) == _frame(b"ab", b"c")
    with pytest.raises(TypeError):
        length_prefixed("ab")
    with pytest.raises(TypeError):
        length_prefixed(b"ok", 3)


@pytest.mark.parametrize("bad", [b"\x00", b"\x00\x00\x00\x05abc", b"\x00\x00\x00\x01a\x00"])
def test_split_length_prefixed_rejects_truncated_input(bad):
    with pytest.raises(ValueError):
        split_length_prefixed(bad)


# ---------------------------------------------------------------------------
# Public-key validation (check_public_key): small-order and non-canonical keys


_O8_A = 325606250916557431795983626356110631294008115727848805560023387167927233504
_O8_B = 39382357235489614581723060781553021112529911719440698176882885853963445705823
# D. J. Bernstein's twelve strings to reject (cr.yp.to/ecdh.html), as integers
# read little-endian from all 32 bytes: five canonical points and seven
# non-canonical spellings of them.
BERNSTEIN_REJECT = [
    0,
    1,
    _O8_A,
    _O8_B,
    _P25519 - 1,
    _P25519,
    _P25519 + 1,
    _P25519 + _O8_A,
    _P25519 + _O8_B,
    2 * _P25519 - 1,
    2 * _P25519,
    2 * _P25519 + 1,
]


def _ladder_z(k: int, u: int) -> int:
    """Z of [k](u : 1) by the RFC 7748 section 5 Montgomery ladder (projective; Z = 0 is infinity).

    Written here from the RFC, independently of secagg.keys and OpenSSL.
    """
    p, a24 = _P25519, 121665
    x1, x2, z2, x3, z3, swap = u % p, 1, 0, u % p, 1, 0
    for bit in reversed(range(k.bit_length())):
        k_t = (k >> bit) & 1
        swap ^= k_t
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = k_t
        a, b = (x2 + z2) % p, (x2 - z2) % p
        aa, bb = a * a % p, b * b % p
        e = (aa - bb) % p
        c, d = (x3 + z3) % p, (x3 - z3) % p
        da, cb = d * a % p, c * b % p
        x3, z3 = (da + cb) ** 2 % p, x1 * (da - cb) ** 2 % p
        x2, z2 = aa * bb % p, e * (aa + a24 * e) % p
    if swap:
        z2 = z3
    return z2 % p


def test_small_order_list_is_exactly_the_points_of_order_dividing_8():
    # Every listed u has [8]u = infinity; the two order-8 points are not of order 4;
    # and the canonical ones among Bernstein's twelve are exactly SMALL_ORDER_U.
    assert {u for u in BERNSTEIN_REJECT if u < _P25519} == set(keys.SMALL_ORDER_U)
    for u in keys.SMALL_ORDER_U:
        assert _ladder_z(8, u) == 0
    for u in (_O8_A, _O8_B):
        assert _ladder_z(4, u) != 0
    # An honest key is of large order.
    honest = int.from_bytes(keys.KeyPair.generate(DeterministicRandom(1)).public_bytes, "little")
    assert _ladder_z(8, honest) != 0


@pytest.mark.parametrize("u", BERNSTEIN_REJECT, ids=lambda u: hex(u)[:10])
def test_every_small_order_key_is_refused_by_the_check_and_by_agreement(u):
    point = u.to_bytes(32, "little")
    with pytest.raises(InvalidKeyError):
        keys.check_public_key(point)
    a = keys.KeyPair.generate()
    with pytest.raises(InvalidKeyError):
        a.exchange(point)
    with pytest.raises(InvalidKeyError):
        keys.agree(a, point, label=b"l", session_id=SID)


@pytest.mark.parametrize("u", sorted(keys.SMALL_ORDER_U), ids=lambda u: hex(u)[:10])
def test_openssl_itself_gives_a_bare_value_error_that_the_library_wraps(u):
    # Why the wrapping exists: `cryptography` raises a plain ValueError for these.
    private = X25519PrivateKey.generate()
    with pytest.raises(ValueError) as raw:
        private.exchange(X25519PublicKey.from_public_bytes(u.to_bytes(32, "little")))
    assert not isinstance(raw.value, SecaggError)


def test_non_canonical_encodings_of_honest_keys_are_refused():
    public = keys.KeyPair.generate(DeterministicRandom(2)).public_bytes
    assert keys.check_public_key(public) == public
    top_bit = public[:31] + bytes([public[31] | 0x80])
    with pytest.raises(InvalidKeyError, match="canonical"):
        keys.check_public_key(top_bit)
    # u >= p: the 19 largest 255-bit values are spellings of 0 .. 18.
    for u in range(_P25519, 1 << 255, 5):
        with pytest.raises(InvalidKeyError, match="canonical"):
            keys.check_public_key(u.to_bytes(32, "little"))


@pytest.mark.parametrize("length", [0, 1, 31, 33, 64])
def test_check_public_key_refuses_wrong_lengths(length):
    with pytest.raises(InvalidKeyError, match="32 bytes"):
        keys.check_public_key(b"\x09" * length)


def test_check_public_key_wants_bytes():
    with pytest.raises(TypeError):
        keys.check_public_key("09" * 16)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(peer=st.binary(min_size=32, max_size=32))
def test_random_peer_keys_either_agree_or_raise_the_library_error(peer):
    a = keys.KeyPair.generate(DeterministicRandom(3))
    try:
        derived = keys.agree(a, peer, label=b"l", session_id=SID)
    except InvalidKeyError:
        with pytest.raises(InvalidKeyError):
            keys.check_public_key(peer)
    else:
        assert len(derived) == 32
        assert keys.check_public_key(peer) == peer


@settings(max_examples=200, deadline=None)
@given(peer=st.binary(max_size=40))
def test_check_public_key_raises_only_the_library_error(peer):
    try:
        assert keys.check_public_key(peer) == peer
    except InvalidKeyError:
        pass
