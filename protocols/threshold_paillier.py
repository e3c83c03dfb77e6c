"""Packed Paillier aggregation with a threshold committee (``protocols.ThresholdPaillier``).

Clients quantize, pack and encrypt exactly as in :mod:`protocols.paillier`
(same packer, same DJN encryption); what changes is who can decrypt and what
anybody accepts. Nobody holds the decryption key: a committee of ``m``
clients holds shares of it (:mod:`secagg.paillier.threshold`, from a key
ceremony run apart from the server), any ``t`` of them decrypt, and the
server holds no share.

Roles and stages (one round)::

    start:         RoundStart to every invited client (the session id is a hash of
                   the config digest, the server's nonce, the round and the ids)
                   and ThresholdKeyBroadcast: the threshold public key and the
                   committee's signatures on it
    masked_input:  each client accepts the key only if it equals the key pinned in
                   its config, or (no pin) if at least t committee members signed
                   it; it encrypts its input and signs the ciphertexts (Ed25519,
                   bound to context, session id, round and config digest)
    unmasking:     the server multiplies the ciphertexts and sends every committee
                   member the survivors' signed ciphertexts (DecryptionRequest);
                   each member checks at least min_clients distinct survivors,
                   every signature against the roster, recomputes the product
                   itself, and only then returns its partial decryption with a
                   proof of correct decryption; the server verifies each proof,
                   names and ignores liars, and combines the first t valid ones

What each party learns, against whom (README, "Threshold Paillier"):

* The server learns the sum of the survivors' inputs. It cannot substitute
  the key (clients check the pin or t committee signatures), cannot pass off
  one client's ciphertext or any ciphertext of its own as an aggregate
  (members recompute the product of at least ``min_clients`` ciphertexts,
  each signed by its client for this session and round), and cannot get a
  decryption without ``t`` members.
* Fewer than ``t`` committee members, even together with the server, learn
  nothing about the other inputs beyond the released aggregates (DJ 2001).
* Not covered: a server colluding with ``min_clients - 1`` clients learns the
  remaining survivor's input from an honestly formed aggregate (choose
  ``min_clients`` accordingly); each member decrypts once per session, but a
  server colluding with ``c < t`` members may get ``floor((m - c) / (t - c))``
  *different* survivor sets decrypted in one round (two at m = 5, t = 3,
  c = 1): there is no consistency round among the committee yet, so
  differences of overlapping sums are not excluded; a lying committee member is named but can still
  stall the round if fewer than ``t`` honest members answer; the key ceremony
  is trusted (:mod:`secagg.paillier.threshold`); ciphertexts are not proven
  well-formed, so a client can overfill its packed slots (issue 14, item 6).

A configuration without a committee (``ThresholdPaillier()``, what the
registry creates from options alone) describes itself and its cost, and makes
sessions that refuse to start: bind one with :meth:`ThresholdPaillier.with_committee`
(:func:`simulated_setup` does ceremony, identities and key signatures for a
simulation).
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from secagg import paillier as pl
from secagg.errors import (
    PartialDecryptionError,
    SecaggError,
    SignatureError,
)
from secagg.framing import length_prefixed
from secagg.identity import IdentityKeyPair, Roster, Statement
from secagg.paillier import threshold as th
from secagg.randomness import RandomSource, default_rng

from . import wire
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
    check_positive,
    check_threshold,
    resolve_threshold,
)
from .cost import CostEstimate
from .errors import LocalProtocolError, RemoteProtocolError
from .events import DeadlinePassed
from .he import check_min_clients
from .messages import Message, RoundStart, register
from .paillier import Paillier

__all__ = [
    "CONTRIBUTION_CONTEXT",
    "KEY_CONTEXT",
    "DecryptionRequest",
    "PartialDecryptionReply",
    "SignedInput",
    "ThresholdKeyBroadcast",
    "ThresholdPaillier",
    "ThresholdPaillierClient",
    "ThresholdPaillierServer",
    "simulated_setup",
]

#: Context label of a committee member's signature on the threshold public key.
KEY_CONTEXT = b"secagg-fl/threshold-paillier/key/v1"
#: Context label of a client's signature on its ciphertexts.
CONTRIBUTION_CONTEXT = b"secagg-fl/threshold-paillier/contribution/v1"
_SESSION_DOMAIN = b"secagg-fl/threshold-paillier/session/v1"
_DECRYPT_DOMAIN = b"secagg-fl/threshold-paillier/decrypt/v1"
_UNBOUND = (
    "this ThresholdPaillier configuration has no committee: bind one with "
    "with_committee(roster, committee, threshold_key=...) (simulated_setup() does it for tests)"
)


# -- messages (type codes 48..51) ---------------------------------------------------


@register
@dataclass(frozen=True, eq=False)
class ThresholdKeyBroadcast(Message):
    """Server → client: the threshold public key and committee signatures on it.

    ``signers[i]`` signed with ``signatures[i]`` (:data:`KEY_CONTEXT`).
    """

    threshold_key: bytes
    signers: tuple[int, ...]
    signatures: tuple[bytes, ...]
    TYPE: ClassVar[int] = 48
    STAGE: ClassVar[str] = "masked_input"
    SCHEMA: ClassVar = (
        ("threshold_key", wire.BYTES),
        ("signers", wire.IDS),
        ("signatures", wire.BLOBS),
    )


@register
@dataclass(frozen=True, eq=False)
class SignedInput(Message):
    """Client → server: the encrypted input and the client's signature on it."""

    ciphertexts: bytes
    signature: bytes
    TYPE: ClassVar[int] = 49
    STAGE: ClassVar[str] = "masked_input"
    SCHEMA: ClassVar = (("ciphertexts", wire.BYTES), ("signature", wire.Fixed(64)))


@register
@dataclass(frozen=True, eq=False)
class DecryptionRequest(Message):
    """Server → committee member: every survivor's signed ciphertexts, to sum and decrypt."""

    survivors: tuple[int, ...]
    ciphertexts: tuple[bytes, ...]
    signatures: tuple[bytes, ...]
    TYPE: ClassVar[int] = 50
    STAGE: ClassVar[str] = "unmasking"
    SCHEMA: ClassVar = (
        ("survivors", wire.IDS),
        ("ciphertexts", wire.BLOBS),
        ("signatures", wire.BLOBS),
    )


@register
@dataclass(frozen=True, eq=False)
class PartialDecryptionReply(Message):
    """Committee member → server: its partial decryption of the sum, with its proof."""

    partial: bytes
    TYPE: ClassVar[int] = 51
    STAGE: ClassVar[str] = "unmasking"
    SCHEMA: ClassVar = (("partial", wire.BYTES),)


# -- configuration -------------------------------------------------------------------


@dataclass(frozen=True)
class ThresholdPaillier(AggregationProtocol):
    """Packed Paillier with a t-of-m decryption committee and signed keys and inputs.

    Args:
        key_bits: modulus size; 2048 or more unless ``insecure=True``.
        bits, clip: quantization, as in :class:`~protocols.Paillier`.
        committee_size: ``m``, members holding key shares.
        threshold: ``t`` (an int), or a fraction of ``m`` (rounded up to a
            strict majority, :func:`protocols.base.resolve_threshold`).
        min_clients: a member refuses to decrypt fewer signed contributions.
        workers: processes / threads for encryption and partial decryption.
        roster: client id -> Ed25519 identity key of every client.
        committee: the members' client ids, member ``i`` (share index ``i``)
            at position ``i - 1``.
        threshold_key: if given, the pinned key: clients accept no other.
            Otherwise they accept a key signed by at least ``t`` members.
        insecure: allow ``key_bits`` below 2048 (tests only).
    """

    key_bits: int = 2048
    bits: int = 32
    clip: float = 1.0
    committee_size: int = 5
    threshold: float | int = 3
    min_clients: int = 2
    workers: int | None = None
    roster: Roster | None = None
    committee: tuple[int, ...] | None = None
    threshold_key: th.ThresholdPublicKey | None = None
    insecure: bool = False

    NAME: ClassVar[str] = "threshold-paillier"
    DROPOUT_STAGES: ClassVar[tuple[str, ...]] = ("masked_input", "unmasking")
    QUANTIZATION_BITS: ClassVar[tuple[int, int] | None] = (2, 52)

    def __post_init__(self) -> None:
        if isinstance(self.key_bits, bool) or not isinstance(self.key_bits, int):
            raise ValueError(f"key_bits must be an int, got {self.key_bits!r}")
        if self.key_bits < pl.DEFAULT_KEY_BITS and not self.insecure:
            raise ValueError(
                f"key_bits={self.key_bits} is below {pl.DEFAULT_KEY_BITS}: pass insecure=True "
                "to allow it (tests only)"
            )
        self.paillier  # validates key_bits, bits, clip, workers  # noqa: B018
        check_positive(self.clip, "clip")
        if (
            isinstance(self.committee_size, bool)
            or not isinstance(self.committee_size, int)
            or not 1 <= self.committee_size <= th.MAX_MEMBERS
        ):
            raise ValueError(f"committee_size must be in [1, {th.MAX_MEMBERS}]")
        check_threshold(self.threshold)
        self.decryption_threshold  # noqa: B018
        check_min_clients(self.min_clients)
        if self.roster is not None and not isinstance(self.roster, Roster):
            raise TypeError("roster must be a secagg.identity.Roster")
        if (self.roster is None) != (self.committee is None):
            raise ValueError("roster and committee are given together (with_committee())")
        if self.committee is not None:
            assert self.roster is not None
            committee = wire.check_ids(tuple(self.committee), "committee")
            object.__setattr__(self, "committee", committee)
            if len(set(committee)) != len(committee) or len(committee) != self.committee_size:
                raise ValueError(f"committee must be {self.committee_size} distinct client ids")
            missing = set(committee) - set(self.roster)
            if missing:
                raise ValueError(f"committee members {sorted(missing)} are not in the roster")
        if self.threshold_key is not None:
            self.check_key(self.threshold_key)

    # -- what the config states about itself ---------------------------------------
    @property
    def paillier(self) -> Paillier:
        """The single-key configuration whose packing and encryption this one reuses."""
        return Paillier(
            key_bits=self.key_bits, bits=self.bits, clip=self.clip, workers=self.workers
        )

    @property
    def decryption_threshold(self) -> int:
        """``t``, as an absolute number of members."""
        return resolve_threshold(self.threshold, self.committee_size)

    @property
    def bound(self) -> bool:
        """True once a roster and a committee are bound (sessions can run)."""
        return self.committee is not None

    def with_committee(
        self,
        roster: Roster,
        committee: Sequence[int],
        threshold_key: th.ThresholdPublicKey | None = None,
    ) -> ThresholdPaillier:
        """A copy bound to ``roster`` and ``committee`` (and pinning ``threshold_key`` if given)."""
        return dataclasses.replace(
            self, roster=roster, committee=tuple(committee), threshold_key=threshold_key
        )

    def check_key(self, key: th.ThresholdPublicKey) -> None:
        """ValueError unless ``key`` fits this configuration (size, ``m``, ``t``)."""
        if not isinstance(key, th.ThresholdPublicKey):
            raise TypeError("threshold_key must be a secagg.paillier.ThresholdPublicKey")
        if key.public_key.key_bits != self.key_bits:
            raise ValueError(
                f"key has {key.public_key.key_bits} bits, the config says {self.key_bits}"
            )
        if key.members != self.committee_size or key.threshold != self.decryption_threshold:
            raise ValueError(
                f"key is {key.threshold}-of-{key.members}, the config says "
                f"{self.decryption_threshold}-of-{self.committee_size}"
            )

    def key_statement(self, key: th.ThresholdPublicKey) -> Statement:
        """What a committee member signs to vouch for ``key`` (once, at setup)."""
        return Statement(KEY_CONTEXT, b"", 0, self._committee_digest(), key.digest())

    def sign_key(self, identity: IdentityKeyPair, share: th.KeyShare) -> bytes:
        """A member's signature on the key its ``share`` belongs to (at setup)."""
        return identity.sign_statement(self.key_statement(share.threshold_key))

    def _committee_digest(self) -> bytes:
        if self.committee is None or self.roster is None:
            raise LocalProtocolError(_UNBOUND)
        return hashlib.sha256(
            length_prefixed(
                KEY_CONTEXT,
                self.roster.digest,
                struct.pack(f">{len(self.committee)}I", *self.committee),
                struct.pack(">HH", self.decryption_threshold, self.committee_size),
            )
        ).digest()

    def _digest_fields(self) -> tuple[bytes, ...]:
        return (
            *self.paillier._digest_fields()[:1],
            struct.pack(
                ">HHI?",
                self.committee_size,
                self.decryption_threshold,
                self.min_clients,
                self.insecure,
            ),
            b"" if self.roster is None else self.roster.digest,
            b""
            if self.committee is None
            else struct.pack(f">{len(self.committee)}I", *self.committee),
            b"" if self.threshold_key is None else self.threshold_key.digest(),
        )

    def cost(self, n_clients: float, dim: int) -> CostEstimate:
        """A client's upload is Paillier's plus a 64-byte signature; each of the ``m`` members
        also downloads every survivor's ciphertexts and computes ~4 full-size
        exponentiations per ciphertext (spread over the clients below)."""
        base = self.paillier.cost(n_clients, dim)
        n = max(float(n_clients), 1.0)
        m = self.committee_size
        return CostEstimate(
            upload_bytes=base.upload_bytes + 64,
            download_bytes=base.download_bytes + m * base.upload_bytes,
            client_seconds=base.client_seconds + m / n * 4 * base.server_seconds,
            server_seconds=base.server_seconds * (1 + self.decryption_threshold),
        )

    def context(self, session_id: bytes, round: int) -> bytes:
        """The context of a round's partial decryptions (binds session and round)."""
        return length_prefixed(_DECRYPT_DOMAIN, session_id, struct.pack(">Q", round))

    def contribution_statement(
        self, session_id: bytes, round: int, ciphertexts: bytes
    ) -> Statement:
        """What a client signs for its ciphertexts (this session, this round, this config)."""
        digest = hashlib.sha256(ciphertexts).digest()
        return Statement(
            CONTRIBUTION_CONTEXT, session_id, round, self._digest_for_statements(), digest
        )

    def _digest_for_statements(self) -> bytes:
        # The dimension is bound through the session id; statements bind the config itself.
        return hashlib.sha256(
            length_prefixed(b"secagg-fl/threshold-paillier/config", *self._digest_fields())
        ).digest()

    # -- sessions --------------------------------------------------------------------
    def server(
        self,
        client_ids: Iterable[int],
        dim: int,
        *,
        rng: RandomSource | None = None,
        round: int = 0,
        threshold_key: th.ThresholdPublicKey | None = None,
        key_signatures: Mapping[int, bytes] | None = None,
    ) -> ThresholdPaillierServer:
        """The server; it needs the published key (unless pinned) and the committee's signatures."""
        return ThresholdPaillierServer(
            self,
            client_ids,
            dim,
            rng=rng,
            round=round,
            threshold_key=threshold_key,
            key_signatures=key_signatures,
        )

    def client(
        self,
        client_id: int,
        dim: int,
        *,
        rng: RandomSource | None = None,
        round: int = 0,
        identity: IdentityKeyPair | None = None,
        key_share: th.KeyShare | None = None,
    ) -> ThresholdPaillierClient:
        """A client: its identity (always) and, for a committee member, its key share."""
        return ThresholdPaillierClient(
            self, client_id, dim, rng=rng, round=round, identity=identity, key_share=key_share
        )


def session_id(proto: ThresholdPaillier, dim: int, msg: RoundStart) -> bytes:
    """SHA-256 over the config digest, the server's nonce, the round and the invited ids."""
    return hashlib.sha256(
        length_prefixed(
            _SESSION_DOMAIN,
            proto.config_digest(dim),
            msg.nonce,
            struct.pack(">Q", msg.round),
            struct.pack(f">{len(msg.client_ids)}I", *msg.client_ids),
        )
    ).digest()


def verify_key(
    proto: ThresholdPaillier, data: bytes, signers: Sequence[int], signatures: Sequence[bytes]
) -> th.ThresholdPublicKey:
    """The threshold key in ``data`` if this config accepts it; RemoteProtocolError otherwise.

    With a pinned key: exactly that key. Without: a key of the config's shape
    signed by at least ``t`` distinct committee members (under the roster).
    """
    try:
        key = th.ThresholdPublicKey.from_bytes(data)
        proto.check_key(key)
    except ValueError as exc:
        raise RemoteProtocolError(f"invalid threshold key: {exc}") from exc
    if proto.threshold_key is not None:
        if key != proto.threshold_key:
            raise RemoteProtocolError("the server sent a threshold key other than the pinned one")
        return key
    assert proto.roster is not None and proto.committee is not None
    if len(signers) != len(signatures):
        raise RemoteProtocolError("key signers and signatures differ in number")
    statement = proto.key_statement(key)
    valid = set()
    for signer, signature in zip(signers, signatures, strict=True):
        if signer not in proto.committee or signer in valid:
            continue
        try:
            proto.roster.verify_statement(signer, signature, statement)
        except SignatureError:
            continue
        valid.add(signer)
    if len(valid) < proto.decryption_threshold:
        raise RemoteProtocolError(
            f"threshold key signed by {len(valid)} committee members, "
            f"{proto.decryption_threshold} needed"
        )
    return key


# -- client ---------------------------------------------------------------------------


@dataclass
class _AwaitingRoundStart(State):
    NAME: ClassVar[str] = "round_start"


@dataclass
class _AwaitingKey(State):
    n_clients: int
    session_id: bytes
    client_ids: tuple[int, ...]
    NAME: ClassVar[str] = "masked_input"


@dataclass
class _ReadyToEncrypt(State):
    n_clients: int
    session_id: bytes
    client_ids: tuple[int, ...]
    key: th.ThresholdPublicKey
    NAME: ClassVar[str] = "masked_input"


@dataclass
class _AwaitingRequest(State):
    n_clients: int
    session_id: bytes
    client_ids: tuple[int, ...]
    key: th.ThresholdPublicKey
    NAME: ClassVar[str] = "unmasking"


class ThresholdPaillierClient(ClientSession):
    """A client; a committee member also verifies the signed inputs and decrypts its share."""

    TRANSITIONS: ClassVar = {
        (_AwaitingRoundStart, RoundStart): "_on_round_start",
        (_AwaitingKey, ThresholdKeyBroadcast): "_on_key",
        (_ReadyToEncrypt, DecryptionRequest): "_on_request",  # a member whose input missed
        (_AwaitingRequest, DecryptionRequest): "_on_request",
    }
    proto: ThresholdPaillier

    def __init__(
        self,
        proto: ThresholdPaillier,
        client_id: int,
        dim: int,
        *,
        rng: RandomSource | None = None,
        round: int = 0,
        identity: IdentityKeyPair | None = None,
        key_share: th.KeyShare | None = None,
    ) -> None:
        (cid,) = wire.check_ids([client_id], "client_id")
        self.proto = proto
        self.dim = check_dim(dim)
        self._rng = default_rng(rng)
        self._digest = proto.config_digest(self.dim)
        self._input: np.ndarray | None = None
        self._identity = identity
        self._share = key_share
        if identity is not None and not isinstance(identity, IdentityKeyPair):
            raise TypeError("identity must be a secagg.identity.IdentityKeyPair")
        if key_share is not None and not isinstance(key_share, th.KeyShare):
            raise TypeError("key_share must be a secagg.paillier.KeyShare")
        super().__init__(cid, round)

    @property
    def is_member(self) -> bool:
        return self._share is not None

    def snapshot(self, *, key: bytes | None = None) -> bytes:
        """Not supported yet: a snapshot would have to carry the key share and identity."""
        raise LocalProtocolError("ThresholdPaillier client sessions cannot be snapshotted yet")

    def _initial_state(self) -> State:
        return _AwaitingRoundStart()

    def _on_start(self) -> list[Message]:
        proto = self.proto
        if not proto.bound:
            raise LocalProtocolError(_UNBOUND)
        assert proto.roster is not None and proto.committee is not None
        if self._identity is None or proto.roster.get(self.party_id) != self._identity.public_key:
            raise LocalProtocolError("this client needs its identity, the one in the roster")
        if (self.party_id in proto.committee) != (self._share is not None):
            raise LocalProtocolError("committee members (and only they) need their key share")
        if self._share is not None:
            if self._share.index != proto.committee.index(self.party_id) + 1:
                raise LocalProtocolError("key share index does not match the committee position")
            proto.check_key(self._share.threshold_key)
        return []

    def provide_input(self, x: np.ndarray) -> list[Message]:
        if self._input is not None:
            raise LocalProtocolError("input already provided")
        if self.finished or isinstance(self._state, _AwaitingRequest):
            raise LocalProtocolError(f"too late for an input: session is in stage {self.stage!r}")
        self._input = check_input(x, self.dim)
        return self._send_input() if isinstance(self._state, _ReadyToEncrypt) else []

    def _on_round_start(self, msg: RoundStart) -> list[Message]:
        check_config_digest(self._digest, msg.config_digest)
        proto = self.proto
        assert proto.committee is not None
        if self.party_id not in msg.client_ids:
            raise RemoteProtocolError("this client is not among the round's clients")
        if not set(proto.committee) <= set(msg.client_ids):
            raise RemoteProtocolError("the round does not invite the whole committee")
        try:
            proto.paillier.check_round(len(msg.client_ids))
        except ValueError as exc:
            raise RemoteProtocolError(f"round not acceptable: {exc}") from exc
        self._state = _AwaitingKey(
            len(msg.client_ids), session_id(proto, self.dim, msg), msg.client_ids
        )
        return []

    def _on_key(self, msg: ThresholdKeyBroadcast) -> list[Message]:
        st = self._state
        assert isinstance(st, _AwaitingKey)
        key = verify_key(self.proto, msg.threshold_key, msg.signers, msg.signatures)
        if self._share is not None and self._share.threshold_key != key:
            raise RemoteProtocolError("the round's key is not the key this member holds a share of")
        self._state = _ReadyToEncrypt(st.n_clients, st.session_id, st.client_ids, key)
        return self._send_input() if self._input is not None else []

    def _send_input(self) -> list[Message]:
        st = self._state
        assert isinstance(st, _ReadyToEncrypt) and self._input is not None
        assert self._identity is not None
        (blob,) = self.proto.paillier.encrypt(
            st.key.public_key, self._input, st.n_clients, self._rng
        )
        signature = self._identity.sign_statement(
            self.proto.contribution_statement(st.session_id, self.round, blob)
        )
        self._state = (
            _AwaitingRequest(st.n_clients, st.session_id, st.client_ids, st.key)
            if self.is_member
            else Completed()
        )
        return [SignedInput(self.party_id, wire.SERVER, self.round, blob, signature)]

    def _on_request(self, msg: DecryptionRequest) -> list[Message]:
        st = self._state
        assert isinstance(st, (_ReadyToEncrypt, _AwaitingRequest))
        if self._share is None:
            raise RemoteProtocolError("this client is not a committee member")
        proto = self.proto
        survivors = msg.survivors
        if len(survivors) < proto.min_clients:
            raise RemoteProtocolError(
                f"refusing to decrypt {len(survivors)} contributions (min_clients={proto.min_clients})"
            )
        if not set(survivors) <= set(st.client_ids):
            raise RemoteProtocolError("the request names clients that were not invited")
        if not len(msg.ciphertexts) == len(msg.signatures) == len(survivors):
            raise RemoteProtocolError(
                "the request needs one ciphertext and one signature per survivor"
            )
        aggregate = _verified_aggregate(
            proto, st.key, st.session_id, self.round, st.n_clients, self.dim, msg
        )
        partial = th.partial_decrypt(
            self._share,
            aggregate,
            proto.context(st.session_id, self.round),
            rng=self._rng,
            workers=proto.workers,
        )
        self._state = Completed()  # one partial decryption per session, never two
        return [
            PartialDecryptionReply(self.party_id, wire.SERVER, self.round, partial.to_bytes(st.key))
        ]


def _verified_aggregate(
    proto: ThresholdPaillier,
    key: th.ThresholdPublicKey,
    sid: bytes,
    round: int,
    n_clients: int,
    dim: int,
    msg: DecryptionRequest,
) -> list[int]:
    """The product of the survivors' ciphertexts, after checking every survivor's signature."""
    assert proto.roster is not None
    parsed = []
    for cid, blob, signature in zip(msg.survivors, msg.ciphertexts, msg.signatures, strict=True):
        try:
            proto.roster.verify_statement(
                cid, signature, proto.contribution_statement(sid, round, blob)
            )
            parsed.append(proto.paillier.parse_ciphertexts(key.public_key, (blob,), dim, n_clients))
        except (SecaggError, ValueError) as exc:
            raise RemoteProtocolError(f"contribution of client {cid} refused: {exc}") from exc
    return pl.sum_encrypted(key.public_key, parsed)


# -- server ---------------------------------------------------------------------------


@dataclass
class _NotStarted(State):
    NAME: ClassVar[str] = "not_started"


@dataclass
class _CollectingInputs(State):
    session_id: bytes
    received: dict[int, tuple[list[int], bytes, bytes]] = field(default_factory=dict)
    NAME: ClassVar[str] = "masked_input"

    def awaiting(self, server: ServerSession) -> frozenset[int]:
        return frozenset(server.client_ids).difference(self.received)


@dataclass
class _CollectingPartials(State):
    session_id: bytes
    survivors: tuple[int, ...]
    aggregate: list[int]
    partials: dict[int, th.PartialDecryption] = field(default_factory=dict)
    NAME: ClassVar[str] = "unmasking"

    def awaiting(self, server: ServerSession) -> frozenset[int]:
        assert isinstance(server, ThresholdPaillierServer)
        committee = server.proto.committee or ()
        return frozenset(committee) - set(self.partials) - set(server.refused_members)


class ThresholdPaillierServer(ServerSession):
    """Forwards the key, checks and sums signed inputs, combines verified partial decryptions.

    :attr:`refused_members` names every committee member whose partial
    decryption failed its proof, with the reason.
    """

    TRANSITIONS: ClassVar = {
        (_CollectingInputs, SignedInput): "_on_input",
        (_CollectingPartials, PartialDecryptionReply): "_on_partial",
        (_CollectingInputs, DeadlinePassed): "_close_inputs",
        (_CollectingPartials, DeadlinePassed): "_close_partials",
    }

    def __init__(
        self,
        proto: ThresholdPaillier,
        client_ids: Iterable[int],
        dim: int,
        *,
        round: int = 0,
        threshold_key: th.ThresholdPublicKey | None = None,
        key_signatures: Mapping[int, bytes] | None = None,
        rng: RandomSource | None = None,
    ) -> None:
        super().__init__(client_ids, dim, round)
        self.proto = proto
        self._key = threshold_key if threshold_key is not None else proto.threshold_key
        self._signatures = dict(key_signatures or {})
        self._rng = default_rng(rng)
        self.refused_members: dict[int, str] = {}

    def _initial_state(self) -> State:
        return _NotStarted()

    def _on_start(self) -> list[Message]:
        proto = self.proto
        if not proto.bound:
            raise LocalProtocolError(_UNBOUND)
        if self._key is None:
            raise LocalProtocolError(
                "the server needs the published threshold key (threshold_key=)"
            )
        proto.check_key(self._key)
        assert proto.committee is not None and proto.roster is not None
        if not set(proto.committee) <= set(self.client_ids):
            raise LocalProtocolError("every committee member must be invited to the round")
        unknown = set(self.client_ids) - set(proto.roster)
        if unknown:
            raise LocalProtocolError(f"clients {sorted(unknown)[:10]} are not in the roster")
        proto.paillier.check_round(len(self.client_ids))
        start = RoundStart(
            wire.SERVER,
            0,
            self.round,
            self._rng.bytes(32),
            proto.config_digest(self.dim),
            self.client_ids,
        )
        sid = session_id(proto, self.dim, start)
        self._state = _CollectingInputs(sid)
        signers = tuple(sorted(self._signatures))
        key_bytes = self._key.to_bytes()
        out: list[Message] = []
        for c in self.client_ids:
            out.append(dataclasses.replace(start, recipient=c))
            out.append(
                ThresholdKeyBroadcast(
                    wire.SERVER, c, self.round, key_bytes, signers,
                    tuple(self._signatures[s] for s in signers),
                )
            )  # fmt: skip
        return out

    def _on_input(self, msg: SignedInput) -> list[Message]:
        st = self._state
        assert isinstance(st, _CollectingInputs) and self._key is not None
        assert self.proto.roster is not None
        if msg.sender in st.received:
            raise RemoteProtocolError(f"duplicate input from client {msg.sender}")
        try:
            self.proto.roster.verify_statement(
                msg.sender,
                msg.signature,
                self.proto.contribution_statement(st.session_id, self.round, msg.ciphertexts),
            )
            parsed = self.proto.paillier.parse_ciphertexts(
                self._key.public_key, (msg.ciphertexts,), self.dim, len(self.client_ids)
            )
        except (SecaggError, ValueError) as exc:
            raise RemoteProtocolError(f"client {msg.sender} sent an invalid input: {exc}") from exc
        st.received[msg.sender] = (parsed, msg.ciphertexts, msg.signature)
        return self.close_stage() if len(st.received) == len(self.client_ids) else []

    def _close_inputs(self, event: DeadlinePassed) -> list[Message]:
        st = self._state
        assert isinstance(st, _CollectingInputs) and self._key is not None
        assert self.proto.committee is not None
        survivors = tuple(sorted(st.received))
        if len(survivors) < self.proto.min_clients:
            return self._abort_round(
                f"only {len(survivors)} inputs arrived; min_clients is {self.proto.min_clients}",
                self.client_ids,
            )
        aggregate = pl.sum_encrypted(self._key.public_key, [st.received[c][0] for c in survivors])
        blobs = tuple(st.received[c][1] for c in survivors)
        signatures = tuple(st.received[c][2] for c in survivors)
        self._state = _CollectingPartials(st.session_id, survivors, aggregate)
        return [
            DecryptionRequest(wire.SERVER, member, self.round, survivors, blobs, signatures)
            for member in self.proto.committee
        ]

    def _on_partial(self, msg: PartialDecryptionReply) -> list[Message]:
        st = self._state
        assert isinstance(st, _CollectingPartials) and self._key is not None
        committee = self.proto.committee
        assert committee is not None
        if msg.sender not in committee:
            raise RemoteProtocolError(f"client {msg.sender} is not a committee member")
        if msg.sender in st.partials or msg.sender in self.refused_members:
            raise RemoteProtocolError(f"duplicate partial decryption from member {msg.sender}")
        index = committee.index(msg.sender) + 1
        context = self.proto.context(st.session_id, self.round)
        try:
            partial = th.PartialDecryption.from_bytes(self._key, msg.partial, len(st.aggregate))
            if partial.index != index:
                raise PartialDecryptionError(f"claims member index {partial.index}", member=index)
            th.verify_partial(self._key, st.aggregate, partial, context)
        except (ValueError, PartialDecryptionError) as exc:
            self.refused_members[msg.sender] = str(exc)
            raise RemoteProtocolError(
                f"committee member {msg.sender} sent a wrong partial decryption: {exc}"
            ) from exc
        st.partials[msg.sender] = partial
        if len(st.partials) < self.proto.decryption_threshold:
            return []
        return self._finish(st)

    def _finish(self, st: _CollectingPartials) -> list[Message]:
        assert self._key is not None
        # Each partial was verified as it arrived (_on_partial): combine without re-verifying.
        plaintexts = th.combine_verified(self._key, st.aggregate, list(st.partials.values()))
        packer = self.proto.paillier.packer(len(self.client_ids))
        try:
            integers = packer.unpack(list(plaintexts), self.dim, len(st.survivors))
        except ValueError as exc:
            return self._abort_round(f"the aggregate does not unpack: {exc}", [])
        scale = self.proto.paillier.scale(len(self.client_ids))
        self._result = ServerResult(
            total=integers.astype(np.float64) / scale,
            survivors=st.survivors,
            integer_total=integers,
            scale=scale,
        )
        self._state = Completed()
        return []

    def _close_partials(self, event: DeadlinePassed) -> list[Message]:
        st = self._state
        assert isinstance(st, _CollectingPartials)
        refused = (
            f"; refused members {sorted(self.refused_members)}" if self.refused_members else ""
        )
        return self._abort_round(
            f"{len(st.partials)} valid partial decryptions, "
            f"{self.proto.decryption_threshold} needed{refused}",
            [],
        )


# -- setup for simulations -------------------------------------------------------------


@dataclass(frozen=True)
class SimulatedSetup:
    """What :func:`simulated_setup` returns (everything a simulated deployment holds)."""

    proto: ThresholdPaillier
    identities: dict[int, IdentityKeyPair]
    shares: dict[int, th.KeyShare]
    threshold_key: th.ThresholdPublicKey
    key_signatures: dict[int, bytes]

    def server(
        self, client_ids: Iterable[int], dim: int, *, round: int = 0
    ) -> ThresholdPaillierServer:
        return self.proto.server(
            client_ids, dim, round=round, threshold_key=self.threshold_key,
            key_signatures=self.key_signatures,
        )  # fmt: skip

    def client(
        self, client_id: int, dim: int, *, rng: RandomSource | None = None, round: int = 0
    ) -> ThresholdPaillierClient:
        return self.proto.client(
            client_id, dim, rng=rng, round=round, identity=self.identities[client_id],
            key_share=self.shares.get(client_id),
        )  # fmt: skip


def simulated_setup(
    proto: ThresholdPaillier,
    client_ids: Iterable[int],
    committee: Sequence[int] | None = None,
    *,
    pin_key: bool = False,
    rng: RandomSource | None = None,
) -> SimulatedSetup:
    """Ceremony, device identities and key signatures for a simulation, in this process.

    FOR SIMULATIONS AND TESTS: a deployment runs the ceremony on a machine of
    its own (:func:`secagg.paillier.generate_threshold_key`), every device
    generates its own identity and registers only the public key, and each
    member signs the key once (:meth:`ThresholdPaillier.sign_key`).

    Args:
        committee: the members' ids (default: the ``committee_size`` smallest).
        pin_key: pin the key in the config (otherwise clients check signatures).
        rng: a seeded source makes everything reproducible and known (tests only).
    """
    ids = sorted(wire.check_ids(list(client_ids)))
    members = tuple(committee) if committee is not None else tuple(ids[: proto.committee_size])
    source = None if rng is None else default_rng(rng)
    identities = {cid: IdentityKeyPair.generate(source) for cid in ids}
    roster = Roster({cid: pair.public_key for cid, pair in identities.items()})
    key, shares = th.generate_threshold_key(
        proto.key_bits,
        proto.committee_size,
        proto.decryption_threshold,
        insecure=proto.insecure,
        rng=source,
    )
    bound = proto.with_committee(roster, members, key if pin_key else None)
    by_member = {cid: share for cid, share in zip(members, shares, strict=True)}
    signatures = {cid: bound.sign_key(identities[cid], by_member[cid]) for cid in members}
    return SimulatedSetup(bound, identities, by_member, key, signatures)
