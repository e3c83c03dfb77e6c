"""Homomorphic aggregation sessions, shared by Paillier and CKKS.

Roles: the server, the clients, and one client that is also the *decryptor*
(the key holder; by default the smallest invited client id, or the config's
``decryptor``). Stages::

    advertise_keys: the decryptor makes a key pair and sends the public key
    masked_input:   the server forwards the public key; every client encrypts
                    its input and sends the ciphertexts
    unmasking:      the server sums the ciphertexts (it never holds the secret
                    key) and sends only the aggregate to the decryptor, which
                    decrypts it and returns the plaintext sum

Trust model (README): the server learns the sum and nothing else as long as it
follows the protocol and does not collude with the decryptor. The decryptor
sees only the aggregate ciphertext and its plaintext. A server that deviates
(forwards one client's ciphertext as "the aggregate") learns that client's
input: the decryptor cannot tell a sum from a single ciphertext; it only
refuses aggregates that claim fewer than ``min_clients`` contributors.
Server and decryptor together learn everything. Ciphertexts are malleable:
clients are trusted to encrypt well-formed inputs.

Dropouts: a client that does not send its input is simply not in the sum.
A decryptor that drops before publishing its key or before decrypting makes
the round abort cleanly. ``"share_keys"`` is not a stage of these protocols.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from secagg.randomness import RandomSource, default_rng

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
from .errors import LocalProtocolError, RemoteProtocolError
from .events import DeadlinePassed
from .messages import Message, RoundStart, register

__all__ = [
    "DecryptedAggregate",
    "EncryptedAggregate",
    "EncryptedInput",
    "HEClient",
    "HEProtocol",
    "HEServer",
    "PublicKeyAdvert",
    "PublicKeyBroadcast",
]


# -- messages --------------------------------------------------------------------


@register
@dataclass(frozen=True, eq=False)
class PublicKeyAdvert(Message):
    """Decryptor → server: the public key (Paillier modulus or public CKKS context)."""

    public_key: bytes
    TYPE: ClassVar[int] = 32
    STAGE: ClassVar[str] = "advertise_keys"
    SCHEMA: ClassVar = (("public_key", wire.BYTES),)


@register
@dataclass(frozen=True, eq=False)
class PublicKeyBroadcast(Message):
    """Server → client: the decryptor's public key."""

    public_key: bytes
    TYPE: ClassVar[int] = 33
    STAGE: ClassVar[str] = "masked_input"
    SCHEMA: ClassVar = (("public_key", wire.BYTES),)


@register
@dataclass(frozen=True, eq=False)
class EncryptedInput(Message):
    """Client → server: the encrypted input."""

    ciphertexts: tuple[bytes, ...]
    TYPE: ClassVar[int] = 34
    STAGE: ClassVar[str] = "masked_input"
    SCHEMA: ClassVar = (("ciphertexts", wire.BLOBS),)


@register
@dataclass(frozen=True, eq=False)
class EncryptedAggregate(Message):
    """Server → decryptor: the sum of the survivors' ciphertexts."""

    survivors: tuple[int, ...]
    ciphertexts: tuple[bytes, ...]
    TYPE: ClassVar[int] = 35
    STAGE: ClassVar[str] = "unmasking"
    SCHEMA: ClassVar = (("survivors", wire.IDS), ("ciphertexts", wire.BLOBS))


@register
@dataclass(frozen=True, eq=False)
class DecryptedAggregate(Message):
    """Decryptor → server: the plaintext sum: exact integers (Paillier) or floats (CKKS), the other empty."""

    total: np.ndarray
    integer_total: wire.RingVector
    TYPE: ClassVar[int] = 36
    STAGE: ClassVar[str] = "unmasking"
    SCHEMA: ClassVar = (("total", wire.F64_VECTOR), ("integer_total", wire.RING_VECTOR))


# -- the protocol interface each scheme implements ---------------------------------


class HEProtocol(AggregationProtocol):
    """Base of homomorphic protocols: the scheme-specific hooks and the session factories.

    Subclasses are frozen dataclasses with fields ``decryptor`` and ``min_clients``.
    Every hook raises ValueError on invalid input; sessions turn that into
    RemoteProtocolError when the input came from a peer.
    """

    DROPOUT_STAGES: ClassVar[tuple[str, ...]] = ("advertise_keys", "masked_input", "unmasking")
    decryptor: int | None
    min_clients: int

    @property
    def minimum_cohort(self) -> int:
        """``min_clients``: the decryptor refuses smaller aggregates."""
        return self.min_clients

    def decryptor_of(self, client_ids: tuple[int, ...]) -> int:
        """The key-holding client of a round."""
        if self.decryptor is None:
            return min(client_ids)
        if self.decryptor not in client_ids:
            raise ValueError(f"decryptor {self.decryptor} is not among the round's clients")
        return self.decryptor

    def check_round(self, n_clients: int) -> None:
        """Raise ValueError if a round of ``n_clients`` cannot be aggregated safely."""

    def make_keys(self, rng: RandomSource) -> tuple[bytes, Any]:
        """(public key bytes, secret key object) for the decryptor."""
        raise NotImplementedError

    def load_public(self, data: bytes) -> Any:
        raise NotImplementedError

    def encrypt(
        self, public: Any, x: np.ndarray, n_clients: int, rng: RandomSource
    ) -> tuple[bytes, ...]:
        raise NotImplementedError

    def parse_ciphertexts(
        self, public: Any, blobs: tuple[bytes, ...], dim: int, n_clients: int
    ) -> Any:
        """Validate one client's ciphertexts; return them in the form :meth:`aggregate` takes."""
        raise NotImplementedError

    def aggregate(self, public: Any, parsed: list[Any]) -> tuple[bytes, ...]:
        raise NotImplementedError

    def decrypt(
        self, secret: Any, blobs: tuple[bytes, ...], dim: int, n_clients: int, summands: int
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(float total, exact integer total or None)."""
        raise NotImplementedError

    def scale(self, n_clients: int) -> float | None:
        """Integer units per real unit of ``integer_total`` (None for approximate schemes)."""
        return None

    def server(
        self,
        client_ids: Iterable[int],
        dim: int,
        *,
        rng: RandomSource | None = None,
        round: int = 0,
    ) -> HEServer:
        return HEServer(self, client_ids, dim, rng=rng, round=round)

    def client(
        self, client_id: int, dim: int, *, rng: RandomSource | None = None, round: int = 0
    ) -> HEClient:
        return HEClient(self, client_id, dim, rng=rng, round=round)


def check_min_clients(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"min_clients must be an int >= 1, got {value!r}")


def check_decryptor(value: object) -> None:
    if value is not None:
        wire.check_ids([value], "decryptor")


# -- client ---------------------------------------------------------------------------


@snapshot.state
@dataclass
class _AwaitingRoundStart(State):
    NAME: ClassVar[str] = "round_start"


@snapshot.state
@dataclass
class _AwaitingKey(State):
    n_clients: int
    NAME: ClassVar[str] = "advertise_keys"


@snapshot.state
@dataclass
class _ReadyToEncrypt(State):
    n_clients: int
    public: Any
    secret: Any = None
    NAME: ClassVar[str] = "masked_input"


@snapshot.state
@dataclass
class _AwaitingAggregate(State):
    n_clients: int
    secret: Any
    NAME: ClassVar[str] = "unmasking"


class HEClient(ClientSession):
    """A client of a homomorphic protocol; the decryptor is a client with the secret key."""

    TRANSITIONS: ClassVar = {
        (_AwaitingRoundStart, RoundStart): "_on_round_start",
        (_AwaitingKey, PublicKeyBroadcast): "_on_public_key",
        (_AwaitingAggregate, EncryptedAggregate): "_on_aggregate",
    }
    SNAPSHOT_FIELDS: ClassVar = ("_input", "is_decryptor")
    proto: HEProtocol

    def __init__(
        self,
        proto: HEProtocol,
        client_id: int,
        dim: int,
        *,
        rng: RandomSource | None = None,
        round: int = 0,
    ) -> None:
        (cid,) = wire.check_ids([client_id], "client_id")
        self.proto = proto
        self.dim = check_dim(dim)
        self._rng = default_rng(rng)
        self._digest = proto.config_digest(self.dim)
        self._input: np.ndarray | None = None
        self.is_decryptor = False
        super().__init__(cid, round)

    def _initial_state(self) -> State:
        return _AwaitingRoundStart()

    def provide_input(self, x: np.ndarray) -> list[Message]:
        if self._input is not None:
            raise LocalProtocolError("input already provided")
        if self.finished or isinstance(self._state, _AwaitingAggregate):
            raise LocalProtocolError(f"too late for an input: session is in stage {self.stage!r}")
        arr = check_input(x, self.dim)
        self._input = arr
        return self._send_input() if isinstance(self._state, _ReadyToEncrypt) else []

    def _on_round_start(self, msg: RoundStart) -> list[Message]:
        check_config_digest(self._digest, msg.config_digest)
        if self.party_id not in msg.client_ids:
            raise RemoteProtocolError("this client is not among the round's clients")
        n = len(msg.client_ids)
        try:
            self.proto.check_round(n)
            self.is_decryptor = self.proto.decryptor_of(msg.client_ids) == self.party_id
        except ValueError as exc:
            raise RemoteProtocolError(f"round not acceptable: {exc}") from exc
        if not self.is_decryptor:
            self._state = _AwaitingKey(n)
            return []
        public_bytes, secret = self.proto.make_keys(self._rng)
        self._state = _ReadyToEncrypt(n, self.proto.load_public(public_bytes), secret)
        out: list[Message] = [PublicKeyAdvert(self.party_id, wire.SERVER, self.round, public_bytes)]
        return out + (self._send_input() if self._input is not None else [])

    def _on_public_key(self, msg: PublicKeyBroadcast) -> list[Message]:
        st = self._state
        assert isinstance(st, _AwaitingKey)
        try:
            public = self.proto.load_public(msg.public_key)
        except ValueError as exc:
            raise RemoteProtocolError(f"invalid public key: {exc}") from exc
        self._state = _ReadyToEncrypt(st.n_clients, public)
        return self._send_input() if self._input is not None else []

    def _send_input(self) -> list[Message]:
        st = self._state
        assert isinstance(st, _ReadyToEncrypt) and self._input is not None
        blobs = self.proto.encrypt(st.public, self._input, st.n_clients, self._rng)
        self._state = (
            _AwaitingAggregate(st.n_clients, st.secret) if st.secret is not None else Completed()
        )
        return [EncryptedInput(self.party_id, wire.SERVER, self.round, blobs)]

    def _on_aggregate(self, msg: EncryptedAggregate) -> list[Message]:
        st = self._state
        assert isinstance(st, _AwaitingAggregate)
        if len(msg.survivors) < self.proto.min_clients:
            raise RemoteProtocolError(
                f"refusing to decrypt an aggregate of {len(msg.survivors)} clients (min_clients={self.proto.min_clients})"
            )
        try:
            total, integers = self.proto.decrypt(
                st.secret, msg.ciphertexts, self.dim, st.n_clients, len(msg.survivors)
            )
        except ValueError as exc:
            raise RemoteProtocolError(f"aggregate does not decrypt: {exc}") from exc
        # Exact schemes send only the integers (the server knows the scale); approximate
        # ones only the floats: one vector either way.
        if integers is None:
            ring, floats = wire.RingVector(64, np.zeros(0, np.uint64)), total
        else:
            ring = wire.RingVector(64, np.asarray(integers, np.int64).view(np.uint64))
            floats = np.zeros(0)
        self._state = Completed()
        return [DecryptedAggregate(self.party_id, wire.SERVER, self.round, floats, ring)]


# -- server ---------------------------------------------------------------------------


@dataclass
class _NotStarted(State):
    NAME: ClassVar[str] = "not_started"


@dataclass
class _CollectingKey(State):
    NAME: ClassVar[str] = "advertise_keys"

    def awaiting(self, server: ServerSession) -> frozenset[int]:
        assert isinstance(server, HEServer)
        return frozenset({server.decryptor})


@dataclass
class _CollectingInputs(State):
    public: Any
    received: dict[int, Any] = field(default_factory=dict)
    NAME: ClassVar[str] = "masked_input"

    def awaiting(self, server: ServerSession) -> frozenset[int]:
        return frozenset(server.client_ids).difference(self.received)


@dataclass
class _CollectingDecryption(State):
    survivors: tuple[int, ...]
    NAME: ClassVar[str] = "unmasking"

    def awaiting(self, server: ServerSession) -> frozenset[int]:
        # The decryptor is asked even if its own input missed the input stage.
        assert isinstance(server, HEServer)
        return frozenset({server.decryptor})


class HEServer(ServerSession):
    """Forwards the key, sums ciphertexts, and asks the decryptor for the aggregate only."""

    TRANSITIONS: ClassVar = {
        (_CollectingKey, PublicKeyAdvert): "_on_key",
        (_CollectingInputs, EncryptedInput): "_on_input",
        (_CollectingDecryption, DecryptedAggregate): "_on_decrypted",
        (_CollectingKey, DeadlinePassed): "_close_key",
        (_CollectingInputs, DeadlinePassed): "_close_inputs",
        (_CollectingDecryption, DeadlinePassed): "_close_decryption",
    }

    def __init__(
        self,
        proto: HEProtocol,
        client_ids: Iterable[int],
        dim: int,
        *,
        rng: RandomSource | None = None,
        round: int = 0,
    ) -> None:
        super().__init__(client_ids, dim, round)
        self.proto = proto
        proto.check_round(len(self.client_ids))
        self.decryptor = proto.decryptor_of(self.client_ids)
        self._digest = proto.config_digest(self.dim)

    def _initial_state(self) -> State:
        return _NotStarted()

    def _on_start(self) -> list[Message]:
        self._state = _CollectingKey()
        return [
            RoundStart(wire.SERVER, c, self.round, bytes(32), self._digest, self.client_ids)
            for c in self.client_ids
        ]

    def _on_key(self, msg: PublicKeyAdvert) -> list[Message]:
        if msg.sender != self.decryptor:
            raise RemoteProtocolError(f"client {msg.sender} is not the decryptor")
        try:
            public = self.proto.load_public(msg.public_key)
        except ValueError as exc:
            raise RemoteProtocolError(f"decryptor sent an invalid public key: {exc}") from exc
        self._state = _CollectingInputs(public)
        return [
            PublicKeyBroadcast(wire.SERVER, c, self.round, msg.public_key)
            for c in self.client_ids
            if c != self.decryptor
        ]

    def _on_input(self, msg: EncryptedInput) -> list[Message]:
        st = self._state
        assert isinstance(st, _CollectingInputs)
        if msg.sender in st.received:
            raise RemoteProtocolError(f"duplicate input from client {msg.sender}")
        try:
            parsed = self.proto.parse_ciphertexts(
                st.public, msg.ciphertexts, self.dim, len(self.client_ids)
            )
        except ValueError as exc:
            raise RemoteProtocolError(
                f"client {msg.sender} sent invalid ciphertexts: {exc}"
            ) from exc
        st.received[msg.sender] = parsed
        return self.close_stage() if len(st.received) == len(self.client_ids) else []

    def _on_decrypted(self, msg: DecryptedAggregate) -> list[Message]:
        st = self._state
        assert isinstance(st, _CollectingDecryption)
        if msg.sender != self.decryptor:
            raise RemoteProtocolError(f"client {msg.sender} is not the decryptor")
        integers = (
            msg.integer_total.values.view(np.int64) if len(msg.integer_total.values) else None
        )
        scale = self.proto.scale(len(self.client_ids))
        if integers is not None and integers.shape == (self.dim,) and scale and not len(msg.total):
            total = integers.astype(np.float64) / scale
        elif integers is None and scale is None and msg.total.shape == (self.dim,):
            total = msg.total
        else:
            raise RemoteProtocolError("decrypted aggregate has the wrong shape for this protocol")
        self._result = ServerResult(
            total=total,
            survivors=st.survivors,
            integer_total=integers,
            scale=scale,
        )
        self._state = Completed()
        return []

    def _close_key(self, event: DeadlinePassed) -> list[Message]:
        return self._abort_round(
            "the decryptor did not publish a key", set(self.client_ids) - {self.decryptor}
        )

    def _close_inputs(self, event: DeadlinePassed) -> list[Message]:
        st = self._state
        assert isinstance(st, _CollectingInputs)
        survivors = tuple(sorted(st.received))
        if len(survivors) < self.proto.min_clients:
            return self._abort_round(
                f"only {len(survivors)} inputs arrived; min_clients is {self.proto.min_clients}",
                self.client_ids,
            )
        aggregate = self.proto.aggregate(st.public, [st.received[c] for c in survivors])
        self._state = _CollectingDecryption(survivors)
        return [EncryptedAggregate(wire.SERVER, self.decryptor, self.round, survivors, aggregate)]

    def _close_decryption(self, event: DeadlinePassed) -> list[Message]:
        return self._abort_round("the decryptor did not return the aggregate", [])
