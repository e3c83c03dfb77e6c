"""ThresholdPaillier sessions, driven through the wire format, honest and under attack.

Every message crosses as bytes (``protocols.driver.drive`` over an in-process
transport); attacks rewrite those bytes as a deviating server or a lying
committee member would. Expected totals are plain numpy sums of on-grid
inputs (quantization is then exact), never the code under test.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocols
from protocols import registry, wire
from protocols.driver import Delivery, drive
from protocols.messages import Message
from protocols.simulate import Stats
from protocols.threshold_paillier import (
    DecryptionRequest,
    PartialDecryptionReply,
    SignedInput,
    ThresholdKeyBroadcast,
    ThresholdPaillier,
    simulated_setup,
)
from secagg import paillier as P
from secagg.identity import IdentityKeyPair
from secagg.paillier import threshold as T
from secagg.randomness import DeterministicRandom

# 512-bit keys keep the rounds fast: tests only (insecure=True).
PROTO = ThresholdPaillier(key_bits=512, bits=16, clip=2.0, insecure=True, min_clients=3)
IDS = list(range(8))
DIM = 40


@pytest.fixture(scope="module")
def setup():
    """Committee 0..4 (t = 3), clients 0..7; clients check the committee's key signatures."""
    return simulated_setup(PROTO, IDS, rng=DeterministicRandom("setup"))


@pytest.fixture(scope="module")
def pinned():
    return simulated_setup(PROTO, IDS, committee=[3, 4, 5, 6, 7], pin_key=True)


def _grid_inputs(seed, ids=IDS):
    """Inputs on the quantization grid, so the exact integer total is a plain numpy sum."""
    enc = PROTO.paillier.encoder
    gen = np.random.default_rng(seed)  # test data only
    q = {c: gen.integers(-enc.q_max, enc.q_max + 1, DIM) for c in ids}
    return {c: v / enc.scale for c, v in q.items()}, q


class Net:
    """The clients' side of an in-process network; ``tamper(message) -> bytes | None`` rewrites
    a message in flight (None drops it); ``silent`` clients never answer (dropouts)."""

    def __init__(self, setup, inputs, *, tamper=None, silent=(), round=0):
        self.sessions = {
            c: setup.client(
                c, DIM, rng=DeterministicRandom(("client", c, round).__repr__()), round=round
            )
            for c in inputs
        }
        for c, session in self.sessions.items():
            session.start()
            session.provide_input(inputs[c])
        self.tamper = tamper or (lambda m: m.to_bytes())
        self.silent = dict(silent)
        self.sent: list[Message] = []  # everything a client sent, as the server got it
        self.refusals: dict[int, str] = {}

    def exchange(self, batch):
        out = Delivery()
        for cid, payload in batch:
            message = Message.from_bytes(payload)
            data = self.tamper(message) if message.recipient != wire.SERVER else payload
            if data is None:
                continue
            session = self.sessions[cid]
            if session.finished:
                continue
            try:
                replies = session.receive(data)
            except protocols.RemoteProtocolError as exc:
                self.refusals[cid] = str(exc)
                out.lost[cid] = "refused"
                continue
            for reply in replies:
                if self.silent.get(cid) in (reply.STAGE, "all"):
                    out.lost[cid] = "dropped"
                    continue
                data = self.tamper(reply)
                if data is None:
                    continue
                self.sent.append(Message.from_bytes(data))
                out.messages.append((cid, data))
        return out


def run(setup, inputs, **kw):
    server = setup.server(sorted(inputs), DIM, round=kw.get("round", 0))
    net = Net(setup, inputs, **kw)
    drive(server, net, Stats(), drop_refused=True)
    return server, net


# ------------------------------------------------------------------------- honest


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**16),
    dropped=st.sets(st.sampled_from(IDS), max_size=4),
    members_lost=st.sets(st.sampled_from(range(5)), max_size=2),
)
def test_round_gives_the_exact_sum_with_dropouts(setup, seed, dropped, members_lost):
    """Inputs dropped at masked_input are not in the sum; 2 of 5 members may vanish at unmasking."""
    inputs, q = _grid_inputs(seed)
    silent = {c: "masked_input" for c in dropped - set(range(5))}
    silent |= {c: "unmasking" for c in members_lost}
    survivors = sorted(set(IDS) - set(silent.keys() - set(members_lost)))
    if len(survivors) < PROTO.min_clients:
        return
    server, net = run(setup, inputs, silent=silent)
    assert server.result.survivors == tuple(survivors)
    np.testing.assert_array_equal(server.result.integer_total, sum(q[c] for c in survivors))
    assert server.refused_members == {} and net.refusals == {}


def test_pinned_key_round_and_the_registry(pinned):
    inputs, q = _grid_inputs(1)
    server, _ = run(pinned, inputs)
    np.testing.assert_array_equal(server.result.integer_total, sum(q.values()))
    # Exported, but not registered: simulate/recsys/Flower cannot run its setup yet.
    assert protocols.ThresholdPaillier is ThresholdPaillier
    assert "threshold-paillier" not in registry.names()


def test_unbound_and_insecure_configs_refuse():
    with pytest.raises(ValueError, match="insecure=True"):
        ThresholdPaillier(key_bits=1024)
    unbound = ThresholdPaillier()
    assert not unbound.bound and unbound.decryption_threshold == 3
    with pytest.raises(protocols.LocalProtocolError, match="no committee"):
        unbound.server([1, 2, 3], 4).start()
    with pytest.raises(protocols.LocalProtocolError, match="no committee"):
        unbound.client(1, 4).start()


def test_snapshots_are_refused_not_half_made(setup):
    client = setup.client(0, DIM)
    client.start()
    with pytest.raises(protocols.LocalProtocolError, match="snapshot"):
        client.snapshot()


def test_clients_need_their_own_identity_and_share(setup):
    with pytest.raises(protocols.LocalProtocolError, match="identity"):
        setup.proto.client(6, DIM, identity=IdentityKeyPair.generate()).start()
    with pytest.raises(protocols.LocalProtocolError, match="key share"):
        setup.proto.client(0, DIM, identity=setup.identities[0]).start()


# ------------------------------------------------- a deviating server: the key


def _attacker_key(n_members=5, threshold=3):
    key, shares = T.generate_threshold_key(512, n_members, threshold, insecure=True)
    return key, shares


@pytest.mark.parametrize("mode", ["unsigned", "signed by outsiders", "signed by t-1 members"])
def test_substituted_key_is_refused_and_nothing_is_encrypted_under_it(setup, mode):
    """The server sends its own key (it holds every share of it): no client encrypts under it."""
    fake, _ = _attacker_key()
    outsiders = [IdentityKeyPair.generate() for _ in range(3)]
    statement = setup.proto.key_statement(fake)
    if mode == "unsigned":
        signers, signatures = (), ()
    elif mode == "signed by outsiders":
        signers, signatures = (100, 101, 102), tuple(o.sign_statement(statement) for o in outsiders)
    else:  # the server colludes with t - 1 = 2 committee members
        signers = (0, 1)
        signatures = tuple(setup.identities[c].sign_statement(statement) for c in signers)

    def tamper(m):
        if isinstance(m, ThresholdKeyBroadcast):
            return dataclasses.replace(
                m, threshold_key=fake.to_bytes(), signers=signers, signatures=signatures
            ).to_bytes()
        return m.to_bytes()

    inputs, _ = _grid_inputs(2)
    server, net = run(setup, inputs, tamper=tamper)
    assert not any(isinstance(m, SignedInput) for m in net.sent)  # nothing revealed
    assert set(net.refusals) == set(IDS)
    assert all("threshold key" in why for why in net.refusals.values())
    assert server.aborted


def test_pinned_clients_refuse_even_a_committee_signed_other_key(pinned):
    """With a pin, a key other than the pinned one is refused whatever signs it."""
    fake, _ = _attacker_key()
    statement = pinned.proto.key_statement(fake)
    members = pinned.proto.committee

    def tamper(m):
        if isinstance(m, ThresholdKeyBroadcast):
            sigs = tuple(pinned.identities[c].sign_statement(statement) for c in members)
            return dataclasses.replace(
                m, threshold_key=fake.to_bytes(), signers=members, signatures=sigs
            ).to_bytes()
        return m.to_bytes()

    inputs, _ = _grid_inputs(3)
    _, net = run(pinned, inputs, tamper=tamper)
    assert not any(isinstance(m, SignedInput) for m in net.sent)
    assert all("pinned" in why for why in net.refusals.values())


# ------------------------------------- a deviating server: what gets decrypted


def _open_round(setup, seed):
    """A round run by hand up to the unmasking stage: (server, net, requests not yet delivered)."""
    inputs, _ = _grid_inputs(seed)
    server = setup.server(IDS, DIM)
    net = Net(setup, inputs)
    pending, held = server.start(), []
    while pending:
        m = pending.pop(0)
        if isinstance(m, DecryptionRequest):  # the server closes the input stage itself
            held.append(m)
            continue
        for reply in net.sessions[m.recipient].receive(m.to_bytes()):
            pending += server.receive(reply.to_bytes())
    requests = {r.recipient: r for r in held}
    assert set(requests) == set(setup.proto.committee)
    return server, net, requests


def _answer(session, message):
    try:
        return session.receive(message.to_bytes())
    except protocols.RemoteProtocolError as exc:
        assert session.aborted  # fails closed: no partial decryption this round, ever
        return exc


def test_a_single_ciphertext_presented_as_an_aggregate_is_refused(setup):
    """The server wants client 6's input alone; each disguise goes to another member of the
    same session, and each is refused; the honest request still gets an answer."""
    server, net, requests = _open_round(setup, 4)
    honest = requests[0]
    pos = honest.survivors.index(6)
    victim_blob, victim_sig = honest.ciphertexts[pos], honest.signatures[pos]
    key = setup.threshold_key
    zeros = P.ciphertexts_to_bytes(
        key.public_key,
        P.encrypt_packed(key.public_key, [0] * PROTO.paillier.packer(len(IDS)).num_plaintexts(DIM)),
    )
    forgeries = [
        # Too few contributions (min_clients = 3).
        ("alone", dataclasses.replace(
            honest, survivors=(6,), ciphertexts=(victim_blob,), signatures=(victim_sig,)
        ), "min_clients"),
        # The victim's ciphertext under other clients' names (their signatures do not cover it).
        ("relabelled", dataclasses.replace(
            honest, survivors=(5, 6, 7), ciphertexts=(victim_blob,) * 3,
            signatures=(victim_sig,) * 3,
        ), "client 5"),
        # The server's own encryptions of zero as two "clients", with made-up signatures.
        ("server-made", dataclasses.replace(
            honest, survivors=(5, 6, 7), ciphertexts=(zeros, victim_blob, zeros),
            signatures=(bytes(64), victim_sig, bytes(64)),
        ), "client 5"),
    ]  # fmt: skip
    for member, (name, forged, why) in zip((0, 1, 2), forgeries, strict=True):
        answer = _answer(net.sessions[member], dataclasses.replace(forged, recipient=member))
        assert isinstance(answer, protocols.RemoteProtocolError), name
        assert why in str(answer), (name, answer)
    (reply,) = _answer(net.sessions[3], requests[3])
    assert isinstance(reply, PartialDecryptionReply)
    # Only one partial decryption exists: the server is one short of t = 3 for any decryption.
    server.receive(reply.to_bytes())
    assert not server.finished


def test_contributions_from_another_session_are_refused(setup):
    """Signed inputs of one round offered to a member in the next (other session id)."""
    _, _, old = _open_round(setup, 5)
    _, net, _ = _open_round(setup, 5)
    answer = _answer(net.sessions[2], old[2])
    assert isinstance(answer, protocols.RemoteProtocolError) and "signature" in str(answer)


def test_member_decrypts_an_honest_request_once(setup):
    """Control for the attacks above: a member answers an honest request, once per session."""
    _, net, requests = _open_round(setup, 6)
    (reply,) = net.sessions[1].receive(requests[1].to_bytes())
    assert isinstance(reply, PartialDecryptionReply)
    with pytest.raises(protocols.RemoteProtocolError):
        net.sessions[1].receive(requests[1].to_bytes())


# ------------------------------------------------------ lying committee members


@pytest.mark.parametrize("liars", [(0,), (1, 3)])
def test_lying_members_are_named_and_the_round_completes(setup, liars):
    """Members whose partial decryption is tampered with are named; t = 3 honest ones finish.

    (Members answer in index order here; the server finishes at the t-th valid answer, so
    a liar answering after that is never looked at.)"""

    def tamper(m):
        if isinstance(m, PartialDecryptionReply) and m.sender in liars:
            key = setup.threshold_key
            nsquare = key.public_key.nsquare
            p = T.PartialDecryption.from_bytes(key, m.partial)
            shifted = (p.values[0] * (1 + key.public_key.n) % nsquare, *p.values[1:])
            forged = T.PartialDecryption(p.index, shifted, p.challenge, p.response)
            return dataclasses.replace(m, partial=forged.to_bytes(key)).to_bytes()
        return m.to_bytes()

    inputs, q = _grid_inputs(7)
    server, _ = run(setup, inputs, tamper=tamper)
    np.testing.assert_array_equal(server.result.integer_total, sum(q.values()))
    assert set(server.refused_members) == set(liars)


def test_a_member_proving_another_ciphertext_is_named(setup):
    """A member that decrypts (and proves) a different ciphertext is caught by its proof."""
    key = setup.threshold_key
    other = P.encrypt_packed(
        key.public_key, [1] * PROTO.paillier.packer(len(IDS)).num_plaintexts(DIM)
    )

    def tamper(m):
        if isinstance(m, PartialDecryptionReply) and m.sender == 0:
            wrong = T.partial_decrypt(setup.shares[0], other, b"whatever", workers=1)
            return dataclasses.replace(m, partial=wrong.to_bytes(key)).to_bytes()
        return m.to_bytes()

    inputs, q = _grid_inputs(8)
    server, _ = run(setup, inputs, tamper=tamper, silent={4: "unmasking"})
    # Members 1, 2, 3 are honest: exactly t, and the round completes without 0 and 4.
    np.testing.assert_array_equal(server.result.integer_total, sum(q.values()))
    assert list(server.refused_members) == [0]


def test_too_many_liars_abort_and_name_them(setup):
    def tamper(m):
        if isinstance(m, PartialDecryptionReply) and m.sender in (0, 1, 2):
            return dataclasses.replace(
                m, partial=m.partial[:-1] + bytes([m.partial[-1] ^ 1])
            ).to_bytes()
        return m.to_bytes()

    inputs, _ = _grid_inputs(9)
    server, _ = run(setup, inputs, tamper=tamper)
    assert server.aborted and "refused members [0, 1, 2]" in server.abort_reason
    with pytest.raises(protocols.ProtocolAborted):
        server.result  # noqa: B018


# ------------------------------------------------------------------- wire format


def _round_messages(setup):
    captured = []

    def spy(m):
        captured.append(m)
        return m.to_bytes()

    run(setup, _grid_inputs(10)[0], tamper=spy)
    return {type(m): m for m in captured}


def test_new_messages_round_trip_and_bit_flips_raise_only_wire_errors(setup):
    by_type = _round_messages(setup)
    assert {ThresholdKeyBroadcast, SignedInput, DecryptionRequest, PartialDecryptionReply} <= set(
        by_type
    )
    gen = np.random.default_rng(0)  # test data only
    for cls in (ThresholdKeyBroadcast, SignedInput, DecryptionRequest, PartialDecryptionReply):
        data = by_type[cls].to_bytes()
        assert Message.from_bytes(data) == by_type[cls]
        for _ in range(30):
            raw = bytearray(data)
            bit = int(gen.integers(0, 8 * len(raw)))
            raw[bit // 8] ^= 1 << (bit % 8)
            try:
                again = Message.from_bytes(bytes(raw))
            except protocols.WireFormatError:
                continue
            assert again.to_bytes() == bytes(raw)
        for cut in (0, 5, len(data) // 2, len(data) - 1):
            with pytest.raises(protocols.WireFormatError):
                Message.from_bytes(data[:cut])


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(flips=st.lists(st.integers(0, 10**7), min_size=1, max_size=3))
def test_flipped_key_broadcasts_are_refused_or_identical(setup, flips):
    """A client fed a corrupted key broadcast either refuses it (RemoteProtocolError) or got
    the very same key (a flip in a signature that another valid one makes up for)."""
    by_type = _round_messages(setup)
    broadcast = by_type[ThresholdKeyBroadcast]
    raw = bytearray(broadcast.threshold_key)
    for f in flips:
        raw[(f // 8) % len(raw)] ^= 1 << (f % 8)
    forged = dataclasses.replace(broadcast, recipient=6, threshold_key=bytes(raw))
    server = setup.server(IDS, DIM)
    (start,) = [m for m in server.start() if m.recipient == 6 and type(m).__name__ == "RoundStart"]
    client = setup.client(6, DIM)
    client.start()
    client.receive(start.to_bytes())
    client.provide_input(np.zeros(DIM))
    try:
        out = client.receive(forged.to_bytes())
    except protocols.RemoteProtocolError:
        assert client.aborted
        return
    assert bytes(raw) == setup.threshold_key.to_bytes() and isinstance(out[0], SignedInput)
