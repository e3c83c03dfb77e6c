"""An adversarial server that shows every client its own view (hypothesis stateful).

Issue 13's headline attack: the server tells some clients that a target
survived (they reveal shares of its self-mask seed) and others that it dropped
(they reveal shares of its mask key), and with enough of both it removes the
target's masks from the target's lone masked input. Bonawitz et al. (CCS 2017,
Fig. 4, "ConsistencyCheck") make this impossible by having every client sign
the survivor set and reveal only for a set enough clients signed.

Here real client sessions of the actively secure variant run honestly (with a
real server) up to the end of the masked-input stage. Then the server is
replaced by an adversary that drives the clients through the wire format as it
likes: it sends each client any survivor set to sign, replays and reorders its
messages, and builds unmasking requests for any set from every signature it
holds, including signatures made with the identity keys of the corrupt
clients it controls (fewer than n/3 for SecAgg, the bound the variant
assumes), and forged ones. The invariants, over all honest clients together:

* never one share of a peer's self-mask seed *and* one of its mask key
  (so no peer's both secrets can be rebuilt, with any number of corrupt
  holders: each honest holder reveals at most one kind, and all agree);
* never a share of a client's own mask key;
* every refusal is a RemoteProtocolError (a peer misbehaved), never a bare
  exception, and it leaves the client aborted.

A plain test runs the same adversary against the semi-honest variant, where
the invariant is broken at once: the check is one that can fail.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import protocols
from protocols import Message, RemoteProtocolError, wire
from protocols.secagg import derivation as d
from protocols.secagg.config import consistency_committee
from protocols.secagg.messages import (
    CertifiedUnmaskRequest,
    ConsistencyCheck,
    ConsistencySignature,
    UnmaskRequest,
    UnmaskResponse,
)
from secagg.identity import CONSISTENCY_CONTEXT, Statement, enroll
from secagg.randomness import DeterministicRandom

DIM = 4


@dataclass
class Reveals:
    """What the honest clients have revealed, by peer (and who revealed it)."""

    self_mask: dict[int, set[int]] = field(default_factory=dict)  # peer -> revealers
    mask_key: dict[int, set[int]] = field(default_factory=dict)

    def record(self, revealer: int, response: UnmaskResponse) -> None:
        for peer, _ in response.self_mask_shares:
            self.self_mask.setdefault(peer, set()).add(revealer)
        for peer, _ in response.mask_key_shares:
            self.mask_key.setdefault(peer, set()).add(revealer)

    def both(self) -> set[int]:
        """Peers of which some honest client revealed a self-mask share and some a mask-key share."""
        return set(self.self_mask) & set(self.mask_key)

    def own_keys(self) -> set[int]:
        """Clients that revealed a share of their own mask key."""
        return {peer for peer, who in self.mask_key.items() if peer in who}


class World:
    """Real sessions run honestly to the consistency stage; then the adversary takes over."""

    def __init__(self, proto: protocols.SecAgg, n: int, corrupt: int, seed: int) -> None:
        self.cohort = tuple(range(n))
        self.corrupt = frozenset(range(n - corrupt, n))  # their identity keys are the adversary's
        self.honest = tuple(c for c in self.cohort if c not in self.corrupt)
        roster, self.identities = enroll(self.cohort, rng=DeterministicRandom(f"adv/{seed}/ids"))
        self.proto = proto.with_roster(roster) if proto.roster is None else proto
        self.round = 3
        server = self.proto.server(
            self.cohort, DIM, rng=DeterministicRandom(f"adv/{seed}/server"), round=self.round
        )
        self.clients = {
            c: self.proto.client(
                c,
                DIM,
                rng=DeterministicRandom(f"adv/{seed}/client/{c}"),
                round=self.round,
                identity=self.identities[c],
            )
            for c in self.cohort
        }
        inputs = np.random.default_rng(seed).uniform(-1, 1, size=(n, DIM))
        to_server: deque[bytes] = deque()
        to_clients: deque[tuple[int, bytes]] = deque()
        for m in server.start():
            to_clients.append((m.recipient, m.to_bytes()))
        for c, client in self.clients.items():
            for m in [*client.start(), *client.provide_input(inputs[c])]:
                to_server.append(m.to_bytes())
        # The honest server runs until it asks for consistency signatures; those
        # requests are where the adversary takes over (they are never delivered).
        self.checks: dict[int, ConsistencyCheck] = {}
        while server.stage != "consistency":
            assert not server.finished, server.stage
            if to_server:
                for m in server.receive(to_server.popleft()):
                    to_clients.append((m.recipient, m.to_bytes()))
            elif to_clients:
                cid, data = to_clients.popleft()
                for m in self.clients[cid].receive(data):
                    to_server.append(m.to_bytes())
            else:
                for m in server.close_stage():
                    to_clients.append((m.recipient, m.to_bytes()))
        for cid, data in to_clients:
            msg = Message.from_bytes(data)
            assert isinstance(msg, ConsistencyCheck)
            self.checks[cid] = msg
        assert set(self.checks) == set(self.cohort)
        self.session_id = next(iter(self.checks.values())).session_id
        self.digest = self.proto.config_digest(DIM)
        self.committee, self.t_sig = consistency_committee(
            self.proto, self.cohort, server.graph_seed
        )
        self.signatures: dict[tuple[int, ...], dict[int, bytes]] = {}  # set -> signer -> sig
        self.sent: list[tuple[int, bytes]] = []  # every adversary -> client message, for replays
        self.reveals = Reveals()
        self.errors: dict[int, Exception] = {}

    # -- what the adversary can do ---------------------------------------------------------
    def deliver(self, cid: int, msg: Message | bytes) -> list[Message]:
        """Send bytes to an honest client; record its answer or its refusal."""
        data = msg if isinstance(msg, bytes) else msg.to_bytes()
        self.sent.append((cid, data))
        client = self.clients[cid]
        was_live = not client.finished
        try:
            out = [Message.from_bytes(m.to_bytes()) for m in client.receive(data)]
        except RemoteProtocolError as exc:
            # A live session that refuses a message aborts; a finished one stays as it was.
            assert client.stage == "aborted" if was_live else client.finished
            self.errors.setdefault(cid, exc)
            return []
        for m in out:
            if isinstance(m, ConsistencySignature):
                signed = self._signed_set(cid)
                self.signatures.setdefault(signed, {})[cid] = m.signature
            elif isinstance(m, UnmaskResponse):
                self.reveals.record(cid, m)
            else:  # pragma: no cover - an honest client sends nothing else here
                raise AssertionError(f"unexpected {type(m).__name__}")
        return out

    def _signed_set(self, cid: int) -> tuple[int, ...]:
        # The set the adversary just asked ``cid`` to sign (the last check sent to it).
        for target, data in reversed(self.sent):
            if target == cid:
                msg = Message.from_bytes(data)
                assert isinstance(msg, ConsistencyCheck)
                return msg.survivors
        raise AssertionError("no check was sent")

    def check(self, cid: int, survivors: tuple[int, ...]) -> list[Message]:
        msg = ConsistencyCheck(wire.SERVER, cid, self.round, survivors, self.session_id)
        return self.deliver(cid, msg)

    def corrupt_signature(self, signer: int, survivors: tuple[int, ...]) -> bytes:
        statement = Statement(
            CONSISTENCY_CONTEXT, self.session_id, self.round, self.digest, d.survivor_payload(survivors)
        )
        return self.identities[signer].sign_statement(statement)

    def certificate(
        self, survivors: tuple[int, ...], *, with_corrupt: bool, forge: int | None
    ) -> tuple[tuple[int, bytes], ...]:
        # Only committee members' signatures count (clients refuse any other signer).
        sigs = {c: sig for c, sig in self.signatures.get(survivors, {}).items() if c in self.committee}
        if with_corrupt:
            for signer in self.corrupt & self.committee:
                sigs[signer] = self.corrupt_signature(signer, survivors)
        if forge is not None and forge in self.committee and forge not in sigs:
            # A signature the adversary cannot make: an honest client's on a set it never signed
            # (here: that client's signature on another set, or a corrupt key's, relabelled).
            other = next(
                (s[forge] for s in self.signatures.values() if forge in s),
                self.corrupt_signature(min(self.corrupt), survivors),
            )
            sigs[forge] = other
        return tuple(sorted(sigs.items()))

    def unmask(
        self, cid: int, survivors: tuple[int, ...], *, with_corrupt: bool, forge: int | None
    ) -> list[Message]:
        msg = CertifiedUnmaskRequest(
            wire.SERVER,
            cid,
            self.round,
            survivors,
            self.certificate(survivors, with_corrupt=with_corrupt, forge=forge),
            self.session_id,
        )
        return self.deliver(cid, msg)


def survivor_sets(cohort: tuple[int, ...]) -> st.SearchStrategy[tuple[int, ...]]:
    return st.sets(st.sampled_from(cohort), min_size=1).map(lambda s: tuple(sorted(s)))


class AdversarialServer(RuleBasedStateMachine):
    """Subclasses set PROTO, N and CORRUPT."""

    PROTO: protocols.SecAgg
    N: int
    CORRUPT: int

    @initialize(seed=st.integers(0, 2**16))
    def setup(self, seed: int) -> None:
        self.world = World(self.PROTO, self.N, self.CORRUPT, seed)

    @rule(data=st.data())
    def ask_to_sign(self, data: st.DataObject) -> None:
        w = self.world
        cid = data.draw(st.sampled_from(w.honest), label="client")
        w.check(cid, data.draw(survivor_sets(w.cohort), label="set"))

    @rule(data=st.data())
    def ask_many_to_sign(self, data: st.DataObject) -> None:
        # One set to many clients at once (the honest server's, or one that drops a few),
        # so that runs gather T_sig signatures and reach the unmasking.
        w = self.world
        honest_set = w.checks[w.honest[0]].survivors
        dropped = data.draw(st.sets(st.sampled_from(w.cohort), max_size=1), label="dropped")
        survivors = tuple(c for c in honest_set if c not in dropped)
        group = data.draw(
            st.lists(st.sampled_from(w.honest), min_size=len(w.honest) // 2, unique=True),
            label="clients",
        )
        for cid in group:
            w.check(cid, survivors)

    @rule(data=st.data(), with_corrupt=st.booleans(), forge=st.booleans())
    def ask_to_unmask(self, data: st.DataObject, with_corrupt: bool, forge: bool) -> None:
        w = self.world
        cid = data.draw(st.sampled_from(w.honest), label="client")
        known = sorted(w.signatures)
        survivors = data.draw(
            st.sampled_from(known) if known and data.draw(st.booleans(), label="signed set")
            else survivor_sets(w.cohort),
            label="set",
        )
        forged = data.draw(st.sampled_from(w.honest), label="forged signer") if forge else None
        w.unmask(cid, survivors, with_corrupt=with_corrupt, forge=forged)

    @rule(data=st.data(), with_corrupt=st.booleans())
    def ask_each_to_unmask_its_own_set(self, data: st.DataObject, with_corrupt: bool) -> None:
        # Each chosen client gets a request for the very set it signed (whatever
        # the others signed): the inconsistent-view attack in one step.
        w = self.world
        own = {c: s for s, signers in w.signatures.items() for c in signers if c in w.honest}
        if not own:
            return
        group = data.draw(
            st.lists(st.sampled_from(sorted(own)), min_size=1, unique=True), label="clients"
        )
        for cid in group:
            w.unmask(cid, own[cid], with_corrupt=with_corrupt, forge=None)

    @rule(data=st.data(), with_corrupt=st.booleans())
    def ask_many_to_unmask(self, data: st.DataObject, with_corrupt: bool) -> None:
        # The set with the most signatures so far, to many clients at once.
        w = self.world
        if not w.signatures:
            return
        survivors = max(sorted(w.signatures), key=lambda s: len(w.signatures[s]))
        group = data.draw(
            st.lists(st.sampled_from(w.honest), min_size=1, unique=True), label="clients"
        )
        for cid in group:
            w.unmask(cid, survivors, with_corrupt=with_corrupt, forge=None)

    @rule(data=st.data())
    def ask_semi_honest_style(self, data: st.DataObject) -> None:
        # The old request (explicit survivor/dropped lists) to an actively secure client.
        w = self.world
        cid = data.draw(st.sampled_from(w.honest), label="client")
        survivors = data.draw(survivor_sets(w.cohort), label="survivors")
        dropped = tuple(c for c in w.cohort if c not in survivors)
        w.deliver(cid, UnmaskRequest(wire.SERVER, cid, w.round, survivors, dropped, w.session_id))

    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        # Any earlier adversary message, to any honest client (a reorder or a replay).
        w = self.world
        if not w.sent:
            return
        _, payload = data.draw(st.sampled_from(w.sent), label="message")
        msg = Message.from_bytes(payload)
        cid = data.draw(st.sampled_from(w.honest), label="client")
        w.deliver(cid, dataclasses.replace(msg, recipient=cid))

    @invariant()
    def never_both_shares_of_a_peer(self) -> None:
        assert self.world.reveals.both() == set()

    @invariant()
    def never_a_share_of_ones_own_mask_key(self) -> None:
        assert self.world.reveals.own_keys() == set()


class ActiveSecAggServer(AdversarialServer):
    # n = 7: t = 5 > 2n/3, and 2 corrupt clients (< n/3) whose keys sign anything.
    PROTO = protocols.SecAgg(bits=16)
    N = 7
    CORRUPT = 2


class ActiveSecAggPlusServer(AdversarialServer):
    # n = 12, k = 6: groups of 7 with t = 5; T_sig = (12 + 2) // 2 + 1 = 8 with c = 2.
    PROTO = protocols.SecAggPlus(k=6, threshold=5, bits=16, corrupt_fraction=0.2)
    N = 12
    CORRUPT = 2


class ActiveSecAggPlusCommitteeServer(AdversarialServer):
    # n = 70 with the default targets: a committee of 40 drawn from the graph seed
    # certifies S with 29 signatures (protocols.secagg.graph.committee_size); 3 corrupt.
    PROTO = protocols.SecAggPlus(k=8, threshold=7, bits=16)
    N = 70
    CORRUPT = 3


_SETTINGS = settings(
    max_examples=100,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestActiveSecAggServer = ActiveSecAggServer.TestCase
TestActiveSecAggServer.settings = _SETTINGS
TestActiveSecAggPlusServer = ActiveSecAggPlusServer.TestCase
TestActiveSecAggPlusServer.settings = _SETTINGS
TestActiveSecAggPlusCommitteeServer = ActiveSecAggPlusCommitteeServer.TestCase
TestActiveSecAggPlusCommitteeServer.settings = settings(_SETTINGS, max_examples=30)


MACHINES = [ActiveSecAggServer, ActiveSecAggPlusServer, ActiveSecAggPlusCommitteeServer]


@pytest.mark.parametrize("machine", MACHINES)
def test_the_honest_path_through_the_adversary_reveals(machine) -> None:
    """The harness is not vacuous: one set, signed by all, gets every honest client to unmask."""
    w = World(machine.PROTO, machine.N, machine.CORRUPT, seed=1)
    survivors = w.checks[w.honest[0]].survivors
    for cid in w.honest:
        assert [type(m) for m in w.check(cid, survivors)] == [ConsistencySignature]
    assert len(w.signatures[survivors]) == len(w.honest)
    assert len(w.certificate(survivors, with_corrupt=False, forge=None)) >= w.t_sig - len(w.corrupt)
    for cid in w.honest:
        out = w.unmask(cid, survivors, with_corrupt=True, forge=None)
        assert [type(m) for m in out] == [UnmaskResponse]
    # Every honest client revealed a self-mask share of each survivor it holds, and nothing else.
    assert set(w.reveals.self_mask) == set(survivors)
    assert w.reveals.mask_key == {}


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize("split", [0, 1, 2, 3])
def test_two_views_never_both_certified(machine, split: int) -> None:
    """The attack itself: the honest clients other than the target are split between a
    set that keeps the target and one that drops it, and every corrupt signature is
    added to both. At most one set gathers T_sig signatures, so the target is settled
    one way by every client that reveals anything (the other view's clients reveal nothing)."""
    w = World(machine.PROTO, machine.N, machine.CORRUPT, seed=2)
    target = w.honest[0]
    keep = tuple(w.cohort)
    drop = tuple(c for c in w.cohort if c != target)
    others = [c for c in w.honest if c != target]
    views = {c: (keep if i < split else drop) for i, c in enumerate(others)}
    for cid, view in views.items():
        w.check(cid, view)
    certified = {
        view
        for view in (keep, drop)
        if len(w.certificate(view, with_corrupt=True, forge=None)) >= w.t_sig
    }
    assert len(certified) <= 1
    for cid, view in views.items():
        w.unmask(cid, view, with_corrupt=True, forge=None)
    revealed = {c for c in views if c not in w.errors}
    assert revealed == {c for c, view in views.items() if view in certified}
    assert w.reveals.both() == set()
    assert all(isinstance(w.errors[c], RemoteProtocolError) for c in set(views) - revealed)


def test_the_same_adversary_breaks_the_semi_honest_variant() -> None:
    """Against the semi-honest variant, two views are enough: the invariant checked above fails."""
    proto = protocols.SecAgg(bits=16, semi_honest=True)
    n, target = 6, 0
    cohort = tuple(range(n))
    server = proto.server(cohort, DIM, rng=DeterministicRandom("adv/semi/server"))
    clients = {
        c: proto.client(c, DIM, rng=DeterministicRandom(f"adv/semi/client/{c}")) for c in cohort
    }
    to_server: deque[bytes] = deque()
    to_clients: deque[tuple[int, bytes]] = deque()
    for m in server.start():
        to_clients.append((m.recipient, m.to_bytes()))
    for client in clients.values():
        for m in [*client.start(), *client.provide_input(np.full(DIM, 0.25))]:
            to_server.append(m.to_bytes())
    while server.stage != "unmasking":
        if to_server:
            for m in server.receive(to_server.popleft()):
                to_clients.append((m.recipient, m.to_bytes()))
        elif to_clients:
            cid, data = to_clients.popleft()
            for m in clients[cid].receive(data):
                to_server.append(m.to_bytes())
        else:
            for m in server.close_stage():
                to_clients.append((m.recipient, m.to_bytes()))
    sid = Message.from_bytes(to_clients[0][1]).session_id
    reveals = Reveals()
    others = [c for c in cohort if c != target]
    for i, cid in enumerate(others):
        if i < len(others) // 2:  # these hear that the target survived
            survivors, dropped = cohort, ()
        else:  # these, that it dropped
            survivors, dropped = tuple(others), (target,)
        request = UnmaskRequest(wire.SERVER, cid, 0, survivors, dropped, sid)
        (response,) = clients[cid].receive(request.to_bytes())
        assert isinstance(response, UnmaskResponse)
        reveals.record(cid, response)
    assert target in reveals.both()


@pytest.mark.parametrize("machine", MACHINES)
def test_forged_signatures_do_not_count(machine) -> None:
    """A set one honest client signed, padded to T_sig with real signatures of other
    honest clients on another set, relabelled: refused, and nothing revealed."""
    w = World(machine.PROTO, machine.N, machine.CORRUPT, seed=3)
    victim, *rest = w.honest
    mine = w.checks[victim].survivors
    other = tuple(c for c in mine if c != rest[-1])
    w.check(victim, mine)
    for cid in rest:
        w.check(cid, other)  # their signatures exist, but on another set
    sigs = dict(w.certificate(mine, with_corrupt=True, forge=None))
    for cid in sorted(w.committee & set(rest)):
        if len(sigs) >= w.t_sig:
            break
        sigs[cid] = w.signatures[other][cid]  # relabelled: a real signature on the wrong set
    assert len(sigs) >= w.t_sig
    forged = CertifiedUnmaskRequest(
        wire.SERVER, victim, w.round, mine, tuple(sorted(sigs.items())), w.session_id
    )
    assert w.deliver(victim, forged) == []
    assert isinstance(w.errors[victim], RemoteProtocolError)
    assert w.reveals.self_mask == {} and w.reveals.mask_key == {}
