"""Properties of secagg.paillier: exact packed sums, DJN encryption, strict decoders."""

from __future__ import annotations

import math

import gmpy2
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from secagg import paillier as P
from secagg.encoding import FixedPointEncoder
from secagg.paillier import djn
from secagg.randomness import DeterministicRandom

SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _random_ints(seed: int, q_max: int, size: int) -> np.ndarray:
    # Test data only; numpy's RNG never touches anything secret in the library.
    return np.random.default_rng(seed).integers(-q_max, q_max, size=size, endpoint=True)


# --------------------------------------------------------------------- exact sums


@SETTINGS
@given(
    slot_budget=st.integers(2, 64),
    max_summands=st.integers(1, 1000),
    summands=st.integers(1, 6),
    dim=st.integers(0, 200),
    seed=st.integers(0, 2**32 - 1),
)
def test_decrypted_sum_is_exact(keypair_1024, slot_budget, max_summands, summands, dim, seed):
    pk, sk = keypair_1024
    summands = min(summands, max_summands)
    # Choose q_max so that the slot width is at most slot_budget bits.
    q_max = max(1, ((1 << slot_budget) - 1) // (2 * max_summands))
    assume(2 * q_max * max_summands < 1 << 64)
    packer = P.Packer.for_range(q_max, max_summands, pk.key_bits)
    assert packer.slot_bits == math.ceil(math.log2(2 * q_max * max_summands + 1))
    assert packer.plaintext_bits <= pk.key_bits - 1
    vectors = [_random_ints(seed + i, q_max, dim) for i in range(summands)]
    encrypted = [P.encrypt_vector(pk, v, packer, workers=1) for v in vectors]
    assert all(len(c) == packer.num_plaintexts(dim) for c in encrypted)
    total = P.sum_encrypted(pk, encrypted)
    got = P.decrypt_sum(sk, total, packer, summands=summands, dim=dim, workers=1)
    expected = np.sum(vectors, axis=0, dtype=np.int64) if dim else np.zeros(0, np.int64)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("bits,max_summands", [(32, 10), (16, 3), (64, 1), (64, 7), (8, 127)])
@pytest.mark.parametrize("sign", [-1, 1, 0])
def test_every_slot_at_its_extreme(keypair_1024, bits, max_summands, sign):
    """max_summands clients all at -q_max (or +q_max, or alternating): no overflow, exact."""
    pk, sk = keypair_1024
    enc = FixedPointEncoder(clip=1.0, bits=bits, max_summands=max_summands)
    packer = P.Packer.for_encoder(enc, pk.key_bits)
    dim = 3 * packer.slots + 1  # several full plaintexts and one partial one
    if sign == 0:
        v = np.where(np.arange(dim) % 2 == 0, enc.q_max, -enc.q_max).astype(np.int64)
    else:
        v = np.full(dim, sign * enc.q_max, dtype=np.int64)
    cts = P.encrypt_vector(pk, v, packer, workers=1)
    total = P.sum_encrypted(pk, [cts] * max_summands)
    got = P.decrypt_sum(sk, total, packer, summands=max_summands, dim=dim, workers=1)
    np.testing.assert_array_equal(got, v * max_summands)


@SETTINGS
@given(
    clip=st.floats(0.01, 100.0),
    clients=st.integers(1, 8),
    dim=st.integers(1, 150),
    seed=st.integers(0, 2**32 - 1),
)
def test_end_to_end_with_fixed_point_encoder(keypair_1024, clip, clients, dim, seed):
    pk, sk = keypair_1024
    enc = FixedPointEncoder(clip=clip, bits=32, max_summands=8)
    packer = P.Packer.for_encoder(enc, pk.key_bits)
    gen = np.random.default_rng(seed)
    xs = [gen.uniform(-2 * clip, 2 * clip, dim) for _ in range(clients)]
    rng = DeterministicRandom(seed)
    qs = [enc.quantize(x, rng) for x in xs]
    cts = [P.encrypt_vector(pk, q, packer, rng=rng, workers=1) for q in qs]
    total = P.decrypt_sum(sk, P.sum_encrypted(pk, cts), packer, clients, dim, workers=1)
    np.testing.assert_array_equal(total, np.sum(qs, axis=0))
    clipped = np.sum([np.clip(x, -clip, clip) for x in xs], axis=0)
    assert np.all(np.abs(total / enc.scale - clipped) <= enc.error_bound(clients) + 1e-9 * clip)


def test_2048_bit_key_end_to_end(keypair_2048):
    pk, sk = keypair_2048
    assert pk.key_bits == 2048 and pk.ciphertext_bytes == 512
    p, q = sk._p, sk._q
    assert p % 4 == 3 and q % 4 == 3 and math.gcd(p - 1, q - 1) == 2  # DJN key conditions
    enc = FixedPointEncoder(clip=1.0, bits=32, max_summands=100)
    packer = P.Packer.for_encoder(enc, pk.key_bits)
    assert packer.slot_bits == 32 and packer.slots == 63
    # Ciphertext bytes per value vs naive (one 512-byte ciphertext per value).
    assert pk.ciphertext_bytes / packer.slots <= 512 / 30
    gen = np.random.default_rng(1)
    qs = [enc.quantize(gen.uniform(-1, 1, 300)) for _ in range(3)]
    blobs = [P.ciphertexts_to_bytes(pk, P.encrypt_vector(pk, q, packer)) for q in qs]
    assert all(len(b) == 512 * packer.num_plaintexts(300) for b in blobs)
    server_pk = P.PaillierPublicKey.from_bytes(pk.to_bytes())
    total = P.sum_encrypted(server_pk, [P.ciphertexts_from_bytes(server_pk, b) for b in blobs])
    np.testing.assert_array_equal(P.decrypt_sum(sk, total, packer, 3, 300), np.sum(qs, axis=0))


# ------------------------------------------------------------------ DJN encryption


def test_fast_encryption_is_valid_paillier_for_phe(keypair_1024):
    """Our DJN ciphertexts decrypt with phe's own decryption, and phe's with ours."""
    pk, sk = keypair_1024
    phe_sk = sk.to_phe()
    gen = np.random.default_rng(0)
    plaintexts = [int(x) for x in gen.integers(0, 2**62, 40)] + [0, 1, pk.n - 1]
    cts = P.encrypt_packed(pk, plaintexts, workers=1)  # >= 16: fixed-base table path
    assert [phe_sk.raw_decrypt(c) for c in cts] == plaintexts
    few = P.encrypt_packed(pk, plaintexts[:3], workers=1)  # powmod path
    assert [phe_sk.raw_decrypt(c) for c in few] == plaintexts[:3]
    phe_cts = [pk.to_phe().raw_encrypt(m) for m in plaintexts[:5]]
    assert P.decrypt_packed(sk, phe_cts) == plaintexts[:5]
    assert [sk.decrypt_raw(c) for c in phe_cts] == plaintexts[:5]


def test_two_encryptions_of_the_same_plaintext_differ(keypair_1024):
    pk, sk = keypair_1024
    a = P.encrypt_packed(pk, [42] * 20, workers=1)
    b = P.encrypt_packed(pk, [42] * 20, workers=1)
    assert len(set(a) | set(b)) == 40
    assert P.decrypt_packed(sk, a + b) == [42] * 40


@settings(max_examples=30, deadline=None)
@given(exponent=st.integers(0, 2**512 - 1))
def test_fixed_base_table_matches_powmod(exponent):
    n = P.PaillierPublicKey(_TEST_MODULUS)
    table = djn.fixed_base_table(n.n, 512)
    base = djn._djn_base(n.n)
    got = table.power(exponent.to_bytes(64, "little"))
    assert got == gmpy2.powmod(base, exponent, n.nsquare)


def test_table_and_powmod_paths_and_workers_agree(keypair_1024):
    """Same seed -> same ciphertexts, whatever the code path or number of processes."""
    pk, sk = keypair_1024
    msgs = list(range(1000, 1000 + 140))  # above the 128-ciphertext parallel threshold
    ell = P.default_exponent_bits(pk.key_bits)
    alphas = DeterministicRandom("alphas").bytes(ell // 8 * len(msgs))
    with_table = djn.encrypt_chunk(pk.n, ell, msgs, alphas, True)
    without = djn.encrypt_chunk(pk.n, ell, msgs, alphas, False)
    assert with_table == without
    serial = P.encrypt_packed(pk, msgs, rng=DeterministicRandom(7), workers=1)
    parallel = P.encrypt_packed(pk, msgs, rng=DeterministicRandom(7), workers=2)
    assert serial == parallel
    assert P.decrypt_packed(sk, parallel, workers=2) == msgs
    assert P.decrypt_packed(sk, parallel, workers=1) == msgs


def test_short_exponent_option_and_bounds(keypair_1024):
    pk, sk = keypair_1024
    assert P.default_exponent_bits(2048) == 1024
    assert P.default_exponent_bits(1024) == 512
    assert P.default_exponent_bits(512) == P.MIN_EXPONENT_BITS
    cts = P.encrypt_packed(pk, [5, 6, 7], exponent_bits=P.MIN_EXPONENT_BITS, workers=1)
    assert P.decrypt_packed(sk, cts) == [5, 6, 7]
    cts = P.encrypt_packed(pk, [5] * 20, exponent_bits=259, workers=1)  # not a byte multiple
    assert P.decrypt_packed(sk, cts) == [5] * 20
    with pytest.raises(ValueError):
        P.encrypt_packed(pk, [1], exponent_bits=P.MIN_EXPONENT_BITS - 1)
    with pytest.raises(ValueError):
        P.encrypt_packed(pk, [1], exponent_bits=pk.key_bits + 1)


def test_djn_base_is_a_public_nth_residue(keypair_1024):
    pk, sk = keypair_1024
    h_s = P.djn_base(pk)
    assert h_s == P.djn_base(P.PaillierPublicKey.from_bytes(pk.to_bytes()))
    assert math.gcd(h_s, pk.n) == 1
    assert sk.decrypt_raw(h_s) == 0  # an n-th residue encrypts 0


def test_plaintext_range_checked(keypair_1024):
    pk, _ = keypair_1024
    for bad in (-1, pk.n):
        with pytest.raises(ValueError):
            P.encrypt_packed(pk, [bad])
    assert P.encrypt_packed(pk, []) == []


# ------------------------------------------------------------------ aggregation


def test_add_encrypted_matches_sum_encrypted(keypair_1024):
    pk, sk = keypair_1024
    a = P.encrypt_packed(pk, [1, 2, 3], workers=1)
    b = P.encrypt_packed(pk, [10, 20, 30], workers=1)
    assert P.add_encrypted(pk, a, b) == P.sum_encrypted(pk, [a, b])
    assert P.decrypt_packed(sk, P.add_encrypted(pk, a, b)) == [11, 22, 33]
    with pytest.raises(ValueError):
        P.add_encrypted(pk, a, b[:2])
    with pytest.raises(ValueError):
        P.sum_encrypted(pk, [a, b[:2]])
    with pytest.raises(ValueError):
        P.sum_encrypted(pk, [])


# --------------------------------------------------------- public key cannot decrypt


def test_public_key_holds_no_private_material(keypair_1024):
    pk, sk = keypair_1024
    for holder in (pk, P.PaillierPublicKey.from_bytes(pk.to_bytes())):
        assert not hasattr(holder, "__dict__")
        assert set(holder.__slots__) == {"_n", "_nsquare"}
        for name in holder.__slots__:
            value = int(getattr(holder, name))
            assert value in (pk.n, pk.n * pk.n)
            # No stored value is a nontrivial factor of n.
            assert math.gcd(value, pk.n) in (pk.n,)
        assert not any("decrypt" in a for a in dir(holder))
    cts = P.encrypt_packed(pk, [3], workers=1)
    with pytest.raises(TypeError):
        P.decrypt_packed(pk, cts)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        P.decrypt_sum(pk, cts, P.Packer.for_range(1, 1, pk.key_bits), 1, 1)  # type: ignore[arg-type]
    assert str(sk._p) not in repr(sk) and str(sk._q) not in repr(sk)


# ----------------------------------------------------------------------- decoders


def test_public_key_roundtrip_and_phe_interop(keypair_1024):
    pk, sk = keypair_1024
    data = pk.to_bytes()
    assert data[:4] == b"SAPK" and data[4] == 1
    assert len(data) == 7 + 128
    assert P.PaillierPublicKey.from_bytes(data) == pk
    assert hash(P.PaillierPublicKey.from_bytes(data)) == hash(pk)
    assert P.PaillierPublicKey.from_phe(pk.to_phe()) == pk
    assert P.PaillierPrivateKey.from_phe(sk.to_phe()).public_key == pk


def _pk_bytes(n: int) -> bytes:
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"SAPK\x01" + len(body).to_bytes(2, "big") + body


# A fixed, valid test modulus (product of two 512-bit primes) for decoder tests.
_P = int(gmpy2.next_prime(2**511 + 12345))
_Q = int(gmpy2.next_prime(2**511 + 2**300 + 999))
_TEST_MODULUS = _P * _Q


def test_public_key_decoder_rejects_malformed(keypair_1024):
    pk, _ = keypair_1024
    good = pk.to_bytes()
    bad_inputs = [
        b"",
        good[:6],
        good[:-1],
        good + b"\x00",
        b"XAPK" + good[4:],
        good[:4] + b"\x02" + good[5:],
        good[:5] + (len(good) - 6).to_bytes(2, "big") + good[7:],  # length field off by one
        b"SAPK\x01\x00\x00",  # empty modulus
        b"SAPK\x01\x00\x81\x00" + good[7:],  # leading zero byte (non-minimal)
        _pk_bytes(_TEST_MODULUS + 1),  # even
        _pk_bytes(int(gmpy2.next_prime(2**254)) * int(gmpy2.next_prime(2**255))),  # too small
        _pk_bytes(int(gmpy2.next_prime(2**1023 + 5))),  # prime
        _pk_bytes(_P * _P),  # perfect square
        _pk_bytes(3 * int(gmpy2.next_prime(2**1022))),  # small factor
        _pk_bytes(1 << 8200 | 1),  # too large
    ]
    for data in bad_inputs:
        with pytest.raises(ValueError):
            P.PaillierPublicKey.from_bytes(data)
    with pytest.raises(TypeError):
        P.PaillierPublicKey.from_bytes("SAPK")  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300))
def test_public_key_decoder_fuzz(data):
    try:
        key = P.PaillierPublicKey.from_bytes(data)
    except ValueError:
        return
    assert key.to_bytes() == data


@settings(max_examples=100, deadline=None)
@given(flips=st.lists(st.integers(0, 8 * 135 - 1), min_size=1, max_size=4))
def test_public_key_decoder_bit_flips(flips):
    data = bytearray(_pk_bytes(_TEST_MODULUS))
    for bit in flips:
        data[bit // 8] ^= 1 << (bit % 8)
    try:
        key = P.PaillierPublicKey.from_bytes(bytes(data))
    except ValueError:
        return
    assert key.to_bytes() == bytes(data)


def test_ciphertext_decoder_rejects_malformed(keypair_1024):
    pk, sk = keypair_1024
    width = pk.ciphertext_bytes
    c = P.encrypt_packed(pk, [7], workers=1)[0]
    good = P.ciphertext_to_bytes(pk, c)
    assert len(good) == width and P.ciphertext_from_bytes(pk, good) == c
    p = sk._p
    bad_inputs = [
        b"",
        good[:-1],
        good + b"\x00",
        (0).to_bytes(width, "big"),  # zero
        pk.nsquare.to_bytes(width, "big"),  # = n^2
        (pk.nsquare + 5).to_bytes(width, "big"),  # > n^2 but fits the width
        (2 ** (8 * width) - 1).to_bytes(width, "big"),  # all ones
        (int(p) * 12345).to_bytes(width, "big"),  # shares a factor with n
        pk.n.to_bytes(width, "big"),  # = n
    ]
    for data in bad_inputs:
        with pytest.raises(ValueError):
            P.ciphertext_from_bytes(pk, data)
    with pytest.raises(ValueError):
        P.ciphertexts_from_bytes(pk, good * 2 + b"\x01")
    with pytest.raises(ValueError):
        P.ciphertexts_from_bytes(pk, good * 2, count=3)
    with pytest.raises(ValueError):
        P.ciphertexts_from_bytes(pk, good + (0).to_bytes(width, "big"))
    with pytest.raises(ValueError):
        P.ciphertext_to_bytes(pk, pk.nsquare)
    with pytest.raises(ValueError):
        P.ciphertexts_to_bytes(pk, [c, 0])
    with pytest.raises(TypeError):
        P.ciphertext_from_bytes(pk, c)  # type: ignore[arg-type]
    assert P.ciphertexts_from_bytes(pk, b"") == []


@SETTINGS
@given(data=st.binary(max_size=400), use_vector=st.booleans())
@example(data=b"\xff" * 256, use_vector=False)
@example(data=b"\x00" * 256, use_vector=True)
def test_ciphertext_decoder_fuzz(keypair_1024, data, use_vector):
    pk, _ = keypair_1024
    try:
        if use_vector:
            cts = P.ciphertexts_from_bytes(pk, data)
        else:
            cts = [P.ciphertext_from_bytes(pk, data)]
    except ValueError:
        return
    for c in cts:
        assert 0 < c < pk.nsquare and math.gcd(c, pk.n) == 1
    assert P.ciphertexts_to_bytes(pk, cts) == data


@SETTINGS
@given(flips=st.lists(st.integers(0, 8 * 256 - 1), min_size=1, max_size=3))
def test_ciphertext_bit_flips_are_rejected_or_valid(keypair_1024, flips):
    pk, sk = keypair_1024
    c = P.encrypt_packed(pk, [99], workers=1)[0]
    data = bytearray(P.ciphertext_to_bytes(pk, c))
    for bit in flips:
        data[bit // 8] ^= 1 << (bit % 8)
    try:
        c2 = P.ciphertext_from_bytes(pk, bytes(data))
    except ValueError:
        return
    sk.decrypt_raw(c2)  # decrypts to something: Paillier is malleable, not authenticated


# ------------------------------------------------------------------------ packer


def test_packer_geometry_for_encoder():
    enc = FixedPointEncoder(clip=1.0, bits=32, max_summands=10)
    packer = P.Packer.for_encoder(enc, 2048)
    assert (packer.slot_bits, packer.slots, packer.plaintext_bits) == (32, 63, 2016)
    assert packer.num_plaintexts(0) == 0
    assert packer.num_plaintexts(63) == 1 and packer.num_plaintexts(64) == 2
    # Roughly 2048 / (bits + log2 n_max) values per plaintext for a general range.
    wide = P.Packer.for_range(q_max=2**20, max_summands=1000, key_bits=2048)
    assert wide.slot_bits == math.ceil(math.log2(2 * 2**20 * 1000 + 1)) == 31
    assert wide.slots == 2047 // 31


def test_packer_rejects_bad_input(keypair_1024):
    pk, _ = keypair_1024
    packer = P.Packer.for_range(q_max=100, max_summands=4, key_bits=pk.key_bits)
    with pytest.raises(ValueError):
        packer.pack(np.array([101]))
    with pytest.raises(ValueError):
        packer.pack(np.array([-101]))
    with pytest.raises(TypeError):
        packer.pack(np.array([1.5]))
    with pytest.raises(ValueError):
        packer.pack(np.array([2**64 - 1], dtype=np.uint64))  # would wrap to -1 as int64
    np.testing.assert_array_equal(
        packer.unpack(packer.pack(np.array([3, 100], dtype=np.uint8)), 2, 1), [3, 100]
    )
    with pytest.raises(ValueError):
        packer.pack(np.zeros((2, 2), dtype=np.int64))
    plain = packer.pack(np.array([100, -100, 5]))
    np.testing.assert_array_equal(packer.unpack(plain, 3, 1), [100, -100, 5])
    with pytest.raises(ValueError):
        packer.unpack(plain, 3, summands=5)  # more than max_summands
    with pytest.raises(ValueError):
        packer.unpack(plain, 3, summands=0)
    with pytest.raises(ValueError):
        packer.unpack(plain * 2, 3, 1)  # wrong number of plaintexts
    with pytest.raises(ValueError):
        packer.unpack(plain, 2, 1)  # slot 2 is not padding
    with pytest.raises(ValueError):
        packer.unpack([1 << packer.plaintext_bits], 1, 1)  # beyond the packing width
    with pytest.raises(ValueError):
        # A slot above 2 * k * q_max: inconsistent with summands=1.
        packer.unpack([2 * 100 + 1], 1, 1)
    with pytest.raises(ValueError):
        P.Packer(q_max=100, max_summands=4, slot_bits=9, slots=2)  # 800 needs 10 bits
    with pytest.raises(ValueError):
        P.Packer.for_range(q_max=2**40, max_summands=1, key_bits=20)
    big = P.Packer.for_range(q_max=100, max_summands=4, key_bits=2048)
    with pytest.raises(ValueError):
        big.check_key(pk)  # 2047-bit plaintexts under a 1024-bit key
    with pytest.raises(ValueError):
        P.encrypt_vector(pk, np.array([1]), big)


@settings(max_examples=50, deadline=None)
@given(
    q_max=st.integers(1, 2**40),
    max_summands=st.integers(1, 2**10),
    dim=st.integers(0, 300),
    summands=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_packing_sum_without_encryption(q_max, max_summands, dim, summands, seed):
    """Integer sums of packed plaintexts unpack to the slotwise sums (carry-free)."""
    summands = min(summands, max_summands)
    packer = P.Packer.for_range(q_max, max_summands, 2048)
    vectors = [_random_ints(seed + i, q_max, dim) for i in range(summands)]
    packed = [packer.pack(v) for v in vectors]
    sums = [sum(col) for col in zip(*packed, strict=True)] if dim else []
    got = packer.unpack(sums, dim, summands)
    expected = np.sum(vectors, axis=0) if dim else np.zeros(0, np.int64)
    np.testing.assert_array_equal(got, expected)


def test_generate_keypair_validation():
    with pytest.raises(ValueError):
        P.generate_keypair(256)
    with pytest.raises(TypeError):
        P.generate_keypair(1024.0)  # type: ignore[arg-type]
    pk, sk = P.generate_keypair(512, djn_conditions=False)
    assert pk.key_bits == 512
    assert sk.decrypt_raw(P.encrypt_packed(pk, [12], workers=1)[0]) == 12
    with pytest.raises(ValueError):
        P.PaillierPrivateKey(pk, 3, 5)


def test_private_key_bytes_roundtrip_and_rejection(keypair_1024):
    pk, sk = keypair_1024
    data = sk.to_bytes()
    assert data[:5] == b"SASK\x01"
    restored = P.PaillierPrivateKey.from_bytes(data)
    assert restored.public_key == pk
    cts = P.encrypt_packed(pk, [5, 6], workers=1)
    assert P.decrypt_packed(restored, cts) == [5, 6]
    p_len = int.from_bytes(data[5:7], "big")
    bad_inputs = [
        b"",
        data[:4],
        data[:-1],
        data + b"\x00",
        b"SAPK" + data[4:],
        data[:4] + b"\x09" + data[5:],
        data[:7] + data[7 + p_len + 2 :],  # q only
        data[:5] + data[7 + p_len :] + data[7 + p_len :],  # q twice
        data[:5] + (p_len + 1).to_bytes(2, "big") + b"\x00" + data[7:],  # leading zero
    ]
    for bad in bad_inputs:
        with pytest.raises(ValueError):
            P.PaillierPrivateKey.from_bytes(bad)
    composite = (_P * 3).to_bytes(((_P * 3).bit_length() + 7) // 8, "big")
    body_q = _Q.to_bytes(64, "big")
    with pytest.raises(ValueError):
        P.PaillierPrivateKey.from_bytes(
            b"SASK\x01" + len(composite).to_bytes(2, "big") + composite + b"\x00\x40" + body_q
        )


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=300))
def test_private_key_decoder_fuzz(data):
    try:
        key = P.PaillierPrivateKey.from_bytes(b"SASK\x01" + data)
    except ValueError:
        return
    assert key.to_bytes() == b"SASK\x01" + data
