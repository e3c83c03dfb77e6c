"""Stateful test: a multi-round SecAgg / SecAgg+ session under an adversarial network.

Every message travels as bytes through an in-flight pool; hypothesis chooses which
message to deliver next (any index, and whole-pool rotations: reordering), which to
lose, which to duplicate, which message of an earlier round to replay (either
direction), when a client is cut off, when the driver's deadline closes a stage, and
when the next round starts. Whatever happens:

(a) every completed round's ``integer_total`` is the exact sum of its survivors'
    inputs, and its survivors sent a masked input of that round;
(b) no client appears after it dropped: a round's participants (the clients sent a
    NextRound) answered the previous round's unmasking, and a client whose mask key
    was revealed in some round, or that was left out, is never a participant, a
    survivor or the owner of a revealed share again;
(c) no client reveals both shares of one peer in a round, nor anything of a peer whose
    mask-key share it revealed in an earlier round; the server is never sent both kinds
    of share of one client in one round;
(d) a refused message leaves the server exactly as it was, and a message of an
    earlier round is always refused;
(e) each round ends in an exact sum or a clean abort (an aborted server has no result,
    and the session cannot go on after it); ``start()`` between rounds works exactly
    when ``next_participants`` names no reason against it.
"""

from __future__ import annotations

import pickle

import numpy as np
from _multiround_kit import exact_total, round_inputs
from _protocols_kit import SERVER, decode, grid
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import protocols
from protocols import LocalProtocolError, ProtocolAborted, RemoteProtocolError
from protocols.secagg import messages as sm
from secagg.identity import enroll
from secagg.randomness import DeterministicRandom

DIM, BITS, ROUNDS = 3, 16, 3


def _roster(n):
    return enroll(range(n), rng=DeterministicRandom(f"mrstateful/{n}"))


CONFIGS = [
    ("secagg semi-honest n=5 t=3", 5, False, lambda clip: protocols.SecAgg(
        semi_honest=True, threshold=3, bits=BITS, clip=clip, rounds=ROUNDS)),
    ("secagg+ semi-honest n=7 k=4 t=3", 7, False, lambda clip: protocols.SecAggPlus(
        semi_honest=True, threshold=3, k=4, bits=BITS, clip=clip, rounds=ROUNDS)),
    ("secagg active n=6", 6, True, lambda clip: protocols.SecAgg(
        roster=_roster(6)[0], bits=BITS, clip=clip, rounds=ROUNDS)),
    ("secagg+ active n=8 k=4", 8, True, lambda clip: protocols.SecAggPlus(
        roster=_roster(8)[0], k=4, bits=BITS, clip=clip, rounds=ROUNDS)),
]  # fmt: skip


def fingerprint(server) -> bytes:
    return pickle.dumps((server.stage, server._state, server.index, server.round))


class MultiRoundSession(RuleBasedStateMachine):
    @initialize(config=st.sampled_from(CONFIGS), j=st.integers(0, 3), seed=st.integers(0, 2**32))
    def setup(self, config, j, seed):
        self.name, n, is_active, make = config
        event(self.name)
        self.n, self.j = n, j
        self.rng = np.random.default_rng(seed)
        proto = make(grid(n, BITS, j)[0])
        ids = _roster(n)[1] if is_active else None
        self.server = proto.server(range(n), DIM, rng=DeterministicRandom(f"mrs/{seed}/server"))
        self.clients = {
            c: proto.client(
                c,
                DIM,
                rng=DeterministicRandom(f"mrs/{seed}/{c}"),
                **({} if ids is None else {"identity": ids[c]}),
            )
            for c in range(n)
        }
        self.pool: list[tuple[int, bytes]] = []
        self.history: list[tuple[int, int, bytes]] = []  # (round, dest, bytes) ever sent
        self.sent_shares: dict[int, tuple[set[int], set[int]]] = {}  # round -> owners (self, key)
        self.cut: set[int] = set()  # cut off by the driver
        self.q: list[dict[int, list[int]]] = []
        self.participants: list[frozenset[int]] = [frozenset(range(n))]
        self.masked: list[set[int]] = [set()]  # senders of an accepted masked input, per round
        self.responded: list[set[int]] = [set()]  # senders of an accepted unmask response
        self.checked: set[int] = set()  # rounds whose result was checked
        self.out: set[int] = set()  # dropped (mask key revealed) or left out: gone for good
        self.revealed_keys: dict[int, dict[int, int]] = {}  # client -> peer -> round revealed
        self._send_from_server(self.server.start())
        for client in self.clients.values():
            assert client.start() == []
        self._new_inputs(frozenset(range(n)))

    # -- plumbing -----------------------------------------------------------------
    def _new_inputs(self, members) -> None:
        q, x = round_inputs(self.n, members, DIM, BITS, self.j, self.rng)
        self.q.append(q)
        for c in sorted(members):
            client = self.clients[c]
            if not client.finished:
                self._send_from_client(c, client.provide_input(x[c]))

    def _send_from_server(self, messages) -> None:
        for m in messages:
            data = m.to_bytes()
            self.history.append((m.round, m.recipient, data))
            if m.recipient not in self.cut:
                self.pool.append((m.recipient, data))

    def _send_from_client(self, cid: int, messages) -> None:
        for m in messages:
            data = m.to_bytes()
            decoded = decode(data)
            assert decoded.sender == cid and decoded.recipient == SERVER
            if isinstance(decoded, sm.UnmaskResponse):
                self._check_reveal(cid, decoded)
            self.history.append((m.round, SERVER, data))
            if cid not in self.cut:
                self.pool.append((SERVER, data))

    def _check_reveal(self, cid: int, m: sm.UnmaskResponse) -> None:
        selfs = {c for c, _ in m.self_mask_shares}
        key_owners = {c for c, _ in m.mask_key_shares}
        assert not selfs & key_owners, f"client {cid} revealed both shares of {selfs & key_owners}"
        earlier = self.revealed_keys.setdefault(cid, {})
        again = (selfs | key_owners) & set(earlier)
        assert not again, f"client {cid} revealed shares of {again}, whose key it revealed before"
        for c in key_owners:
            earlier[c] = m.round
        got_self, got_key = self.sent_shares.setdefault(m.round, (set(), set()))
        got_self |= selfs
        got_key |= key_owners

    def _deliver(self, dest: int, data: bytes) -> None:
        msg = decode(data)
        if dest == SERVER:
            before = fingerprint(self.server)
            stale = msg.round < self.server.round
            try:
                out = self.server.receive(data)
            except RemoteProtocolError:
                assert fingerprint(self.server) == before, "a refused message changed the server"
                return
            assert not stale, f"the server took a {type(msg).__name__} of round {msg.round}"
            r = self.server.index
            if isinstance(msg, sm.MaskedInput):
                self.masked[r].add(msg.sender)
            if isinstance(msg, sm.UnmaskResponse):
                self.responded[r].add(msg.sender)
                selfs = {c for c, _ in msg.self_mask_shares}
                key_owners = {c for c, _ in msg.mask_key_shares}
                assert not (selfs | key_owners) & self.out, "shares of a client that is gone"
            self._send_from_server(out)
        else:
            client = self.clients[dest]
            was_finished, was_stage = client.finished, client.stage
            try:
                out = client.receive(data)
            except RemoteProtocolError:
                assert client.aborted or (was_finished and client.stage == was_stage)
                return
            self._send_from_client(dest, out)

    # -- rules ----------------------------------------------------------------------
    @rule(i=st.integers(0, 10**6))
    def deliver(self, i):
        if self.pool:
            self._deliver(*self.pool.pop(i % len(self.pool)))

    @rule()
    def deliver_everything_in_order(self):
        for _ in range(500):
            if not self.pool:
                break
            self._deliver(*self.pool.pop(0))

    @rule()
    def finish_the_round(self):
        """An honest network until the round ends: deliver in order, close idle stages."""
        for _ in range(20):
            self.deliver_everything_in_order()
            if self.server.finished:
                return
            self._send_from_server(self.server.close_stage())

    def lose(self, i):
        if self.pool:
            self.pool.pop(i % len(self.pool))

    def duplicate(self, i):
        if self.pool:
            self.pool.append(self.pool[i % len(self.pool)])

    def reorder(self, k):
        if self.pool:
            k %= len(self.pool)
            self.pool = self.pool[k:][::-1] + self.pool[:k]

    def replay_from_an_earlier_round(self, i):
        old = [(d, b) for r, d, b in self.history if r < self.server.round]
        if old:
            dest, data = old[i % len(old)]
            if dest == SERVER or dest not in self.cut:
                self._deliver(dest, data)

    def cut_off_a_client(self, c):
        cid = c % self.n
        self.cut.add(cid)
        self.pool = [(d, b) for d, b in self.pool if d != cid and decode(b).sender != cid]

    def close_stage(self):
        if self.server.finished:
            try:
                self.server.close_stage()
            except LocalProtocolError:
                return
            raise AssertionError(f"close_stage() in stage {self.server.stage!r} did not refuse")
        if self.server.stage != "not_started":
            self._send_from_server(self.server.close_stage())

    @rule()
    def start_next_round(self):
        server = self.server
        if server.aborted:
            return
        if server.stage != "round_completed":
            try:
                server.start()
            except LocalProtocolError:
                return
            raise AssertionError(f"start() in stage {server.stage!r} did not refuse")
        self._check_round()  # (the invariant already did; start() replaces the result)
        participants, reason = server.next_participants()
        if reason is not None:
            try:
                server.start()
            except LocalProtocolError:
                return
            raise AssertionError(f"start() went on although {reason}")
        previous = len(self.participants) - 1
        assert participants <= self.responded[previous]
        out = server.start()
        named = frozenset(m.recipient for m in out if isinstance(m, sm.NextRound))
        assert named == participants
        self.out |= set(range(self.n)) - participants
        self.participants.append(participants)
        self.masked.append(set())
        self.responded.append(set())
        self._send_from_server(out)
        self._new_inputs(participants)

    FAULTS = ("lose", "duplicate", "reorder", "replay_from_an_earlier_round", "cut_off_a_client")

    @rule(fault=st.sampled_from(FAULTS), i=st.integers(1, 10**6))
    def network_fault(self, fault, i):
        """One of the network's misdeeds (a rule of its own each would starve progress)."""
        event(f"fault: {fault}")
        getattr(self, fault)(i)

    @rule()
    def deadline(self):
        self.close_stage()

    # -- invariants -----------------------------------------------------------------
    def _check_round(self) -> None:
        server = self.server
        if server.aborted or not server.finished or server.index in self.checked:
            return
        r = server.index
        res = server.result
        survivors = set(res.survivors)
        assert survivors and survivors <= self.masked[r] <= self.participants[r]
        assert not survivors & self.out
        np.testing.assert_array_equal(
            res.integer_total, exact_total(self.q[r], sorted(survivors), DIM)
        )
        self.checked.add(r)
        # Whoever is not a survivor of this round is gone for the session (its mask key
        # may have been rebuilt, or its input is missing).
        self.out |= self.participants[r] - survivors

    @invariant()
    def completed_rounds_have_the_exact_sum(self):
        self._check_round()

    @invariant()
    def aborted_server_has_no_result_and_no_next_round(self):
        if not self.server.aborted:
            return
        try:
            _ = self.server.result
        except ProtocolAborted:
            pass
        else:
            raise AssertionError("an aborted server returned a result")
        assert self.server.next_participants()[1] is not None

    @invariant()
    def the_server_never_got_both_shares_of_one_client_in_a_round(self):
        for r, (got_self, got_key) in self.sent_shares.items():
            assert not got_self & got_key, f"round {r}: both shares of {got_self & got_key}"

    def teardown(self):
        if hasattr(self, "server"):
            event(f"{len(self.checked)} rounds completed")
            event(f"server ended in {self.server.stage}")


MultiRoundSession.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=60,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
test_multi_round_session_under_an_adversarial_network = MultiRoundSession.TestCase
