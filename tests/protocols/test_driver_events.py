"""What a driver sees of a server: ``awaiting``, and the deadline as a local event.

Every server session (SecAgg, SecAgg+, Paillier, CKKS, Plaintext, the DP
wrapper) reports whom it still waits for in the current stage, and ends a
stage through ``handle(DeadlinePassed(stage))``, dispatched by its
``TRANSITIONS`` table; a deadline for a stage the server is not in is refused
(LocalProtocolError) and changes nothing.
"""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
from _protocols_kit import Net

import protocols
from protocols import DeadlinePassed, LocalProtocolError
from protocols.events import LocalEvent
from protocols.he import HEServer
from protocols.plaintext import PlaintextServer
from protocols.secagg.server import SecAggServer

DIM, N = 3, 4
INPUTS = {c: np.full(DIM, 0.125 * (c + 1)) for c in range(N)}
ALL = frozenset(range(N))

PROTOCOLS = {
    "secagg": protocols.SecAgg(semi_honest=True, threshold=3, bits=16, clip=1.0),
    "secagg+": protocols.SecAggPlus(semi_honest=True, threshold=2, k=2, bits=16, clip=1.0),
    "paillier": protocols.Paillier(key_bits=1024, bits=16, clip=1.0),
    "ckks": protocols.CKKS(clip=1.0),
    "plaintext": protocols.Plaintext(),
    "dp-secagg": protocols.DifferentiallyPrivate(
        protocols.SecAgg(semi_honest=True, threshold=3, bits=16, clip=1.0),
        "central",
        clip=1.0,
        noise_multiplier=1.0,
    ),
}


def fingerprint(server) -> bytes:
    inner = getattr(server, "inner", server)
    try:
        return pickle.dumps((inner.stage, inner._state, inner._started))
    except TypeError:  # CKKS state holds a TenSEAL context: compare what can be compared
        fields = {
            k: sorted(v) if isinstance(v, dict) else repr(v) for k, v in vars(inner._state).items()
        }
        return pickle.dumps((inner.stage, type(inner._state), fields, inner._started))


def trace(proto, dropout=None) -> list[tuple[str, frozenset[int], frozenset[int]]]:
    """Run a round message by message; record (stage, awaiting, answered in this stage)."""
    net = Net(proto, INPUTS, dropout=dropout)
    seen = [(net.server.stage, net.server.awaiting, frozenset())]
    net.start()
    answered: dict[str, set[int]] = {}

    def note() -> None:
        stage = net.server.stage
        seen.append((stage, net.server.awaiting, frozenset(answered.get(stage, ()))))

    note()
    while not net.server.finished:
        if net.to_server:
            data = net.to_server.popleft()
            stage = net.server.stage
            net.deliver_to_server(data)
            answered.setdefault(stage, set()).add(protocols.Message.from_bytes(data).sender)
        elif net.to_clients:
            net.deliver_to_client(*net.to_clients.popleft())
        else:
            net._from_server(net.server.handle(DeadlinePassed(net.server.stage)))
        note()
    return seen


@pytest.mark.parametrize("name", PROTOCOLS)
def test_awaiting_names_invited_clients_that_have_not_answered(name):
    seen = trace(PROTOCOLS[name])
    assert seen[0][1] == frozenset(), "a server that was not started awaits nobody"
    for stage, awaiting, answered in seen:
        assert awaiting <= ALL
        assert not awaiting & answered, f"{stage}: awaits {awaiting & answered}, who answered"
    assert seen[-1][0] == "completed" and seen[-1][1] == frozenset()
    assert seen[1][1], "the first stage awaits somebody"


def test_secagg_awaits_each_stage_s_expected_clients():
    seen = trace(PROTOCOLS["secagg"], dropout={3: "share_keys"})
    first = {stage: awaiting for stage, awaiting, _ in reversed(seen)}  # first entry per stage
    assert first["advertise_keys"] == ALL
    assert first["share_keys"] == ALL  # 3 advertised its keys, then went silent
    assert first["masked_input"] == {0, 1, 2}  # missed share_keys: never awaited again
    assert first["unmasking"] == {0, 1, 2}
    assert all(3 not in a for stage, a, _ in seen if stage in ("masked_input", "unmasking"))


@pytest.mark.parametrize("name", ["paillier", "ckks"])
def test_he_awaits_the_decryptor_then_everyone_then_the_decryptor(name):
    seen = trace(PROTOCOLS[name])
    first = {stage: awaiting for stage, awaiting, _ in reversed(seen)}
    assert first["advertise_keys"] == {0}  # the decryptor: the smallest id
    assert first["masked_input"] == ALL
    assert first["unmasking"] == {0}


def test_plaintext_awaits_everyone_until_they_send():
    seen = trace(PROTOCOLS["plaintext"], dropout={2: "masked_input"})
    awaited = [a for stage, a, _ in seen if stage == "masked_input"]
    assert awaited[0] == ALL and awaited[-1] == {2}


def test_dp_server_reports_its_inner_server_s_awaiting():
    net = Net(PROTOCOLS["dp-secagg"], INPUTS)
    net.run_until_server_stage("share_keys")
    assert net.server.awaiting == net.server.inner.awaiting == ALL


# -- the deadline event -------------------------------------------------------------


@pytest.mark.parametrize("cls", [SecAggServer, HEServer, PlaintextServer])
def test_every_collecting_state_has_a_deadline_entry(cls):
    """The table is the one place a stage can end: each state that takes messages can be closed."""
    collecting = {state for (state, kind) in cls.TRANSITIONS if kind is not DeadlinePassed}
    closable = {state for (state, kind) in cls.TRANSITIONS if kind is DeadlinePassed}
    assert collecting == closable


def test_deadline_event_is_local_and_frozen():
    event = DeadlinePassed("share_keys")
    assert isinstance(event, LocalEvent) and not isinstance(event, protocols.Message)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.stage = "unmasking"  # type: ignore[misc]
    net = Net(PROTOCOLS["secagg"], INPUTS)
    net.start()
    with pytest.raises(TypeError):
        net.server.receive(event)  # never on the wire
    with pytest.raises(TypeError):
        net.server.handle(protocols.messages.Abort(0, protocols.wire.SERVER, 0, "x"))


@pytest.mark.parametrize("name", PROTOCOLS)
def test_close_stage_is_the_deadline_event(name):
    """close_stage() and handle(DeadlinePassed(stage)) do the same, byte for byte."""
    stage = "masked_input" if name in ("paillier", "ckks", "plaintext") else "share_keys"
    outs = []
    for close in (
        lambda s: s.close_stage(),
        lambda s: s.handle(DeadlinePassed(s.stage)),
    ):
        net = Net(PROTOCOLS[name], INPUTS, dropout={1: "masked_input", 3: "share_keys"})
        net.run_until_server_stage(stage)
        net.flush()
        assert net.server.stage == stage and net.server.awaiting  # somebody is missing
        sent = [(type(m), m.recipient) for m in close(net.server)]  # HE keys are fresh per run
        outs.append((sent, net.server.stage, net.server.awaiting))
    assert outs[0] == outs[1] and outs[0][1] != stage


@pytest.mark.parametrize("name", PROTOCOLS)
def test_a_stale_deadline_is_refused_and_changes_nothing(name):
    net = Net(PROTOCOLS[name], INPUTS)
    net.start()
    first = net.server.stage
    net.run_until_server_stage("masked_input" if name != "plaintext" else "completed")
    if name == "plaintext":  # one stage only: its deadline arrives after the round completed
        assert net.server.finished
    before, awaiting = fingerprint(net.server), net.server.awaiting
    with pytest.raises(LocalProtocolError, match=first):
        net.server.handle(DeadlinePassed(first))
    with pytest.raises(LocalProtocolError):
        net.server.handle(DeadlinePassed("no_such_stage"))
    assert fingerprint(net.server) == before and net.server.awaiting == awaiting
    if not net.server.finished:  # the server still works: the round completes
        net.run()
    assert net.server.stage == "completed"


@pytest.mark.parametrize("name", PROTOCOLS)
def test_no_deadline_before_start_or_after_the_end(name):
    server = PROTOCOLS[name].server(range(N), DIM)
    with pytest.raises(LocalProtocolError, match="start"):
        server.handle(DeadlinePassed(server.stage))
    with pytest.raises(LocalProtocolError):
        server.close_stage()
    net = Net(PROTOCOLS[name], INPUTS).run()
    before = fingerprint(net.server)
    for close in (net.server.close_stage, lambda: net.server.handle(DeadlinePassed("completed"))):
        with pytest.raises(LocalProtocolError):
            close()
    assert fingerprint(net.server) == before
    assert net.server.awaiting == frozenset()
