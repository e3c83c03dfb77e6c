"""The ClientApp: one user per SuperNode, training and evaluating on the node's own ratings.

The node's partition is named by its node config, ``partition-file``, and its
identity key and the public roster by ``identity-file`` and ``roster-file``
(all written by :mod:`secagg_fl_app.prepare`; a node without them can take
only rounds that need no identity). Three actions:

- ``query.partition``: the client id and the sizes of the id spaces;
- ``train.secagg_fl`` (:class:`protocols.adapters.flower.ClientHandler`):
  every protocol step. The round's first message carries the item tables and
  the task: ``train`` (local training from the tables; the upload goes
  through the round's protocol) or ``evaluate`` (the node's evaluation sums
  of the tables, :mod:`recsys.federated.evaluation`; they go through the
  round's protocol without DP), or, for task "vector", nothing: the input
  is a public test vector of the node id and round (:func:`task.vector_of`).
"""

from __future__ import annotations

import json

import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict

import protocols
from protocols.adapters import flower as fa

from .task import (
    MODEL_RECORD,
    PARTITION_ACTION,
    TASK_RECORD,
    load_identity,
    load_partition,
    load_roster,
    protocol_of_round,
    vector_of,
)

_partitions: dict[str, tuple] = {}  # per process: a ClientApp process may serve many messages


def _partition(context: Context) -> tuple:
    path = str(context.node_config["partition-file"])
    if path not in _partitions:
        _partitions[path] = load_partition(path)
    return _partitions[path]


def _roster(context: Context):
    path = str(context.node_config.get("roster-file", ""))
    return load_roster(path) if path else None


def node_protocol(name: str, context: Context) -> protocols.AggregationProtocol:
    """The round's configuration, bound to this node's own roster (task.protocol_of_round)."""
    return protocol_of_round(name, _roster(context))


def node_identity(context: Context):
    """This node's identity key (None without ``identity-file``)."""
    path = str(context.node_config.get("identity-file", ""))
    return load_identity(path) if path else None


def device_input(message: Message, context: Context) -> np.ndarray:
    """The node's input to the round: its update, its evaluation sums, or a test vector."""
    record = message.content.config_records[fa.RECORD]
    if TASK_RECORD not in message.content.config_records:  # task "vector"
        return vector_of(context.node_id, int(record["round"]), int(record["dim"]))
    import torch

    from recsys.federated import (
        ClientPopulation,
        FederatedConfig,
        UpdateLayout,
        client_vectors,
        cohort_evaluation_sums,
        cohort_uploads,
    )
    from recsys.plan import Plan

    torch.set_num_threads(1)
    client, train, test = _partition(context)
    task = message.content.config_records[TASK_RECORD]
    cfg = FederatedConfig(**_tuples(json.loads(str(task["config"]))))
    plan = Plan.from_dict(json.loads(str(task["plan"])))
    model = message.content.array_records[MODEL_RECORD]
    factors = torch.as_tensor(model["factors"].numpy(), dtype=torch.float64)
    bias = torch.as_tensor(model["bias"].numpy(), dtype=torch.float64)
    population = ClientPopulation(train, test, cfg.n_factors)
    if task["kind"] == "evaluate":
        sums = cohort_evaluation_sums(population, cfg, factors, bias)
        return client_vectors(sums[[client]], cfg.rating_scale)[0]
    layout = UpdateLayout(train.n_items, cfg.n_factors, weighted=cfg.aggregation == "item")
    return cohort_uploads(population, layout, cfg, factors, bias, np.array([client]), plan)[0]


def _tuples(config: dict) -> dict:
    """JSON turned the config's tuples into lists; the dataclass wants them back."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}


app = fa.make_client_app(node_protocol, device_input, identity=node_identity)


@app.query(PARTITION_ACTION)
def partition(message: Message, context: Context) -> Message:
    client, train, _ = _partition(context)
    info = ConfigRecord({"client": client, "n_users": train.n_users, "n_items": train.n_items})
    return Message(RecordDict({"node": info}), reply_to=message)
