"""Shared helpers for the protocol tests: on-grid inputs and a byte-level driver.

The driver (:class:`Net`) moves every message between real sessions as bytes
(``to_bytes`` / ``from_bytes``), like a network would, and records what each
party sent, decoded from those bytes, so tests can inspect the traffic. It
is deliberately independent of :func:`protocols.simulate`.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Mapping

import numpy as np

import protocols
from protocols import Message, RemoteProtocolError, wire
from protocols.secagg import messages as sm  # noqa: F401  (registers the SecAgg wire types)
from secagg.randomness import DeterministicRandom

STAGES = ("advertise_keys", "share_keys", "masked_input", "unmasking")
# With the actively secure variant's stages, in order (the Net's dropout rule needs them all).
ALL_STAGES = ("advertise_keys", "reveal", "share_keys", "masked_input", "consistency", "unmasking")
SERVER = wire.SERVER


def min_bits(n: int) -> int:
    """The fewest bits whose encoder leaves at least one integer unit per client."""
    bits = 2
    while ((1 << (bits - 1)) - 1) // n < 1:
        bits += 1
    return bits


def q_max_of(n: int, bits: int) -> int:
    """Largest encoded magnitude, from the encoder's documented formula (independently)."""
    return ((1 << (bits - 1)) - 1) // n


def grid(n: int, bits: int, j: int) -> tuple[float, int]:
    """A clip making ``scale == 2**j`` exactly, and the largest usable |q|.

    The encoder computes ``scale = q_max / clip`` (an int divided by a float:
    ``float(q_max) / clip``), so ``clip = float(q_max) / 2**j`` gives exactly
    ``2**j``. Inputs ``q / 2**j`` are then exact floats, lie within the clip, and
    stochastic rounding has nothing to round, provided ``q`` is a float-exact
    integer with ``|q| <= min(q_max, float(q_max))`` (see :func:`grid_q`).
    """
    q_max = q_max_of(n, bits)
    clip = float(q_max) / 2.0**j
    assert float(q_max) / clip == 2.0**j
    return clip, min(q_max, int(float(q_max)))


def grid_q(q_cap: int, raw: int) -> int:
    """Map any integer ``raw`` in [-q_cap, q_cap] to a nearby float-exact integer in range."""
    shift = max(0, q_cap.bit_length() - 52)
    sign = -1 if raw < 0 else 1
    q = sign * ((abs(raw) >> shift) << shift)
    assert abs(q) <= q_cap and float(q) == q
    return q


def decode(data: bytes) -> Message:
    return Message.from_bytes(data)


class Net:
    """A synchronous byte-level driver of one server and its clients.

    ``dropout`` maps client id -> stage: the client sends nothing from that
    stage on. ``tamper(message) -> bytes | None`` may rewrite (or swallow, by
    returning None) any server -> client message before it is delivered.
    Client RemoteProtocolErrors are recorded in ``client_errors``; server
    errors propagate (an honest round must not produce any).
    """

    def __init__(
        self,
        proto,
        inputs: Mapping[int, np.ndarray],
        *,
        seed: object = 0,
        round: int = 0,
        client_protos: Mapping[int, object] | None = None,
        dropout: Mapping[int, str] | None = None,
        tamper: Callable[[Message], bytes | None] | None = None,
        provide_inputs: bool = True,
        identities: Mapping[int, object] | None = None,
    ) -> None:
        self.proto = proto
        self.inputs = {int(c): np.asarray(x, dtype=np.float64) for c, x in inputs.items()}
        self.dim = len(next(iter(self.inputs.values())))
        self.server = proto.server(
            sorted(self.inputs),
            self.dim,
            rng=DeterministicRandom(f"kit/{seed}/server"),
            round=round,
        )
        self.clients = {
            cid: (client_protos or {})
            .get(cid, proto)
            .client(
                cid,
                self.dim,
                rng=DeterministicRandom(f"kit/{seed}/client/{cid}"),
                round=round,
                **({} if identities is None else {"identity": identities[cid]}),
            )
            for cid in sorted(self.inputs)
        }
        self.dropout = dict(dropout or {})
        self.tamper = tamper
        self.silenced: set[int] = set()
        self.to_server: deque[bytes] = deque()
        self.to_clients: deque[tuple[int, bytes]] = deque()
        self.sent_by: dict[int, list[Message]] = defaultdict(list)  # client -> its messages
        self.server_sent: list[Message] = []
        self.client_errors: dict[int, RemoteProtocolError] = {}
        self._provide = provide_inputs
        self.started = False

    # -- plumbing ---------------------------------------------------------------
    def _from_client(self, cid: int, messages: list[Message]) -> None:
        for m in messages:
            data = m.to_bytes()
            decoded = decode(data)
            stage = type(decoded).STAGE
            if cid in self.silenced or (
                cid in self.dropout
                and ALL_STAGES.index(stage) >= ALL_STAGES.index(self.dropout[cid])
            ):
                self.silenced.add(cid)
                continue
            self.sent_by[cid].append(decoded)
            self.to_server.append(data)

    def _from_server(self, messages: list[Message]) -> None:
        for m in messages:
            data = m.to_bytes()
            self.server_sent.append(decode(data))
            self.to_clients.append((m.recipient, data))

    def start(self) -> None:
        self._from_server(self.server.start())
        for cid, client in self.clients.items():
            self._from_client(cid, client.start())
            if self._provide:
                self._from_client(cid, client.provide_input(self.inputs[cid]))
        self.started = True

    def deliver_to_server(self, data: bytes) -> list[Message]:
        out = self.server.receive(data)
        self._from_server(out)
        return out

    def deliver_to_client(self, cid: int, data: bytes) -> None:
        if cid in self.silenced:
            return
        if self.tamper is not None:
            data = self.tamper(decode(data))
            if data is None:
                return
        try:
            out = self.clients[cid].receive(data)
        except RemoteProtocolError as exc:
            self.client_errors[cid] = exc
            return
        self._from_client(cid, out)

    def flush(self) -> None:
        """Deliver everything in flight (and what it causes) without closing a stage."""
        while self.to_server or self.to_clients:
            while self.to_server:
                self.deliver_to_server(self.to_server.popleft())
            while self.to_clients:
                self.deliver_to_client(*self.to_clients.popleft())

    def run(self) -> Net:
        """Run the round to its end, closing each stage once nothing is in flight."""
        if not self.started:
            self.start()
        while True:
            self.flush()
            if self.server.finished:
                return self
            self._from_server(self.server.close_stage())

    def run_until_server_stage(self, stage: str) -> Net:
        """Run until the server enters ``stage`` (messages it just sent stay queued)."""
        if not self.started:
            self.start()
        while self.server.stage != stage:
            if self.server.finished:
                raise AssertionError(f"server finished ({self.server.stage}) before {stage!r}")
            if self.to_server:
                self.deliver_to_server(self.to_server.popleft())
            elif self.to_clients:
                self.deliver_to_client(*self.to_clients.popleft())
            else:
                self._from_server(self.server.close_stage())
        return self

    # -- inspection ---------------------------------------------------------------
    def sent(self, cid: int, kind: type[Message]) -> list[Message]:
        return [m for m in self.sent_by[cid] if isinstance(m, kind)]

    def all_sent(self, kind: type[Message]) -> list[Message]:
        return [m for ms in self.sent_by.values() for m in ms if isinstance(m, kind)]


def on_grid_inputs(n: int, dim: int, bits: int, j: int, rng: np.random.Generator):
    """Public (non-secret) test inputs on the quantization grid; returns (clip, q, x)."""
    clip, cap = grid(n, bits, j)
    q = {
        c: [grid_q(cap, int(v)) for v in rng.integers(-cap, cap, size=dim, endpoint=True)]
        for c in range(n)
    }
    x = {c: np.array([v / 2.0**j for v in q[c]], dtype=np.float64) for c in range(n)}
    return clip, q, x


def exact_sum(q: Mapping[int, list[int]], members) -> list[int]:
    members = list(members)
    dim = len(next(iter(q.values())))
    return [sum(q[c][i] for c in members) for i in range(dim)]


__all__ = [
    "SERVER",
    "STAGES",
    "Net",
    "decode",
    "exact_sum",
    "grid",
    "grid_q",
    "min_bits",
    "on_grid_inputs",
    "protocols",
    "q_max_of",
]
