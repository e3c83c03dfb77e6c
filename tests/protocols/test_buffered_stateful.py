"""Stateful test of the buffered server: clients join, drop, arrive late, buffers close.

Hypothesis picks each step: a client checks in; a training client submits (on
time or late) or drops; a full buffer closes, runs a real SecAgg session over
the weighted updates of the clients that fill it (``protocols.simulate``,
with some of them dropping inside the session) and is applied. Misuse (a
double submit or drop, an unknown ticket, a busy client checking in) is
refused and changes nothing. Invariants after every step:

- a buffer holds at most ``K`` updates and never two of one client; an open
  buffer holds fewer than ``K``; at most ``K + slack`` live members;
- versions are 0, 1, 2, ... in closing order; applied versions are a prefix;
- every ticket is in exactly one state (training, pending in an open buffer,
  applied, discarded, lost, dropped) and applied updates are in exactly one
  total, which is the exact integer sum of the survivors' weighted inputs
  (the synchronous sessions' invariant, per buffer).
"""

from __future__ import annotations

import math
import pickle

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from protocols import LocalProtocolError, ProtocolAborted, registry, simulate
from protocols.buffered import BufferedServer, StaleVersionError, client_contribution

N_CLIENTS, DIM = 8, 3
SCALE = 2.0**12


def _secagg(n: int):
    q_max = (2**31 - 1) // n
    return registry.create(
        "secagg", registry.ProtocolOptions(clip=q_max / SCALE, bits=32)
    )


class BufferedServerMachine(RuleBasedStateMachine):
    @initialize(k=st.integers(2, 4), slack=st.integers(0, 2), max_staleness=st.integers(0, 3))
    def setup(self, k, slack, max_staleness):
        self.server = BufferedServer(k, slack=slack, max_staleness=max_staleness)
        self.updates: dict[int, np.ndarray] = {}
        self.training: set[int] = set()  # ticket ids
        self.due = []  # buffers that reported themselves full
        self.totals: dict[int, list[int]] = {}  # buffer index -> ticket ids in its total
        self.gen = np.random.default_rng(0)
        self.round = 0

    def _state(self) -> bytes:
        s = self.server
        return pickle.dumps((s.buffers, s.tickets, s.home, s.fate, s._busy, s.closed_count))

    @rule(client=st.integers(0, N_CLIENTS - 1))
    def check_in(self, client):
        busy = client in self.server._busy
        before = self._state()
        try:
            ticket = self.server.check_in(client)
        except LocalProtocolError:
            assert busy and self._state() == before
            return
        assert not busy and ticket.base_version == self.server.applied_version
        self.updates[ticket.id] = np.rint(self.gen.uniform(-50, 50, DIM)) + 0.5
        self.training.add(ticket.id)

    @precondition(lambda self: self.training)
    @rule(data=st.data(), drops=st.booleans())
    def finish_task(self, data, drops):
        tid = data.draw(st.sampled_from(sorted(self.training)))
        self.training.discard(tid)
        if drops:
            assert self.server.drop(tid) is None
            return
        home = self.server.buffers[self.server.home[tid]]
        was_closed = home.closed
        due = self.server.submit(tid)
        if was_closed:  # late: moved to another, open buffer
            assert self.server.home[tid] != home.index
            assert not self.server.buffers[self.server.home[tid]].closed
        if due is not None:
            self.due.append(due)

    @precondition(lambda self: self.server.tickets)
    @rule(data=st.data())
    def misuse_is_refused(self, data):
        tid = data.draw(st.sampled_from(sorted(self.server.tickets)))
        if tid in self.training:
            return
        before = self._state()
        for call in (self.server.submit, self.server.drop):
            try:
                call(tid)
            except LocalProtocolError:
                pass
            else:
                raise AssertionError("a resolved ticket was accepted again")
        assert self._state() == before

    @precondition(lambda self: self.due)
    @rule(dropout=st.integers(0, 1))
    def close_and_apply(self, dropout):
        buf = self.due.pop(0)
        version = self.server.close(buf)
        assert version == buf.version
        fates, inputs = {}, {}
        for t in buf.submitted:
            try:
                inputs[t.client] = client_contribution(
                    self.updates[t.id], t.base_version, version, self.server.max_staleness
                )
            except StaleVersionError:
                assert version - t.base_version > self.server.max_staleness
                fates[t.id] = "discarded"
        kept = [t for t in buf.submitted if t.id not in fates]
        survivors: set[int] = set()
        if len(kept) >= 2:
            proto = _secagg(len(kept))
            drop = {kept[0].client: proto.INPUT_STAGE} if dropout and len(kept) > 2 else {}
            try:
                res = simulate(proto, inputs, dropout=drop, seed=self.round, round=version)
            except ProtocolAborted:
                res = None
            if res is not None:
                survivors = set(res.survivors)
                weighted = [
                    self.updates[t.id] / math.sqrt(1.0 + version - t.base_version)
                    for t in kept if t.client in survivors
                ]
                ring = res.total * SCALE
                assert np.array_equal(ring, np.round(ring))
                scaled = np.array(weighted) * SCALE
                assert np.all(np.floor(scaled).sum(0) <= ring)
                assert np.all(ring <= np.ceil(scaled).sum(0))
        self.round += 1
        for t in kept:
            fates[t.id] = "applied" if t.client in survivors else "lost"
        self.server.settle(buf, fates)
        self.totals[buf.index] = [t.id for t in kept if t.client in survivors]
        # Buffers apply in closing order; a later one may have closed first only if
        # it was due before; apply the prefix that is ready.
        for b in sorted((b for b in self.server.buffers if b.closed), key=lambda b: b.version):
            if b.version == self.server.applied_version and b.index in self.totals:
                self.server.applied(b)

    @invariant()
    def buffers_are_well_formed(self):
        if not hasattr(self, "server"):
            return
        s = self.server
        k, cap = s.buffer_size, s.buffer_size + s.slack
        for b in s.buffers:
            assert len(b.submitted) <= k
            clients = [t.client for t in b.submitted]
            assert len(clients) == len(set(clients))
            if not b.closed:
                assert len(b.submitted) < k or b in self.due
                assert len(b.members) - len(b.dropped) <= cap
        versions = sorted(b.version for b in s.buffers if b.closed)
        assert versions == list(range(s.closed_count))
        assert s.applied_version <= s.closed_count

    @invariant()
    def every_ticket_is_in_exactly_one_state(self):
        if not hasattr(self, "server"):
            return
        s = self.server
        pending = set(s.open_tickets())
        due = {t.id for b in self.due for t in b.submitted}
        in_totals = [t for ids in self.totals.values() for t in ids]
        assert len(in_totals) == len(set(in_totals))
        assert {t for t, f in s.fate.items() if f == "applied"} == set(in_totals)
        for tid in s.tickets:
            states = [
                tid in self.training,
                tid in pending and tid not in s.fate,
                tid in s.fate,
            ]
            assert sum(states) == 1, (tid, states)
            if tid in due:
                assert tid in pending


BufferedServerMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_buffered_server_stateful = BufferedServerMachine.TestCase
