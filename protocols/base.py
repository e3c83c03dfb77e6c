"""What every protocol shares: the config interface, sessions and results.

A protocol is a frozen config object (``protocols.SecAgg(...)``) that makes
sessions: ``proto.server(client_ids, dim)`` and ``proto.client(client_id, dim)``.
A session is a sans-I/O state machine in the style of h11: it never touches a
socket, a clock or a thread. ``start()`` and ``receive(message)`` return the
messages to send; the driver moves them, decides when a stage is over
(``server.handle(DeadlinePassed(stage))``, or ``server.close_stage()`` for the
current stage, e.g. when its own deadline passed), and reads ``server.result``
at the end. ``server.awaiting`` names the clients the server still expects a
message from in the current stage, so a driver knows whom it is waiting for.

What a driver may rely on is :class:`ServerInterface` and
:class:`ClientInterface` (structural types: :class:`ServerSession` and
:class:`ClientSession` implement them, and so do wrappers that delegate to
a session, such as the DP ones); annotate your own driver with those
(docs/design.md, "Sessions and the driver").

Each session holds exactly one state object; the class of that object is the
stage. Transitions are listed in one table per session class,
``TRANSITIONS: {(state class, message or local event class): handler name}``:
a message with no entry for the current state is a
:class:`RemoteProtocolError`, a local event (:mod:`protocols.events`) with no
entry a :class:`LocalProtocolError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import struct
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np

from secagg.encoding import check_finite
from secagg.framing import length_prefixed
from secagg.randomness import RandomSource

from . import snapshot as _snapshot
from . import wire
from .cost import CostEstimate
from .errors import LocalProtocolError, ProtocolAborted, RemoteProtocolError, SnapshotError
from .events import DeadlinePassed, LocalEvent
from .messages import Abort, Message
from .registry import ProtocolOptions

__all__ = [
    "Aborted",
    "AggregationProtocol",
    "ClientInterface",
    "ClientSession",
    "Completed",
    "ServerInterface",
    "ServerResult",
    "ServerSession",
    "Session",
    "State",
    "check_config_digest",
    "check_dim",
    "check_input",
    "check_positive",
    "check_threshold",
    "resolve_threshold",
]


class State:
    """Base class of session states. The class name (snake_cased ``NAME``) is the stage."""

    NAME: ClassVar[str] = "state"

    def awaiting(self, server: ServerSession) -> frozenset[int]:
        """The clients a server in this state still expects a message from (none by default).

        A server state that collects messages overrides this; it is what
        :attr:`ServerSession.awaiting` reports.
        """
        return frozenset()


@_snapshot.state
@dataclass
class Completed(State):
    NAME: ClassVar[str] = "completed"


@_snapshot.state
@dataclass
class Aborted(State):
    reason: str = ""
    NAME: ClassVar[str] = "aborted"


@dataclass(frozen=True)
class ServerResult:
    """What a server session produces.

    Attributes:
        total: float64 sum of the survivors' (clipped, quantized) inputs.
        survivors: sorted ids of the clients whose inputs are in ``total``.
        integer_total: the exact integer-domain sum (signed, int64 or object
            ints) for integer protocols, ``None`` for CKKS and plaintext.
        scale: integer units per real unit (``integer_total / scale == total``).
        events: DP events caused by this round (empty without DP).
    """

    total: np.ndarray
    survivors: tuple[int, ...]
    integer_total: np.ndarray | None = None
    scale: float | None = None
    events: tuple = field(default_factory=tuple)


class Session(ABC):
    """Common machinery of client and server sessions."""

    TRANSITIONS: ClassVar[dict[tuple[type[State], type[Message] | type[LocalEvent]], str]] = {}
    ROLE: ClassVar[str] = "session"

    def __init__(self, party_id: int, round: int) -> None:
        self.party_id = party_id
        self.round = round
        self._state: State = self._initial_state()
        self._started = False

    @abstractmethod
    def _initial_state(self) -> State: ...

    # -- introspection -------------------------------------------------
    @property
    def stage(self) -> str:
        """Name of the current state (e.g. ``"share_keys"``, ``"completed"``)."""
        return self._state.NAME

    @property
    def finished(self) -> bool:
        return isinstance(self._state, (Completed, Aborted))

    @property
    def aborted(self) -> bool:
        return isinstance(self._state, Aborted)

    @property
    def abort_reason(self) -> str | None:
        return self._state.reason if isinstance(self._state, Aborted) else None

    # -- driving ---------------------------------------------------------
    def start(self) -> list[Message]:
        if self._started:
            raise LocalProtocolError(f"{self.ROLE} session already started")
        self._started = True
        return self._on_start()

    def _on_start(self) -> list[Message]:
        return []

    def receive(self, message: Message | bytes | bytearray | memoryview) -> list[Message]:
        """Process one message; return the messages to send in response.

        Raises RemoteProtocolError (or its subclass WireFormatError) when the
        message is invalid. What happens to the session then is role-specific:
        see :meth:`_on_remote_error`.
        """
        if not self._started:
            raise LocalProtocolError("call start() before receive()")
        if isinstance(message, (bytes, bytearray, memoryview)):
            message = Message.from_bytes(message)
        elif not isinstance(message, Message):
            raise TypeError(f"receive() takes a Message or bytes, got {type(message).__name__}")
        try:
            self._check_header(message)
            if isinstance(message, Abort) and self.finished:
                return []  # the round is over for this session anyway
            if isinstance(self._state, (Completed, Aborted)):
                raise RemoteProtocolError(
                    f"{type(message).__name__} received after the session {self.stage}"
                )
            handler = self.TRANSITIONS.get((type(self._state), type(message)))
            if handler is None:
                return self._unexpected(message)
            return getattr(self, handler)(message)
        except RemoteProtocolError as exc:
            self._on_remote_error(message, exc)
            raise

    def _check_header(self, message: Message) -> None:
        if message.recipient != self.party_id:
            raise RemoteProtocolError(
                f"message for {message.recipient} delivered to {self.party_id}"
            )
        if message.round != self.round:
            raise RemoteProtocolError(f"message from round {message.round}, this is {self.round}")

    def _unexpected(self, message: Message) -> list[Message]:
        raise RemoteProtocolError(f"{type(message).__name__} not expected in stage {self.stage!r}")

    def _on_remote_error(self, message: Message, exc: RemoteProtocolError) -> None:
        """Hook: what a remote error does to the session (nothing by default)."""

    def _abort(self, reason: str) -> None:
        self._state = Aborted(reason)


class ClientSession(Session):
    """A client: talks only to the server. Fails closed: any remote error aborts it."""

    ROLE: ClassVar[str] = "client"

    def _check_header(self, message: Message) -> None:
        super()._check_header(message)
        if message.sender != wire.SERVER:
            raise RemoteProtocolError(f"client received a message from {message.sender}")

    def _unexpected(self, message: Message) -> list[Message]:
        if isinstance(message, Abort):
            self._abort(f"server aborted: {message.reason}")
            return []
        return super()._unexpected(message)

    def _on_remote_error(self, message: Message, exc: RemoteProtocolError) -> None:
        # A client never continues after the server misbehaved: continuing could
        # reveal shares under conditions the protocol did not intend.
        if not self.finished:
            self._abort(f"remote protocol error: {exc}")

    def provide_input(self, x: np.ndarray) -> list[Message]:
        """Give the client its vector; returns messages to send if it was waiting for it."""
        raise NotImplementedError

    # -- snapshots (protocols.snapshot) ------------------------------------------
    SNAPSHOT_FIELDS: ClassVar[tuple[str, ...]] = ()
    """Attributes besides the state object that change during a round (e.g. the input)."""

    proto: AggregationProtocol
    dim: int

    def snapshot(self, *, key: bytes | None = None) -> bytes:
        """The session as bytes, for ``proto.restore_client()`` (see :mod:`protocols.snapshot`).

        The bytes hold the client's secrets: keep them on the client, or pass
        a 32-byte ``key`` to encrypt them (AES-256-GCM) for storage elsewhere.
        """
        return _snapshot.dump_client(self, key=key)

    def _snapshot_fields(self) -> dict[str, object]:
        names = ("_state", "_started", *self.SNAPSHOT_FIELDS)
        return {name: getattr(self, name) for name in names}

    def _restore_fields(self, fields: dict) -> None:
        expected = {"_state", "_started", *self.SNAPSHOT_FIELDS}
        if set(fields) != expected:
            raise SnapshotError(
                f"{type(self).__name__} snapshot has fields {sorted(map(str, fields))}, "
                f"expected {sorted(expected)}"
            )
        # A state of another session class would break the transition table's
        # assumptions; accept only this module's states and the shared end states.
        st = fields["_state"]
        if not isinstance(st, State) or type(st).__module__ not in (
            type(self).__module__,
            __name__,
        ):
            raise SnapshotError(f"{type(st).__name__} is not a state of {type(self).__name__}")
        if not isinstance(fields["_started"], bool):
            raise SnapshotError("snapshot field _started is not a bool")
        for name, value in fields.items():
            setattr(self, name, value)


class ServerSession(Session):
    """A server: validates each message before changing any state, so a rejected
    message leaves the session exactly as it was (still usable)."""

    ROLE: ClassVar[str] = "server"

    def __init__(self, client_ids: Iterable[int], dim: int, round: int) -> None:
        self.client_ids = wire.check_ids(list(client_ids))
        if len(self.client_ids) < 1:
            raise ValueError("client_ids must name at least one client")
        self.dim = check_dim(dim)
        super().__init__(wire.SERVER, round)

    def _check_header(self, message: Message) -> None:
        super()._check_header(message)
        if message.sender not in self._client_index:
            raise RemoteProtocolError(f"message from unknown client {message.sender}")

    @property
    def _client_index(self) -> frozenset[int]:
        return frozenset(self.client_ids)

    @property
    def result(self) -> ServerResult:
        """The aggregate, once the session completed."""
        if isinstance(self._state, Aborted):
            raise ProtocolAborted(self._state.reason)
        if not isinstance(self._state, Completed):
            raise LocalProtocolError(f"no result yet: server is in stage {self.stage!r}")
        return self._result

    _result: ServerResult

    @property
    def awaiting(self) -> frozenset[int]:
        """The clients whose message the current stage still waits for.

        Empty before ``start()`` and once the session finished; never holds a
        client that already answered this stage. A driver may close the stage
        (:meth:`close_stage`) as soon as it gives up on all of them. Each
        collecting state says whom it awaits (:meth:`State.awaiting`).
        """
        return self._state.awaiting(self)

    def handle(self, event: LocalEvent) -> list[Message]:
        """Process a local event from the driver (:mod:`protocols.events`); return messages to send.

        Dispatched through ``TRANSITIONS`` like a message. A
        :class:`~protocols.events.DeadlinePassed` for a stage other than the
        current one (stale: the stage already ended), or in a state with no
        stage to close, raises :class:`LocalProtocolError` and leaves the
        session unchanged.
        """
        if not isinstance(event, LocalEvent):
            raise TypeError(f"handle() takes a local event, got {type(event).__name__}")
        if not self._started:
            raise LocalProtocolError("call start() before handle()")
        if isinstance(event, DeadlinePassed) and event.stage != self.stage:
            raise LocalProtocolError(
                f"deadline of stage {event.stage!r} passed, but the server is in stage {self.stage!r}"
            )
        handler = self.TRANSITIONS.get((type(self._state), type(event)))
        if handler is None:
            raise LocalProtocolError(
                f"{type(event).__name__} has no effect in stage {self.stage!r}"
            )
        return getattr(self, handler)(event)

    def close_stage(self) -> list[Message]:
        """End the current collection stage now (the driver's deadline passed).

        Proceeds with the clients that answered if they are enough, aborts
        otherwise. Returns the messages to send. Shorthand for
        ``handle(DeadlinePassed(self.stage))``; the sessions also call it when
        every awaited client answered, so a stage ends through one handler.
        """
        return self.handle(DeadlinePassed(self.stage))

    def _abort_round(self, reason: str, recipients: Iterable[int]) -> list[Message]:
        self._abort(reason)
        return [Abort(wire.SERVER, cid, self.round, reason) for cid in sorted(recipients)]


class _SessionInterface(Protocol):
    """What every session offers, server or client."""

    @property
    def stage(self) -> str:
        """Name of the current state (e.g. ``"share_keys"``, ``"completed"``)."""
        ...

    @property
    def finished(self) -> bool:
        """Completed or aborted: nothing more will happen."""
        ...

    @property
    def aborted(self) -> bool: ...

    @property
    def abort_reason(self) -> str | None:
        """Why the session aborted (None unless it did)."""
        ...

    def start(self) -> list[Message]:
        """Begin the session (once); return the messages to send."""
        ...

    def receive(self, message: Message | bytes | bytearray | memoryview) -> list[Message]:
        """Process one message; return the messages to send in response."""
        ...


class ServerInterface(_SessionInterface, Protocol):
    """The server session interface every driver relies on (:func:`protocols.driver.drive`,
    :func:`protocols.simulate`, the Flower adapter): what ``proto.server()`` returns.

    :class:`ServerSession` implements it; a wrapper that delegates to a server
    session (DP noise, profiling) implements it too without subclassing.
    """

    @property
    def client_ids(self) -> tuple[int, ...]:
        """The invited clients, sorted."""
        ...

    @property
    def awaiting(self) -> frozenset[int]:
        """The clients whose message the current stage still waits for."""
        ...

    @property
    def result(self) -> ServerResult:
        """The aggregate once completed (ProtocolAborted if aborted, LocalProtocolError before)."""
        ...

    def handle(self, event: LocalEvent) -> list[Message]:
        """Process a local event from the driver, e.g. ``DeadlinePassed(stage)``."""
        ...

    def close_stage(self) -> list[Message]:
        """Shorthand for ``handle(DeadlinePassed(self.stage))``."""
        ...


class ClientInterface(_SessionInterface, Protocol):
    """The client session interface drivers and clients rely on: what ``proto.client()``
    and ``proto.restore_client()`` return. :class:`ClientSession` implements it."""

    @property
    def party_id(self) -> int:
        """This client's id."""
        ...

    @property
    def round(self) -> int:
        """The round number this session belongs to."""
        ...

    def provide_input(self, x: np.ndarray) -> list[Message]:
        """Give the client its vector; returns messages to send if it was waiting for it."""
        ...

    def snapshot(self, *, key: bytes | None = None) -> bytes:
        """The session as bytes, for ``proto.restore_client()``."""
        ...


_P = TypeVar("_P", bound="AggregationProtocol")


class AggregationProtocol(ABC):
    """A protocol configuration: frozen, comparable, and a factory of sessions.

    Besides its sessions a config describes itself, so drivers and policies
    need no per-protocol branches (see :mod:`protocols.registry`):
    ``NAME``; ``DROPOUT_STAGES`` (where a client may drop out) and
    ``INPUT_STAGE`` (the stage in which clients send their inputs);
    ``QUANTIZATION_BITS`` (the range of its ``bits`` setting, None if it has
    none); ``INTEGER_RING`` (the aggregate is an exact sum in Z_{2^bits}, what
    DDG/Skellam noise needs); ``SECURE_SUM`` (the server learns only the
    sum); :meth:`cost` (the expected cost of a round); and
    :attr:`required_accountant` (the accountant its DP events need).
    """

    NAME: ClassVar[str] = "protocol"
    DROPOUT_STAGES: ClassVar[tuple[str, ...]] = ()
    INPUT_STAGE: ClassVar[str] = "masked_input"
    # The stages of a session's one-off setup (keys), which a multi-round session
    # pays once; the ledger and benchmarks report them apart (Stats.share).
    SETUP_STAGES: ClassVar[tuple[str, ...]] = ()
    QUANTIZATION_BITS: ClassVar[tuple[int, int] | None] = None
    INTEGER_RING: ClassVar[bool] = False
    SECURE_SUM: ClassVar[bool] = True
    # Sessions can run several aggregation rounds after one key setup (a ``rounds``
    # setting; SecAgg, SecAgg+): what a plan checks before asking for it.
    MULTI_ROUND: ClassVar[bool] = False

    @classmethod
    def from_options(cls: type[_P], options: ProtocolOptions) -> _P:
        """This protocol configured with the ``options`` it has (its defaults for the rest).

        A dataclass config takes every option named like one of its fields
        and not None; override for options that map onto settings otherwise.
        """
        fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else ()
        given = {
            name: value
            for name, value in dataclasses.asdict(options).items()
            if value is not None and name in fields
        }
        return cls(**given)

    @abstractmethod
    def cost(self, n_clients: float, dim: int) -> CostEstimate:
        """The expected cost of one round with ``n_clients`` clients of ``dim`` values each."""

    @property
    def required_accountant(self) -> str | None:
        """The accountant this protocol's DP events need (None: any, or no events)."""
        return None

    @property
    def identity_required(self) -> bool:
        """True if client sessions need the client's long-term identity key
        (``client(..., identity=...)``; the actively secure SecAgg/SecAgg+)."""
        return False

    @property
    def round_trips(self) -> int:
        """Server-client round trips of one session: its stages run one after the
        other, each waiting for its slowest client (what simulated clocks charge).
        One per dropout stage unless the protocol says otherwise."""
        return len(self.DROPOUT_STAGES)

    @property
    def rounds_per_session(self) -> int:
        """Aggregation rounds one session runs: ``rounds`` of a ``MULTI_ROUND`` protocol, else 1."""
        return int(getattr(self, "rounds", 1))

    @property
    def round_trips_after_setup(self) -> int:
        """Round trips of each later round of a multi-round session (``MULTI_ROUND``);
        a protocol without them runs every round as a whole session."""
        return self.round_trips

    @property
    def minimum_cohort(self) -> int:
        """The fewest clients a session of this configuration may invite (1: any).

        Protocols with a ``min_clients`` setting (SecAgg, HE) return it: their
        sessions refuse smaller rounds, so drivers need not start one.
        """
        return 1

    @abstractmethod
    def server(
        self,
        client_ids: Iterable[int],
        dim: int,
        *,
        rng: RandomSource | None = None,
        round: int = 0,
    ) -> ServerInterface: ...

    @abstractmethod
    def client(
        self, client_id: int, dim: int, *, rng: RandomSource | None = None, round: int = 0
    ) -> ClientInterface: ...

    @abstractmethod
    def _digest_fields(self) -> tuple[bytes, ...]:
        """Canonical bytes of every parameter both sides must agree on."""

    def config_digest(self, dim: int) -> bytes:
        """SHA-256 over the protocol name, its parameters and the dimension."""
        return hashlib.sha256(
            length_prefixed(
                b"secagg-fl/config/v1",
                self.NAME.encode(),
                struct.pack(">Q", dim),
                *self._digest_fields(),
            )
        ).digest()

    def restore_client(
        self,
        snapshot: bytes,
        *,
        rng: RandomSource | None = None,
        key: bytes | None = None,
        identity: Any = None,
    ) -> ClientInterface:
        """A client session from ``session.snapshot()`` bytes (see :mod:`protocols.snapshot`).

        The restored session continues the round where the snapshot was taken,
        drawing any further randomness from ``rng`` (default: the OS CSPRNG).
        Pass the ``key`` the snapshot was encrypted with, if any, and, where
        :attr:`identity_required`, the client's identity key again (a
        long-term key is never put into a snapshot). Raises
        :class:`~protocols.errors.SnapshotError` if the bytes are not a valid
        snapshot of a client of this very configuration.
        """
        extra = {} if identity is None else {"identity": identity}
        return _snapshot.load_client(self, snapshot, rng=rng, key=key, **extra)

    def check_dropout_stage(self, stage: str) -> str:
        if stage not in self.DROPOUT_STAGES:
            raise ValueError(
                f"{self.NAME} has no dropout stage {stage!r}; valid: {', '.join(self.DROPOUT_STAGES)}"
            )
        return stage


def check_input(x: np.ndarray, dim: int) -> np.ndarray:
    """A client's input as a fresh float64 vector: finite and of length ``dim`` (ValueError)."""
    arr = check_finite(x, "input")
    if arr.shape != (dim,):
        raise ValueError(f"input must have dimension {dim}, got {arr.shape[0]}")
    return arr.copy()


def check_positive(value: object, name: str) -> float:
    """A positive finite number (clip bounds, noise multipliers); ValueError naming ``name``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.floating))
        or not (math.isfinite(value) and value > 0)
    ):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def check_dim(dim: int) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dim must be a positive int, got {dim!r}")
    return int(dim)


def check_threshold(threshold: object) -> float | int:
    """Validate a threshold: a fraction in (0, 1] (float) or an absolute count >= 1 (int)."""
    if isinstance(threshold, bool):
        raise ValueError("threshold must be a fraction in (0, 1] or an int >= 1, got a bool")
    if isinstance(threshold, (int, np.integer)) and threshold >= 1:
        return int(threshold)
    if isinstance(threshold, float) and 0.0 < threshold <= 1.0:
        return threshold
    raise ValueError(f"threshold must be a fraction in (0, 1] or an int >= 1, got {threshold!r}")


def resolve_threshold(threshold: float | int, group_size: int) -> int:
    """Absolute threshold for a sharing group of ``group_size`` parties.

    A fraction ``f`` gives ``ceil(f * group_size)``, raised to a strict majority
    ``group_size // 2 + 1`` (so ``t = n/2`` is impossible: two disjoint sets of
    holders could each reach it; Bonawitz et al. CCS 2017 require t > n/2). An
    int is used as is and must not exceed ``group_size``; callers refuse one
    below a majority.
    """
    value = check_threshold(threshold)
    if isinstance(value, int):
        if value > group_size:
            raise ValueError(f"threshold={value} exceeds the sharing group size {group_size}")
        return value
    # round() first so that e.g. 0.3 * 10 = 3.0000000000000004 gives 3, not 4.
    return max(group_size // 2 + 1, math.ceil(round(value * group_size, 9)))


def check_config_digest(expected: bytes, got: bytes) -> None:
    if expected != got:
        raise RemoteProtocolError(
            "server runs a different protocol configuration (config digest mismatch)"
        )
