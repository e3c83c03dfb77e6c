"""Multi-round sessions over the Flower adapter (FlowerSession, ClientHandler across rounds).

On the in-process ``LocalGrid`` of test_flower.py (each message gets a copy of
the node's Context, kept only if the app returned, as Flower's engines do): one
key setup, then rounds that each cost the masked input and the unmasking (and
the consistency check when actively secure); every round's total is the exact
sum of that round's survivors, computed here with numpy; a node that dies is
out of the session for good, and one that missed a round refuses the next.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("flwr.serverapp")

from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict
from flwr.app import Message as FlowerMessage
from flwr.clientapp import ClientApp
from test_flower import BITS, DIM, J, LocalGrid, grid_clip, task_identity  # noqa: F401  (the fixture)

import protocols
from protocols.adapters import flower as fa
from secagg.framing import split_length_prefixed
from secagg.identity import enroll

NAME = "multi"


def vectors(rng: np.random.Generator, n: int) -> dict[int, np.ndarray]:
    """Inputs on the quantization grid (multiples of 2^-J): the sums are exact."""
    return {c: rng.integers(-(1 << 12), 1 << 12, DIM).astype(np.float64) / 2**J for c in range(n)}


def content(nodes: dict[int, int], inputs: dict[int, np.ndarray]) -> dict[int, RecordDict]:
    return {nodes[c]: RecordDict({"x": ArrayRecord({"x": Array(x)})}) for c, x in inputs.items()}


def exact(inputs: dict[int, np.ndarray], survivors) -> np.ndarray:
    return sum(np.round(inputs[c] * 2**J).astype(np.int64) for c in survivors)


def app_for(proto, identities=None) -> ClientApp:
    """The adapter's handler; node ``1000 + i`` is client ``i`` (and holds its identity)."""
    identity = None
    if identities is not None:
        identity = lambda context: identities[context.node_id - 1000]  # noqa: E731
    app = ClientApp()
    app.train(fa.ACTION)(
        fa.ClientHandler({NAME: proto}, fa.InputFromRecord("x"), identity=identity)
    )
    return app


def first_message(message: FlowerMessage) -> protocols.Message:
    record = message.content.config_records[fa.RECORD]
    return protocols.Message.from_bytes(split_length_prefixed(record["messages"])[0])


@pytest.mark.parametrize(
    ("variant", "setup_trips", "later_trips"),
    [("semi-honest", 4, 2), ("active", 5, 3)],
)
@pytest.mark.usefixtures("task_identity")
def test_one_setup_then_two_or_three_round_trips_per_round(variant, setup_trips, later_trips):
    n, rounds = 5, 4
    identities = None
    if variant == "active":
        roster, identities = enroll(range(n))
        proto = protocols.SecAgg(roster=roster, bits=BITS, clip=grid_clip(n), rounds=rounds)
    else:
        proto = protocols.SecAggPlus(
            semi_honest=True, bits=BITS, clip=grid_clip(n), k=2, rounds=rounds
        )
    grid = LocalGrid(app_for(proto, identities), n)
    nodes = dict(enumerate(sorted(grid.get_node_ids())))
    session = fa.FlowerSession(grid, proto, nodes, DIM, round=10, name=NAME)
    rng = np.random.default_rng(1)
    outs = []
    while session.can_continue:
        inputs = vectors(rng, n)
        out = session.run_round(content(nodes, inputs))
        assert out.survivors == list(range(n)) and not out.failures
        np.testing.assert_array_equal(out.result.integer_total, exact(inputs, range(n)))
        outs.append(out)
        if session.can_continue:  # between rounds every node keeps its session, at the next round
            for node in nodes.values():
                stored = grid.contexts[node].state.config_records[fa.state_record(NAME)]
                assert stored["round"] == out.round + 1
    assert len(outs) == rounds and session.participants() == ()
    assert [o.round for o in outs] == [10, 11, 12, 13]
    assert [o.session_round for o in outs] == [0, 1, 2, 3]
    assert [o.round_trips for o in outs] == [setup_trips] + [later_trips] * (rounds - 1)
    # The setup cost is apart: the key setup's bytes are in the first round only.
    assert outs[0].setup["bytes_up"] > 0 and outs[0].setup["bytes_down"] > 0
    for o in outs[1:]:
        assert o.setup["bytes_up"] == o.setup["bytes_down"] == 0.0
        assert o.stats.bytes_up < outs[0].stats.bytes_up
    # The session is over: nothing is left on the nodes, and no further round runs.
    assert not any(fa.state_record(NAME) in c.state for c in grid.contexts.values())
    with pytest.raises(protocols.LocalProtocolError, match="no further round"):
        session.run_round()


def _victim_at(victim: int, round_: int):
    """Whether a Flower message carries round ``round_``'s first step (NextRound) to ``victim``."""

    def hit(message) -> bool:
        record = message.content.config_records[fa.RECORD]
        return (
            message.metadata.dst_node_id == victim
            and record["round"] == round_
            and first_message(message).STAGE == "masked_input"
        )

    return hit


@pytest.mark.usefixtures("task_identity")
def test_a_node_that_dies_mid_session_is_out_and_later_rounds_go_on():
    n, rounds = 6, 4
    proto = protocols.SecAgg(semi_honest=True, bits=BITS, clip=grid_clip(n), rounds=rounds)
    sent_to: list[tuple[int, int]] = []

    class Recording(LocalGrid):
        def push_messages(self, messages):
            sent_to.extend(
                (m.metadata.dst_node_id, m.content.config_records[fa.RECORD]["round"])
                for m in messages
            )
            return super().push_messages(messages)

    victim = 1002
    grid = Recording(app_for(proto), n, dies=_victim_at(victim, 1))
    nodes = dict(enumerate(sorted(grid.get_node_ids())))
    session = fa.FlowerSession(grid, proto, nodes, DIM, round=0, name=NAME)
    rng = np.random.default_rng(2)
    survivors = []
    while session.can_continue:
        expected = session.participants()
        inputs = {c: x for c, x in vectors(rng, n).items() if c in expected}
        out = session.run_round(content(nodes, inputs))
        np.testing.assert_array_equal(out.result.integer_total, exact(inputs, out.survivors))
        survivors.append(out.survivors)
        if out.session_round == 1:
            assert out.failures == {victim: "Flower error 3: node unavailable"}
    others = [c for c in range(n) if c != 2]
    assert survivors == [list(range(n)), others, others, others]
    # After its death the node is never sent anything again.
    assert [r for node, r in sent_to if node == victim and r > 1] == []


@pytest.mark.usefixtures("task_identity")
def test_a_node_that_missed_a_round_refuses_the_next():
    """A node whose round-1 unmasking never reached it is left out of round 2; a NextRound of
    round 2 replayed to it (another node's, re-addressed) is refused and reveals nothing."""
    n, rounds = 6, 3
    proto = protocols.SecAgg(semi_honest=True, bits=BITS, clip=grid_clip(n), rounds=rounds)
    victim, cid = 1003, 3

    def unmasking_to_victim(message) -> bool:
        record = message.content.config_records[fa.RECORD]
        return (
            message.metadata.dst_node_id == victim
            and record["round"] == 1
            and first_message(message).STAGE == "unmasking"
        )

    kept: list[FlowerMessage] = []

    class Keeping(LocalGrid):
        def push_messages(self, messages):
            kept.extend(messages)
            return super().push_messages(messages)

    grid = Keeping(app_for(proto), n, lose=unmasking_to_victim)
    nodes = dict(enumerate(sorted(grid.get_node_ids())))
    session = fa.FlowerSession(grid, proto, nodes, DIM, round=0, name=NAME, timeout=0.2)
    rng = np.random.default_rng(3)
    for r in range(rounds):
        expected = session.participants()
        assert (cid in expected) == (r < 2)
        inputs = {c: x for c, x in vectors(rng, n).items() if c in expected}
        out = session.run_round(content(nodes, inputs))
        np.testing.assert_array_equal(out.result.integer_total, exact(inputs, out.survivors))
        # Round 1: the victim's masked input is in the sum (its self mask was rebuilt).
        assert out.survivors == sorted(expected)
    # Replay: the NextRound of round 2 that node 1000 got, re-addressed to the victim.
    (model,) = [
        m
        for m in kept
        if m.metadata.dst_node_id == 1000
        and first_message(m).STAGE == "masked_input"
        and m.content.config_records[fa.RECORD]["round"] == 2
    ]
    nxt = first_message(model)
    forged = dataclasses.replace(
        nxt, recipient=cid, participants=tuple(sorted({*nxt.participants, cid}))
    )
    record = ConfigRecord(
        {
            "protocol": NAME,
            "round": 2,
            "dim": DIM,
            "messages": fa.records.frame([forged.to_bytes()]),
        }
    )
    x = RecordDict({"x": ArrayRecord({"x": Array(np.zeros(DIM))}), fa.RECORD: record})
    message = FlowerMessage(x, dst_node_id=victim, message_type=fa.MESSAGE_TYPE, group_id="2")
    reply = grid._answer(message)
    answer = reply.content.config_records[fa.RECORD]
    assert "holds no" in str(answer["error"]) and answer["messages"] == b""
    assert fa.state_record(NAME) not in grid.contexts[victim].state  # failed closed


@pytest.mark.usefixtures("task_identity")
def test_a_new_session_may_not_reuse_a_round_an_earlier_one_reserved():
    n = 4
    proto = protocols.SecAgg(semi_honest=True, bits=BITS, clip=grid_clip(n), rounds=3)
    grid = LocalGrid(app_for(proto), n)
    nodes = dict(enumerate(sorted(grid.get_node_ids())))
    rng = np.random.default_rng(4)
    first = fa.FlowerSession(grid, proto, nodes, DIM, round=20, name=NAME)
    first.run_round(content(nodes, vectors(rng, n)))
    # Rounds 20..22 belong to the first session on every node: a session at 22 is refused.
    with pytest.raises(protocols.ProtocolAborted, match="does not follow round 22"):
        fa.FlowerSession(grid, proto, nodes, DIM, round=22, name=NAME).run_round(
            content(nodes, vectors(rng, n))
        )
    inputs = vectors(rng, n)
    out = fa.FlowerSession(grid, proto, nodes, DIM, round=23, name=NAME).run_round(
        content(nodes, inputs)
    )
    np.testing.assert_array_equal(out.result.integer_total, exact(inputs, range(n)))
