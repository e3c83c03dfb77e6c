"""Multi-round SecAgg / SecAgg+ sessions (issue 17): sums, the server's view, the rules.

* A hypothesis property over :class:`protocols.SimulatedSession` (real sessions, every
  message as bytes): random R, cohorts and dropouts in any stage of any round, both
  variants. Inputs lie on the encoder's grid (``scale == 2**j`` and integer ``q``,
  see :func:`_protocols_kit.grid`), so the comparison is exact in the integer domain:
  ``result.integer_total`` equals the numpy sum of the survivors' ``q``. The outcome
  of each round (its survivors, or an abort) and whether the session can go on are
  predicted by an independent model of the documented rules (the server module
  docstring: prune to groups of t + margin, every needed secret from t + margin
  shares, the consistency committee) over the session's public graph.
* The server's view across rounds: with everything the server received, the round-r
  mask key it rebuilt for a client that dropped in round r does not take that
  client's masks out of its round r-1 masked input.
* The state machine's rules (NextRound checks, replays across rounds and sessions,
  the config checks, the digest of single-round configs).
* Attacks of a deviating server through the wire format, in later rounds.
"""

from __future__ import annotations

import numpy as np
from _multiround_kit import exact_total, round_inputs
from _protocols_kit import grid
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import protocols
from protocols import ProtocolAborted, SimulatedSession
from protocols.secagg.config import consistency_committee

DIM, BITS = 3, 20
LATER_STAGES = ("masked_input", "consistency", "unmasking")


# -- an independent model of one round's outcome ------------------------------------------


class Model:
    """The documented rules over the session's public graph (not the server's code path).

    ``graph`` and ``thresholds`` are the setup's (public: every client computes its own
    neighbours); the committee is the one the config defines. Everything else (who
    survives, whose secret can be rebuilt, whether the session can go on) follows from
    the rules of the server module docstring.
    """

    def __init__(self, proto, cohort, server) -> None:
        self.proto, self.cohort = proto, tuple(cohort)
        self.graph = {c: frozenset(p) for c, p in server.neighbours.items()}
        self.need = {c: t + proto.share_margin for c, t in server.thresholds.items()}
        if proto.active:
            self.members, self.needed = consistency_committee(proto, self.cohort, server.graph_seed)

    def group(self, c):
        return self.graph[c] | {c}

    def prune(self, alive):
        alive = set(alive)
        while True:
            out = {c for c in alive if len(self.group(c) & alive) < self.need[c]}
            if not out:
                return frozenset(alive)
            alive -= out

    def setup(self, drops):
        """Round 0's participants after the key setup (None: the setup aborts)."""
        if self.proto.seeds_graph and "reveal" in drops.values():
            return None  # a committed client that does not reveal aborts the round
        keyed = self.prune(c for c in self.cohort if drops.get(c) != "advertise_keys")
        early = {"advertise_keys", "reveal", "share_keys"}
        sharers = self.prune(c for c in keyed if drops.get(c) not in early)
        return sharers or None

    def round(self, participants, drops, index):
        """``(survivors, alive)`` of a round, or None if it aborts; ``index`` > 0 also
        accepts an abort when a sender is pruned (a running sum cannot exclude it)."""
        stage = {c: drops.get(c) for c in participants}
        senders = {c for c in participants if stage[c] in (None, "consistency", "unmasking")}
        survivors = self.prune(senders)
        if not survivors:
            return None
        dropped = set(participants) - survivors
        for v in dropped:
            holders = self.graph[v] & survivors
            if holders and len(holders) < self.need[v]:
                return None
        if self.proto.active:
            if len(survivors & self.members) < self.needed:
                return None
            asked = {c for c in survivors if stage[c] != "consistency"}
            if len(asked & self.members) < self.needed:
                return None
        else:
            asked = set(survivors)
        answered = {c for c in asked if stage[c] not in ("consistency", "unmasking")}
        for s in survivors:
            if len(self.group(s) & answered) < self.need[s]:
                return None
        for v in dropped:
            if self.graph[v] & survivors and len(self.graph[v] & answered) < self.need[v]:
                return None
        return survivors, frozenset(answered), bool(senders - survivors) and index > 0

    def next_participants(self, alive, rounds_left):
        if rounds_left <= 0:
            return frozenset()
        parts = self.prune(alive)
        if len(parts) < max(self.proto.min_clients, 1):
            return frozenset()
        if self.proto.active and len(parts & self.members) < self.needed:
            return frozenset()
        return parts


def _config(family, variant, n, k, rounds, j):
    clip, _ = grid(n, BITS, j)
    kw = dict(bits=BITS, clip=clip, rounds=rounds)
    if variant == "semi-honest":
        kw["semi_honest"] = True
    if family == "secagg":
        return protocols.SecAgg(**kw)
    return protocols.SecAggPlus(k=k, **kw)


def _setup_stages(proto):
    if not proto.semi_honest and proto.CLIENT_SEEDED_GRAPH:
        return ("advertise_keys", "reveal", "share_keys", *LATER_STAGES)
    return ("advertise_keys", "share_keys", *LATER_STAGES)


@st.composite
def drops_for(draw, members, stages, label):
    members = sorted(members)
    picks = draw(
        st.lists(
            st.tuples(st.integers(0, len(members) - 1), st.sampled_from(stages)),
            max_size=3,
        ),
        label=label,
    )
    return {members[i]: stage for i, stage in picks}


def _run_session(family, data):
    variant = data.draw(st.sampled_from(["semi-honest", "active"]), label="variant")
    n = data.draw(st.integers(5, 12) if family == "secagg" else st.integers(8, 20), label="n")
    k = data.draw(st.sampled_from([4, None]), label="k") if family == "secagg+" else None
    rounds = data.draw(st.integers(2, 5), label="R")
    j = data.draw(st.integers(0, 4), label="j")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    proto = _config(family, variant, n, k, rounds, j)
    rng = np.random.default_rng(seed)
    cohort = tuple(range(n))
    session = SimulatedSession(proto, cohort, DIM, seed=seed)
    assert session.rounds == rounds and session.participants() == cohort
    gone: set[int] = set()  # dropped or left: never seen again in this session
    model = None
    participants = frozenset(cohort)
    completed = 0
    for r in range(rounds):
        assert not participants & gone
        assert set(session.participants()) == participants
        stages = _setup_stages(session.proto) if r == 0 else LATER_STAGES
        drops = data.draw(drops_for(participants, stages, f"drops{r}"))
        q, x = round_inputs(n, participants, DIM, BITS, j, rng)
        try:
            res = session.run_round(x, drops)
        except ProtocolAborted:
            res = None
        server = session._server
        if model is None:
            model = Model(session.proto, cohort, server)
            start = model.setup(drops)
            if start is None:
                assert res is None, "the model predicts the setup aborts"
                break
            participants = start
        predicted = model.round(participants, drops, r)
        if predicted is None:
            assert res is None, f"round {r}: the model predicts an abort"
            break
        survivors, alive, may_abort = predicted
        if res is None:
            assert may_abort, f"round {r} aborted; the model predicts survivors {sorted(survivors)}"
            break
        assert set(res.survivors) == survivors, r
        assert not set(res.survivors) & gone
        np.testing.assert_array_equal(res.result.integer_total, exact_total(q, survivors, DIM))
        assert res.result.scale == 2.0**j
        np.testing.assert_array_equal(res.total, exact_total(q, survivors, DIM) / 2.0**j)
        completed += 1
        gone |= set(cohort) - alive
        participants = model.next_participants(alive, rounds - r - 1)
        gone |= set(cohort) - participants
        assert session.can_continue == bool(participants), r
        if not participants:
            break
    if completed == rounds:
        assert not session.can_continue
    if res is None:  # an aborted round ends the session
        assert not session.can_continue
    session.close()
    event(f"{variant}, session of {rounds}: {'aborted' if res is None else 'ended'}")
    return completed


PROPERTY = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROPERTY
@given(data=st.data())
def test_every_round_of_a_secagg_session_sums_exactly_its_survivors(data):
    event(f"rounds completed: {_run_session('secagg', data)}")


@PROPERTY
@given(data=st.data())
def test_every_round_of_a_secagg_plus_session_sums_exactly_its_survivors(data):
    event(f"rounds completed: {_run_session('secagg+', data)}")
