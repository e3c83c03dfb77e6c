"""Ed25519 identities, signed statements and rosters (secagg.identity).

Known answers: RFC 8032 section 7.1 (secagg/vectors/ed25519_rfc8032.json) and
this library's statement framing (secagg/vectors/statement_signatures.json),
whose encodings are rebuilt here with struct from the documented layout. The
small-order encodings are the published list (libsodium's
``ge25519_has_small_order`` blocklist with both signs of x).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from importlib import resources

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg import identity
from secagg.errors import InvalidKeyError, RosterError, SecaggError, SignatureError
from secagg.identity import IdentityKeyPair, IdentityPublicKey, Roster, Statement
from secagg.randomness import DeterministicRandom


def _load(name: str) -> dict:
    return json.loads(resources.files("secagg").joinpath(f"vectors/{name}").read_text())


RFC8032 = _load("ed25519_rfc8032.json")["vectors"]
STATEMENTS = _load("statement_signatures.json")


def _frame(*parts: bytes) -> bytes:
    """The documented framing, spelled out with struct (4-byte big-endian lengths)."""
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


def _keys(n: int, seed: int = 0) -> list[IdentityKeyPair]:
    rng = DeterministicRandom(f"identities {seed}")
    return [IdentityKeyPair.generate(rng) for _ in range(n)]


# ---------------------------------------------------------------------------
# RFC 8032 section 7.1


def test_the_rfc_file_holds_tests_1_2_3_1024_and_sha_abc():
    names = [v["name"] for v in RFC8032]
    assert names == ["TEST 1", "TEST 2", "TEST 3", "TEST 1024", "TEST SHA(abc)"]
    assert len(bytes.fromhex(RFC8032[3]["message"])) == 1023
    assert bytes.fromhex(RFC8032[4]["message"]) == hashlib.sha512(b"abc").digest()


@pytest.mark.parametrize("vector", RFC8032, ids=lambda v: v["name"])
def test_rfc8032_vectors(vector):
    seed, public = bytes.fromhex(vector["secret_key"]), bytes.fromhex(vector["public_key"])
    message, signature = bytes.fromhex(vector["message"]), bytes.fromhex(vector["signature"])
    pair = IdentityKeyPair.from_private_bytes(seed)
    assert pair.public_key.raw == public
    assert pair.private_bytes() == seed
    assert pair.sign(message) == signature
    identity.verify(public, signature, message)
    pair.public_key.verify(signature, message)
    # One flipped bit anywhere in the signature, or another message, fails.
    for i in (0, 31, 32, 63):
        tampered = bytearray(signature)
        tampered[i] ^= 0x01
        with pytest.raises(SignatureError):
            identity.verify(public, bytes(tampered), message)
    with pytest.raises(SignatureError):
        identity.verify(public, signature, message + b"\x00")


def test_rfc8032_signatures_do_not_verify_under_another_vectors_key():
    for a in RFC8032:
        for b in RFC8032:
            if a is not b:
                with pytest.raises(SignatureError):
                    identity.verify(
                        bytes.fromhex(b["public_key"]),
                        bytes.fromhex(a["signature"]),
                        bytes.fromhex(a["message"]),
                    )


@pytest.mark.parametrize("length", [0, 63, 65, 128])
def test_signatures_of_the_wrong_length_are_signature_errors(length):
    key = _keys(1)[0].public_key
    with pytest.raises(SignatureError, match="64 bytes"):
        key.verify(b"\x01" * length, b"m")


def test_verify_wants_bytes():
    key = _keys(1)[0].public_key
    with pytest.raises(TypeError):
        key.verify("00" * 64, b"m")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        key.verify(bytes(64), "m")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Public-key validation

_SMALL_ORDER_ENCODINGS = [
    "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
    "0000000000000000000000000000000000000000000000000000000000000080",  # order 4
    "0100000000000000000000000000000000000000000000000000000000000000",  # order 1
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",  # order 8
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2
]


@pytest.mark.parametrize("encoding", _SMALL_ORDER_ENCODINGS, ids=lambda h: h[:8] + h[-2:])
def test_small_order_identity_keys_are_refused(encoding):
    raw = bytes.fromhex(encoding)
    with pytest.raises(InvalidKeyError, match="small-order"):
        identity.check_identity_key(raw)
    with pytest.raises(InvalidKeyError):
        IdentityPublicKey(raw)
    with pytest.raises(InvalidKeyError):
        identity.verify(raw, bytes(64), b"x")


def test_openssl_alone_accepts_a_forgery_under_the_all_zero_key():
    # Why check_identity_key exists: with no private key at all, the all-zero
    # signature verifies under the all-zero (order-4) public key for this message.
    Ed25519PublicKey.from_public_bytes(bytes(32)).verify(bytes(64), b"x")
    with pytest.raises(InvalidKeyError):
        identity.verify(bytes(32), bytes(64), b"x")


def test_non_canonical_and_off_curve_keys_are_refused():
    p = 2**255 - 19
    for y in (p, p + 1, 2**255 - 1):  # y >= p: spellings of 0, 1 and 18
        with pytest.raises(InvalidKeyError, match="canonical"):
            identity.check_identity_key(y.to_bytes(32, "little"))
    # x = 0 with the sign bit set: "negative zero" of the identity (RFC 8032 5.1.3 step 4).
    with pytest.raises(InvalidKeyError, match="canonical"):
        identity.check_identity_key(bytes.fromhex("01" + "00" * 30 + "80"))
    # y = 2 is not on the curve: (y^2 - 1) / (d y^2 + 1) = 3 / (4d + 1) is a non-square.
    with pytest.raises(InvalidKeyError, match="not a point"):
        identity.check_identity_key((2).to_bytes(32, "little"))


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_identity_keys_of_the_wrong_length_are_refused(length):
    with pytest.raises(InvalidKeyError, match="32 bytes"):
        identity.check_identity_key(b"\x05" * length)


def test_real_keys_are_accepted_and_sign_bit_flips_are_other_valid_keys_or_refused():
    for pair in _keys(20):
        raw = pair.public_key.raw
        assert identity.check_identity_key(raw) == raw
        flipped = raw[:31] + bytes([raw[31] ^ 0x80])  # -A: a valid key of someone else
        assert identity.check_identity_key(flipped) == flipped
        with pytest.raises(SignatureError):
            identity.verify(flipped, pair.sign(b"m"), b"m")


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(min_size=0, max_size=40), signature=st.binary(min_size=64, max_size=64))
def test_random_keys_and_signatures_raise_only_library_errors(raw, signature):
    try:
        identity.verify(raw, signature, b"fuzz")
    except (InvalidKeyError, SignatureError):
        pass


# ---------------------------------------------------------------------------
# Statements: known answers and domain separation


def _statement(v: dict) -> Statement:
    return Statement(
        context=bytes.fromhex(v["context"]),
        session_id=bytes.fromhex(v["session_id"]),
        round=v["round"],
        config_digest=bytes.fromhex(v["config_digest"]),
        payload=bytes.fromhex(v["payload"]),
    )


@pytest.mark.parametrize("v", STATEMENTS["vectors"], ids=lambda v: v["name"])
def test_statement_vectors(v):
    statement = _statement(v)
    expected = _frame(
        b"secagg-fl/v1 ed25519 statement",
        statement.context,
        statement.session_id,
        struct.pack(">Q", v["round"]),
        statement.config_digest,
        statement.payload,
    )
    assert statement.encode() == expected == bytes.fromhex(v["encoded"])
    signer = IdentityKeyPair.from_private_bytes(bytes.fromhex(STATEMENTS["secret_key"]))
    assert signer.public_key.raw.hex() == STATEMENTS["public_key"]
    signature = bytes.fromhex(v["signature"])
    assert signer.sign_statement(statement) == signature
    # A plain RFC 8032 verifier accepts it over the documented bytes.
    Ed25519PublicKey.from_public_bytes(signer.public_key.raw).verify(signature, expected)
    signer.public_key.verify_statement(signature, statement)


def test_a_statement_signature_verifies_for_no_other_statement():
    signer = IdentityKeyPair.from_private_bytes(bytes.fromhex(STATEMENTS["secret_key"]))
    vectors = STATEMENTS["vectors"]
    assert len({v["encoded"] for v in vectors}) == len(vectors)
    for a in vectors:
        for b in vectors:
            if a is not b:
                with pytest.raises(SignatureError, match="does not verify"):
                    signer.public_key.verify_statement(bytes.fromhex(a["signature"]), _statement(b))


_fields = st.fixed_dictionaries(
    {
        "context": st.binary(min_size=1, max_size=8),
        "session_id": st.binary(max_size=8),
        "round": st.integers(0, 2**64 - 1),
        "config_digest": st.binary(max_size=8),
        "payload": st.binary(max_size=8),
    }
)


@settings(max_examples=60, deadline=None)
@given(a=_fields, b=_fields)
def test_distinct_statements_have_distinct_encodings_and_signatures_do_not_transfer(a, b):
    sa, sb = Statement(**a), Statement(**b)
    if a == b:
        assert sa.encode() == sb.encode()
        return
    assert sa.encode() != sb.encode()
    signer = _keys(1)[0]
    with pytest.raises(SignatureError):
        signer.public_key.verify_statement(signer.sign_statement(sa), sb)


def test_a_raw_signature_cannot_pass_as_a_statement():
    signer = _keys(1)[0]
    statement = Statement(identity.ADVERTISE_CONTEXT, b"s", 1, b"c", b"p")
    with pytest.raises(ValueError, match="sign_statement"):
        signer.sign(statement.encode())
    # And a statement signature is not a signature on the payload alone.
    with pytest.raises(SignatureError):
        signer.public_key.verify(signer.sign_statement(statement), b"p")


def test_statement_fields_are_validated():
    with pytest.raises(ValueError, match="context"):
        Statement(b"", b"s", 0, b"c", b"p")
    for bad_round in (-1, 2**64):
        with pytest.raises(ValueError, match="round"):
            Statement(b"x", b"s", bad_round, b"c", b"p")
    with pytest.raises(TypeError):
        Statement(b"x", b"s", True, b"c", b"p")
    with pytest.raises(TypeError):
        Statement(b"x", "s", 0, b"c", b"p")  # type: ignore[arg-type]
    assert Statement(bytearray(b"x"), b"s", 0, b"c", b"p").context == b"x"  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _keys(1)[0].sign_statement(b"not a statement")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Key pairs


def test_generation_from_an_rng_is_reproducible_and_the_default_is_fresh():
    assert _keys(3, seed=7) == _keys(3, seed=7)
    assert _keys(1, seed=7)[0].public_key != _keys(1, seed=8)[0].public_key
    assert IdentityKeyPair.generate().public_key != IdentityKeyPair.generate().public_key
    with pytest.raises(TypeError, match="numpy"):
        IdentityKeyPair.generate(np.random.default_rng(0))  # type: ignore[arg-type]


def test_key_pair_round_trips_and_hides_its_private_key():
    pair = _keys(1)[0]
    again = IdentityKeyPair.from_private_bytes(pair.private_bytes())
    assert again == pair
    assert pair.private_bytes().hex() not in repr(pair)
    assert pair.public_key.raw.hex() in repr(pair.public_key)
    with pytest.raises(ValueError, match="32 bytes"):
        IdentityKeyPair.from_private_bytes(bytes(31))
    with pytest.raises(ValueError, match="does not match"):
        IdentityKeyPair(_keys(2)[1].public_key, pair._private)
    with pytest.raises(TypeError):
        IdentityKeyPair(pair.public_key, object())  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Rosters


def _reference_digest(entries: dict[int, bytes]) -> bytes:
    framed = [struct.pack(">I", cid) + entries[cid] for cid in sorted(entries)]
    return hashlib.sha256(_frame(b"secagg-fl/v1 roster", *framed)).digest()


def _reference_encoding(entries: dict[int, bytes]) -> bytes:
    body = b"".join(struct.pack(">I", cid) + entries[cid] for cid in sorted(entries))
    return struct.pack(">I", len(entries)) + body


def _raw_entries(ids: list[int], seed: int = 0) -> dict[int, bytes]:
    return {cid: k.public_key.raw for cid, k in zip(ids, _keys(len(ids), seed), strict=True)}


def test_roster_is_an_immutable_sorted_mapping_with_the_documented_digest_and_encoding():
    entries = _raw_entries([5, 0, 42, 7])
    roster = Roster(entries)
    assert roster.ids == (0, 5, 7, 42) == tuple(roster)
    assert len(roster) == 4 and 5 in roster and 6 not in roster
    assert roster[42] == IdentityPublicKey(entries[42])
    assert roster.digest == _reference_digest(entries)
    assert roster.to_bytes() == _reference_encoding(entries)
    assert Roster.from_bytes(roster.to_bytes()) == roster
    assert Roster(dict(reversed(list(entries.items())))) == roster  # order-independent
    assert hash(Roster(entries)) == hash(roster)
    assert roster.digest.hex()[:16] in repr(roster)
    with pytest.raises(TypeError):
        roster[1] = roster[0]  # type: ignore[index]
    with pytest.raises(KeyError):
        roster[6]


def test_roster_digest_changes_with_any_id_or_key():
    entries = _raw_entries([1, 2, 3])
    base = Roster(entries).digest
    moved = {**{k: v for k, v in entries.items() if k != 3}, 4: entries[3]}
    swapped = {1: entries[2], 2: entries[1], 3: entries[3]}
    replaced = {**entries, 2: _keys(1, seed=99)[0].public_key.raw}
    digests = {base, Roster(moved).digest, Roster(swapped).digest, Roster(replaced).digest}
    assert len(digests) == 4


class _PairsMapping(Mapping):
    """A mapping whose items() yields given pairs, e.g. two spellings of one id."""

    def __init__(self, pairs):
        self._pairs = pairs

    def __getitem__(self, key):
        return dict(self._pairs)[key]

    def __iter__(self):
        return iter(k for k, _ in self._pairs)

    def __len__(self):
        return len(self._pairs)

    def items(self):
        return list(self._pairs)


def test_roster_construction_refuses_bad_ids_and_keys():
    good = _raw_entries([0, 1])
    with pytest.raises(RosterError, match="at least one"):
        Roster({})
    for bad_id in (-1, identity.MAX_CLIENT_ID + 1):
        with pytest.raises(RosterError, match="client ids"):
            Roster({bad_id: good[0]})
    with pytest.raises(TypeError):
        Roster({True: good[0]})
    with pytest.raises(TypeError):
        Roster({"1": good[0]})  # type: ignore[dict-item]
    with pytest.raises(RosterError, match="given twice"):
        Roster(_PairsMapping([(3, good[0]), (np.int64(3), good[1])]))
    with pytest.raises(RosterError, match="same identity key"):
        Roster({0: good[0], 1: good[0]})
    with pytest.raises(RosterError, match="client 1"):
        Roster({0: good[0], 1: bytes(32)})
    with pytest.raises(TypeError):
        Roster({0: "ab" * 16})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        Roster([(0, good[0])])  # type: ignore[arg-type]
    assert Roster({np.int64(identity.MAX_CLIENT_ID): good[0]}).ids == (identity.MAX_CLIENT_ID,)


def test_roster_decoder_refuses_everything_but_the_canonical_encoding():
    entries = _raw_entries([2, 9, 11])
    data = Roster(entries).to_bytes()
    for cut in range(len(data)):
        with pytest.raises(RosterError):
            Roster.from_bytes(data[:cut])
    with pytest.raises(RosterError, match="trailing"):
        Roster.from_bytes(data + b"\x00")
    with pytest.raises(RosterError, match="at least one"):
        Roster.from_bytes(struct.pack(">I", 0))
    with pytest.raises(RosterError, match="truncated"):
        Roster.from_bytes(struct.pack(">I", 2**32 - 1) + data[4:])
    e = [data[4 + 36 * i : 4 + 36 * (i + 1)] for i in range(3)]
    with pytest.raises(RosterError, match="strictly increasing"):
        Roster.from_bytes(data[:4] + e[1] + e[0] + e[2])
    duplicate = e[1][:4] + e[2][4:]  # id 9 again, with the third key
    with pytest.raises(RosterError, match="strictly increasing"):
        Roster.from_bytes(data[:4] + e[0] + e[1] + duplicate)
    with pytest.raises(RosterError, match="client ids"):
        Roster.from_bytes(struct.pack(">I", 1) + struct.pack(">I", 2**32 - 1) + e[0][4:])
    with pytest.raises(RosterError, match="client 9"):
        Roster.from_bytes(data[:4] + e[0] + e[1][:4] + bytes(32) + e[2])
    with pytest.raises(TypeError):
        Roster.from_bytes("roster")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=120))
def test_roster_decoder_fuzz_raises_only_roster_errors(data):
    try:
        roster = Roster.from_bytes(data)
    except RosterError:
        return
    assert roster.to_bytes() == data


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_roster_decoder_fuzz_on_mutations_of_a_valid_encoding(data):
    valid = Roster(_raw_entries([0, 3, 4])).to_bytes()
    position = data.draw(st.integers(0, len(valid) - 1))
    value = data.draw(st.integers(0, 255))
    mutated = valid[:position] + bytes([value]) + valid[position + 1 :]
    try:
        roster = Roster.from_bytes(mutated)
    except RosterError as exc:
        assert isinstance(exc, SecaggError)
        return
    assert roster.to_bytes() == mutated


def test_roster_verifies_statements_by_client_id():
    pairs = _keys(3)
    roster = Roster({cid: pair.public_key for cid, pair in enumerate(pairs)})
    statement = Statement(identity.CONSISTENCY_CONTEXT, b"sid", 4, b"cfg", b"survivors")
    signature = pairs[1].sign_statement(statement)
    roster.verify_statement(1, signature, statement)
    with pytest.raises(SignatureError):
        roster.verify_statement(2, signature, statement)  # another client's key
    with pytest.raises(SignatureError, match="not in the roster"):
        roster.verify_statement(3, signature, statement)


def test_signatures_are_not_malleable_by_adding_the_group_order_to_s():
    # RFC 8032 section 5.1.7 requires S < L; OpenSSL enforces it, so S + L fails.
    order = 2**252 + 27742317777372353535851937790883648493
    vector = RFC8032[1]
    signature = bytes.fromhex(vector["signature"])
    s = int.from_bytes(signature[32:], "little")
    malleated = signature[:32] + (s + order).to_bytes(32, "little")
    identity.verify(bytes.fromhex(vector["public_key"]), signature, bytes.fromhex(vector["message"]))
    with pytest.raises(SignatureError):
        identity.verify(
            bytes.fromhex(vector["public_key"]), malleated, bytes.fromhex(vector["message"])
        )
