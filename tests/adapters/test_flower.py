"""The Flower adapter (protocols.adapters.flower): same aggregates as protocols.simulate.

Two drivers run the same scenarios:

- an in-process ``Grid`` (``LocalGrid`` below) that calls the real ClientApp
  with a *copy* of each node's Context per message, as Flower's simulation
  engine does, and keeps the copy only if the app returned: fast, and it can
  lose replies to play timeouts;
- one Flower simulation (``flwr.simulation.run_simulation``, Ray backend, two
  actors) for the whole module, where client sessions live only in snapshots
  in ``context.state`` and every message may run in another process.

Inputs are on the quantization grid, so every exact protocol must return the
exact integer sum, equal to the simulator's; CKKS stays within its bound.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")  # read by flwr at import time
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # silences a Ray FutureWarning
pytest.importorskip(
    "flwr",
    reason="the Flower adapter needs flwr: pip install 'secagg-fl[flower]' (make test installs it)",
)

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Error, RecordDict
from flwr.app import Message as FlowerMessage
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

import protocols
from protocols.adapters import flower as fa
from secagg.framing import split_length_prefixed
from secagg.identity import enroll

BITS, J, DIM = 24, 4, 6


def grid_clip(n: int) -> float:
    """The clip that makes the encoder's scale exactly 2^J for ``n`` summands."""
    return float(((1 << (BITS - 1)) - 1) // n) / 2.0**J


@dataclass
class Scenario:
    name: str
    proto: protocols.AggregationProtocol
    n: int
    kind: str  # "int": exact integer sum; "float": exact float sum; "ckks"; "dp"
    dropout: dict[int, str] = field(default_factory=dict)

    def inputs(self, seed: int) -> dict[int, np.ndarray]:
        rng = np.random.default_rng(seed)
        if self.kind == "ckks":
            return {c: rng.uniform(-0.25, 0.25, DIM) for c in range(self.n)}
        if self.kind == "dp":  # on the grid, and within the DP clip (L2 norm <= 1)
            return {c: rng.integers(-4, 5, DIM).astype(np.float64) / 2**J for c in range(self.n)}
        cap = 1 << 16
        return {c: rng.integers(-cap, cap, DIM).astype(np.float64) / 2**J for c in range(self.n)}


def scenarios() -> list[Scenario]:
    dp_inner = protocols.SecAggPlus(semi_honest=True, bits=BITS, clip=grid_clip(4), k=2)
    return [
        Scenario("plaintext", protocols.Plaintext(), 4, "float"),
        Scenario(
            "secagg", protocols.SecAgg(semi_honest=True, bits=BITS, clip=grid_clip(4)), 4, "int"
        ),
        Scenario(
            "secagg+",
            protocols.SecAggPlus(semi_honest=True, bits=BITS, clip=grid_clip(5), k=2),
            5,
            "int",
        ),
        Scenario(
            "paillier", protocols.Paillier(key_bits=1024, bits=BITS, clip=grid_clip(1)), 4, "int"
        ),
        Scenario("ckks", protocols.CKKS(clip=1.0), 4, "ckks"),
        Scenario(
            "dp-central",
            protocols.DifferentiallyPrivate(dp_inner, "central", clip=1.0, noise_multiplier=1e-6),
            4,
            "dp",
        ),
        Scenario(
            "secagg+ drops",
            protocols.SecAggPlus(
                semi_honest=True, bits=BITS, clip=grid_clip(5), k=2, threshold=0.6
            ),
            5,
            "int",
            {2: "masked_input"},
        ),
        Scenario(
            "secagg drops late",
            # n = 5: at n = 4, threshold 0.5 is now 3 (a strict majority), and two drops leave 2.
            protocols.SecAgg(semi_honest=True, bits=BITS, clip=grid_clip(5), threshold=0.5),
            5,
            "int",
            {1: "unmasking", 3: "share_keys"},
        ),
        Scenario(
            "paillier drops",
            protocols.Paillier(key_bits=1024, bits=BITS, clip=grid_clip(1), min_clients=2),
            4,
            "int",
            {3: "masked_input"},
        ),
    ]


SCENARIOS = scenarios()
TABLE = {s.name: s.proto for s in SCENARIOS}


def build_client_app(table, snapshot_key=None) -> ClientApp:
    """The clients' app: the adapter's handler, plus a test hook that makes a node
    fail (raise, as a crashed client would) when the server reaches a given stage.

    Everything the nested function uses is importable or captured, so Ray can
    ship it to its actors by value.
    """
    handler = fa.ClientHandler(table, fa.InputFromRecord("x"), snapshot_key=snapshot_key)
    app = ClientApp()

    @app.train(fa.ACTION)
    def train(message: FlowerMessage, context: Context) -> FlowerMessage:
        record = message.content.config_records[fa.RECORD]
        plan = message.content.config_records.get("test-dropout")
        if plan is not None:
            context.state["test-dropout"] = ConfigRecord(
                {"stage": plan["stage"], "round": record["round"]}
            )
        mine = context.state.config_records.get("test-dropout")
        if mine is not None and mine["round"] == record["round"]:
            first = protocols.Message.from_bytes(split_length_prefixed(record["messages"])[0])
            # A client that drops at stage S sends nothing from S on: it dies when the
            # server's message of stage S arrives (RoundStart opens advertise_keys).
            stage = "advertise_keys" if first.STAGE == "start" else first.STAGE
            if stage == mine["stage"]:
                raise RuntimeError(f"test: node drops out at {stage}")
        return handler(message, context)

    return app


def content_for(scenario: Scenario, nodes: list[int], inputs) -> dict[int, RecordDict]:
    content = {}
    for cid, node in enumerate(nodes):
        records = RecordDict({"x": ArrayRecord({"x": Array(inputs[cid])})})
        if cid in scenario.dropout:
            records["test-dropout"] = ConfigRecord({"stage": scenario.dropout[cid]})
        content[node] = records
    return content


def check_against_simulate(scenario: Scenario, out: fa.FlowerRound, inputs) -> None:
    sim = protocols.simulate(scenario.proto, inputs, dropout=scenario.dropout, seed=0)
    assert out.survivors == sim.survivors
    assert out.survivor_nodes == [out.nodes[c] for c in sim.survivors]
    if scenario.kind == "int":
        exact = sum(np.round(inputs[c] * 2**J).astype(np.int64) for c in sim.survivors)
        np.testing.assert_array_equal(out.result.integer_total, exact)
        np.testing.assert_array_equal(out.result.integer_total, sim.result.integer_total)
        np.testing.assert_array_equal(out.total, sim.total)
    elif scenario.kind == "float":
        np.testing.assert_array_equal(out.total, sim.total)
    elif scenario.kind == "ckks":
        exact = sum(inputs[c] for c in sim.survivors)
        bound = scenario.proto.error_bound(len(sim.survivors))
        assert np.max(np.abs(out.total - exact)) <= bound
        assert np.max(np.abs(sim.total - exact)) <= bound
    else:  # central DP: same event as the simulator; noise std is 1e-6 of the clip
        assert out.result.events == sim.events
        assert np.max(np.abs(out.total - sim.total)) < 1e-3
    assert out.stats.bytes_up > 0 and out.stats.bytes_down > 0
    # One driver (protocols.driver) keeps both accounts: the same traffic, byte for
    # byte (but for CKKS, whose serialized ciphertexts vary in size with their noise).
    if scenario.kind != "ckks":
        assert out.stats.bytes_sent == sim.stats.bytes_sent
        assert out.stats.bytes_received == sim.stats.bytes_received
    assert out.stats.messages == sim.stats.messages
    failed = {out.nodes[c] for c in scenario.dropout}
    assert set(out.failures) == failed


# -- an in-process Grid ----------------------------------------------------------------


class LocalGrid(Grid):
    """Routes messages to a ClientApp in this process, the way the simulation engine
    does: each call gets a deep copy of the node's Context, which replaces the stored
    one only if the app returned (a raising app's state changes are lost)."""

    def __init__(self, app: ClientApp, n: int, *, lose=None, dies=None) -> None:
        self.app = app
        self.contexts = {
            1000 + i: Context(
                run_id=1,
                node_id=1000 + i,
                node_config={"partition-id": i},
                state=RecordDict(),
                run_config={},
            )
            for i in range(n)
        }
        self.lose = lose  # lose(message) -> True: the reply never arrives (a timeout)
        self.dies = dies  # dies(message) -> True: the SuperLink answers that the node is gone
        self.pending: dict[str, FlowerMessage] = {}
        self.calls = self.pulls = 0

    def set_run(self, run) -> None:  # pragma: no cover - not used by the adapter
        raise NotImplementedError

    @property
    def run(self):  # pragma: no cover
        raise NotImplementedError

    def create_message(self, *args, **kwargs):  # pragma: no cover
        raise NotImplementedError

    def get_node_ids(self):
        return list(self.contexts)

    def push_messages(self, messages):
        """Run the app at once and keep its reply until it is pulled."""
        self.calls += 1
        ids = []
        for message in messages:
            mid = uuid.uuid4().hex
            message.metadata.__dict__["_message_id"] = mid
            ids.append(mid)
            reply = self._answer(message)
            if reply is not None:
                self.pending[mid] = reply
        return ids

    def _answer(self, message):
        node = message.metadata.dst_node_id
        if self.lose is not None and self.lose(message):
            return None
        if self.dies is not None and self.dies(message):
            # What a SuperLink sends when the node went away: an error from node 0.
            return _superlink_error(message)
        context = copy.deepcopy(self.contexts[node])
        try:
            reply = self.app(message, context)
        except Exception as exc:
            return FlowerMessage(Error(code=2, reason=repr(exc)), reply_to=message)
        self.contexts[node] = context
        return reply

    def pull_messages(self, message_ids):
        self.pulls += 1
        return [self.pending.pop(m) for m in list(message_ids) if m in self.pending]

    def send_and_receive(self, messages, *, timeout=None):
        return self.pull_messages(self.push_messages(messages))


def _superlink_error(message):
    from flwr.app import Metadata
    from flwr.app.message import make_message

    metadata = Metadata(
        run_id=message.metadata.run_id,
        message_id="",
        src_node_id=0,
        dst_node_id=0,
        reply_to_message_id=message.metadata.message_id,
        group_id=message.metadata.group_id,
        message_type=message.metadata.message_type,
        created_at=message.metadata.created_at,
        ttl=0,
    )
    return make_message(metadata=metadata, error=Error(code=3, reason="node unavailable"))


@pytest.fixture
def task_identity():
    """Flower messages need a run and task id (run_simulation sets them)."""
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id)
    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 0
    yield
    TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id = saved


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_in_process_grid_matches_simulate(task_identity, scenario):
    grid = LocalGrid(build_client_app(TABLE), 6)
    nodes = sorted(grid.get_node_ids())[: scenario.n]
    inputs = scenario.inputs(7)
    out = fa.run_round(
        grid,
        scenario.proto,
        nodes,
        DIM,
        round=3,
        name=scenario.name,
        content=content_for(scenario, nodes, inputs),
    )
    check_against_simulate(scenario, out, inputs)
    # Finished sessions leave nothing behind; a node that died keeps its last snapshot
    # (Flower drops the state changes of an app that raised) but never hears more.
    for cid, node in enumerate(nodes):
        held = fa.state_record(scenario.name) in grid.contexts[node].state
        assert held == (cid in scenario.dropout and scenario.dropout[cid] != "advertise_keys")


@pytest.mark.parametrize(
    ("proto", "dropout"),
    [
        (
            protocols.SecAgg(semi_honest=True, bits=BITS, clip=grid_clip(4), threshold=3),
            {1: "share_keys", 2: "share_keys"},
        ),
        (protocols.Paillier(key_bits=1024, bits=BITS, clip=grid_clip(1)), {0: "unmasking"}),
    ],
    ids=["secagg-too-few-share", "paillier-decryptor-gone"],
)
def test_simulate_and_flower_abort_alike(task_identity, proto, dropout):
    """Both paths are the same driver: the same dropouts end the round the same way."""
    scenario = Scenario("abort", proto, 4, "int", dropout)
    inputs = scenario.inputs(5)
    with pytest.raises(protocols.ProtocolAborted) as sim:
        protocols.simulate(proto, inputs, dropout=dropout, seed=0)
    grid = LocalGrid(build_client_app({"abort": proto}), 4)
    nodes = sorted(grid.get_node_ids())
    with pytest.raises(protocols.ProtocolAborted) as flower:
        fa.run_round(
            grid,
            proto,
            nodes,
            DIM,
            round=1,
            name="abort",
            content=content_for(scenario, nodes, inputs),
        )
    reason, _, dropped = flower.value.reason.partition(" (dropped nodes: ")
    assert reason == sim.value.reason
    assert {int(part.split(":")[0]) for part in dropped.split(", ")} == {nodes[c] for c in dropout}


def test_round_trips_per_protocol(task_identity):
    expected = {"plaintext": 1, "secagg": 4, "secagg+": 4, "paillier": 3, "ckks": 3}
    grid = LocalGrid(build_client_app(TABLE), 5)
    for r, s in enumerate(s for s in SCENARIOS if s.name in expected):
        nodes = sorted(grid.get_node_ids())[: s.n]
        inputs = s.inputs(r)
        out = fa.run_round(
            grid, s.proto, nodes, DIM, round=r, name=s.name, content=content_for(s, nodes, inputs)
        )
        assert out.round_trips == expected[s.name], s.name
        assert out.stats.messages > 0 and out.stats.wall_seconds > 0


def test_sessions_live_in_context_state_between_steps(task_identity):
    """Each step restores the session from the node's state (encrypted if asked)."""
    key = bytes(range(32))
    seen = []

    class Spy(LocalGrid):
        def push_messages(self, messages):
            ids = super().push_messages(messages)
            seen.append(
                {
                    n: c.state.config_records.get(fa.state_record("secagg"))
                    for n, c in self.contexts.items()
                }
            )
            return ids

    s = SCENARIOS[1]  # secagg
    grid = Spy(build_client_app(TABLE, snapshot_key=key), 4)
    nodes = sorted(grid.get_node_ids())
    inputs = s.inputs(1)
    out = fa.run_round(
        grid, s.proto, nodes, DIM, round=1, name=s.name, content=content_for(s, nodes, inputs)
    )
    check_against_simulate(s, out, inputs)
    middle = seen[1][nodes[0]]
    assert middle is not None and middle["protocol"] == "secagg" and middle["round"] == 1
    with pytest.raises(protocols.SnapshotError, match="encrypted"):
        s.proto.restore_client(middle["snapshot"])
    assert s.proto.restore_client(middle["snapshot"], key=key).stage == "share_keys"
    assert all(v is None for v in seen[-1].values())  # completed: nothing kept


def _masked_input_to(victim: int):
    """Whether a Flower message carries the server's masked-input step to ``victim``."""

    def hit(message) -> bool:
        record = message.content.config_records[fa.RECORD]
        first = protocols.Message.from_bytes(split_length_prefixed(record["messages"])[0])
        return message.metadata.dst_node_id == victim and first.STAGE == "masked_input"

    return hit


def test_timeouts_are_dropouts(task_identity):
    """A reply that never comes (the step's timeout passed) drops the node."""
    s = SCENARIOS[2]  # secagg+ with 5 clients
    victim = 1002

    grid = LocalGrid(build_client_app(TABLE), 5, lose=_masked_input_to(victim))
    nodes = sorted(grid.get_node_ids())
    inputs = s.inputs(2)
    out = fa.run_round(
        grid,
        s.proto,
        nodes,
        DIM,
        round=1,
        name=s.name,
        timeout=0.5,
        content=content_for(s, nodes, inputs),
    )
    sim = protocols.simulate(s.proto, inputs, dropout={2: "masked_input"}, seed=0)
    assert out.survivors == sim.survivors == [0, 1, 3, 4]
    np.testing.assert_array_equal(out.result.integer_total, sim.result.integer_total)
    assert "no reply" in out.failures[victim]


def test_a_dead_node_is_named_by_the_message_its_error_answers(task_identity):
    """The SuperLink's error reply for a node that went away comes from node 0; the
    adapter charges it to the node whose message it answers, and the round goes on."""
    s = SCENARIOS[2]  # secagg+ with 5 clients
    victim = 1003

    grid = LocalGrid(build_client_app(TABLE), 5, dies=_masked_input_to(victim))
    nodes = sorted(grid.get_node_ids())
    inputs = s.inputs(3)
    out = fa.run_round(
        grid, s.proto, nodes, DIM, round=1, name=s.name, content=content_for(s, nodes, inputs)
    )
    sim = protocols.simulate(s.proto, inputs, dropout={3: "masked_input"}, seed=0)
    assert out.survivors == sim.survivors == [0, 1, 2, 4]
    np.testing.assert_array_equal(out.result.integer_total, sim.result.integer_total)
    assert set(out.failures) == {victim}
    assert out.failures[victim] == "Flower error 3: node unavailable"


def test_replies_are_pulled_until_every_message_is_answered(task_identity):
    """A reply that arrives after the first pull still counts (timeout=None waits)."""

    class Slow(LocalGrid):
        def pull_messages(self, message_ids):
            self.pulls += 1
            ready = [m for m in list(message_ids) if m in self.pending][:1]  # one per pull
            return [self.pending.pop(m) for m in ready]

    s = SCENARIOS[0]
    grid = Slow(build_client_app(TABLE), 4)
    nodes = sorted(grid.get_node_ids())
    inputs = s.inputs(4)
    out = fa.run_round(
        grid,
        s.proto,
        nodes,
        DIM,
        round=1,
        name=s.name,
        content=content_for(s, nodes, inputs),
        poll_interval=0.0,
    )
    check_against_simulate(s, out, inputs)
    assert not out.failures
    assert grid.pulls >= 4 * out.round_trips


def test_clients_refuse_what_they_do_not_run(task_identity):
    grid = LocalGrid(build_client_app(TABLE), 4)
    nodes = sorted(grid.get_node_ids())
    inputs = SCENARIOS[0].inputs(0)
    content = {
        n: RecordDict({"x": ArrayRecord({"x": Array(inputs[i])})}) for i, n in enumerate(nodes)
    }
    # A name the clients do not know, and a known name with another configuration.
    with pytest.raises(protocols.ProtocolAborted, match="does not run protocol"):
        fa.run_round(grid, protocols.Plaintext(), nodes, DIM, round=1, name="nope", content=content)
    other = protocols.SecAgg(semi_honest=True, bits=BITS + 1, clip=grid_clip(4))
    with pytest.raises(protocols.ProtocolAborted, match="config digest mismatch"):
        fa.run_round(grid, other, nodes, DIM, round=2, name="secagg", content=content)
    # Rounds must move forward on every node.
    out = fa.run_round(
        grid, protocols.Plaintext(), nodes, DIM, round=5, name="plaintext", content=content
    )
    assert out.survivors == [0, 1, 2, 3]
    with pytest.raises(protocols.ProtocolAborted, match="does not follow round 5"):
        fa.run_round(
            grid, protocols.Plaintext(), nodes, DIM, round=5, name="plaintext", content=content
        )


def test_server_refuses_spoofed_senders(task_identity):
    """A node whose reply carries another client's message is dropped."""
    inner = build_client_app(TABLE)
    app = ClientApp()

    @app.train(fa.ACTION)
    def train(message, context):
        reply = inner(message, context)
        if context.node_id != 1001:
            return reply
        record = reply.content.config_records[fa.RECORD]
        forged = [
            protocols.Message.from_bytes(p) for p in split_length_prefixed(record["messages"])
        ]
        forged = [dataclasses.replace(m, sender=0) for m in forged]
        record["messages"] = fa.records.frame(m.to_bytes() for m in forged)
        return reply

    s = SCENARIOS[0]  # plaintext
    grid = LocalGrid(app, 4)
    nodes = sorted(grid.get_node_ids())
    inputs = s.inputs(3)
    out = fa.run_round(
        grid, s.proto, nodes, DIM, round=1, name=s.name, content=content_for(s, nodes, inputs)
    )
    assert out.survivors == [0, 2, 3]
    assert "sent a message as client 0" in out.failures[1001]


def test_client_ids_can_be_mapped_explicitly(task_identity):
    s = SCENARIOS[3]  # paillier: the decryptor is the smallest client id
    grid = LocalGrid(build_client_app(TABLE), 4)
    nodes = sorted(grid.get_node_ids())
    mapping = {10: nodes[3], 20: nodes[2], 30: nodes[1], 40: nodes[0]}
    inputs = s.inputs(4)
    content = {
        mapping[c]: RecordDict({"x": ArrayRecord({"x": Array(inputs[i])})})
        for i, c in enumerate(sorted(mapping))
    }
    out = fa.run_round(grid, s.proto, mapping, DIM, round=1, name=s.name, content=content)
    assert out.survivors == [10, 20, 30, 40] and out.nodes == mapping
    exact = sum(np.round(x * 2**J).astype(np.int64) for x in inputs.values())
    np.testing.assert_array_equal(out.result.integer_total, exact)


def _identity_app(proto, identities):
    """A ClientApp running ``proto`` whose node ``1000 + i`` holds ``identities.get(i)``."""
    handler = fa.ClientHandler(
        proto,
        fa.InputFromRecord("x"),
        identity=lambda context: identities.get(int(context.node_config["partition-id"])),
    )
    app = ClientApp()
    app.train(fa.ACTION)(handler)
    return app


@pytest.mark.parametrize(
    "cls", [protocols.SecAgg, protocols.SecAggPlus], ids=["secagg", "secagg+"]
)
def test_active_rounds_sign_with_each_nodes_identity(task_identity, cls):
    # Client ids are the roster's (here 0..4), mapped to Flower's node ids; node 1002 holds
    # client 3's key instead of its own, so its session refuses to start (the roster binds
    # client 2 to another key) and it is charged with the failure; the others sum exactly.
    roster, identities = enroll(range(5))
    proto = cls(roster=roster, bits=BITS, clip=grid_clip(5))
    keys_held = {i: identities[i] for i in range(5)} | {2: identities[3]}
    grid = LocalGrid(_identity_app(proto, keys_held), 5)
    nodes = sorted(grid.get_node_ids())
    mapping = {c: nodes[c] for c in range(5)}
    inputs = Scenario("active", proto, 5, "int").inputs(7)
    content = {nodes[c]: RecordDict({"x": ArrayRecord({"x": Array(inputs[c])})}) for c in range(5)}
    out = fa.run_round(grid, proto, mapping, DIM, round=1, content=content)
    assert out.survivors == [0, 1, 3, 4]
    assert list(out.failures) == [nodes[2]] and "roster" in out.failures[nodes[2]]
    exact = sum(np.round(inputs[c] * 2**J).astype(np.int64) for c in out.survivors)
    np.testing.assert_array_equal(out.result.integer_total, exact)
    # A node that holds no identity key at all refuses the round as well.
    grid = LocalGrid(_identity_app(proto, {c: identities[c] for c in (0, 1, 3, 4)}), 5)
    assert sorted(grid.get_node_ids()) == nodes  # LocalGrid's node ids are fixed
    out = fa.run_round(grid, proto, mapping, DIM, round=1, content=content)
    assert out.survivors == [0, 1, 3, 4] and "identity key" in out.failures[nodes[2]]


def test_one_record_dict_goes_to_every_node(task_identity):
    """``content`` as one RecordDict (not per node): every node gets the same vector."""
    grid = LocalGrid(build_client_app(TABLE), 3)
    nodes = sorted(grid.get_node_ids())
    x = np.arange(DIM, dtype=np.float64)
    content = RecordDict({"x": ArrayRecord({"x": Array(x)})})
    out = fa.run_round(grid, protocols.Plaintext(), nodes, DIM, round=1, content=content)
    np.testing.assert_array_equal(out.total, 3 * x)


def test_clients_can_build_configurations_from_the_name(task_identity):
    """A protocol factory: the server names public round parameters, the client builds
    the configuration from them and may refuse; the config digest still has to match."""

    def factory(name: str) -> protocols.AggregationProtocol:
        kind, bits = name.split(":")
        if kind == "plaintext":
            raise ValueError("this client never sends its update in the clear")
        return protocols.SecAgg(semi_honest=True, bits=int(bits), clip=grid_clip(4))

    seconds = []

    def input_fn(message, context):
        seconds.append(1)
        return message.content.array_records["x"]["x"].numpy()

    grid = LocalGrid(fa.make_client_app(factory, input_fn), 4)
    nodes = sorted(grid.get_node_ids())
    s = SCENARIOS[1]
    inputs = s.inputs(5)
    content = content_for(s, nodes, inputs)
    out = fa.run_round(grid, s.proto, nodes, DIM, round=1, name=f"secagg:{BITS}", content=content)
    check_against_simulate(s, out, inputs)
    assert len(seconds) == 4 and out.input_seconds >= 0.0
    with pytest.raises(protocols.ProtocolAborted, match="never sends its update in the clear"):
        fa.run_round(grid, protocols.Plaintext(), nodes, DIM, round=2, name="plaintext:0")
    with pytest.raises(protocols.ProtocolAborted, match="config digest mismatch"):
        fa.run_round(grid, s.proto, nodes, DIM, round=3, name=f"secagg:{BITS + 1}", content=content)


def _load_example():
    import importlib.util

    path = Path(__file__).parents[2] / "examples" / "flower_recsys.py"
    spec = importlib.util.spec_from_file_location("flower_recsys_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("protocol", ["plaintext", "secagg+"])
def test_example_trainer_matches_the_in_process_trainer(task_identity, protocol):
    """examples/flower_recsys.py on the in-process Grid: local training on the nodes,
    the trainer's server update and ledger. Plaintext gives the in-process trainer's
    RMSE exactly; SecAgg+ (random rounding) nearly."""
    import argparse

    from recsys.federated import FederatedConfig, FederatedTrainer

    ex = _load_example()
    args = argparse.Namespace(
        data="synthetic",
        users=12,
        items=15,
        ratings_per_user=6,
        test_fraction=0.2,
        seed=0,
        protocol=protocol,
        q=1.0,
        local_epochs=1,
        bits=32,
        key_bits=1024,
        epsilon=None,
        dp_mode=None,
    )
    spec = ex.DataSpec(args)
    train, test, clients = spec.load()
    config = FederatedConfig(n_factors=2, seed=0)
    app = ex.build_client_app(ex.protocol_of_round, ex.LocalTraining(spec, config))
    grid = LocalGrid(app, len(clients))
    nodes_of_user = {int(clients[p]): n for p, n in ex.partitions(grid, len(clients)).items()}
    kw = dict(train=train, test=test, policy=ex.make_policy(args), config=config, rounds=2)
    flower = ex.make_flower_trainer(grid, nodes_of_user, None, **kw).run()
    local = FederatedTrainer(**kw).run()
    assert [r.survivors for r in flower] == [len(clients)] * 2
    assert [r.bytes_down for r in flower] == [r.bytes_down for r in local]
    rmse_f, rmse_l = np.array(flower.column("rmse")), np.array(local.column("rmse"))
    if protocol == "plaintext":
        np.testing.assert_array_equal(rmse_f, rmse_l)
        assert [r.bytes_up for r in flower] == [r.bytes_up for r in local]
    else:
        np.testing.assert_allclose(rmse_f, rmse_l, rtol=1e-4)


def test_adapter_package_does_not_import_flower():
    import subprocess
    import sys

    code = "import sys, protocols, protocols.adapters; assert 'flwr' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


# -- one Flower simulation on the Ray backend ----------------------------------------------


def test_flower_simulation_matches_simulate():
    """Every scenario, one round each, in one Flower simulation on the Ray backend.

    One test rather than one per scenario: Ray start-up dominates (about 20 s),
    and under pytest-xdist a module fixture would start it once per worker.
    """
    from flwr.simulation import run_simulation

    results: dict[str, object] = {}
    inputs = {s.name: s.inputs(100 + i) for i, s in enumerate(SCENARIOS)}
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        all_nodes = fa.wait_for_nodes(grid, 5)
        for r, s in enumerate(SCENARIOS):
            nodes = all_nodes[: s.n]
            try:
                results[s.name] = fa.run_round(
                    grid,
                    s.proto,
                    nodes,
                    DIM,
                    round=r,
                    name=s.name,
                    timeout=120.0,
                    content=content_for(s, nodes, inputs[s.name]),
                )
            except Exception as exc:  # reported per scenario below
                results[s.name] = exc

    run_simulation(
        server,
        build_client_app(TABLE),
        num_supernodes=5,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": 2, "include_dashboard": False},
        },
    )
    problems = []
    for s in SCENARIOS:
        out = results.get(s.name)
        try:
            if isinstance(out, Exception):
                raise out
            assert isinstance(out, fa.FlowerRound), f"scenario did not run: {out!r}"
            check_against_simulate(s, out, inputs[s.name])
        except Exception as exc:
            problems.append(f"{s.name}: {type(exc).__name__}: {exc}")
    assert not problems, "\n".join(problems)
