"""The server side of the Flower adapter: :func:`run_round` and :class:`FlowerSession` over a ``Grid``.

The loop is :func:`protocols.driver.drive`, the same as :func:`protocols.simulate`'s;
this module is the transport (:class:`GridTransport`): one Flower message per
node per step, pushed and pulled through the ``Grid``, client ids mapped to node ids
and replies to the messages they answer.

:class:`FlowerSession` keeps one server session across Flower rounds, the
deployment's counterpart of :class:`protocols.SimulatedSession`: a
multi-round SecAgg/SecAgg+ session (``rounds=R``) runs its key setup with its
first round, and each later round is the server's ``start()`` (a
:class:`~protocols.secagg.messages.NextRound` to each participant) followed by
the masked input and the unmasking (and the consistency check when actively
secure): 2 round trips after the setup, 3 with the consistency check.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, RecordDict
from flwr.app import Message as FlowerMessage
from flwr.serverapp import Grid

from secagg.randomness import RandomSource

from ... import wire
from ...base import AggregationProtocol, ServerResult
from ...driver import Delivery, RoundByRound, drive
from ...errors import LocalProtocolError, ProtocolAborted, WireFormatError
from ...simulate import Stats
from .records import MESSAGE_TYPE, RECORD, frame, unframe

__all__ = [
    "POLL_INTERVAL",
    "FlowerRound",
    "FlowerSession",
    "GridTransport",
    "run_round",
    "wait_for_nodes",
]

POLL_INTERVAL = 0.2
"""Default seconds between two pulls for a step's replies (a pull is one small request)."""


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
        round_trips: steps (one push, pulls until answered) the round took.
        failures: node id -> why it was dropped (a Flower error, no reply
            before the timeout, or a message the server refused).
        input_seconds: CPU seconds the clients report for their ``input_fn``
            (e.g. local training), summed; not part of ``stats``.
        round: the round number the protocol messages carried.
        session_round: the round's index in its session (0: it ran the key setup).
        setup: the part of ``stats`` spent in the protocol's ``SETUP_STAGES``
            (:meth:`protocols.Stats.share`: bytes up and down, client and server
            seconds; zeros after a session's first round).
    """

    result: ServerResult
    nodes: dict[int, int]
    stats: Stats
    round_trips: int
    failures: dict[int, str] = field(default_factory=dict)
    input_seconds: float = 0.0
    round: int = 0
    session_round: int = 0
    setup: dict[str, float] = field(default_factory=dict)

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
    rng: RandomSource | None = None,
    ttl: float | None = None,
    poll_interval: float = POLL_INTERVAL,
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
        poll_interval: seconds between pulls for replies (see
            :meth:`GridTransport.exchange`).

    Returns:
        A :class:`FlowerRound`. Raises :class:`~protocols.ProtocolAborted`
        (naming the dropped nodes) if the round ends without a result. This is
        the first round of a :class:`FlowerSession`, which runs the later
        rounds of a multi-round configuration.
    """
    session = FlowerSession(
        grid,
        proto,
        node_ids,
        dim,
        round=round,
        timeout=timeout,
        name=name,
        rng=rng,
        ttl=ttl,
        poll_interval=poll_interval,
    )
    return session.run_round(content)


class FlowerSession(RoundByRound):
    """One protocol session over a fixed cohort of Flower nodes, run round by round.

    The deployment's :class:`protocols.SimulatedSession`: a single-round
    protocol runs one :meth:`run_round` (what :func:`run_round` does); a
    multi-round SecAgg/SecAgg+ configuration (``rounds=R``) runs the key setup
    with its first round and then up to ``R - 1`` more rounds over the nodes
    still in the session (:meth:`participants`), each costing only the masked
    input and the unmasking (plus the consistency check when actively
    secure). The nodes keep their client sessions in their node state between
    rounds (:class:`~protocols.adapters.flower.ClientHandler`). Round ``i`` of
    the session carries round number ``round + i``: a caller that runs other
    sessions on the same nodes in between must number them beyond
    ``round + R - 1`` (a node refuses a new session that could share a round
    number with one it started before).

    A node that drops in a round (no reply, a Flower error, a refused message)
    is out of the session for good: the server never lists it again, and a
    node that missed a round refuses the next (its session is not at that
    round). When a group would fall below its threshold, :attr:`can_continue`
    is False and the caller starts a new session (a new setup).

    Args: as for :func:`run_round`; ``node_ids`` is the session's cohort.
    """

    def __init__(
        self,
        grid: Grid,
        proto: AggregationProtocol,
        node_ids: Sequence[int] | Mapping[int, int],
        dim: int,
        *,
        round: int = 0,
        timeout: float | None = None,
        name: str | None = None,
        rng: RandomSource | None = None,
        ttl: float | None = None,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self.grid, self.proto, self.dim = grid, proto, dim
        self.nodes = _client_map(node_ids)
        self.cohort = tuple(sorted(self.nodes))
        self.first_round, self.timeout, self.ttl = round, timeout, ttl
        self.name = name or proto.NAME
        self.poll_interval = poll_interval
        self.rounds_run = 0
        self._rng = rng
        self._server: Any = None
        self._closed = False

    @property
    def next_round(self) -> int:
        """The round number the next round's messages carry."""
        return self.first_round + self.rounds_run

    def participant_nodes(self) -> list[int]:
        """Flower node ids of :meth:`participants`."""
        return [self.nodes[c] for c in self.participants()]

    def run_round(
        self, content: RecordDict | Mapping[int, RecordDict] | None = None
    ) -> FlowerRound:
        """Run the session's next round; ``content`` goes with its first message to each node.

        Raises :class:`~protocols.ProtocolAborted` if the round aborts (the
        session is then over), :class:`~protocols.LocalProtocolError` if no
        round can run any more.
        """
        participants = self.participants()
        if not participants:
            raise LocalProtocolError("this session can run no further round: start a new one")
        round_ = self.next_round
        wall0 = time.perf_counter()
        stats = Stats(clients=len(participants))
        if self._server is None:
            t0 = time.thread_time()
            self._server = self.proto.server(
                sorted(self.nodes), self.dim, rng=self._rng, round=round_
            )
            stats._add("server", "setup", time.thread_time() - t0)
        index = self.rounds_run
        self.rounds_run += 1
        transport = GridTransport(
            self.grid,
            dict(self.nodes),  # participants, and left-out clients told they are out
            name=self.name,
            round=round_,
            dim=self.dim,
            timeout=self.timeout,
            content=content,
            ttl=self.ttl,
            poll_interval=self.poll_interval,
        )
        server = self._server
        dropped = drive(server, transport, stats, cpu_clock=time.thread_time, drop_refused=True)
        stats.wall_seconds = time.perf_counter() - wall0
        failures = {self.nodes[cid]: why for cid, why in dropped.items()}
        if server.aborted:
            listed = ", ".join(f"{n}: {why}" for n, why in failures.items()) or "none"
            raise ProtocolAborted(f"{server.abort_reason} (dropped nodes: {listed})")
        return FlowerRound(
            server.result,
            dict(self.nodes),
            stats,
            transport.round_trips,
            failures,
            transport.input_seconds,
            round=round_,
            session_round=index,
            setup=stats.share(self.proto.SETUP_STAGES),
        )

    def close(self) -> None:
        """End the session on the server side: it runs no further round (the nodes'
        sessions are refused from then on, since no round of theirs follows)."""
        super().close()


class GridTransport:
    """The driver's transport over a Flower ``Grid`` (see the package docstring).

    Each step pushes one Flower message per node (its protocol messages
    framed together) and pulls the replies; the round's first message to a
    node also carries the caller's ``content``. A reply belongs to the node
    whose message it answers. A node whose message Flower would not take, or
    that replies with a Flower error (e.g. the SuperLink's report that the
    node went away), a client-side refusal or a malformed reply, or not at
    all within ``timeout``, is reported lost.
    """

    def __init__(
        self,
        grid: Grid,
        nodes: Mapping[int, int],
        *,
        name: str,
        round: int,
        dim: int,
        timeout: float | None,
        content: RecordDict | Mapping[int, RecordDict] | None,
        ttl: float | None,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self.grid, self.nodes, self.name = grid, dict(nodes), name
        self.poll_interval = poll_interval
        self.round, self.dim, self.timeout, self.content, self.ttl = (
            round,
            dim,
            timeout,
            content,
            ttl,
        )
        self.client_of = {n: c for c, n in self.nodes.items()}
        self.first = set(self.nodes)  # clients whose next message opens the round
        self.round_trips = 0
        self.input_seconds = 0.0

    def _content_for(self, cid: int) -> RecordDict | None:
        if cid not in self.first:
            return None
        self.first.discard(cid)
        # A RecordDict is itself a Mapping (of records): check it first.
        content = self.content
        if isinstance(content, Mapping) and not isinstance(content, RecordDict):
            return content.get(self.nodes[cid])
        return content

    def exchange(self, batch: list[tuple[int, bytes]]) -> Delivery:
        batches: dict[int, list[bytes]] = defaultdict(list)
        for cid, payload in batch:
            batches[cid].append(payload)
        flower_messages = [
            FlowerMessage(
                _with_content(
                    ConfigRecord(
                        {
                            "protocol": self.name,
                            "round": self.round,
                            "dim": self.dim,
                            "messages": frame(payloads),
                        }
                    ),
                    self._content_for(cid),
                ),
                dst_node_id=self.nodes[cid],
                message_type=MESSAGE_TYPE,
                group_id=str(self.round),
                ttl=self.ttl,
            )
            for cid, payloads in batches.items()
        ]
        sent = self._send_and_receive(flower_messages)
        self.round_trips += 1
        delivery = Delivery()
        answered: set[int] = set()
        for cid, reply in sent.replies:
            if cid not in batches or cid in answered:
                continue  # not a reply to this step
            answered.add(cid)
            if reply.has_error():
                delivery.lost[cid] = f"Flower error {reply.error.code}: {reply.error.reason}"
                continue
            try:
                record = reply.content.config_records[RECORD]
                if "error" in record:
                    delivery.lost[cid] = f"client refused: {record['error']!s}"
                    continue
                payloads = unframe(record["messages"])
                stage, seconds = str(record.get("cpu_stage")), _seconds(record, "cpu_seconds")
                self.input_seconds += _seconds(record, "input_seconds")
            except (KeyError, TypeError, ValueError, WireFormatError) as exc:
                delivery.lost[cid] = f"malformed reply: {exc}"
                continue
            delivery.client_seconds[stage] = delivery.client_seconds.get(stage, 0.0) + seconds
            delivery.messages += [(cid, payload) for payload in payloads]
        for cid, why in sent.unsent.items():
            delivery.lost.setdefault(cid, why)
        for cid in set(batches) - answered - set(delivery.lost):
            delivery.lost[cid] = f"no reply within {self.timeout} s"
        return delivery

    def _send_and_receive(self, messages: list[FlowerMessage]) -> _Exchange:
        """Push ``messages``, pull replies until each is answered or ``timeout`` passes.

        Replies are matched to clients by the message they answer
        (``reply_to_message_id``), never by their source node: Flower's own
        error reply for a node that died carries the SuperLink's node id (0),
        not the node's. Polls every ``poll_interval`` seconds (Flower's
        ``Grid.send_and_receive`` sleeps 3 s between pulls on the deployment
        engine, which is most of a step's latency).
        """
        dst = [self.client_of[m.metadata.dst_node_id] for m in messages]
        ids = list(self.grid.push_messages(messages))
        waiting: dict[str, int] = {}
        out = _Exchange()
        for cid, message, mid in zip(dst, messages, ids, strict=False):
            mid = mid or message.metadata.message_id
            if mid:
                waiting[str(mid)] = cid
            else:
                out.unsent[cid] = "Flower could not push the message"
        for cid in dst[len(ids) :]:
            out.unsent.setdefault(cid, "Flower could not push the message")
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while waiting:
            for reply in self.grid.pull_messages(list(waiting)):
                answers = reply.metadata.reply_to_message_id
                if answers in waiting:
                    out.replies.append((waiting.pop(answers), reply))
            if not waiting or (deadline is not None and time.monotonic() >= deadline):
                break
            pause = self.poll_interval
            if deadline is not None:
                pause = min(pause, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)
        return out


@dataclass
class _Exchange:
    """One step's replies, by client id, and the clients whose message Flower refused."""

    replies: list[tuple[int, FlowerMessage]] = field(default_factory=list)
    unsent: dict[int, str] = field(default_factory=dict)


def _seconds(record: ConfigRecord, key: str) -> float:
    """A CPU-time entry of a client's reply (0 if absent); TypeError if it is not a number."""
    value = record.get(key, 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{key} is not a number")
    return float(value)
