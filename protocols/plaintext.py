"""The plaintext baseline: clients send their vectors in the clear; the server sums.

Same interface as every other protocol, so the cost and accuracy of privacy
can be measured against it. It offers no privacy whatsoever: the server sees
every input.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from secagg.randomness import RandomSource

from . import snapshot, wire
from .base import (
    AggregationProtocol,
    ClientSession,
    Completed,
    ServerResult,
    ServerSession,
    State,
    check_config_digest,
    check_dim,
    check_input,
)
from .cost import CostEstimate
from .errors import LocalProtocolError, RemoteProtocolError
from .events import DeadlinePassed
from .messages import Message, RoundStart, register

__all__ = ["PlainInput", "Plaintext", "PlaintextClient", "PlaintextServer"]


@register
@dataclass(frozen=True, eq=False)
class PlainInput(Message):
    """Client → server: the input vector as float64."""

    vector: np.ndarray

    TYPE: ClassVar[int] = 8
    STAGE: ClassVar[str] = "masked_input"
    SCHEMA: ClassVar = (("vector", wire.F64_VECTOR),)


@dataclass(frozen=True)
class Plaintext(AggregationProtocol):
    """No protection: the baseline. Dropout stage: ``"masked_input"`` (the input stage)."""

    NAME: ClassVar[str] = "plaintext"
    DROPOUT_STAGES: ClassVar[tuple[str, ...]] = ("masked_input",)
    SECURE_SUM: ClassVar[bool] = False

    def _digest_fields(self) -> tuple[bytes, ...]:
        return ()

    def cost(self, n_clients: float, dim: int) -> CostEstimate:
        """8 bytes per value up, the round start down; summing is ~2e-8 s per value."""
        n = max(float(n_clients), 1.0)
        return CostEstimate(8.0 * dim, 200.0, 2e-8 * dim, 2e-8 * dim * n)

    def server(
        self,
        client_ids: Iterable[int],
        dim: int,
        *,
        rng: RandomSource | None = None,
        round: int = 0,
    ) -> PlaintextServer:
        return PlaintextServer(self, client_ids, dim, round=round)

    def client(
        self, client_id: int, dim: int, *, rng: RandomSource | None = None, round: int = 0
    ) -> PlaintextClient:
        return PlaintextClient(self, client_id, dim, round=round)


@snapshot.state
@dataclass
class _Idle(State):
    NAME: ClassVar[str] = "round_start"


@snapshot.state
@dataclass
class _WaitingForInput(State):
    NAME: ClassVar[str] = "masked_input"


@dataclass
class _Collecting(State):
    received: dict[int, np.ndarray] = field(default_factory=dict)
    NAME: ClassVar[str] = "masked_input"

    def awaiting(self, server: ServerSession) -> frozenset[int]:
        return frozenset(server.client_ids).difference(self.received)


class PlaintextClient(ClientSession):
    TRANSITIONS: ClassVar = {(_Idle, RoundStart): "_on_round_start"}
    SNAPSHOT_FIELDS: ClassVar = ("_input",)

    def __init__(self, proto: Plaintext, client_id: int, dim: int, *, round: int = 0) -> None:
        (cid,) = wire.check_ids([client_id], "client_id")
        self.proto = proto
        self.dim = check_dim(dim)
        self._digest = proto.config_digest(self.dim)
        self._input: np.ndarray | None = None
        super().__init__(cid, round)

    def _initial_state(self) -> State:
        return _Idle()

    def provide_input(self, x: np.ndarray) -> list[Message]:
        if self._input is not None:
            raise LocalProtocolError("input already provided")
        if self.finished:
            raise LocalProtocolError(f"session is {self.stage}")
        arr = check_input(x, self.dim)
        self._input = arr
        return self._send(arr) if isinstance(self._state, _WaitingForInput) else []

    def _on_round_start(self, msg: RoundStart) -> list[Message]:
        check_config_digest(self._digest, msg.config_digest)
        if self.party_id not in msg.client_ids:
            raise RemoteProtocolError("this client is not among the round's clients")
        self._state = _WaitingForInput()
        return self._send(self._input) if self._input is not None else []

    def _send(self, x: np.ndarray) -> list[Message]:
        self._state = Completed()
        return [PlainInput(self.party_id, wire.SERVER, self.round, x)]


class PlaintextServer(ServerSession):
    TRANSITIONS: ClassVar = {
        (_Collecting, PlainInput): "_on_input",
        (_Collecting, DeadlinePassed): "_close_inputs",
    }

    def __init__(
        self, proto: Plaintext, client_ids: Iterable[int], dim: int, *, round: int = 0
    ) -> None:
        super().__init__(client_ids, dim, round)
        self._digest = proto.config_digest(self.dim)

    def _initial_state(self) -> State:
        return _Idle()

    def _on_start(self) -> list[Message]:
        self._state = _Collecting()
        nonce = bytes(32)  # no public randomness is needed
        return [
            RoundStart(wire.SERVER, c, self.round, nonce, self._digest, self.client_ids)
            for c in self.client_ids
        ]

    def _on_input(self, msg: PlainInput) -> list[Message]:
        st = self._state
        assert isinstance(st, _Collecting)
        if msg.sender in st.received:
            raise RemoteProtocolError(f"duplicate input from client {msg.sender}")
        if msg.vector.shape != (self.dim,):
            raise RemoteProtocolError(
                f"client {msg.sender} sent dimension {msg.vector.shape[0]}, expected {self.dim}"
            )
        st.received[msg.sender] = msg.vector
        return self.close_stage() if len(st.received) == len(self.client_ids) else []

    def _close_inputs(self, event: DeadlinePassed) -> list[Message]:
        st = self._state
        assert isinstance(st, _Collecting)
        if not st.received:
            return self._abort_round("no client sent an input", self.client_ids)
        survivors = tuple(sorted(st.received))
        # np.sum over axis 0 of equal-length vectors is always a vector.
        total = np.asarray(np.sum([st.received[c] for c in survivors], axis=0, dtype=np.float64))
        self._result = ServerResult(total=total, survivors=survivors)
        self._state = Completed()
        return []
