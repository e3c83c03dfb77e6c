"""What the ServerApp and the ClientApp agree on: round names, record names, partitions.

A round's protocol is named by its public parameters (the task and the
protocol configuration's fields, as JSON); the client builds the
configuration from them (:func:`protocol_of_round`) and the sessions check
that the server runs the same one. Light at import time: recsys (and torch) load on first use, so a
ClientApp process that only answers a query imports neither.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

import protocols

PARTITION_ACTION = "partition"
"""``query.partition``: a node says which client it is and the sizes of the id spaces."""
MODEL_RECORD = "model"  # ArrayRecord: the item tables sent with a round's first message
TASK_RECORD = "task"  # ConfigRecord: {"kind": "train" | "evaluate", "config": json}
VECTOR_SEED = 0x5EC


def describe(proto: protocols.AggregationProtocol) -> dict[str, Any]:
    """A protocol configuration as JSON-ready public parameters (inverse: :func:`build`)."""
    fields = {f.name: getattr(proto, f.name) for f in dataclasses.fields(proto)}  # type: ignore[arg-type]
    if isinstance(proto, protocols.DifferentiallyPrivate):
        inner = fields.pop("inner")
        return {"dp": fields, "inner": describe(inner)}
    return {"protocol": proto.NAME, "fields": fields}


def build(desc: dict[str, Any]) -> protocols.AggregationProtocol:
    """The configuration :func:`describe` described; only registered protocols."""
    from protocols import registry

    if "dp" in desc:
        return protocols.DifferentiallyPrivate(build(desc["inner"]), **desc["dp"])
    cls = registry.config_class(str(desc["protocol"]))
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in desc["fields"].items()}
    return cls(**fields)


def round_name(kind: str, proto: protocols.AggregationProtocol) -> str:
    """A round's public parameters, as the protocol name the server sends: its task
    (``train``, ``evaluate``, ``vector``) and its protocol configuration."""
    return json.dumps({"kind": kind, "config": describe(proto)}, sort_keys=True)


def protocol_of_round(name: str) -> protocols.AggregationProtocol:
    """The client's protocol factory: the round's configuration from its public parameters.

    Imports only :mod:`protocols` (every protocol step starts a fresh ClientApp
    process; recsys and torch load only where the node trains or evaluates).
    This is where a deployment applies its own policy (refuse plaintext, demand
    DP, a minimum cohort...); this app takes any registered protocol, and the
    sessions check that the server runs the configuration the client built.
    """
    params = json.loads(name)
    if params.get("kind") not in ("train", "evaluate", "vector"):
        raise ValueError(f"unknown round kind {params.get('kind')!r}")
    return build(params["config"])


def vector_protocol(name: str, bits: int, key_bits: int) -> protocols.AggregationProtocol:
    """Task "vector"'s configuration of protocol ``name`` (inputs in [-1, 1]).

    SecAgg/SecAgg+ run semi-honest: the nodes hold no enrolled identity key
    (the SuperLink assigns node ids at connection; see the README).
    """
    from protocols import registry

    high = registry.config_class(name).QUANTIZATION_BITS
    options = registry.ProtocolOptions(
        clip=1.0,
        key_bits=key_bits,
        bits=None if high is None else min(bits, high[1]),
        semi_honest=True,
    )
    return registry.create(name, options)


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
