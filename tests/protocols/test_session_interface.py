"""Every protocol's sessions, DP wrappers included, offer the interface drivers rely on.

mypy checks the signatures (``AggregationProtocol.server()`` is declared to
return a :class:`protocols.ServerInterface`); this checks the objects the
registry's protocols really build, so a wrapper missing a member fails here
even where a caller's types are not checked.
"""

from __future__ import annotations

import dataclasses

import pytest

import protocols
from protocols import ClientInterface, ServerInterface, registry


def members(interface: type) -> set[str]:
    """The public names an interface declares, its base interfaces' included."""
    return {
        name
        for cls in interface.__mro__
        if cls.__module__ == "protocols.base"
        for name in vars(cls)
        if not name.startswith("_")
    }


def configs() -> list[protocols.AggregationProtocol]:
    out = []
    for name in registry.names():
        try:
            proto = registry.create(name)
        except ImportError:  # an optional dependency (tenseal, phe) is not installed
            continue
        if getattr(proto, "variant", None) == "unbound":  # SecAgg/SecAgg+ make no sessions so
            proto = dataclasses.replace(proto, semi_honest=True)
        out.append(proto)
    plain = protocols.Plaintext()
    out.append(
        protocols.DifferentiallyPrivate(plain, mode="central", clip=1.0, noise_multiplier=1.0)
    )
    out.append(
        protocols.DifferentiallyPrivate(
            protocols.SecAgg(semi_honest=True, bits=32),
            mode="ddg",
            clip=1.0,
            noise_multiplier=1.0,
            expected_clients=3,
        )
    )
    return out


def test_the_interfaces_name_what_drivers_call():
    # The members the driver, simulate and the Flower adapter use (read off their code).
    assert members(ServerInterface) == {
        "start", "receive", "handle", "close_stage", "awaiting", "stage", "finished",
        "aborted", "abort_reason", "result", "client_ids",
    }  # fmt: skip
    assert members(ClientInterface) == {
        "start", "receive", "provide_input", "snapshot", "stage", "finished", "aborted",
        "abort_reason", "party_id", "round",
    }  # fmt: skip


@pytest.mark.parametrize("proto", configs(), ids=lambda p: type(p).__name__ + ":" + p.NAME)
def test_sessions_offer_every_interface_member(proto):
    server = proto.server([1, 2, 3], 4)
    client = proto.client(1, 4)
    assert sorted(n for n in members(ServerInterface) if n not in dir(server)) == []
    assert sorted(n for n in members(ClientInterface) if n not in dir(client)) == []
    # (dir(), not hasattr: reading ``result`` before the end raises.) Before start(), the
    # other properties answer without raising.
    assert (server.finished, server.aborted, server.abort_reason) == (False, False, None)
    assert isinstance(server.stage, str)
    assert server.client_ids == (1, 2, 3) and server.awaiting == frozenset()
    assert (client.party_id, client.round, client.finished) == (1, 0, False)
