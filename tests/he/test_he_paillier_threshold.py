"""Threshold Paillier (secagg.paillier.threshold): exact sums from any t of m, liars named.

Expected values never come from the code under test: plaintext sums are plain
Python / numpy sums, ciphertexts are also made by phe (an independent
encryption), and the known-answer test decrypts with textbook Paillier
(``lambda = lcm(p-1, q-1)``, Python's ``pow``) from fixed safe primes.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import gmpy2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secagg import paillier as P
from secagg.encoding import FixedPointEncoder
from secagg.errors import PartialDecryptionError, ThresholdDecryptionError
from secagg.paillier import threshold as T
from secagg.randomness import DeterministicRandom

SETTINGS = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
CONTEXT = b"session 1 / round 0"

# Two 256-bit safe primes (p = 2p' + 1), fixed for the known-answer test; their
# primality is checked below with gmpy2 (GMP), not with the code under test.
KAT_P = 0xE699FE89978A759DCE596179D571DCD37EF1AAA72C020F39215290B8832A8F47
KAT_Q = 0xCE4DCD37240B500BC96524E4E35CE56174DEA8BFA67E24BE975143A7CAFC349F


@pytest.fixture(scope="module")
def committee() -> tuple[T.ThresholdPublicKey, tuple[T.KeyShare, ...]]:
    """m = 5, t = 3 on a 1024-bit key: for tests only (insecure=True)."""
    return T.generate_threshold_key(1024, members=5, threshold=3, insecure=True)


def _key(seed: int, members: int, threshold: int):
    return T.generate_threshold_key(
        512, members=members, threshold=threshold, insecure=True, rng=DeterministicRandom(seed)
    )


def _partials(shares, ciphertexts, context=CONTEXT):
    return [T.partial_decrypt(s, ciphertexts, context, workers=1) for s in shares]


# --------------------------------------------------------------- exact decryption


@SETTINGS
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_any_t_of_m_give_the_exact_sum(data, seed):
    members = data.draw(st.integers(1, 7), label="members")
    threshold = data.draw(st.integers(1, members), label="threshold")
    key, shares = _key(seed, members, threshold)
    n = key.public_key.n
    clients = data.draw(st.integers(1, 5), label="clients")
    length = data.draw(st.integers(1, 4), label="ciphertexts")
    rows = [
        data.draw(st.lists(st.integers(0, n // 8), min_size=length, max_size=length))
        for _ in range(clients)
    ]
    # Half of the clients encrypt with phe (textbook r^n randomness), half with our DJN path.
    phe_pk = key.public_key.to_phe()
    encrypted = [
        [phe_pk.raw_encrypt(m) for m in row]
        if i % 2
        else P.encrypt_packed(key.public_key, row, rng=DeterministicRandom(seed + i), workers=1)
        for i, row in enumerate(rows)
    ]
    total = P.sum_encrypted(key.public_key, encrypted)
    present = data.draw(
        st.lists(st.sampled_from(range(members)), min_size=threshold, unique=True), label="present"
    )
    result = T.combine_partials(key, total, _partials([shares[i] for i in present], total), CONTEXT)
    expected = tuple(sum(column) % n for column in zip(*rows))
    assert result.plaintexts == expected
    assert result.used == tuple(sorted(i + 1 for i in present))[:threshold]
    assert result.invalid == {}


def test_every_set_of_t_members_decrypts(committee):
    """Dropouts down to t: each of the C(5, 3) = 10 sets of three members decrypts alone."""
    key, shares = committee
    messages = [12345, key.public_key.n - 1, 0]
    cts = P.encrypt_packed(key.public_key, messages, workers=1)
    partials = _partials(shares, cts)
    for subset in itertools.combinations(range(5), 3):
        result = T.combine_partials(key, cts, [partials[i] for i in subset], CONTEXT)
        assert result.plaintexts == tuple(messages)
        assert result.used == tuple(i + 1 for i in subset)


@SETTINGS
@given(clients=st.integers(1, 10), dim=st.integers(1, 120), seed=st.integers(0, 2**32 - 1))
def test_packed_vectors_decrypt_to_the_numpy_sum(committee, clients, dim, seed):
    key, shares = committee
    enc = FixedPointEncoder(clip=1.0, bits=32, max_summands=10)
    packer = P.Packer.for_encoder(enc, key.public_key.key_bits)
    gen = np.random.default_rng(seed)  # test data only
    qs = [
        enc.quantize(gen.uniform(-1.5, 1.5, dim), DeterministicRandom(seed + i))
        for i in range(clients)
    ]
    cts = [P.encrypt_vector(key.public_key, q, packer, workers=1) for q in qs]
    total = P.sum_encrypted(key.public_key, cts)
    result = T.combine_partials(key, total, _partials(shares[1:4], total), CONTEXT)
    got = packer.unpack(result.plaintexts, dim, summands=clients)
    np.testing.assert_array_equal(got, np.sum(qs, axis=0, dtype=np.int64))


def test_packing_and_encryption_are_unchanged(committee):
    """The threshold key is a plain PaillierPublicKey: same slots as a single-holder key."""
    key, _ = committee
    pk_single, _ = P.generate_keypair(1024)
    enc = FixedPointEncoder(clip=1.0, bits=32, max_summands=100)
    assert isinstance(key.public_key, P.PaillierPublicKey)
    assert key.public_key.key_bits == pk_single.key_bits == 1024
    assert P.Packer.for_encoder(enc, key.public_key.key_bits) == P.Packer.for_encoder(
        enc, pk_single.key_bits
    )


# ------------------------------------------------------------ fewer than t members


def test_t_minus_one_partials_are_refused(committee):
    key, shares = committee
    cts = P.encrypt_packed(key.public_key, [7], workers=1)
    partials = _partials(shares, cts)
    for subset in itertools.combinations(range(5), 2):
        with pytest.raises(ThresholdDecryptionError) as info:
            T.combine_partials(key, cts, [partials[i] for i in subset], CONTEXT)
        assert info.value.valid == tuple(i + 1 for i in subset)
        assert info.value.threshold == 3 and info.value.invalid == {}
    with pytest.raises(ThresholdDecryptionError):
        T.combine_partials(key, cts, [], CONTEXT)


# ------------------------------------------------------------- lying members


@SETTINGS
@given(liar=st.integers(0, 4), position=st.integers(0, 2), shift=st.integers(1, 2**64))
def test_tampered_partial_is_named_and_excluded(committee, liar, position, shift):
    """A member that shifts one partial decryption by (1+N)^shift is named; 4 honest decrypt."""
    key, shares = committee
    n, nsquare = key.public_key.n, key.public_key.nsquare
    messages = [11, 22, 33]
    cts = P.encrypt_packed(key.public_key, messages, workers=1)
    partials = _partials(shares, cts)
    honest = partials[liar]
    values = list(honest.values)
    values[position] = values[position] * pow(1 + n, shift, nsquare) % nsquare
    forged = T.PartialDecryption(honest.index, tuple(values), honest.challenge, honest.response)
    with pytest.raises(PartialDecryptionError) as info:
        T.verify_partial(key, cts, forged, CONTEXT)
    assert info.value.member == liar + 1
    mixed = [forged if i == liar else p for i, p in enumerate(partials)]
    result = T.combine_partials(key, cts, mixed, CONTEXT)
    assert result.plaintexts == tuple(messages)
    assert set(result.invalid) == {liar + 1}
    assert liar + 1 not in result.used


def _prove(share, ciphertexts, values, context, nonce=12345):
    """A malicious member's prover: the real share, any claimed values (the module's own steps)."""
    key = share.threshold_key
    nsquare = key.public_key.nsquare
    sigma = key.delta * int(share._share)
    transcript = T._transcript(key, share.index, context, ciphertexts, values)
    x, w = T._combined_bases(
        key, ciphertexts, values, T._batch_coefficients(transcript, len(values))
    )
    r = nonce + (1 << (T._nonce_bits(key) - 1))
    a, b = pow(int(x), r, nsquare), pow(key.verification_base, r, nsquare)
    e = T._challenge(transcript, key, x, w, gmpy2.mpz(a), gmpy2.mpz(b))
    return T.PartialDecryption(share.index, tuple(values), e, r + e * sigma)


@SETTINGS
@given(shift=st.integers(1, 2**64), member=st.integers(0, 4))
def test_compensating_forgeries_with_a_fresh_proof_are_caught(committee, shift, member):
    """The liar knows its share and re-proves: shifting c_i1 up and c_i2 down by the same
    (1+N)^shift leaves the plain product unchanged, which only the random batch
    coefficients rho_j catch."""
    key, shares = committee
    n, nsquare = key.public_key.n, key.public_key.nsquare
    cts = P.encrypt_packed(key.public_key, [1000, 2000], workers=1)
    honest = T.partial_decrypt(shares[member], cts, CONTEXT, workers=1)
    assert (
        T.verify_partial(key, cts, _prove(shares[member], cts, honest.values, CONTEXT), CONTEXT)
        is None
    )
    up = pow(1 + n, shift, nsquare)
    forged_values = (
        honest.values[0] * up % nsquare,
        honest.values[1] * pow(up, -1, nsquare) % nsquare,
    )
    forged = _prove(shares[member], cts, forged_values, CONTEXT)
    with pytest.raises(PartialDecryptionError) as info:
        T.verify_partial(key, cts, forged, CONTEXT)
    assert info.value.member == member + 1
    # A single shifted value cannot be proven either.
    single = _prove(shares[member], cts, (forged_values[0], honest.values[1]), CONTEXT)
    with pytest.raises(PartialDecryptionError):
        T.verify_partial(key, cts, single, CONTEXT)


def test_proofs_bind_ciphertexts_context_and_member(committee):
    key, shares = committee
    pk = key.public_key
    cts = P.encrypt_packed(pk, [5, 6], workers=1)
    other = P.encrypt_packed(pk, [5, 6], workers=1)  # same plaintexts, other ciphertexts
    good = T.partial_decrypt(shares[1], cts, CONTEXT, workers=1)
    T.verify_partial(key, cts, good, CONTEXT)  # the honest one verifies

    # A partial decryption (and proof) of other ciphertexts, offered for these.
    elsewhere = T.partial_decrypt(shares[1], other, CONTEXT, workers=1)
    # The same ciphertexts under another context (another session or round): a replay.
    replayed = T.partial_decrypt(shares[1], cts, b"session 1 / round 1", workers=1)
    # Member 2's partial decryption relabelled as member 3's.
    relabelled = T.PartialDecryption(3, good.values, good.challenge, good.response)
    # Honest values, with the proof replayed from another round.
    old_proof = T.PartialDecryption(2, good.values, replayed.challenge, replayed.response)
    # Correct values for the first ciphertext only, a dropped second one.
    truncated = T.PartialDecryption(2, good.values[:1], good.challenge, good.response)
    for forged, member in [
        (elsewhere, 2),
        (replayed, 2),
        (relabelled, 3),
        (old_proof, 2),
        (truncated, 2),
    ]:
        with pytest.raises(PartialDecryptionError) as info:
            T.verify_partial(key, cts, forged, CONTEXT)
        assert info.value.member == member
    # The replayed partial does verify in the context it was made for, and only there.
    T.verify_partial(key, cts, replayed, b"session 1 / round 1")


def test_too_many_liars_fail_closed_and_are_named(committee):
    """Two liars and one dropout leave two honest members: refused, both liars named."""
    key, shares = committee
    cts = P.encrypt_packed(key.public_key, [99], workers=1)
    partials = _partials(shares, cts)
    nsquare = key.public_key.nsquare
    liars = []
    for i in (0, 3):
        p = partials[i]
        liars.append(
            T.PartialDecryption(p.index, ((p.values[0] * 4) % nsquare,), p.challenge, p.response)
        )
    with pytest.raises(ThresholdDecryptionError) as info:
        T.combine_partials(key, cts, [liars[0], partials[1], partials[2], liars[1]], CONTEXT)
    assert info.value.valid == (2, 3)
    assert set(info.value.invalid) == {1, 4}


def test_combiner_refuses_duplicate_members(committee):
    key, shares = committee
    cts = P.encrypt_packed(key.public_key, [1], workers=1)
    p = T.partial_decrypt(shares[0], cts, CONTEXT, workers=1)
    with pytest.raises(ValueError, match="claim member 1"):
        T.combine_partials(key, cts, [p, p, *_partials(shares[1:3], cts)], CONTEXT)


def test_out_of_range_partials_are_named(committee):
    key, shares = committee
    cts = P.encrypt_packed(key.public_key, [1], workers=1)
    p = T.partial_decrypt(shares[0], cts, CONTEXT, workers=1)
    n = key.public_key.n
    for forged in [
        T.PartialDecryption(1, (n,), p.challenge, p.response),  # shares a factor with n
        T.PartialDecryption(1, (key.public_key.nsquare,), p.challenge, p.response),
        T.PartialDecryption(9, p.values, p.challenge, p.response),  # no such member
        T.PartialDecryption(1, p.values, p.challenge, 1 << 10_000),
    ]:
        with pytest.raises(PartialDecryptionError) as info:
            T.verify_partial(key, cts, forged, CONTEXT)
        assert info.value.member == forged.index


# -------------------------------------------------------------- the ceremony


def test_ceremony_refuses_insecure_sizes_without_the_flag():
    with pytest.raises(ValueError, match="insecure=True"):
        T.generate_threshold_key(1024, 5, 3)
    with pytest.raises(ValueError):
        T.generate_threshold_key(1023, 5, 3, insecure=True)  # odd
    with pytest.raises(ValueError):
        T.generate_threshold_key(256, 5, 3, insecure=True)  # below MIN_KEY_BITS
    with pytest.raises(ValueError):
        T.generate_threshold_key(1024, 3, 4, insecure=True)  # t > m
    with pytest.raises(ValueError):
        T.generate_threshold_key(1024, T.MAX_MEMBERS + 1, 3, insecure=True)
    with pytest.raises(TypeError):
        T.generate_threshold_key(True, 5, 3, insecure=True)  # type: ignore[arg-type]


def test_ceremony_is_reproducible_only_with_a_seeded_rng():
    a, _ = _key(1, 3, 2)
    b, _ = _key(1, 3, 2)
    c, _ = T.generate_threshold_key(512, 3, 2, insecure=True)
    assert a == b and a != c


def test_ceremony_outputs_hold_no_factor_of_n(committee):
    """Nothing the ceremony returns shares a non-trivial factor with N."""
    key, shares = committee
    n = key.public_key.n
    ints = [key.verification_base, *key.verification_keys] + [int(s._share) for s in shares]
    assert all(math.gcd(x, n) == 1 for x in ints)
    assert "secret" in repr(shares[0]) and str(int(shares[0]._share)) not in repr(shares[0])


@pytest.mark.parametrize("bits", [256, 512])
def test_safe_primes(bits):
    for seed in range(3):
        p = T.random_safe_prime(bits, DeterministicRandom(seed))
        assert p.bit_length() == bits and p >> (bits - 2) == 3
        assert gmpy2.is_prime(p, 50) and gmpy2.is_prime((p - 1) // 2, 50)
        assert p % 4 == 3  # with q likewise: the DJN key conditions hold


def test_lagrange_coefficients_by_hand():
    """S = {1, 2, 3}, Delta = 5! = 120: lambda_1 = 120*2*3/((2-1)(3-1)) = 360, lambda_2 =
    120*1*3/((1-2)(3-2)) = -360, lambda_3 = 120*1*2/((1-3)(2-3)) = 120."""
    assert T._lagrange_at([1, 2, 3], 0, 120) == [360, -360, 120]
    # And in general they are Delta times the rational Lagrange coefficients.
    for points in ([1, 4, 5], [2, 3, 5, 7], [6]):
        delta = math.factorial(7)
        for i, lam in zip(points, T._lagrange_at(points, 0, delta), strict=True):
            rational = Fraction(delta)
            for j in points:
                if j != i:
                    rational *= Fraction(j, j - i)
            assert lam == rational


# ------------------------------------------------------------ known answers


def _kat_key():
    for prime in (KAT_P, KAT_Q):
        assert gmpy2.is_prime(prime, 50) and gmpy2.is_prime((prime - 1) // 2, 50)
    key, shares = T._deal(KAT_P, KAT_Q, 5, 3, DeterministicRandom("kat"))
    return key, shares, (KAT_P * KAT_Q, (KAT_P - 1) // 2 * ((KAT_Q - 1) // 2))


def test_known_answer_against_textbook_paillier():
    key, shares, (n, m_prime) = _kat_key()
    assert key.public_key.n == n == KAT_P * KAT_Q
    nsquare = n * n
    # The dealt exponent: shares interpolate (rationally, then mod N m') to d with
    # d = 0 mod m' and d = 1 mod N.
    ss = {s.index: int(s._share) for s in shares[:3]}
    d = Fraction(0)
    for i, s in ss.items():
        coefficient = Fraction(1)
        for j in ss:
            if j != i:
                coefficient *= Fraction(j, j - i)
        d += s * coefficient
    d_mod = d.numerator * pow(d.denominator, -1, n * m_prime) % (n * m_prime)
    assert d_mod % m_prime == 0 and d_mod % n == 1
    # Ciphertexts from phe, decrypted textbook-style with lambda = lcm(p-1, q-1).
    phe_pk = key.public_key.to_phe()
    messages = [0, 1, 2**200, n - 1]
    cts = [phe_pk.raw_encrypt(m) for m in messages]
    lam = math.lcm(KAT_P - 1, KAT_Q - 1)
    mu = pow((pow(n + 1, lam, nsquare) - 1) // n, -1, n)
    textbook = [(pow(c, lam, nsquare) - 1) // n * mu % n for c in cts]
    assert textbook == messages
    for subset in ([0, 1, 2], [2, 3, 4], [0, 2, 4]):
        got = T.combine_partials(key, cts, _partials([shares[i] for i in subset], cts), CONTEXT)
        assert list(got.plaintexts) == textbook


# -------------------------------------------------------- encodings and decoders


def test_encodings_round_trip(committee):
    key, shares = committee
    assert T.ThresholdPublicKey.from_bytes(key.to_bytes()) == key
    for s in shares:
        back = T.KeyShare.from_bytes(key, s.to_bytes())
        assert back.index == s.index and int(back._share) == int(s._share)
    cts = P.encrypt_packed(key.public_key, [3, 4], workers=1)
    p = T.partial_decrypt(shares[4], cts, CONTEXT, workers=1)
    assert T.PartialDecryption.from_bytes(key, p.to_bytes(key), count=2) == p
    with pytest.raises(ValueError, match="expected 3"):
        T.PartialDecryption.from_bytes(key, p.to_bytes(key), count=3)


def test_inconsistent_verification_keys_are_refused(committee):
    """A dealer publishing a verification key off the sharing polynomial is caught on decode."""
    key, shares = committee
    nsquare = key.public_key.nsquare
    bad = list(key.verification_keys)
    bad[4] = bad[4] * key.verification_base % nsquare
    forged = T.ThresholdPublicKey(key.public_key, key.threshold, key.verification_base, tuple(bad))
    with pytest.raises(ValueError, match="inconsistent"):
        T.ThresholdPublicKey.from_bytes(forged.to_bytes())
    with pytest.raises(ValueError, match="verification key"):
        T.KeyShare(forged, 5, int(shares[4]._share))
    with pytest.raises(ValueError, match="different threshold key"):
        T.KeyShare.from_bytes(forged, shares[0].to_bytes())


def _decoders(key):
    cts_count = 2
    return [
        lambda b: T.ThresholdPublicKey.from_bytes(b),
        lambda b: T.KeyShare.from_bytes(key, b),
        lambda b: T.PartialDecryption.from_bytes(key, b, count=cts_count),
    ]


@SETTINGS
@given(data=st.binary(max_size=600), which=st.integers(0, 2))
def test_decoders_fuzz(committee, data, which):
    key, _ = committee
    try:
        _decoders(key)[which](data)
    except ValueError:
        pass


@SETTINGS
@given(which=st.integers(0, 2), flips=st.lists(st.integers(0, 10**6), min_size=1, max_size=3))
def test_decoders_bit_flips(committee, which, flips):
    """A flipped encoding is refused with ValueError or decodes to exactly what it says."""
    key, shares = committee
    cts = P.encrypt_packed(key.public_key, [3, 4], workers=1)
    partial = T.partial_decrypt(shares[0], cts, CONTEXT, workers=1)
    encodings = [key.to_bytes(), shares[0].to_bytes(), partial.to_bytes(key)]
    raw = bytearray(encodings[which])
    for f in flips:
        raw[(f // 8) % len(raw)] ^= 1 << (f % 8)
    try:
        decoded = _decoders(key)[which](bytes(raw))
    except ValueError:
        return
    again = decoded.to_bytes(key) if which == 2 else decoded.to_bytes()
    assert again == bytes(raw)
    if which == 2 and bytes(raw) != encodings[2]:
        with pytest.raises(PartialDecryptionError):
            T.verify_partial(key, cts, decoded, CONTEXT)


def test_combine_verified_matches_combine_partials(committee):
    key, shares = committee
    messages = [5, 0, key.public_key.n - 2]
    cts = P.encrypt_packed(key.public_key, messages, workers=1)
    partials = _partials(shares, cts)
    for p in partials:
        T.verify_partial(key, cts, p, CONTEXT)
    assert T.combine_verified(key, cts, [partials[4], partials[0], partials[2]]) == tuple(messages)
    with pytest.raises(ValueError, match="3 distinct"):
        T.combine_verified(key, cts, partials[:2])
    with pytest.raises(ValueError, match="3 distinct"):
        T.combine_verified(key, cts, [partials[0], partials[0], partials[1]])
    with pytest.raises(ValueError, match="one value per ciphertext"):
        T.combine_verified(key, cts[:2], partials[:3])
