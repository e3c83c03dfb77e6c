"""Stateful tests: real SecAgg / SecAgg+ sessions under an adversarial network.

Every message travels as bytes through an in-flight pool; hypothesis chooses
which message to deliver next (any index: reordering), which to drop, which
to duplicate, and when the driver's deadline closes a stage. Whatever
happens:

(a) no client ever reveals both the self-mask share and the mask-key share of
    one peer, and the server is never sent both kinds of share of one client;
(b) a completed server holds the exact integer sum of its survivors' inputs;
(c) an aborted server's ``result`` raises ProtocolAborted;
(d) ``server.awaiting`` names only invited clients, never one that already
    answered the current stage, nobody once the server finished, and never
    again a client that had not answered when a stage ended (e.g. one the
    driver dropped: it is cut off from the network in both directions);
and a rejected message leaves the server exactly as it was, while a client
that rejects a message is aborted (or had already finished).
"""

from __future__ import annotations

import pickle

from _protocols_kit import SERVER, decode, grid, grid_q
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

import protocols
from protocols import LocalProtocolError, ProtocolAborted, RemoteProtocolError
from protocols.secagg import messages as sm
from secagg.randomness import DeterministicRandom

DIM, BITS = 3, 16
CONFIGS = [
    (
        "secagg n=5 t=3",
        5,
        lambda clip: protocols.SecAgg(semi_honest=True, threshold=3, bits=BITS, clip=clip),
    ),
    (
        "secagg+ n=7 k=4 t=3",
        7,
        lambda clip: protocols.SecAggPlus(semi_honest=True, threshold=3, k=4, bits=BITS, clip=clip),
    ),
    (
        "secagg+ n=6 k=3 t=3",
        6,
        lambda clip: protocols.SecAggPlus(semi_honest=True, threshold=3, k=3, bits=BITS, clip=clip),
    ),
]
COLLECTING = ("advertise_keys", "share_keys", "masked_input", "unmasking")
ORDER = ("not_started", *COLLECTING, "completed")


def fingerprint(server) -> bytes:
    return pickle.dumps((server.stage, server._state))


class SessionsUnderAdversarialNetwork(RuleBasedStateMachine):
    @initialize(
        config=st.sampled_from(CONFIGS),
        j=st.integers(0, 4),
        seed=st.integers(0, 2**32),
        data=st.data(),
    )
    def setup(self, config, j, seed, data):
        self.name, n, make = config
        event(self.name)
        clip, cap = grid(n, BITS, j)
        self.q = {
            c: [grid_q(cap, data.draw(st.integers(-cap, cap), label=f"q{c}")) for _ in range(DIM)]
            for c in range(n)
        }
        proto = make(clip)
        self.server = proto.server(range(n), DIM, rng=DeterministicRandom(f"sm/{seed}/server"))
        self.clients = {
            c: proto.client(c, DIM, rng=DeterministicRandom(f"sm/{seed}/{c}")) for c in range(n)
        }
        self.pool: list[tuple[int, bytes]] = []
        self.revealed: dict[int, list[sm.UnmaskResponse]] = {c: [] for c in range(n)}
        self.accepted_masked: set[int] = set()
        self.server_self_shares: set[int] = set()  # owners whose self-mask share the server holds
        self.server_key_shares: set[int] = set()  # owners whose mask-key share the server holds
        self.max_stage = 0
        self.n = n
        self.answered: dict[str, set[int]] = {}  # stage -> clients the server accepted in it
        self.missed: set[int] = set()  # awaited when a stage ended: out of the round
        self.dropped: set[int] = set()  # cut off by the driver
        assert self.server.awaiting == frozenset()  # nothing asked yet
        self._send_from_server(self.server.start())
        for c, client in self.clients.items():
            assert client.start() == []
            x = [v / 2.0**j for v in self.q[c]]
            assert client.provide_input(x) == []  # no round yet: nothing to send

    # -- plumbing -----------------------------------------------------------------
    def _send_from_server(self, messages) -> None:
        for m in messages:
            assert m.sender == SERVER
            if m.recipient not in self.dropped:
                self.pool.append((m.recipient, m.to_bytes()))

    def _send_from_client(self, cid: int, messages) -> None:
        for m in messages:
            data = m.to_bytes()
            decoded = decode(data)
            assert decoded.sender == cid and decoded.recipient == SERVER
            if isinstance(decoded, sm.UnmaskResponse):
                self.revealed[cid].append(decoded)
            if cid not in self.dropped:
                self.pool.append((SERVER, data))

    def _deliver(self, dest: int, data: bytes) -> None:
        if dest == SERVER:
            before = fingerprint(self.server)
            stage, awaited = self.server.stage, self.server.awaiting
            try:
                out = self.server.receive(data)
            except RemoteProtocolError:
                assert fingerprint(self.server) == before, "a rejected message changed the server"
                return
            msg = decode(data)
            self.answered.setdefault(stage, set()).add(msg.sender)
            self._stage_may_have_ended(stage, awaited - {msg.sender})
            if isinstance(msg, sm.MaskedInput):
                self.accepted_masked.add(msg.sender)
            if isinstance(msg, sm.UnmaskResponse):
                self.server_self_shares |= {c for c, _ in msg.self_mask_shares}
                self.server_key_shares |= {c for c, _ in msg.mask_key_shares}
            self._send_from_server(out)
        else:
            client = self.clients[dest]
            was_finished, was_stage = client.finished, client.stage
            try:
                out = client.receive(data)
            except RemoteProtocolError:
                assert client.aborted or (was_finished and client.stage == was_stage), (
                    f"client {dest} rejected a message but is in stage {client.stage!r}"
                )
                return
            self._send_from_client(dest, out)

    # -- rules ----------------------------------------------------------------------
    # (No preconditions: an empty pool makes these no-ops, so some rule is always enabled.)
    @rule(i=st.integers(0, 10**6))
    def deliver(self, i):
        if not self.pool:
            return
        dest, data = self.pool.pop(i % len(self.pool))
        self._deliver(dest, data)

    @rule(i=st.integers(0, 10**6))
    def drop(self, i):
        if not self.pool:
            return
        self.pool.pop(i % len(self.pool))

    @rule(i=st.integers(0, 10**6))
    def duplicate(self, i):
        if not self.pool:
            return
        self.pool.append(self.pool[i % len(self.pool)])

    @rule()
    def deliver_everything_in_order(self):
        for _ in range(500):
            if not self.pool:
                break
            self._deliver(*self.pool.pop(0))

    def _stage_may_have_ended(self, stage: str, unanswered: frozenset[int]) -> None:
        if self.server.stage != stage:
            self.missed |= unanswered

    @rule(c=st.integers(0, 10**6))
    def drop_client(self, c):
        """The driver gives up on a client: nothing reaches it or comes from it any more."""
        cid = c % self.n
        self.dropped.add(cid)
        self.pool = [(d, b) for d, b in self.pool if d != cid and decode(b).sender != cid]

    @rule()
    def close_stage(self):
        """The driver's deadline: always allowed; refused only when no stage is open."""
        if self.server.stage in COLLECTING:
            stage, awaited = self.server.stage, self.server.awaiting
            out = self.server.close_stage()
            self._stage_may_have_ended(stage, awaited)
            self._send_from_server(out)
        else:
            try:
                self.server.close_stage()
            except LocalProtocolError:
                pass
            else:
                raise AssertionError(f"close_stage() in stage {self.server.stage!r} did not refuse")

    # -- invariants -----------------------------------------------------------------
    @invariant()
    def never_both_shares_of_one_peer(self):
        everyone_self, everyone_key = set(), set()
        for cid, responses in self.revealed.items():
            assert len(responses) <= 1, f"client {cid} answered the unmasking twice"
            own_self = {c for r in responses for c, _ in r.self_mask_shares}
            own_key = {c for r in responses for c, _ in r.mask_key_shares}
            assert not own_self & own_key, (
                f"client {cid} revealed both shares of {own_self & own_key}"
            )
            everyone_self |= own_self
            everyone_key |= own_key
        assert not everyone_self & everyone_key, (
            f"both shares of {everyone_self & everyone_key} were sent"
        )
        assert not self.server_self_shares & self.server_key_shares

    @invariant()
    def completed_server_has_the_exact_sum(self):
        if self.server.stage != "completed":
            return
        res = self.server.result
        survivors = list(res.survivors)
        assert survivors and set(survivors) <= self.accepted_masked
        expected = [sum(self.q[c][i] for c in survivors) for i in range(DIM)]
        assert [int(v) for v in res.integer_total] == expected

    @invariant()
    def aborted_server_has_no_result(self):
        if self.server.aborted:
            try:
                _ = self.server.result
            except ProtocolAborted:
                pass
            else:
                raise AssertionError("an aborted server returned a result")
        elif not self.server.finished:
            try:
                _ = self.server.result
            except LocalProtocolError:
                pass
            else:
                raise AssertionError("an unfinished server returned a result")

    @invariant()
    def awaiting_is_consistent(self):
        awaiting = self.server.awaiting
        assert isinstance(awaiting, frozenset)
        assert awaiting <= set(range(self.n)), "awaits a client that was never invited"
        if self.server.finished:
            assert not awaiting, f"a {self.server.stage} server awaits {sorted(awaiting)}"
        answered = awaiting & self.answered.get(self.server.stage, set())
        assert not answered, f"awaits {sorted(answered)}, who already answered this stage"
        assert not awaiting & self.missed, (
            f"awaits {sorted(awaiting & self.missed)}, who missed an earlier stage"
        )
        if self.server.stage in COLLECTING[1:] and not self.missed:
            assert awaiting, "a collecting stage with nobody to wait for did not end"

    @invariant()
    def server_stage_only_moves_forward(self):
        if self.server.aborted:
            return
        index = ORDER.index(self.server.stage)
        assert index >= self.max_stage
        self.max_stage = index

    def teardown(self):
        if hasattr(self, "server"):
            event(f"server ended in {self.server.stage}")


SessionsUnderAdversarialNetwork.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=50,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
test_sessions_under_adversarial_network = SessionsUnderAdversarialNetwork.TestCase
