"""Drive Flower's own SecAgg+ code in-process, for benchmarking against ``protocols``.

What runs is Flower's code, unmodified:

- server: :class:`flwr.server.workflow.SecAggPlusWorkflow`, its four stage
  methods (``setup_stage``, ``share_keys_stage``, ``collect_masked_vectors_stage``,
  ``unmask_stage``) called in order, exactly as ``SecAggPlusWorkflow.__call__``
  does, with a ``LegacyContext`` (FedAvg-style strategy, ``SimpleClientManager``
  of ``GridClientProxy`` objects);
- clients: :func:`flwr.client.mod.secaggplus_mod` wrapping a trivial
  "training" function that returns the client's vector as a ``FitRes``.

Transport is a fake :class:`flwr.serverapp.grid.Grid` whose ``send_and_receive``
routes every message through Flower's wire representation and back:
``Message`` -> the message header protobuf (``message_to_proto`` of the
content-free message) plus every nested ``InflatableObject.deflate()`` (what
``GrpcGrid``/``HttpGrid`` push to the SuperLink in Flower >= 1.20), then
``inflate_object_from_contents`` on the other side. Upload bytes are the sum of
those byte strings for the client -> server replies (header + deflated objects).

CPU accounting (``time.process_time``, all threads of this process):

- client seconds: the ``secaggplus_mod`` call minus the time spent in the
  wrapped training function (``call_next``), plus the client's share of the
  wire work (inflating the request, deflating the reply);
- server seconds: the stage methods' time minus everything counted for the
  clients; it includes the server's share of the wire work (deflating requests,
  inflating replies), reported separately as ``server_wire_seconds``.

Two deliberate simplifications, both in Flower's favour and both outside
SecAgg+: the global model sent with ``FitIns`` is empty (our protocols do not
broadcast a model either), and the strategy's ``aggregate_fit`` returns the
already-unmasked aggregate instead of re-averaging 100 identical copies of it
(FedAvg would otherwise add a weighted average over n vectors to the server).
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["available", "flower_version", "run_flower_secaggplus"]


def available() -> bool:
    """True if flwr (with its SecAgg+ workflow and mod) can be imported."""
    import importlib

    try:
        importlib.import_module("flwr.client.mod.secure_aggregation.secaggplus_mod")
        importlib.import_module("flwr.server.workflow.secure_aggregation.secaggplus_workflow")
    except Exception:
        return False
    return True


def flower_version() -> str:
    import flwr

    return str(getattr(flwr, "__version__", "unknown"))


def run_flower_secaggplus(
    inputs: Mapping[int, np.ndarray],
    *,
    num_shares: int,
    reconstruction_threshold: int,
    clip: float = 1.0,
    quantization_range: int = 2**22,
    modulus_range: int = 2**32,
    seed: int = 0,
) -> dict[str, Any]:
    """One Flower SecAgg+ round over ``inputs`` (client id -> 1-D float vector).

    ``num_shares`` is Flower's: the client itself plus its neighbours (so our
    degree k corresponds to ``num_shares = k + 1``; ``num_shares = n`` is the
    complete graph). Returns CPU seconds, bytes and the aggregate's error.
    """
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
    from flwr.app.message.message import remove_content_from_message
    from flwr.client.mod.secure_aggregation.secaggplus_mod import secaggplus_mod
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
    from flwr.common.secure_aggregation.secaggplus_constants import Key as SecAggKey
    from flwr.common.serde import message_to_proto
    from flwr.compat.common import recorddict_compat as compat
    from flwr.server.client_manager import SimpleClientManager
    from flwr.server.compat.grid_client_proxy import GridClientProxy
    from flwr.server.compat.legacy_context import LegacyContext
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
    from flwr.server.workflow.constant import Key as WorkflowKey
    from flwr.server.workflow.secure_aggregation.secaggplus_workflow import (
        SecAggPlusWorkflow,
        WorkflowState,
    )
    from flwr.serverapp.grid import Grid
    from flwr.supercore.inflatable.inflatable_object import (
        get_all_nested_objects,
        no_object_id_recompute,
    )
    from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents
    from flwr.supercore.task_identity import TaskIdentity

    logging.getLogger("flwr").setLevel(logging.ERROR)
    # What flwr.server.compat.app does before running a ServerApp's workflow.
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = 1
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    random.seed(seed)  # Flower shuffles node ids with `random`
    np.random.seed(seed)  # ... and rounds stochastically with np.random

    n = len(inputs)
    node_of = {cid: 10_000 + i for i, cid in enumerate(sorted(inputs))}
    vector_of = {node_of[cid]: np.asarray(x, dtype=np.float64) for cid, x in inputs.items()}
    dim = len(next(iter(vector_of.values())))

    def to_wire(msg: Message) -> tuple[str, dict[str, bytes], int]:
        """What a Flower grid/SuperNode pushes: header protobuf + deflated objects."""
        with no_object_id_recompute():
            msg_id = msg.object_id
            msg.metadata.__dict__["_message_id"] = msg_id
            header = message_to_proto(remove_content_from_message(msg)).SerializeToString()
            contents = {oid: obj.deflate() for oid, obj in get_all_nested_objects(msg).items()}
        size = len(header) + sum(len(c) for c in contents.values())
        return msg_id, contents, size

    def from_wire(msg_id: str, contents: dict[str, bytes]) -> Message:
        msg = inflate_object_from_contents(msg_id, contents)
        msg.metadata.__dict__["_message_id"] = msg_id
        return msg

    # -- clients ---------------------------------------------------------------
    contexts = {
        nid: Context(run_id=1, node_id=nid, node_config={}, state=RecordDict(), run_config={})
        for nid in vector_of
    }
    train_seconds = [0.0]

    def train(msg: Message, ctxt: Context) -> Message:
        # The user's ClientApp: return the local vector as a FitRes (not timed as SecAgg).
        t0 = time.process_time()
        fitres = FitRes(
            status=Status(code=Code.OK, message=""),
            parameters=ndarrays_to_parameters([vector_of[ctxt.node_id]]),
            num_examples=1,
            metrics={},
        )
        reply = Message(compat.fitres_to_recorddict(fitres, keep_input=False), reply_to=msg)
        train_seconds[0] += time.process_time() - t0
        return reply

    stats: dict[str, Any] = {
        "client_seconds": defaultdict(float),  # by stage, total over clients
        "client_wire_seconds": 0.0,
        "server_wire_seconds": 0.0,
        "bytes_up": defaultdict(int),  # by stage
        "bytes_down": defaultdict(int),
        "masked_vector_bytes": 0,  # the ndarray_to_bytes payloads alone
        "messages": 0,
    }
    current = {"stage": "", "client_total": 0.0}

    class InProcessGrid(Grid):
        """Routes each message through Flower's wire form to an in-process client mod."""

        def set_run(self, run) -> None:  # pragma: no cover - unused
            self._run = run

        @property
        def run(self):  # pragma: no cover - unused
            return self._run

        def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):
            return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

        def get_node_ids(self) -> Iterable[int]:
            return list(vector_of)

        def push_messages(self, messages):  # pragma: no cover - unused
            raise NotImplementedError

        def pull_messages(self, message_ids):  # pragma: no cover - unused
            raise NotImplementedError

        def send_and_receive(self, messages, *, timeout=None):
            replies = []
            stage = current["stage"]
            for msg in messages:
                stats["messages"] += 1
                # server: serialize the request
                t0 = time.process_time()
                msg_id, contents, size = to_wire(msg)
                stats["server_wire_seconds"] += time.process_time() - t0
                stats["bytes_down"][stage] += size
                # client: deserialize, run the mod, serialize the reply
                t0 = time.process_time()
                incoming = from_wire(msg_id, contents)
                nid = incoming.metadata.dst_node_id
                t1 = time.process_time()
                train_before = train_seconds[0]
                reply = secaggplus_mod(incoming, contexts[nid], train)
                t2 = time.process_time()
                mod_seconds = (t2 - t1) - (train_seconds[0] - train_before)
                if stage == "collect_masked_vectors":
                    configs = reply.content.config_records[RECORD_KEY_CONFIGS]
                    stats["masked_vector_bytes"] += sum(
                        len(b) for b in configs[SecAggKey.MASKED_PARAMETERS]
                    )
                reply_id, reply_contents, reply_size = to_wire(reply)
                t3 = time.process_time()
                wire = (t1 - t0) + (t3 - t2)
                stats["client_wire_seconds"] += wire
                stats["client_seconds"][stage] += mod_seconds + wire
                current["client_total"] += mod_seconds + wire + (train_seconds[0] - train_before)
                stats["bytes_up"][stage] += reply_size
                stats["messages"] += 1
                # server: deserialize the reply
                t0 = time.process_time()
                replies.append(from_wire(reply_id, reply_contents))
                stats["server_wire_seconds"] += time.process_time() - t0
            return replies

    grid = InProcessGrid()

    # -- server ----------------------------------------------------------------
    class PassThroughFedAvg(FedAvg):
        """FedAvg sampling every client; aggregate_fit hands the unmasked aggregate through."""

        def aggregate_fit(self, server_round, results, failures):
            if not results:
                return None, {}
            return results[0][1].parameters, {}

    client_manager = SimpleClientManager()
    for nid in vector_of:
        client_manager.register(GridClientProxy(nid, grid, run_id=1))
    strategy = PassThroughFedAvg(
        fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n, min_available_clients=n
    )
    state = RecordDict()
    state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord({WorkflowKey.CURRENT_ROUND: 1})
    state.array_records[MAIN_PARAMS_RECORD] = ArrayRecord()  # no model broadcast
    context = LegacyContext(
        Context(run_id=1, node_id=0, node_config={}, state=state, run_config={}),
        strategy=strategy,
        client_manager=client_manager,
    )
    workflow = SecAggPlusWorkflow(
        num_shares=num_shares,
        reconstruction_threshold=reconstruction_threshold,
        max_weight=1.0,
        clipping_range=float(clip),
        quantization_range=quantization_range,
        modulus_range=modulus_range,
    )
    wstate = WorkflowState()
    server_seconds: dict[str, float] = {}
    wall0 = time.perf_counter()
    stages = (
        ("setup", workflow.setup_stage),
        ("share_keys", workflow.share_keys_stage),
        ("collect_masked_vectors", workflow.collect_masked_vectors_stage),
        ("unmask", workflow.unmask_stage),
    )
    for name, stage in stages:
        current["stage"], current["client_total"] = name, 0.0
        t0 = time.process_time()
        ok = stage(grid, context, wstate)
        elapsed = time.process_time() - t0
        server_seconds[name] = elapsed - current["client_total"]
        if not ok:
            raise RuntimeError(f"Flower SecAgg+ halted in stage {name!r}")
    wall = time.perf_counter() - wall0

    # The workflow leaves the weighted mean (weights 1) in the context.
    aggregate = compat.arrayrecord_to_parameters(
        context.state.array_records[MAIN_PARAMS_RECORD], keep_input=True
    )
    mean = parameters_to_ndarrays(aggregate)[0]
    expected = np.mean([np.clip(v, -clip, clip) for v in vector_of.values()], axis=0)
    total_client = sum(stats["client_seconds"].values())
    bytes_up = sum(stats["bytes_up"].values())
    return {
        "flower_version": flower_version(),
        "n": n,
        "dim": dim,
        "num_shares": num_shares,
        "reconstruction_threshold": reconstruction_threshold,
        "server_seconds": sum(server_seconds.values()),
        "server_seconds_by_stage": server_seconds,
        "server_wire_seconds": stats["server_wire_seconds"],
        "client_seconds_total": total_client,
        "client_seconds_per_client": total_client / n,
        "client_seconds_by_stage": dict(stats["client_seconds"]),
        "client_wire_seconds_total": stats["client_wire_seconds"],
        "train_seconds_excluded": train_seconds[0],
        "bytes_up": bytes_up,
        "bytes_up_by_stage": dict(stats["bytes_up"]),
        "bytes_down": sum(stats["bytes_down"].values()),
        "upload_bytes_per_coordinate": bytes_up / (n * dim),
        "masked_vector_bytes": stats["masked_vector_bytes"],
        "masked_vector_bytes_per_coordinate": stats["masked_vector_bytes"] / (n * dim),
        "messages": stats["messages"],
        "wall_seconds": wall,
        "max_abs_error_of_mean": float(np.max(np.abs(mean - expected))),
        "upload_counting": (
            "client->server replies as Flower's grid pushes them: message header protobuf "
            "(message_to_proto of the content-free message) + every nested "
            "InflatableObject.deflate(); masked vectors travel as ndarray_to_bytes int64"
        ),
    }
