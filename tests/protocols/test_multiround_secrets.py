"""What a multi-round client keeps between rounds: the later rounds' seeds, never a
finished round's (its snapshot, the client's whole state, is the witness)."""

from __future__ import annotations

import numpy as np

import protocols
from protocols import SimulatedSession
from protocols.secagg import derivation


def test_a_rounds_seeds_leave_the_client_once_its_masked_input_is_out(monkeypatch):
    made: list[bytes] = []  # every pairwise seed client 0 agrees, as it agrees them
    real = derivation.pairwise_secret

    def spy(own, peer_public, context):
        secret = real(own, peer_public, context)
        made.append(secret)
        return secret

    proto = protocols.SecAgg(semi_honest=True, rounds=3)
    with SimulatedSession(proto, range(4), 4, seed=1) as session:
        monkeypatch.setattr(derivation, "pairwise_secret", spy)
        session.run_round({c: np.zeros(4) for c in range(4)})
        monkeypatch.setattr(derivation, "pairwise_secret", real)
        assert session._hosts is not None
        client = session._hosts.sessions[0]
        assert client.stage == "next_round"
        snapshot = client.snapshot()
    # The inline host ran clients 0..3 in order: client 0's 3 peers x 3 rounds come first,
    # peer by peer, round 0 first.
    mine = made[:9]
    assert len(set(mine)) == 9
    for peer in range(3):
        round0, round1, round2 = mine[3 * peer : 3 * peer + 3]
        assert round0 not in snapshot
        assert round1 in snapshot and round2 in snapshot
