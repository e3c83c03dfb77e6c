"""Run any aggregation protocol inside Flower, over its Message API (tested with flwr 1.41).

The adapter only moves bytes. Every protocol message is made and checked by
the same sessions as in :func:`protocols.simulate`; Flower carries them, and
this module maps client ids to Flower node ids and keeps each client session
between messages. Works for SecAgg, SecAggPlus, Paillier, CKKS, Plaintext and
``DifferentiallyPrivate(...)`` around any of them.

Server side, in a ``ServerApp``'s main function::

    from protocols.adapters import flower as fa

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        nodes = fa.wait_for_nodes(grid, 10)
        for r in range(rounds):
            out = fa.run_round(grid, proto, nodes, dim, round=r, timeout=60.0,
                               content=RecordDict({"model": ArrayRecord(...)}))
            out.result.total, out.survivor_nodes, out.stats.bytes_up

Client side, a ``ClientApp`` (or the handler inside your own ClientApp)::

    app = fa.make_client_app(proto, input_fn)          # input_fn(message, context) -> vector
    # or: app.train(fa.ACTION)(fa.ClientHandler(proto, input_fn))

Transport. One Flower ``Message`` per node per protocol step, of type
``"train.secagg_fl"`` (:data:`MESSAGE_TYPE`), ``group_id = str(round)``. Its
content holds a ConfigRecord :data:`RECORD` = ``{"protocol": name, "round":
r, "dim": d, "messages": framed}``, where ``framed`` is every protocol message
for that node, length-prefixed (:func:`secagg.framing.length_prefixed`), and,
in the round's first message to each node only, the caller's own records
(``content=``, e.g. the global model). The reply carries ``{"messages":
framed, "stage": ..., "cpu_seconds": ..., "input_seconds": ...}`` under the
same name, or ``{"error": why}`` if the client ended its session (it fails
closed).

Client state. Flower keeps a ClientApp's state only in ``context.state``, and
a ClientApp may run in a different process for each message, so after every
message the handler stores the session's snapshot (:mod:`protocols.snapshot`)
in ``context.state[STATE_RECORD]`` and restores it on the next one; a
finished or failed session is deleted. Round numbers must increase within a
Flower run: a node refuses to open a round that is not later than the last
one it opened, so it never runs two sessions of one round. **The snapshot holds the client's
secrets.** Flower keeps node state on the SuperNode, which never sends it to
the SuperLink; if your deployment persists or ships node state elsewhere,
pass ``snapshot_key=`` (32 bytes, or a function of the context returning
them) to encrypt it with AES-256-GCM. Never roll node state back to an
earlier snapshot (:mod:`protocols.snapshot` explains why).

Dropouts and deadlines. ``run_round`` sends each step with
``grid.send_and_receive(..., timeout=timeout)``. A node that replies with a
Flower error (its ClientApp raised, e.g. because its session refused the
server's message) or does not reply before ``timeout`` is dropped for the
rest of the round: the adapter never sends to it again. When nothing is left
in flight, the adapter calls ``server.close_stage()``: the protocol goes on
with whoever answered, or aborts if too few did (DESIGN: dropouts are the
driver's decision, never a timer inside a session).

Authentication. A protocol message's ``sender`` is a claim; the adapter
accepts a message only if it arrived in the reply of the node mapped to that
client id, and drops the node otherwise. Flower authenticates nodes to the
SuperLink (SuperNode authentication) in a deployment; the simulation engine
does not need to.

Size. Protocol messages travel as ``bytes`` in a ConfigRecord, which Flower
does not split into chunks as it does arrays; that is fine for the vectors
of a few million coordinates Flower's 512 MB gRPC limit allows, with room
to spare for SecAgg's 4-byte ring elements.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

try:
    from flwr.app import ConfigRecord, Context, RecordDict
    from flwr.app import Message as FlowerMessage
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "protocols.adapters.flower needs Flower's Message API (flwr.app, flwr.serverapp, "
        "flwr.clientapp; tested with flwr 1.41): pip install 'secagg-fl[flower]'"
    ) from exc

from secagg.framing import length_prefixed, split_length_prefixed

from .. import wire
from ..base import AggregationProtocol, ServerResult
from ..errors import (
    LocalProtocolError,
    ProtocolAborted,
    ProtocolError,
    RemoteProtocolError,
    WireFormatError,
)
from ..messages import Abort, Message, RoundStart
from ..simulate import Stats

__all__ = [
    "ACTION",
    "LAST_ROUND_RECORD",
    "MESSAGE_TYPE",
    "RECORD",
    "STATE_RECORD",
    "ClientHandler",
    "FlowerRound",
    "InputFromRecord",
    "make_client_app",
    "run_round",
    "wait_for_nodes",
]

ACTION = "secagg_fl"
"""The ClientApp action the handler is registered under (``@app.train(ACTION)``)."""
MESSAGE_TYPE = f"train.{ACTION}"
"""Flower message type of every protocol step."""
RECORD = "secagg-fl"
"""Name of the ConfigRecord that carries protocol messages (both directions)."""
STATE_RECORD = "secagg-fl.session"
"""Name of the ConfigRecord in ``context.state`` holding the node's session snapshot."""
LAST_ROUND_RECORD = "secagg-fl.last-round"
"""Name of the ConfigRecord in ``context.state`` holding the last round the node started."""

InputFn = Callable[[FlowerMessage, Context], np.ndarray]
KeySource = bytes | Callable[[Context], bytes] | None


def _frame(payloads: Iterable[bytes]) -> bytes:
    return length_prefixed(*payloads)


def _unframe(data: object) -> list[bytes]:
    if not isinstance(data, bytes):
        raise WireFormatError(f"protocol messages must be bytes, got {type(data).__name__}")
    try:
        return split_length_prefixed(data)
    except ValueError as exc:
        raise WireFormatError(f"malformed message batch: {exc}") from None


# -- server side ------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowerRound:
    """What :func:`run_round` returns.

    Attributes:
        result: the server session's :class:`~protocols.ServerResult`.
        nodes: client id -> Flower node id, for every invited client.
        stats: protocol bytes and CPU seconds, as :class:`protocols.Stats`
            (bytes are protocol messages only, not Flower's envelopes; server
            seconds are the CPU time of the thread driving the server
            session; client seconds are what the clients report).
        round_trips: ``send_and_receive`` calls the round took.
        failures: node id -> why it was dropped (a Flower error, no reply
            before the timeout, or a message the server refused).
        input_seconds: CPU seconds the clients report for their ``input_fn``
            (e.g. local training), summed; not part of ``stats``.
    """

    result: ServerResult
    nodes: dict[int, int]
    stats: Stats
    round_trips: int
    failures: dict[int, str] = field(default_factory=dict)
    input_seconds: float = 0.0

    @property
    def total(self) -> np.ndarray:
        return self.result.total

    @property
    def survivors(self) -> list[int]:
        """Client ids whose inputs are in the total."""
        return list(self.result.survivors)

    @property
    def events(self) -> tuple:
        """DP events caused by the round (as :attr:`protocols.SimulationResult.events`)."""
        return self.result.events

    @property
    def survivor_nodes(self) -> list[int]:
        """Flower node ids whose inputs are in the total."""
        return [self.nodes[c] for c in self.result.survivors]


def wait_for_nodes(grid: Grid, count: int, *, timeout: float = 120.0) -> list[int]:
    """Block until ``count`` nodes are connected; return their ids, sorted.

    Nodes register asynchronously (in the simulation engine too), so a
    ServerApp that reads ``grid.get_node_ids()`` at once may see none.
    """
    deadline = time.monotonic() + timeout
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= count:
            return nodes
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(nodes)} of {count} Flower nodes connected")
        time.sleep(0.1)


def _client_map(node_ids: Sequence[int] | Mapping[int, int]) -> dict[int, int]:
    if isinstance(node_ids, Mapping):
        mapping = {int(c): int(n) for c, n in node_ids.items()}
    else:
        mapping = {cid: int(n) for cid, n in enumerate(node_ids)}
    wire.check_ids(list(mapping), "client ids")
    if len(set(mapping.values())) != len(mapping):
        raise ValueError("two client ids map to the same Flower node")
    if not mapping:
        raise ValueError("node_ids must name at least one node")
    return mapping


def _with_content(own: ConfigRecord, extra: RecordDict | None) -> RecordDict:
    content = RecordDict()
    if extra is not None:
        for name, record in extra.items():
            if name == RECORD:
                raise ValueError(f"content may not use the record name {RECORD!r}")
            content[name] = record
    content[RECORD] = own
    return content


def run_round(
    grid: Grid,
    proto: AggregationProtocol,
    node_ids: Sequence[int] | Mapping[int, int],
    dim: int,
    *,
    round: int = 0,
    timeout: float | None = None,
    content: RecordDict | Mapping[int, RecordDict] | None = None,
    name: str | None = None,
    rng=None,
    ttl: float | None = None,
) -> FlowerRound:
    """Run one aggregation round over a Flower ``Grid``; return its result.

    Args:
        grid: the ServerApp's grid.
        proto: the protocol configuration (the clients must have the same one).
        node_ids: Flower node ids to invite (client ids are their positions),
            or a mapping client id -> node id.
        dim: the length of every client's vector.
        round: the round number carried in every protocol message (and the
            Flower ``group_id``).
        timeout: seconds to wait for each step's replies; a node that has not
            answered by then is dropped for the rest of the round. ``None``
            waits for every reply (a node failure still comes back as a
            Flower error reply).
        content: records sent with the round's first message to each node
            (e.g. the model to train on): one RecordDict for all, or one per
            node id.
        name: the protocol's name in the clients' protocol table (default
            ``proto.NAME``); see :class:`ClientHandler`.
        rng: randomness of the server session (default: the OS CSPRNG).
        ttl: Flower message time-to-live (default: Flower's).

    Returns:
        A :class:`FlowerRound`. Raises :class:`~protocols.ProtocolAborted`
        (naming the dropped nodes) if the round ends without a result.
    """
    nodes = _client_map(node_ids)
    client_of = {n: c for c, n in nodes.items()}
    name = name or proto.NAME
    stats = Stats(clients=len(nodes))
    failures: dict[int, str] = {}
    gone: set[int] = set()
    first = set(nodes)  # clients whose next message opens the round (and carries `content`)
    round_trips = 0
    input_seconds = 0.0
    wall0 = time.perf_counter()

    def server_call(fn, *args) -> list[Message]:
        stage = server.stage
        t0 = time.thread_time()
        out = fn(*args)
        stats._add("server", stage, time.thread_time() - t0)
        return out

    def drop(cid: int, why: str) -> None:
        gone.add(cid)
        failures.setdefault(nodes[cid], why)

    def exchange(outbox: list[Message]) -> list[Message]:
        """One step: deliver ``outbox`` (one Flower message per node), feed the replies."""
        nonlocal round_trips, input_seconds
        batches: dict[int, list[bytes]] = defaultdict(list)
        for m in outbox:
            if m.recipient not in gone:
                batches[m.recipient].append(m.to_bytes())
        if not batches:
            return []
        flower_messages = []
        for cid, payloads in batches.items():
            record = ConfigRecord(
                {"protocol": name, "round": round, "dim": dim, "messages": _frame(payloads)}
            )
            extra = None
            if cid in first:
                first.discard(cid)
                # A RecordDict is itself a Mapping (of records): check it first.
                per_node = isinstance(content, Mapping) and not isinstance(content, RecordDict)
                extra = content.get(nodes[cid]) if per_node else content  # type: ignore[union-attr]
            flower_messages.append(
                FlowerMessage(
                    _with_content(record, extra),
                    dst_node_id=nodes[cid],
                    message_type=MESSAGE_TYPE,
                    group_id=str(round),
                    ttl=ttl,
                )
            )
            stats.bytes_sent["server"] += sum(map(len, payloads))
            stats.bytes_received["client"] += sum(map(len, payloads))
            stats.messages += len(payloads)
        replies = list(grid.send_and_receive(flower_messages, timeout=timeout))
        round_trips += 1
        out: list[Message] = []
        answered = set()
        for reply in replies:
            cid = client_of.get(reply.metadata.src_node_id)
            if cid is None or cid not in batches or cid in answered:
                continue  # not a reply to this step
            answered.add(cid)
            if reply.has_error():
                drop(cid, f"Flower error {reply.error.code}: {reply.error.reason}")
                continue
            try:
                record = reply.content.config_records[RECORD]
                if "error" in record:
                    drop(cid, f"client refused: {record['error']}")
                    continue
                payloads = _unframe(record["messages"])
                stats._add(
                    "client", str(record.get("cpu_stage")), float(record.get("cpu_seconds", 0.0))
                )
                input_seconds += float(record.get("input_seconds", 0.0))
            except (KeyError, TypeError, ValueError, WireFormatError) as exc:
                drop(cid, f"malformed reply: {exc}")
                continue
            for payload in payloads:
                try:
                    msg = Message.from_bytes(payload)
                    if msg.sender != cid:
                        raise RemoteProtocolError(
                            f"node {nodes[cid]} (client {cid}) sent a message as client {msg.sender}"
                        )
                    stats.bytes_sent["client"] += len(payload)
                    stats.bytes_received["server"] += len(payload)
                    stats.messages += 1
                    out += server_call(server.receive, msg)
                except RemoteProtocolError as exc:
                    # The server session is unchanged; stop talking to that node.
                    drop(cid, f"refused message: {exc}")
                    break
        for cid in set(batches) - answered:
            drop(cid, f"no reply within {timeout} s")
        return out

    server = proto.server(sorted(nodes), dim, rng=rng, round=round)
    outbox = server_call(server.start)
    while not server.finished:
        # Nothing left to send means nothing is in flight: the stage is over.
        outbox = exchange(outbox) if outbox else server_call(server.close_stage)
    exchange(outbox)  # e.g. Abort messages: let live clients drop their sessions
    stats.wall_seconds = time.perf_counter() - wall0
    if server.aborted:
        dropped = ", ".join(f"{n}: {why}" for n, why in failures.items()) or "none"
        raise ProtocolAborted(f"{server.abort_reason} (dropped nodes: {dropped})")
    return FlowerRound(server.result, nodes, stats, round_trips, failures, input_seconds)


# -- client side ------------------------------------------------------------------------


ProtocolSource = (
    AggregationProtocol | Mapping[str, AggregationProtocol] | Callable[[str], AggregationProtocol]
)


def _protocol_table(protos: ProtocolSource) -> dict[str, AggregationProtocol] | None:
    """The fixed name -> config table, or None when ``protos`` is a factory."""
    if isinstance(protos, AggregationProtocol):
        return {protos.NAME: protos}
    if isinstance(protos, Mapping):
        table = dict(protos)
        if table and all(isinstance(v, AggregationProtocol) for v in table.values()):
            return table
    elif callable(protos):
        return None
    raise TypeError(
        "protocols must be a protocol config, a non-empty name -> config mapping, "
        "or a function name -> config"
    )


class InputFromRecord:
    """An ``input_fn`` that reads the client's vector from an ArrayRecord of the round's
    first message (``content[record][array]``), e.g. what the server sent it."""

    def __init__(self, record: str, array: str = "x") -> None:
        self.record, self.array = record, array

    def __call__(self, message: FlowerMessage, context: Context) -> np.ndarray:
        return message.content.array_records[self.record][self.array].numpy()


class ClientHandler:
    """The client side of :func:`run_round`: a ClientApp function ``(message, context) -> Message``.

    Args:
        protocols: the protocol configuration this client runs; or a mapping
            name -> configuration if the server may choose one per round (it
            names it, see ``run_round(name=...)``; a client never runs a
            configuration it was not given); or a function ``name -> config``
            for configurations made per round from public parameters the
            server puts in the name (e.g. a plan, the cohort size, the noise
            multiplier). The function is the client's policy: it should
            refuse (raise ValueError) what the client does not accept, e.g.
            no DP, or plaintext. Sessions still check the server's config
            digest against the configuration the client built.
        input_fn: ``input_fn(message, context) -> 1-D float vector``: the
            client's input (e.g. its model update), called once per round
            with the round's first message, which carries the server's
            ``content`` records.
        snapshot_key: encrypt the stored session snapshot with this 32-byte
            key, or with ``snapshot_key(context)``; see the module docstring.
        rng: randomness for the client sessions (default: the OS CSPRNG; a
            deterministic one is for tests only).

    A message the session refuses (a RemoteProtocolError: it fails closed),
    an unknown protocol name, or a step for which the node holds no session
    ends the node's session and is answered with an ``"error"`` entry, which
    the server treats as the node dropping out. Other exceptions (e.g. from
    ``input_fn``) propagate; Flower turns them into an error reply, with the
    same effect on the server.
    """

    def __init__(
        self,
        protocols: ProtocolSource,
        input_fn: InputFn,
        *,
        snapshot_key: KeySource = None,
        rng=None,
    ) -> None:
        self.protocols = _protocol_table(protocols)
        self.factory = None if self.protocols is not None else protocols
        self._made: dict[str, AggregationProtocol] = {}  # the factory's configs, by name
        self.input_fn = input_fn
        self.snapshot_key = snapshot_key
        self.rng = rng

    def _resolve(self, name: object) -> AggregationProtocol:
        if not isinstance(name, str):
            raise LocalProtocolError("the protocol name must be a string")
        if self.protocols is not None:
            proto = self.protocols.get(name)
            if proto is None:
                raise LocalProtocolError(f"this client does not run protocol {name!r}")
            return proto
        if name not in self._made:
            try:
                proto = self.factory(name)  # type: ignore[misc]
            except (ValueError, TypeError, KeyError) as exc:
                raise LocalProtocolError(f"this client refuses protocol {name!r}: {exc}") from exc
            if not isinstance(proto, AggregationProtocol):
                raise LocalProtocolError(f"no protocol configuration for {name!r}")
            if len(self._made) >= 64:  # one per round is typical: keep the cache small
                self._made.clear()
            self._made[name] = proto
        return self._made[name]

    def _key(self, context: Context) -> bytes | None:
        return self.snapshot_key(context) if callable(self.snapshot_key) else self.snapshot_key

    def __call__(self, message: FlowerMessage, context: Context) -> FlowerMessage:
        record = message.content.config_records.get(RECORD)
        if record is None:
            raise ValueError(f"message carries no {RECORD!r} record: not a protocol step")
        name, round_, dim = record["protocol"], record["round"], record["dim"]
        try:
            proto = self._resolve(name)
            incoming = [Message.from_bytes(p) for p in _unframe(record["messages"])]
            cpu, input_cpu, stage, session, out = self._step(
                proto, name, round_, dim, incoming, message, context
            )
        except ProtocolError as exc:
            # Fail closed: the session is gone for good. Reply (rather than raise) so
            # that Flower keeps the updated node state; it drops the state of an app
            # that raised. The server treats the error as this node dropping out.
            self._forget(context)
            reply = ConfigRecord({"messages": b"", "stage": "aborted", "error": str(exc)})
            return FlowerMessage(RecordDict({RECORD: reply}), reply_to=message)
        except BaseException:
            self._forget(context)  # (lost if Flower discards the state; nothing was sent)
            raise
        if session is None or session.finished:
            self._forget(context)
        else:
            snapshot = session.snapshot(key=self._key(context))
            context.state[STATE_RECORD] = ConfigRecord(
                {"protocol": name, "round": round_, "snapshot": snapshot}
            )
        reply = ConfigRecord(
            {
                "messages": _frame(m.to_bytes() for m in out),
                "stage": "none" if session is None else session.stage,
                "cpu_seconds": cpu,
                "cpu_stage": stage,
                "input_seconds": input_cpu,
            }
        )
        return FlowerMessage(RecordDict({RECORD: reply}), reply_to=message)

    def _step(self, proto, name, round_, dim, incoming, message, context):
        """Feed one step's messages.

        Returns (protocol CPU seconds, input_fn CPU seconds, the stage the
        step started in, the session, the messages to send).
        """
        t0 = time.thread_time()
        input_cpu = 0.0
        out: list[Message] = []
        if (
            incoming
            and all(isinstance(m, Abort) for m in incoming)
            and not self._holds(name, round_, context)
        ):
            return 0.0, 0.0, "none", None, out  # the session already finished: nothing to abort
        if incoming and isinstance(incoming[0], RoundStart):
            # A new round replaces whatever session the node held. Round numbers must
            # grow: a client never runs two sessions of one round (a server could
            # otherwise collect shares of a peer under two different claims).
            last = context.state.config_records.get(LAST_ROUND_RECORD)
            if last is not None and round_ <= last["round"]:
                raise LocalProtocolError(
                    f"round {round_} does not follow round {last['round']} on this node"
                )
            context.state[LAST_ROUND_RECORD] = ConfigRecord({"round": round_})
            session = proto.client(incoming[0].recipient, dim, rng=self.rng, round=round_)
            stage = session.stage
            out += session.start()
            out += session.receive(incoming[0])
            if not session.finished:
                t1 = time.thread_time()
                x = self.input_fn(message, context)  # the user's training is not protocol time
                input_cpu = time.thread_time() - t1
                t0 += input_cpu
                out += session.provide_input(x)
            incoming = incoming[1:]
        else:
            if not self._holds(name, round_, context):
                raise LocalProtocolError(f"this node holds no {name!r} session of round {round_}")
            stored = context.state.config_records[STATE_RECORD]
            session = proto.restore_client(stored["snapshot"], rng=self.rng, key=self._key(context))
            stage = session.stage
        for m in incoming:
            out += session.receive(m)
        return time.thread_time() - t0, input_cpu, stage, session, out

    @staticmethod
    def _holds(name: str, round_: int, context: Context) -> bool:
        stored = context.state.config_records.get(STATE_RECORD)
        return (
            stored is not None and stored.get("protocol") == name and stored.get("round") == round_
        )

    @staticmethod
    def _forget(context: Context) -> None:
        if STATE_RECORD in context.state:
            del context.state[STATE_RECORD]


def make_client_app(
    protocols: ProtocolSource,
    input_fn: InputFn,
    *,
    snapshot_key: KeySource = None,
    rng=None,
) -> ClientApp:
    """A ClientApp whose ``train.secagg_fl`` action is a :class:`ClientHandler`."""
    app = ClientApp()
    app.train(ACTION)(ClientHandler(protocols, input_fn, snapshot_key=snapshot_key, rng=rng))
    return app
