"""What the ServerApp and the ClientApp agree on: round names, record names, partitions.

A round's protocol is named by its public parameters (the task and the
protocol configuration's fields, as JSON); the client builds the
configuration from them (:func:`protocol_of_round`) and the sessions check
that the server runs the same one. A roster travels as its digest only: each
node binds its own copy (device registration, :func:`write_identities`), so
the server cannot choose whose keys a client trusts. Light at import time: recsys (and torch) load on first use, so a
ClientApp process that only answers a query imports neither.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

import protocols
from recsys.plan import DEFAULT_SESSION_ROUNDS as SESSION_ROUNDS  # one default, the plan's
from secagg.identity import IdentityKeyPair, Roster

PARTITION_ACTION = "partition"
"""``query.partition``: a node says which client it is and the sizes of the id spaces."""
MODEL_RECORD = "model"  # ArrayRecord: the item tables sent with a round's first message
TASK_RECORD = "task"  # ConfigRecord: {"kind": "train" | "evaluate", "config": json}
VECTOR_SEED = 0x5EC


ROSTER_FILE = "roster.bin"  # the public roster prepare writes (client id -> identity key)


def describe(proto: protocols.AggregationProtocol) -> dict[str, Any]:
    """A protocol configuration as JSON-ready public parameters (inverse: :func:`build`);
    a roster as its hex digest."""
    fields = {f.name: getattr(proto, f.name) for f in dataclasses.fields(proto)}  # type: ignore[arg-type]
    if isinstance(proto, protocols.DifferentiallyPrivate):
        inner = fields.pop("inner")
        return {"dp": fields, "inner": describe(inner)}
    if isinstance(fields.get("roster"), Roster):
        fields["roster"] = fields["roster"].digest.hex()
    return {"protocol": proto.NAME, "fields": fields}


def build(desc: dict[str, Any], roster: Roster | None = None) -> protocols.AggregationProtocol:
    """The configuration :func:`describe` described; only registered protocols.

    A described roster digest is replaced by ``roster``, the node's own, which
    must have that digest (ValueError otherwise, or if the node has none).
    """
    from protocols import registry

    if "dp" in desc:
        return protocols.DifferentiallyPrivate(build(desc["inner"], roster), **desc["dp"])
    cls = registry.config_class(str(desc["protocol"]))
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in desc["fields"].items()}
    if fields.get("roster") is not None:
        if roster is None:
            raise ValueError("the round names a roster and this node has none (roster-file)")
        if fields["roster"] != roster.digest.hex():
            raise ValueError("the round's roster is not this node's roster")
        fields["roster"] = roster
    return cls(**fields)


def bind_roster(
    proto: protocols.AggregationProtocol, roster: Roster | None
) -> protocols.AggregationProtocol:
    """``proto`` in its actively secure variant when it has one (SecAgg, SecAgg+, with
    or without DP) and ``roster`` is given; otherwise ``proto`` unchanged."""
    inner = proto.inner if isinstance(proto, protocols.DifferentiallyPrivate) else proto
    if roster is None or not isinstance(inner, protocols.SecAgg):
        return proto
    return proto.with_roster(roster)  # type: ignore[attr-defined]  # SecAgg or DP around it


# -- identities (simulated device registration) ---------------------------------------------


def identity_path(partition: str | Path) -> Path:
    """Where :func:`write_identities` puts the identity key of ``partition``'s client."""
    return Path(partition).with_suffix(".identity")


def write_identities(out: Path, partitions: list[Path]) -> Path:
    """A fresh Ed25519 identity per partition (``<partition>.identity``, readable by
    its owner only) and the public roster (``out/roster.bin``); returns the roster's path.

    This stands in for device registration: a real device makes its own key
    and registers only the public half, and every node and the server get the
    same public roster from the registration service, not from each other.
    """
    public = {}
    for part in partitions:
        with np.load(part, allow_pickle=False) as z:
            client = int(z["client"])
        pair = IdentityKeyPair.generate()
        fd = os.open(identity_path(part), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pair.private_bytes())
        public[client] = pair.public_key
    roster_path = out / ROSTER_FILE
    roster_path.write_bytes(Roster(public).to_bytes())
    return roster_path


def load_roster(path: str | Path) -> Roster:
    """The roster :func:`write_identities` wrote (RosterError if malformed)."""
    return Roster.from_bytes(Path(path).read_bytes())


def load_identity(path: str | Path) -> IdentityKeyPair:
    """A node's identity key as :func:`write_identities` wrote it."""
    return IdentityKeyPair.from_private_bytes(Path(path).read_bytes())


def round_name(kind: str, proto: protocols.AggregationProtocol) -> str:
    """A round's public parameters, as the protocol name the server sends: its task
    (``train``, ``evaluate``, ``vector``) and its protocol configuration."""
    return json.dumps({"kind": kind, "config": describe(proto)}, sort_keys=True)


def protocol_of_round(name: str, roster: Roster | None = None) -> protocols.AggregationProtocol:
    """The client's protocol factory: the round's configuration from its public parameters.

    Imports only :mod:`protocols` (every protocol step starts a fresh ClientApp
    process; recsys and torch load only where the node trains or evaluates).
    This is where a deployment applies its own policy (refuse plaintext, demand
    DP, a minimum cohort...); this app takes any registered protocol, and the
    sessions check that the server runs the configuration the client built.
    One rule it does apply: an enrolled node (``roster`` given) refuses the
    semi-honest SecAgg/SecAgg+, so a server cannot downgrade it.
    """
    params = json.loads(name)
    if params.get("kind") not in ("train", "evaluate", "vector"):
        raise ValueError(f"unknown round kind {params.get('kind')!r}")
    proto = build(params["config"], roster)
    inner = proto.inner if isinstance(proto, protocols.DifferentiallyPrivate) else proto
    if roster is not None and isinstance(inner, protocols.SecAgg) and not inner.active:
        raise ValueError("this node is enrolled (roster-file): it refuses the semi-honest variant")
    return proto


def vector_protocol(
    name: str, bits: int, key_bits: int, roster: Roster | None, semi_honest: bool
) -> protocols.AggregationProtocol:
    """Task "vector"'s configuration of protocol ``name`` (inputs in [-1, 1]):
    actively secure with ``roster``, or semi-honest if the run says so."""
    from protocols import registry

    high = registry.config_class(name).QUANTIZATION_BITS
    options = registry.ProtocolOptions(
        clip=1.0,
        key_bits=key_bits,
        bits=None if high is None else min(bits, high[1]),
        semi_honest=semi_honest or None,
    )
    return bind_roster(registry.create(name, options), roster)


# -- multi-round sessions --------------------------------------------------------------------

def multi_round_secure(proto: protocols.AggregationProtocol, *, every_client: bool) -> bool:
    """Whether one session may serve several rounds of ``proto``: a ``MULTI_ROUND``
    protocol (SecAgg, SecAgg+; this app keeps DP to one round per session), and every
    client of the session in every round (``every_client``: no Poisson sampling per
    round, whose sample the session's masks would not cancel over)."""
    return proto.MULTI_ROUND and every_client


def session_length(
    asked: int, proto: protocols.AggregationProtocol, remaining: int, *, every_client: bool
) -> int:
    """Rounds the next session of ``proto`` serves when ``remaining`` rounds are left.

    ``asked`` is the run config's ``session-rounds``: 0 picks the recommender's
    :data:`~recsys.plan.DEFAULT_SESSION_ROUNDS` (``SESSION_ROUNDS`` here) where
    :func:`multi_round_secure`, else 1; 1 is a new setup every round; above 1 is refused
    (ValueError) where it is not secure.
    """
    if isinstance(asked, bool) or not isinstance(asked, int) or asked < 0:
        raise ValueError(f"session-rounds must be an int >= 0, got {asked!r}")
    secure = multi_round_secure(proto, every_client=every_client)
    if asked > 1 and not secure:
        raise ValueError(
            f"session-rounds = {asked} needs SecAgg or SecAgg+ without DP and every client in "
            f"every round (q = 1); this round runs {proto.NAME!r}: use session-rounds = 1"
        )
    wanted = asked or (SESSION_ROUNDS if secure else 1)
    return max(1, min(wanted, int(remaining)))


def with_session_rounds(
    proto: protocols.AggregationProtocol, rounds: int
) -> protocols.AggregationProtocol:
    """``proto`` with sessions of ``rounds`` rounds (SecAgg/SecAgg+; 1 leaves it unchanged)."""
    if rounds == 1:
        return proto
    if not proto.MULTI_ROUND:
        raise ValueError(f"{proto.NAME!r} sessions run one round")
    return dataclasses.replace(proto, rounds=rounds)


class RoundNumbers:
    """The run's protocol round numbers: each session reserves one per round it may run,
    so no two sessions on a node share one (a node refuses a session that would)."""

    def __init__(self, first: int) -> None:
        self.next = first

    def reserve(self, rounds: int) -> int:
        """The first of ``rounds`` consecutive numbers no session has used."""
        first, self.next = self.next, self.next + rounds
        return first


def vector_of(client: int, round_: int, dim: int) -> np.ndarray:
    """Task "vector": client ``client``'s public test input of round ``round_``."""
    return np.random.default_rng([VECTOR_SEED, client, round_]).uniform(-1.0, 1.0, dim)


# -- partitions ------------------------------------------------------------------------------

_FIELDS = ("user", "item", "rating", "timestamp")


def save_partition(path: Path, client: int, train: Any, test: Any) -> None:
    """One client's ratings (train and held-out) in ``path`` (.npz, no pickle)."""
    arrays: dict[str, np.ndarray] = {
        "client": np.array(client),
        "n_users": np.array(train.n_users),
        "n_items": np.array(train.n_items),
    }
    for side, r in (("train", train), ("test", test)):
        for f in _FIELDS:
            arrays[f"{side}_{f}"] = np.asarray(getattr(r, f))
    np.savez(path, **arrays)  # type: ignore[arg-type]


def load_partition(path: str | Path) -> tuple[int, Any, Any]:
    """``(client id, train, test)`` of a partition written by :func:`save_partition`."""
    from recsys.data import Ratings

    with np.load(path, allow_pickle=False) as z:
        n_users, n_items = int(z["n_users"]), int(z["n_items"])
        sides = [
            Ratings(*(z[f"{side}_{f}"] for f in _FIELDS), n_users, n_items)
            for side in ("train", "test")
        ]
        return int(z["client"]), sides[0], sides[1]
