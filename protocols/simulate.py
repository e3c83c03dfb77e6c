"""An in-process simulator that drives real sessions through serialized bytes.

Every message crosses as ``to_bytes()`` / ``from_bytes()``, exactly as it would
over a network, so the byte counts are the real wire cost. The loop is
:func:`protocols.driver.drive`, the same as the Flower adapter's; this module
is the transport: client sessions hosted in this process or in forked
workers. Dropouts follow the rule of docs/design.md ("Sessions and the
driver"): a client named for a stage sends nothing from that stage on (the
transport reports it lost), and the driver closes a stage once no more
messages are in flight. CPU seconds are measured per role and per stage with
``time.process_time`` (in the worker processes when ``workers > 1``).
"""

from __future__ import annotations

import itertools
import multiprocessing
import struct
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from multiprocessing import resource_tracker, shared_memory
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from secagg.identity import IdentityKeyPair, Roster, enroll
from secagg.randomness import DeterministicRandom, RandomSource, SystemRandom

from . import wire
from .base import AggregationProtocol, ClientInterface, ServerResult
from .driver import Delivery, RoundByRound, drive
from .errors import LocalProtocolError, ProtocolAborted
from .messages import Message

__all__ = ["SimulatedSession", "SimulationResult", "Stats", "simulate"]


@dataclass
class Stats:
    """Cost of one simulated round.

    ``bytes_sent``/``bytes_received`` and ``seconds`` are keyed by role
    (``"client"``, ``"server"``); client figures are totals over all clients.
    ``seconds_by_stage[role][stage]`` splits the CPU time by the stage of the
    message whose handling caused the work (``"start"`` for RoundStart,
    ``"setup"`` for session creation, ``"input"`` for handing a later round
    of a multi-round session its input); a server's ``close_stage()`` is filed
    under the stage it closes. ``bytes_by_stage[role][stage]`` splits the
    bytes each role sent by the stage of the message.
    """

    clients: int = 0
    bytes_sent: dict[str, int] = field(default_factory=lambda: {"client": 0, "server": 0})
    bytes_received: dict[str, int] = field(default_factory=lambda: {"client": 0, "server": 0})
    seconds: dict[str, float] = field(default_factory=lambda: {"client": 0.0, "server": 0.0})
    seconds_by_stage: dict[str, dict[str, float]] = field(
        default_factory=lambda: {"client": defaultdict(float), "server": defaultdict(float)}
    )
    bytes_by_stage: dict[str, dict[str, int]] = field(
        default_factory=lambda: {"client": defaultdict(int), "server": defaultdict(int)}
    )
    messages: int = 0
    wall_seconds: float = 0.0

    @property
    def bytes_up(self) -> int:
        """Bytes sent by all clients to the server."""
        return self.bytes_sent["client"]

    @property
    def bytes_down(self) -> int:
        """Bytes sent by the server to all clients."""
        return self.bytes_sent["server"]

    @property
    def client_seconds(self) -> float:
        return self.seconds["client"]

    @property
    def server_seconds(self) -> float:
        return self.seconds["server"]

    def _add(self, role: str, stage: str, seconds: float) -> None:
        self.seconds[role] += seconds
        self.seconds_by_stage[role][stage] += seconds

    def _count_bytes(self, sender: str, stage: str, n: int) -> None:
        """One message of ``n`` bytes sent by ``sender`` ("client" or "server")."""
        self.bytes_sent[sender] += n
        self.bytes_by_stage[sender][stage] += n
        self.messages += 1

    def share(self, stages: Iterable[str]) -> dict[str, float]:
        """The cost of ``stages`` alone (e.g. a protocol's ``SETUP_STAGES``): bytes up and
        down, client and server CPU seconds."""
        names = set(stages)

        def total(table: Mapping[str, float]) -> float:
            return float(sum(v for k, v in table.items() if k in names))

        return {
            "bytes_up": total(self.bytes_by_stage["client"]),
            "bytes_down": total(self.bytes_by_stage["server"]),
            "client_seconds": total(self.seconds_by_stage["client"]),
            "server_seconds": total(self.seconds_by_stage["server"]),
        }

    def as_dict(self) -> dict:
        return {
            "clients": self.clients,
            "bytes_sent": dict(self.bytes_sent),
            "bytes_received": dict(self.bytes_received),
            "seconds": dict(self.seconds),
            "seconds_by_stage": {r: dict(s) for r, s in self.seconds_by_stage.items()},
            "bytes_by_stage": {r: dict(s) for r, s in self.bytes_by_stage.items()},
            "messages": self.messages,
            "wall_seconds": self.wall_seconds,
        }


@dataclass(frozen=True)
class SimulationResult:
    """``total``: sum of the survivors' inputs (float64); ``survivors``: sorted ids;
    ``stats``: :class:`Stats`; ``result``: the server's full :class:`ServerResult`."""

    total: np.ndarray
    survivors: list[int]
    stats: Stats
    result: ServerResult

    @property
    def events(self) -> tuple:
        """DP events caused by the round (empty without DP)."""
        return self.result.events


def _rng(seed: int | None, *path: object) -> RandomSource:
    if seed is None:
        return SystemRandom()
    return DeterministicRandom("simulate/" + "/".join(str(p) for p in (seed, *path)))


# -- client hosts: where client sessions live ------------------------------------

_ITEM = struct.Struct(">II")  # client id, payload length
_TIMING = struct.Struct(">Id")  # stage-name length, seconds


def _encode_batch(items: Iterable[tuple[int, bytes]]) -> bytes:
    out = bytearray()
    for cid, payload in items:
        out += _ITEM.pack(cid, len(payload))
        out += payload
    return bytes(out)


def _decode_batch(data: bytes) -> list[tuple[int, bytes]]:
    items, pos = [], 0
    while pos < len(data):
        cid, n = _ITEM.unpack_from(data, pos)
        pos += _ITEM.size
        items.append((cid, data[pos : pos + n]))
        pos += n
    return items


class _ClientHost:
    """Runs a set of client sessions; returns outgoing bytes and CPU time per stage."""

    def __init__(
        self,
        proto: AggregationProtocol,
        dim: int,
        inputs: Mapping[int, np.ndarray],
        seed: int | None,
        round: int,
        identities: Mapping[int, IdentityKeyPair] | None,
    ) -> None:
        self.sessions: dict[int, ClientInterface] = {}
        self.outbox: list[tuple[int, bytes]] = []
        self.timing: dict[str, float] = defaultdict(float)
        for cid, x in inputs.items():
            t0 = time.process_time()
            rng = _rng(seed, "client", cid)
            if identities is None:
                session = proto.client(cid, dim, rng=rng, round=round)
            else:  # an actively secure config (see _bind_identities)
                maker: Any = proto
                session = maker.client(cid, dim, rng=rng, round=round, identity=identities[cid])
            self.sessions[cid] = session
            self._collect(cid, session.start())
            self._collect(cid, session.provide_input(x))
            self.timing["setup"] += time.process_time() - t0

    def provide(self, inputs: Mapping[int, np.ndarray]) -> None:
        """Hand the next round's inputs to the sessions (a multi-round session)."""
        for cid, x in inputs.items():
            t0 = time.process_time()
            self._collect(cid, self.sessions[cid].provide_input(x))
            self.timing["input"] += time.process_time() - t0

    def _collect(self, cid: int, messages: list[Message]) -> None:
        for m in messages:
            self.outbox.append((cid, m.to_bytes()))

    def deliver(self, batch: list[tuple[int, bytes]]) -> None:
        for cid, payload in batch:
            session = self.sessions[cid]
            stage = wire.read_header(payload).stage  # work is filed under what triggered it
            t0 = time.process_time()
            out = session.receive(payload)
            self._collect(cid, out)
            self.timing[stage] += time.process_time() - t0

    def drain(self) -> tuple[list[tuple[int, bytes]], dict[str, float]]:
        out, timing = self.outbox, dict(self.timing)
        self.outbox, self.timing = [], defaultdict(float)
        return out, timing


def _read_shared_inputs(request: bytes) -> dict[int, np.ndarray]:
    """A worker's rows of the parent's shared-memory input table (see _ProcessHosts.provide)."""
    name, header = request.split(b"\0", 1)
    dim, count = struct.unpack_from(">II", header)
    pairs = struct.unpack_from(f">{2 * count}I", header, 8)
    block = shared_memory.SharedMemory(name=name.decode())
    # Attaching registered the block with the resource tracker the fork shares with
    # the parent, which unlinks it; without this the tracker reports it leaked.
    resource_tracker.unregister(block._name, "shared_memory")  # type: ignore[attr-defined]
    try:
        rows = max(pairs[1::2], default=-1) + 1
        table = np.ndarray((max(rows, 0), dim), dtype="<f8", buffer=block.buf)
        out = {cid: table[row].copy() for cid, row in zip(pairs[::2], pairs[1::2], strict=True)}
        del table
    finally:
        block.close()
    return out


def _encode_timing(timing: Mapping[str, float]) -> bytes:
    out = bytearray(struct.pack(">I", len(timing)))
    for stage, seconds in timing.items():
        name = stage.encode()
        out += _TIMING.pack(len(name), seconds) + name
    return bytes(out)


def _decode_timing(data: bytes) -> tuple[dict[str, float], int]:
    (n,) = struct.unpack_from(">I", data)
    pos, timing = 4, {}
    for _ in range(n):
        length, seconds = _TIMING.unpack_from(data, pos)
        pos += _TIMING.size
        timing[data[pos : pos + length].decode()] = seconds
        pos += length
    return timing, pos


def _worker(
    conn: Connection,
    proto: AggregationProtocol,
    dim: int,
    inputs: Mapping[int, np.ndarray],
    seed: int | None,
    round: int,
    identities: Mapping[int, IdentityKeyPair] | None,
) -> None:
    # Runs in a forked process: sessions are built here and never leave it;
    # only wire bytes cross the pipe.
    try:
        host = _ClientHost(proto, dim, inputs, seed, round, identities)
        while True:
            request = conn.recv_bytes()
            if request == b"stop":
                return
            if request[:2] == b"in":
                host.provide(_read_shared_inputs(request[2:]))
            else:
                host.deliver(_decode_batch(request))
            out, timing = host.drain()
            # A header (timing and the sender of each message), then every message
            # on its own: one large concatenated reply would be copied twice more
            # on each side of the pipe (masked inputs are megabytes per round).
            ids = struct.pack(f">I{len(out)}I", len(out), *(cid for cid, _ in out))
            conn.send_bytes(b"ok" + _encode_timing(timing) + ids)
            for _, payload in out:
                conn.send_bytes(payload)
    except Exception as exc:  # report, don't hang the parent
        conn.send_bytes(b"er" + f"{type(exc).__name__}: {exc}".encode())


class _ProcessHosts:
    """Client sessions spread over worker processes (fork), one pipe each."""

    def __init__(
        self,
        proto: AggregationProtocol,
        dim: int,
        inputs: Mapping[int, np.ndarray],
        seed: int | None,
        round: int,
        workers: int,
        identities: Mapping[int, IdentityKeyPair] | None,
    ) -> None:
        ctx = multiprocessing.get_context("fork")
        ids = sorted(inputs)
        self.owner: dict[int, int] = {}
        self.conns: list[Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        for w in range(workers):
            mine = {cid: inputs[cid] for cid in ids[w::workers]}
            self.owner.update({cid: w for cid in mine})
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_worker, args=(child, proto, dim, mine, seed, round, identities), daemon=True
            )
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)
        self._pending: list[tuple[int, bytes]] = []
        self._timing: dict[str, float] = defaultdict(float)
        self.deliver([])  # collect what start() produced

    def deliver(self, batch: list[tuple[int, bytes]]) -> None:
        per_worker: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
        for cid, payload in batch:
            per_worker[self.owner[cid]].append((cid, payload))
        for w, conn in enumerate(self.conns):
            conn.send_bytes(_encode_batch(per_worker.get(w, [])))
        self._collect_replies()

    def _collect_replies(self) -> None:
        for conn in self.conns:
            reply = conn.recv_bytes()
            if reply[:2] != b"ok":
                raise RuntimeError(f"client worker failed: {reply[2:].decode(errors='replace')}")
            timing, pos = _decode_timing(reply[2:])
            for stage, seconds in timing.items():
                self._timing[stage] += seconds
            (count,) = struct.unpack_from(">I", reply, 2 + pos)
            senders = struct.unpack_from(f">{count}I", reply, 6 + pos)
            self._pending += [(cid, conn.recv_bytes()) for cid in senders]

    def drain(self) -> tuple[list[tuple[int, bytes]], dict[str, float]]:
        out, timing = self._pending, dict(self._timing)
        self._pending, self._timing = [], defaultdict(float)
        return out, timing

    def provide(self, inputs: Mapping[int, np.ndarray]) -> None:
        # One shared-memory block per round instead of every float vector through the
        # pipes (hundreds of MB at ML-100K size); the pipes carry only its name and rows.
        ids = list(inputs)
        dim = len(next(iter(inputs.values()))) if ids else 0
        block = shared_memory.SharedMemory(create=True, size=max(8 * dim * len(ids), 1))
        try:
            table = np.ndarray((len(ids), dim), dtype="<f8", buffer=block.buf)
            rows: dict[int, list[tuple[int, int]]] = defaultdict(list)
            for row, cid in enumerate(ids):
                table[row] = inputs[cid]
                rows[self.owner[cid]].append((cid, row))
            for w, conn in enumerate(self.conns):
                mine = rows.get(w, [])
                header = struct.pack(f">II{2 * len(mine)}I", dim, len(mine), *itertools.chain(*mine))
                conn.send_bytes(b"in" + block.name.encode() + b"\0" + header)
            self._collect_replies()
            del table
        finally:
            block.close()
            block.unlink()

    def close(self) -> None:
        for conn, proc in zip(self.conns, self.procs):
            try:
                conn.send_bytes(b"stop")
            except OSError:
                pass
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()


class _InlineHosts(_ClientHost):
    def close(self) -> None:
        pass


def simulate(
    proto: AggregationProtocol,
    inputs: Mapping[int, np.ndarray],
    dropout: Mapping[int, str] | None = None,
    seed: int | None = None,
    *,
    round: int = 0,
    workers: int = 1,
    identities: Mapping[int, IdentityKeyPair] | None = None,
) -> SimulationResult:
    """Run one aggregation round in-process through serialized messages.

    Args:
        proto: any protocol config (``protocols.SecAggPlus(...)``, ...).
        inputs: client id -> 1-D float vector; all of the same length.
        dropout: client id -> stage name; that client sends nothing from that
            stage on. Stage names are the protocol's ``DROPOUT_STAGES``.
        seed: makes the round reproducible (keys, masks, rounding) — FOR TESTS
            AND SIMULATIONS ONLY: with a seed every secret is predictable.
            ``None`` uses the OS CSPRNG.
        round: the round number carried in every message.
        workers: client sessions run in this many forked worker processes
            (``1`` runs everything in this process).
        identities: client id -> Ed25519 identity, for an actively secure
            config that has a roster (required then). A SecAgg/SecAgg+ config
            that names no variant (the default ``SecAgg()``) runs the actively
            secure one: the simulator enrols the cohort itself (simulated
            device registration: fresh identities, from ``seed`` if given, or
            the roster of ``identities``) and binds it with ``with_roster``.

    Returns:
        A :class:`SimulationResult`. Raises :class:`ProtocolAborted` (with the
        server's reason) if the round aborts, e.g. too few clients survive.
    """
    rounds = proto.rounds_per_session
    if rounds != 1:
        raise LocalProtocolError(
            f"{proto.NAME} with rounds={rounds} is a multi-round session: "
            "run it with protocols.SimulatedSession"
        )
    vectors, dim = _check_inputs(inputs)
    _check_workers(workers)
    session = SimulatedSession(
        proto, sorted(vectors), dim, seed=seed, round=round, workers=workers, identities=identities
    )
    try:
        return session.run_round(vectors, dropout)
    finally:
        session.close()


def _check_inputs(inputs: Mapping[int, np.ndarray]) -> tuple[dict[int, np.ndarray], int]:
    if not inputs:
        raise ValueError("inputs must name at least one client")
    vectors = {int(cid): np.asarray(x, dtype=np.float64) for cid, x in inputs.items()}
    dims = {v.shape for v in vectors.values()}
    if len(dims) != 1 or len(next(iter(dims))) != 1:
        raise ValueError(f"inputs must be 1-D vectors of one length, got shapes {sorted(dims)}")
    return vectors, next(iter(dims))[0]


def _check_workers(workers: object) -> None:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")


class SimulatedSession(RoundByRound):
    """One protocol session over a fixed cohort, run in this process round by round.

    A single-round protocol runs one :meth:`run_round` (what :func:`simulate`
    does). A multi-round SecAgg/SecAgg+ session (``rounds=R``) runs the key
    setup with its first round, then up to ``R - 1`` more rounds that each
    cost only the masked input and the unmasking; the client sessions (and
    their forked workers with ``workers > 1``) stay alive in between. Each
    round's :class:`Stats` are its own; the first round's include the setup
    stages (``Stats.share(proto.SETUP_STAGES)`` separates them).

    Args:
        proto, seed, round, workers, identities: as for :func:`simulate`;
            ``round`` is the first round's number, round ``i`` of the session
            carries ``round + i``.
        client_ids: the cohort, fixed for the session.
        dim: the length of every input.

    Call :meth:`close` (or use it as a context manager) to stop the workers.
    """

    def __init__(
        self,
        proto: AggregationProtocol,
        client_ids: Iterable[int],
        dim: int,
        *,
        seed: int | None = None,
        round: int = 0,
        workers: int = 1,
        identities: Mapping[int, IdentityKeyPair] | None = None,
    ) -> None:
        _check_workers(workers)
        self.cohort = wire.check_ids(list(client_ids))
        self.proto, self._bound = _bind_identities(proto, list(self.cohort), identities, seed)
        self.dim, self.seed, self.first_round, self.workers = dim, seed, round, workers
        self.rounds_run = 0
        self._server: Any = None
        self._hosts: _ProcessHosts | _InlineHosts | None = None
        self._transport: _HostsTransport | None = None
        self._closed = False

    def __enter__(self) -> SimulatedSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run_round(
        self, inputs: Mapping[int, np.ndarray], dropout: Mapping[int, str] | None = None
    ) -> SimulationResult:
        """Run the session's next round with ``inputs`` (exactly :meth:`participants`'s).

        ``dropout``: client id -> stage, as for :func:`simulate`; a client that
        drops is gone for the rest of the session. Raises
        :class:`ProtocolAborted` if the round aborts (the session is then
        over), :class:`LocalProtocolError` if no round can run any more.
        """
        vectors, dim = _check_inputs(inputs)
        if dim != self.dim:
            raise ValueError(f"inputs have {dim} values, the session {self.dim}")
        expected = set(self.participants())
        if not expected:
            raise LocalProtocolError("this session can run no further round: start a new one")
        if set(vectors) != expected:
            raise ValueError(
                "inputs must come from exactly the round's participants; missing "
                f"{sorted(expected - set(vectors))[:10]}, extra {sorted(set(vectors) - expected)[:10]}"
            )
        order = self.proto.DROPOUT_STAGES
        drop_at = {
            int(c): order.index(self.proto.check_dropout_stage(st))
            for c, st in (dropout or {}).items()
        }
        unknown = set(drop_at) - set(vectors)
        if unknown:
            raise ValueError(f"dropout names clients without inputs: {sorted(unknown)}")
        stats = Stats(clients=len(vectors))
        wall0 = time.perf_counter()
        if self._server is None:
            t0 = time.process_time()
            self._server = self.proto.server(
                self.cohort, self.dim, rng=_rng(self.seed, "server"), round=self.first_round
            )
            stats._add("server", "setup", time.process_time() - t0)
            args = (self.proto, self.dim, vectors, self.seed, self.first_round)
            self._hosts = (
                _ProcessHosts(*args, self.workers, self._bound)
                if self.workers > 1
                else _InlineHosts(*args, self._bound)
            )
            self._transport = _HostsTransport(self._hosts, drop_at, order)
        else:
            assert self._hosts is not None and self._transport is not None
            self._transport.drop_at = drop_at
            self._hosts.provide(vectors)
        server = self._server
        self.rounds_run += 1
        drive(
            server,
            self._transport,
            stats,
            cpu_clock=time.process_time,
            drop_refused=False,  # honest in-process clients: a refusal is a bug, raise it
        )
        stats.wall_seconds = time.perf_counter() - wall0
        if server.aborted:
            raise ProtocolAborted(server.abort_reason or "aborted")
        result = server.result
        if not isinstance(result, ServerResult):  # pragma: no cover - defensive
            raise LocalProtocolError("server produced no result")
        return SimulationResult(
            total=result.total, survivors=list(result.survivors), stats=stats, result=result
        )

    def close(self) -> None:
        """Stop the client hosts (their sessions and secrets are discarded); the
        session runs no further round."""
        super().close()
        if self._hosts is not None:
            self._hosts.close()
            self._hosts = None


def _bind_identities(
    proto: AggregationProtocol,
    cohort: list[int],
    identities: Mapping[int, IdentityKeyPair] | None,
    seed: int | None,
) -> tuple[AggregationProtocol, Mapping[int, IdentityKeyPair] | None]:
    """The config to run and the clients' identities (None: the protocol signs nothing)."""
    variant = getattr(proto, "variant", None)  # SecAgg/SecAgg+, also inside a DP wrapper
    if variant in (None, "semi-honest"):
        if identities is not None:
            raise LocalProtocolError(f"{proto.NAME} ({variant or 'no variant'}) takes no identities")
        return proto, None
    bindable: Any = proto
    if variant == "unbound":
        if identities is None:
            # Simulated device registration; a deployment registers real device keys.
            rng = None if seed is None else _rng(seed, "identities")
            roster, identities = enroll(cohort, rng=rng)
        else:
            roster = Roster({cid: identities[cid].public_key for cid in cohort})
        return bindable.with_roster(roster), identities
    if identities is None:
        raise LocalProtocolError(
            "this configuration has a roster: pass identities= (client id -> IdentityKeyPair)"
        )
    missing = sorted(set(cohort) - set(identities))
    if missing:
        raise LocalProtocolError(f"no identity for clients {missing[:10]}")
    return proto, identities


class _HostsTransport:
    """The driver's transport over client hosts, applying the simulated dropouts."""

    def __init__(
        self,
        hosts: _ProcessHosts | _InlineHosts,
        drop_at: Mapping[int, int],
        order: tuple[str, ...],
    ) -> None:
        self.hosts, self.drop_at, self.order = hosts, drop_at, order
        self.silenced: set[int] = set()

    def exchange(self, batch: list[tuple[int, bytes]]) -> Delivery:
        self.hosts.deliver(batch)
        out, timing = self.hosts.drain()
        delivery = Delivery(client_seconds=timing)
        for cid, payload in out:
            stage = wire.read_header(payload).stage
            drops_here = cid in self.drop_at and self.order.index(stage) >= self.drop_at[cid]
            if cid in self.silenced or drops_here:
                if cid not in self.silenced:
                    self.silenced.add(cid)  # the client is gone from here on
                    delivery.lost[cid] = f"simulated dropout at {stage!r}"
                continue
            delivery.messages.append((cid, payload))
        return delivery
