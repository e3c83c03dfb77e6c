"""The SecAgg / SecAgg+ client: one class per state, one transition table.

States (the ``stage`` property names them)::

    round_start -> advertise_keys -> share_keys -> masked_input -> unmasking -> completed
                                                        (any) -> aborted

(a multi-round session goes from unmasking to next_round and back to
masked_input, see "Multi-round sessions" below).

The client keeps, for every peer whose shares it holds, a :class:`PeerShares`
record with a single :class:`PeerStatus`. The unmasking reply is derived from
those statuses: a peer marked SURVIVED yields its self-mask share, a peer
marked DROPPED yields its mask-key share, and a status is set exactly once, so
revealing both shares of one peer cannot happen (as in Google's FCP secagg).

Every peer-caused failure is a :class:`RemoteProtocolError` and aborts the
session, with two exceptions that protect the round from one malicious peer
(the server's rule is in :mod:`protocols.secagg.server`, "One malicious
client"): a peer envelope that does not open is reported in the masked input
(the client then holds none of that peer's shares and does not mask with it),
as long as at most one does; and peer keys are checked
(:func:`secagg.keys.check_public_key`) before anything is derived from them.

The actively secure variant (a roster; Bonawitz et al., CCS 2017, section 4
and Fig. 4; Bell et al., CCS 2020) adds, in its own states::

    round_start -> advertise_keys [-> reveal (SecAgg+)] -> share_keys -> masked_input
        -> consistency -> unmasking -> completed

* Signed advertisements: the client signs its keys (and, in SecAgg+, its
  commitment to the graph-seed randomness) under the round id, round and
  config digest, and verifies every neighbour's signature against the roster
  before it derives or shares anything; one bad signature aborts with nothing
  shared. Substituting a peer's keys needs a forged signature.
* SecAgg+ graph seed: the neighbours follow from ``H(round id, every (id,
  r_i))``; every reveal is checked against the commitment list the client
  received, its own must be there, and a missing one aborts (the server
  cannot pick the subset of reveals that suits it).
* Consistency check: after its masked input the client signs, once per
  session (its state moves on), the survivor set S the server announces, if
  it is in S, S lies in the cohort and S keeps at least t of its group.
* **Invariant**: in the active variant, a peer's status comes only from a set
  S that at least T_sig distinct members of the consistency committee
  (:func:`protocols.secagg.config.consistency_committee`) signed and that
  this client signed itself: SURVIVED if in S, DROPPED otherwise. Honest clients sign one set, so no two
  honest clients settle one peer differently, and the client itself, always
  in S, never reveals its own mask-key share (the semi-honest client refuses
  a request naming it dropped, too).

Multi-round sessions
--------------------
With ``rounds=R`` one key setup serves R aggregation rounds (after Flamingo,
Ma et al., IEEE S&P 2023, which also keeps one setup for many rounds; the
construction here is this library's own, within the Bonawitz et al. family)::

    setup and round 0 as above -> next_round -> masked_input [-> consistency]
        -> unmasking -> next_round -> ... (R rounds) -> completed

* Keys and shares: at the setup a client advertises one channel key and R
  mask keys (``SecAgg.rounds`` of them, signed together in the active
  variant) and sends each peer, in one envelope, a share of each of its R
  self-mask seeds b_u^(r) and of each of its R mask private keys s_u^(r).
  Round r's pairwise mask with v is PRG(KA(s_u^(r), s_v^(r)), bound to the
  pair's keys, the session id and r (:func:`~protocols.secagg.derivation.round_context`).
  The client agrees all R seeds per neighbour at the setup and keeps no mask
  private key; once a round's masked input is out, that round's pairwise
  seeds and self-mask seed are erased from the session (and its snapshots).
* Why one mask key per round and not one for the session with per-round
  derivations: reconstructing a dropped client's key would then give the
  server that client's pairwise masks of every earlier round, and with the
  self-mask seeds it already received for those rounds, its earlier inputs.
  With per-round keys, rebuilding s_u^(r) opens round r's pairwise masks
  only, and round r's unmasking reveals b^(r) and s^(r) shares only.
* The invariant above holds per round: in round r a peer's status is set
  once, so at most one of its two round-r shares is revealed, and DROPPED
  (its round-r mask key was revealed) is final: nothing of that peer is
  revealed in a later round, and the client refuses a round that names it.
  So is LEFT (the server did not list the peer for a round): a client that
  missed a round never comes back with its old keys, and a client session
  that missed a message of round r cannot take part in round r + 1 (the
  header's round number must match).
* Each round starts with :class:`~protocols.secagg.messages.NextRound`, which
  lists the client's participating group members; the client checks they
  are alive peers, that it is one of them, and that at least t remain (the
  shares were split with threshold t); otherwise the session is over and a
  new setup must run. The server moves on only with the clients that
  answered the last unmasking, pruned to groups of at least t + margin.
* Each round of the active variant has its own consistency check: the
  signed statement binds the round number, so a signature of round r is no
  signature of another round, and each client signs one set per round.
* What the server learns over the session: per round, the sum of that
  round's survivors' inputs, and nothing else (the masks of different rounds
  are independent: fresh self-mask seeds and per-round mask keys).
* Not covered: clients sampled per round (a round's masks must cancel over
  the participants, who are the session's surviving cohort; see the README,
  "Multi-round sessions"); the SecAgg+ graph is the setup's for the whole
  session, so its ``dropout_rate`` should cover the dropouts of every round.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from secagg import aead, keys, prg, shamir
from secagg.encoding import FixedPointEncoder
from secagg.errors import DecryptionError, InvalidKeyError, SignatureError
from secagg.identity import ADVERTISE_CONTEXT, CONSISTENCY_CONTEXT, IdentityKeyPair, Statement
from secagg.randomness import RandomSource, default_rng

from .. import snapshot, wire
from ..base import (
    ClientSession,
    Completed,
    State,
    check_config_digest,
    check_dim,
    check_input,
)
from ..errors import LocalProtocolError, RemoteProtocolError
from ..messages import Message, RoundStart
from . import derivation as d

if TYPE_CHECKING:  # config imports this module (it registers the state classes)
    from .config import SecAgg
from .messages import (
    MAX_FAILED_ENVELOPES,
    AdvertiseKeys,
    CertifiedUnmaskRequest,
    Commitments,
    ConsistencyCheck,
    ConsistencySignature,
    KeysAdvertised,
    MaskedInput,
    NextRound,
    Reveal,
    ShareKeys,
    SharesDelivered,
    SignedAdvertiseKeys,
    SignedKeysAdvertised,
    UnmaskRequest,
    UnmaskResponse,
)

__all__ = ["PeerShares", "PeerStatus", "SecAggClient"]

_ENVELOPE_HEADER = struct.Struct(">II")

# The client's state holds its encoder and X25519 key pairs (snapshot tag 0x0E:
# the 32 private-key bytes; the public key is derived again on restore).
snapshot.state(FixedPointEncoder, name="secagg.encoding:FixedPointEncoder")
snapshot.register_codec(
    keys.KeyPair,
    0x0E,
    lambda out, pair: out.extend(pair.private_bytes()),
    lambda r: keys.KeyPair.from_private_bytes(bytes(r.take(keys.KEY_BYTES))),
    name="X25519 key",
)


@snapshot.state
class PeerStatus(enum.Enum):
    """What the client believes about a peer whose shares it holds, in the current round."""

    HOLDING = "holding"  # shares received, fate in this round not yet known
    SURVIVED = "survived"  # the peer's masked input is in the sum: reveal its self-mask share
    DROPPED = "dropped"  # the peer's input is not in the sum: reveal its mask-key share; final
    LEFT = "left"  # the peer takes no part in later rounds: nothing of it is revealed; final


@snapshot.state
@dataclass
class PeerShares:
    """The shares one peer gave this client (one self-mask seed and one mask key per
    session round), and that peer's status in round ``index`` of the session.

    The status is set once per round; DROPPED and LEFT are final. Round r's
    unmasking reveals at most one of the peer's two round-r shares, and after
    its round-r mask-key share nothing of the peer is revealed again.
    """

    self_mask_shares: tuple[bytes, ...]
    mask_key_shares: tuple[bytes, ...]
    status: PeerStatus = PeerStatus.HOLDING
    index: int = 0

    @classmethod
    def dealt(cls, shares: Sequence[bytes], rounds: int) -> PeerShares:
        """From one holder's shares in dealing order: the R self-mask seeds', then the R
        mask keys' (what :meth:`SecAggClient._share_keys` splits and envelopes carry)."""
        return cls(tuple(shares[:rounds]), tuple(shares[rounds : 2 * rounds]))

    def settle(self, status: PeerStatus) -> None:
        """Set the peer's fate in this round; it can be set once only."""
        if self.status is not PeerStatus.HOLDING:
            raise LocalProtocolError("a peer's status is already settled")
        if status not in (PeerStatus.SURVIVED, PeerStatus.DROPPED):
            raise ValueError("settle() needs SURVIVED or DROPPED")
        self.status = status

    def revealable(self) -> tuple[PeerStatus, bytes]:
        """The one share this peer's status allows revealing in this round."""
        if self.status is PeerStatus.SURVIVED:
            return self.status, self.self_mask_shares[self.index]
        if self.status is PeerStatus.DROPPED:
            return self.status, self.mask_key_shares[self.index]
        raise LocalProtocolError(f"nothing of a {self.status.value} peer can be revealed")

    @property
    def alive(self) -> bool:
        """True while the peer may take part in a later round."""
        return self.status in (PeerStatus.HOLDING, PeerStatus.SURVIVED)

    def next_round(self) -> None:
        """A peer that survived this round takes part in the next one."""
        if self.status is not PeerStatus.SURVIVED or self.index + 1 >= len(self.self_mask_shares):
            raise LocalProtocolError(f"a {self.status.value} peer cannot take part in another round")
        self.status, self.index = PeerStatus.HOLDING, self.index + 1

    def leave(self) -> None:
        """The peer takes no part from the next round on (final)."""
        if not self.alive:
            raise LocalProtocolError(f"a {self.status.value} peer cannot leave")
        self.status = PeerStatus.LEFT


@snapshot.state
@dataclass
class _RoundInfo:
    """What the client learnt from RoundStart; fixed for the rest of the session."""

    nonce: bytes
    n_clients: int
    neighbours: frozenset[int]
    threshold: int
    encoder: FixedPointEncoder


@snapshot.state
@dataclass
class _ActiveRound:
    """What the actively secure variant keeps besides :class:`_RoundInfo`."""

    cohort: tuple[int, ...]  # the invited ids (RoundStart), which the round id binds
    round_id: bytes


@snapshot.state
@dataclass
class _Session:
    """What the client keeps from the key setup for every round of the session."""

    info: _RoundInfo
    session_id: bytes
    # s_uv^(r): the pairwise PRG seed with each peer for every session round, agreed
    # at the setup (the mask private keys are not kept); a round's seeds, and its
    # self-mask seed b_u^(r), are erased (b"") once its masked input is sent.
    pair_secrets: dict[int, tuple[bytes, ...]]
    contexts: dict[int, bytes]  # each pair's context (public)
    self_mask_seeds: tuple[bytes, ...]  # b_u, one per session round
    held: dict[int, PeerShares]
    active: _ActiveRound | None = None
    index: int = 0  # the session round in progress (0-based)
    # The consistency committee and T_sig (active), computed at the first check: they
    # follow from the cohort and the graph seed, fixed for the session.
    committee: frozenset[int] = frozenset()
    needed: int = 0


@snapshot.state
@dataclass
class AwaitingRoundStart(State):
    NAME: ClassVar[str] = "round_start"


@snapshot.state
@dataclass
class AdvertisingKeys(State):
    """Keys sent (a single-round session: one mask key); awaiting the group's keys.

    Its fields are those of version-1 snapshots, which still restore."""

    info: _RoundInfo
    channel: keys.KeyPair
    mask: keys.KeyPair
    NAME: ClassVar[str] = "advertise_keys"

    @property
    def masks(self) -> tuple[keys.KeyPair, ...]:
        return (self.mask,)


@snapshot.state
@dataclass
class AdvertisingSessionKeys(State):
    """Keys sent (a multi-round session: one mask key per round); awaiting the group's keys."""

    info: _RoundInfo
    channel: keys.KeyPair
    masks: tuple[keys.KeyPair, ...]
    NAME: ClassVar[str] = "advertise_keys"


@snapshot.state
@dataclass
class AdvertisingSignedKeys(State):
    """Active variant: signed keys sent; awaiting the commitments (SecAgg+) or the keys."""

    active: _ActiveRound
    nonce: bytes
    channel: keys.KeyPair
    masks: tuple[keys.KeyPair, ...]
    randomness: bytes  # r_i, the graph-seed share (SecAgg+; unused by SecAgg)
    commitment: bytes
    NAME: ClassVar[str] = "advertise_keys"


@snapshot.state
@dataclass
class Revealing(State):
    """Active SecAgg+: r_i revealed; awaiting the keys and every reveal."""

    active: _ActiveRound
    channel: keys.KeyPair
    masks: tuple[keys.KeyPair, ...]
    randomness: bytes
    commitments: dict[int, bytes]
    NAME: ClassVar[str] = "reveal"


@snapshot.state
@dataclass
class SharingKeys(State):
    """Shares sent; awaiting the envelopes addressed to this client."""

    session: _Session  # ``held`` has only this client's own shares so far
    channel_keys: dict[int, bytes]
    NAME: ClassVar[str] = "share_keys"


@snapshot.state
@dataclass
class CollectingInput(State):
    """The round's masked input goes out as soon as the input is known."""

    session: _Session
    failed: tuple[int, ...] = ()  # peers whose envelope did not open (reported, not masked with)
    NAME: ClassVar[str] = "masked_input"


@snapshot.state
@dataclass
class Unmasking(State):
    session: _Session
    NAME: ClassVar[str] = "unmasking"


@snapshot.state
@dataclass
class AwaitingConsistency(State):
    """Active variant: masked input sent; awaiting the survivor set to sign (once per round)."""

    session: _Session
    NAME: ClassVar[str] = "consistency"


@snapshot.state
@dataclass
class CertifiedUnmasking(State):
    """Active variant: signed ``signed``; reveals only for that set, with T_sig signatures on it."""

    session: _Session
    signed: tuple[int, ...]
    NAME: ClassVar[str] = "unmasking"


@snapshot.state
@dataclass
class AwaitingNextRound(State):
    """Multi-round session: a round is done; awaiting the next one's participants."""

    session: _Session
    NAME: ClassVar[str] = "next_round"


def _check_session(
    msg: SharesDelivered | UnmaskRequest | ConsistencyCheck | CertifiedUnmaskRequest | NextRound,
    session_id: bytes,
) -> None:
    if msg.session_id != session_id:
        raise RemoteProtocolError(f"{type(msg).__name__} belongs to another session")


class SecAggClient(ClientSession):
    """A SecAgg or SecAgg+ client session (see module docstring)."""

    TRANSITIONS: ClassVar = {
        (AwaitingRoundStart, RoundStart): "_on_round_start",
        (AdvertisingKeys, KeysAdvertised): "_on_keys_advertised",
        (AdvertisingSessionKeys, KeysAdvertised): "_on_keys_advertised",
        (AdvertisingSignedKeys, Commitments): "_on_commitments",
        (AdvertisingSignedKeys, SignedKeysAdvertised): "_on_signed_keys",
        (Revealing, SignedKeysAdvertised): "_on_signed_keys",
        (SharingKeys, SharesDelivered): "_on_shares_delivered",
        (Unmasking, UnmaskRequest): "_on_unmask_request",
        (AwaitingConsistency, ConsistencyCheck): "_on_consistency_check",
        (CertifiedUnmasking, CertifiedUnmaskRequest): "_on_certified_unmask_request",
        (AwaitingNextRound, NextRound): "_on_next_round",
    }
    SNAPSHOT_FIELDS: ClassVar = ("_input", "_encoded_input")
    proto: SecAgg

    def __init__(
        self,
        proto: SecAgg,
        client_id: int,
        dim: int,
        *,
        rng: RandomSource | None = None,
        round: int = 0,
        identity: IdentityKeyPair | None = None,
    ) -> None:
        (self.client_id,) = wire.check_ids([client_id], "client_id")
        self.proto = proto
        # Checked against the roster by proto.client(); None in the semi-honest variant.
        self._identity = identity
        self.dim = check_dim(dim)
        self._rng = default_rng(rng)
        self._input: np.ndarray | None = None
        self._encoded_input: np.ndarray | None = None
        self._config_digest = proto.config_digest(self.dim)
        super().__init__(self.client_id, round)

    def _initial_state(self) -> State:
        return AwaitingRoundStart()

    # -- input -------------------------------------------------------------
    def provide_input(self, x: np.ndarray) -> list[Message]:
        """Set the vector to aggregate (float, length ``dim``).

        May be called at any time before the masked-input stage ends; if the
        client is already waiting for it, returns the masked input to send.
        """
        arr = check_input(x, self.dim)
        return self._set_input(arr, None)

    def provide_encoded_input(self, ring: np.ndarray) -> list[Message]:
        """Set an input already encoded in Z_{2^bits} (uint64, length ``dim``).

        For integer mechanisms that do their own encoding (the distributed
        discrete Gaussian): the values are masked and summed as they are, and
        the server's ``integer_total`` is their exact signed sum.
        """
        arr = np.asarray(ring)
        if arr.dtype != np.uint64 or arr.shape != (self.dim,):
            raise ValueError(f"encoded input must be a uint64 vector of length {self.dim}")
        if self.proto.bits < 64 and arr.size and int(arr.max()) >> self.proto.bits:
            raise ValueError(f"encoded input has entries >= 2^{self.proto.bits}")
        return self._set_input(None, arr.copy())

    def _set_input(self, x: np.ndarray | None, ring: np.ndarray | None) -> list[Message]:
        if self._input is not None or self._encoded_input is not None:
            raise LocalProtocolError("input already provided")
        if self.finished or isinstance(
            self._state, (Unmasking, AwaitingConsistency, CertifiedUnmasking)
        ):  # in a multi-round session the next round's input may come in AwaitingNextRound
            raise LocalProtocolError(f"too late for an input: session is in stage {self.stage!r}")
        self._input, self._encoded_input = x, ring
        if isinstance(self._state, CollectingInput):
            return self._send_masked_input(self._state)
        return []

    # -- transitions -------------------------------------------------------
    def _on_round_start(self, msg: RoundStart) -> list[Message]:
        check_config_digest(self._config_digest, msg.config_digest)
        if self.client_id not in msg.client_ids:
            raise RemoteProtocolError("this client is not among the round's clients")
        if len(msg.client_ids) < self.proto.min_clients:
            raise RemoteProtocolError(
                f"the round invites {len(msg.client_ids)} clients; this client needs at least "
                f"{self.proto.min_clients}"
            )
        if self._identity is not None:
            return self._advertise_signed(msg)
        neighbours = self.proto.neighbours_of(msg.client_ids, msg.nonce, self.client_id)
        try:
            encoder = self.proto.encoder(len(msg.client_ids))
        except ValueError as exc:
            raise RemoteProtocolError(f"round too large for this configuration: {exc}") from exc
        try:
            threshold = self.proto.group_threshold(len(neighbours) + 1, len(msg.client_ids))
        except ValueError as exc:  # e.g. no strict majority of this client's group
            raise RemoteProtocolError(f"the round's threshold is refused: {exc}") from exc
        info = _RoundInfo(
            nonce=msg.nonce,
            n_clients=len(msg.client_ids),
            neighbours=neighbours,
            threshold=threshold,
            encoder=encoder,
        )
        channel = keys.KeyPair.generate(self._rng)
        masks = self._mask_pairs()
        self._state = (
            AdvertisingKeys(info, channel, masks[0])
            if len(masks) == 1
            else AdvertisingSessionKeys(info, channel, masks)
        )
        return [
            AdvertiseKeys(
                self.client_id, wire.SERVER, self.round, channel.public_bytes, _run(masks)
            )
        ]

    def _mask_pairs(self) -> tuple[keys.KeyPair, ...]:
        """One fresh mask key pair per session round (see "Multi-round sessions")."""
        return tuple(keys.KeyPair.generate(self._rng) for _ in range(self.proto.rounds))

    def _round_info(self, client_ids: tuple[int, ...], seed: bytes) -> _RoundInfo:
        """Neighbours, threshold and encoder of this round (graph from ``seed``)."""
        neighbours = self.proto.neighbours_of(client_ids, seed, self.client_id)
        try:
            encoder = self.proto.encoder(len(client_ids))
        except ValueError as exc:
            raise RemoteProtocolError(f"round too large for this configuration: {exc}") from exc
        try:
            threshold = self.proto.group_threshold(len(neighbours) + 1, len(client_ids))
        except ValueError as exc:  # no strict majority, or not above 2n/3 (active SecAgg)
            raise RemoteProtocolError(f"the round's threshold is refused: {exc}") from exc
        return _RoundInfo(
            nonce=seed,
            n_clients=len(client_ids),
            neighbours=neighbours,
            threshold=threshold,
            encoder=encoder,
        )

    def _statement(self, context: bytes, sid: bytes, payload: bytes) -> Statement:
        return Statement(context, sid, self.round, self._config_digest, payload)

    # -- the actively secure variant: signed keys and the graph seed ------------------
    def _advertise_signed(self, msg: RoundStart) -> list[Message]:
        """Round 0 with a signature (Bonawitz et al. 2017, Fig. 4), and in SecAgg+ the
        commitment to this client's share of the graph seed (Bell et al. 2020)."""
        assert self._identity is not None
        cohort = tuple(msg.client_ids)
        if not set(cohort) <= set(self.proto.roster or ()):
            raise RemoteProtocolError("the round invites clients outside the roster")
        # Checked now (before anything is signed): the threshold follows from the cohort alone.
        self._round_info(cohort, msg.nonce)
        rid = d.round_id(self._config_digest, msg.nonce, self.round, cohort)
        channel = keys.KeyPair.generate(self._rng)
        masks = self._mask_pairs()
        if self.proto.seeds_graph:
            randomness = self._rng.bytes(32)
            commit = d.commitment(rid, self.client_id, randomness)
        else:
            randomness, commit = bytes(32), d.NO_COMMITMENT
        payload = d.advert_payload(self.client_id, channel.public_bytes, _run(masks), commit)
        signature = self._identity.sign_statement(self._statement(ADVERTISE_CONTEXT, rid, payload))
        self._state = AdvertisingSignedKeys(
            _ActiveRound(cohort, rid), msg.nonce, channel, masks, randomness, commit
        )
        return [
            SignedAdvertiseKeys(
                self.client_id,
                wire.SERVER,
                self.round,
                channel.public_bytes,
                _run(masks),
                commit,
                signature,
            )
        ]

    def _on_commitments(self, msg: Commitments) -> list[Message]:
        st = self._state
        assert isinstance(st, AdvertisingSignedKeys)
        if not self.proto.seeds_graph:
            raise RemoteProtocolError("SecAgg's complete graph has no seed to commit to")
        commitments = dict(msg.commitments)
        if commitments.get(self.client_id) != st.commitment:
            raise RemoteProtocolError("the commitment list does not carry this client's commitment")
        if not set(commitments) <= set(st.active.cohort):
            raise RemoteProtocolError("the commitment list names clients outside the round")
        self._state = Revealing(st.active, st.channel, st.masks, st.randomness, commitments)
        return [
            Reveal(self.client_id, wire.SERVER, self.round, st.randomness, st.active.round_id)
        ]

    def _on_signed_keys(self, msg: SignedKeysAdvertised) -> list[Message]:
        st = self._state
        assert isinstance(st, (AdvertisingSignedKeys, Revealing))
        active = st.active
        if isinstance(st, Revealing):
            # Every committed client's reveal, each matching its commitment: the
            # server cannot leave out the reveals that do not suit it.
            reveals = dict(msg.reveals)
            if set(reveals) != set(st.commitments):
                missing = sorted(set(st.commitments) - set(reveals))
                raise RemoteProtocolError(
                    f"the reveals do not match the commitments (missing {missing})"
                )
            for cid, r in msg.reveals:
                if d.commitment(active.round_id, cid, r) != st.commitments[cid]:
                    raise RemoteProtocolError(f"client {cid}'s reveal does not open its commitment")
            if reveals[self.client_id] != st.randomness:
                raise RemoteProtocolError("the reveals carry another value for this client")
            seed = d.graph_seed(active.round_id, msg.reveals)
            sid = d.graph_session_id(active.round_id, seed)
            if msg.session_id != sid:
                raise RemoteProtocolError("session id does not match the graph seed")
            info = self._round_info(active.cohort, seed)
            commitments = st.commitments
        else:
            if self.proto.seeds_graph:
                raise RemoteProtocolError("keys before the graph seed was revealed")
            if msg.reveals:
                raise RemoteProtocolError("reveals in a round without a graph seed")
            info = self._round_info(active.cohort, st.nonce)
            commitments = {}
        for cid, c_pk, s_pk, commit, signature in msg.keys:
            if commitments and commit != commitments.get(cid):
                raise RemoteProtocolError(f"client {cid}'s advert carries another commitment")
            if not commitments and commit != d.NO_COMMITMENT:
                raise RemoteProtocolError(f"client {cid}'s advert carries a commitment")
            statement = self._statement(
                ADVERTISE_CONTEXT, active.round_id, d.advert_payload(cid, c_pk, s_pk, commit)
            )
            try:
                assert self.proto.roster is not None
                self.proto.roster.verify_statement(cid, signature, statement)
            except SignatureError as exc:
                raise RemoteProtocolError(f"client {cid}'s key advertisement: {exc}") from exc
        triples = tuple((cid, c_pk, s_pk) for cid, c_pk, s_pk, _, _ in msg.keys)
        return self._share_keys(info, st.channel, st.masks, msg.session_id, triples, active)

    # -- round 1: check the keys, share -------------------------------------------
    def _on_keys_advertised(self, msg: KeysAdvertised) -> list[Message]:
        st = self._state
        assert isinstance(st, (AdvertisingKeys, AdvertisingSessionKeys))
        return self._share_keys(st.info, st.channel, st.masks, msg.session_id, msg.keys, None)

    def _share_keys(
        self,
        info: _RoundInfo,
        channel: keys.KeyPair,
        masks: tuple[keys.KeyPair, ...],
        sid: bytes,
        triples: tuple[tuple[int, bytes, bytes], ...],
        active: _ActiveRound | None,
    ) -> list[Message]:
        """Check the key list, then split and encrypt the shares (Bonawitz et al. 2017, round 1)."""
        entries = {cid: (c_pk, s_pk) for cid, c_pk, s_pk in triples}
        rounds = self.proto.rounds
        # Before anything is derived from them: a small-order or non-canonical key
        # would force a known shared secret (the server should have refused it).
        for cid, c_pk, s_pk in triples:
            if len(s_pk) != 32 * rounds:
                raise RemoteProtocolError(
                    f"client {cid} advertised {len(s_pk) // 32} mask keys; the session has "
                    f"{rounds} rounds"
                )
            labelled = [(d.key_label(i, rounds), k) for i, k in enumerate(d.mask_keys(s_pk))]
            for what, public in (("channel", c_pk), *labelled):
                try:
                    keys.check_public_key(public)
                except InvalidKeyError as exc:
                    raise RemoteProtocolError(
                        f"the server forwarded an invalid {what} key of client {cid}: {exc}"
                    ) from exc
        own_keys = (channel.public_bytes, _run(masks))
        if entries.get(self.client_id) != own_keys:
            raise RemoteProtocolError("the key list does not carry this client's own keys")
        strangers = set(entries) - info.neighbours - {self.client_id}
        if strangers:
            raise RemoteProtocolError(f"the key list names non-neighbours {sorted(strangers)}")
        if len(entries) < info.threshold:
            raise RemoteProtocolError(
                f"only {len(entries)} clients advertised keys in this client's group; threshold is {info.threshold}"
            )
        all_keys = [k for c_pk, s_pk in entries.values() for k in (c_pk, *d.mask_keys(s_pk))]
        if len(set(all_keys)) != len(all_keys):
            raise RemoteProtocolError("the key list repeats a public key")
        if len(info.neighbours) + 1 == info.n_clients and not (active and self.proto.seeds_graph):
            # Complete graph: the client sees every advertised key and can check the session id
            # (active SecAgg+ checked its own, derived from the graph seed, already).
            expected = d.session_id(self._config_digest, info.nonce, triples)
            if expected != sid:
                raise RemoteProtocolError("session id does not match the advertised keys")
        peer_keys = {cid: ks for cid, ks in entries.items() if cid != self.client_id}
        # Every round's pairwise seed now, so that a later round costs no key agreement
        # (the setup pays R agreements per neighbour, a round's masks only PRG work).
        contexts = {
            peer: d.pair_context(sid, self.client_id, own_keys, peer, peer_keys[peer])
            for peer in peer_keys
        }
        pair_secrets = {
            peer: tuple(
                d.pairwise_secret(
                    masks[r], d.mask_key(peer_keys[peer][1], r), d.round_context(contexts[peer], r)
                )
                for r in range(rounds)
            )
            for peer in peer_keys
        }
        # One self-mask seed and one mask key per round, each shared on its own, so
        # that round r's unmasking reveals nothing about another round's masks.
        seeds = tuple(self._rng.bytes(32) for _ in range(rounds))
        holders = sorted(entries)
        shares = shamir.split_many(
            [*seeds, *(pair.private_bytes() for pair in masks)],
            info.threshold,
            [cid + 1 for cid in holders],
            rng=self._rng,
        )
        envelopes = []
        channel_keys = {}
        for peer in holders:
            if peer == self.client_id:
                continue
            key = channel_keys[peer] = d.channel_key(channel, peer_keys[peer][0], contexts[peer])
            plaintext = _ENVELOPE_HEADER.pack(self.client_id, peer) + b"".join(shares[peer + 1])
            envelopes.append(
                (
                    peer,
                    aead.encrypt(
                        key,
                        plaintext,
                        associated_data=d.envelope_ad(self.client_id, peer, self.round, sid),
                        rng=self._rng,
                    ),
                )
            )
        own = shares[self.client_id + 1]
        session = _Session(
            info,
            sid,
            pair_secrets,
            contexts,
            seeds,
            {self.client_id: PeerShares.dealt(own, rounds)},
            active,
        )
        self._state = SharingKeys(session, channel_keys)
        return [ShareKeys(self.client_id, wire.SERVER, self.round, tuple(envelopes), sid)]

    def _on_shares_delivered(self, msg: SharesDelivered) -> list[Message]:
        st = self._state
        assert isinstance(st, SharingKeys)
        session = st.session
        _check_session(msg, session.session_id)
        held = dict(session.held)
        failed: list[int] = []
        for sender, blob in msg.envelopes:
            if sender not in session.pair_secrets:
                raise RemoteProtocolError(
                    f"shares from {sender}, who advertised no keys to this client"
                )
            shares = self._open_envelope(st, sender, blob)
            if shares is None:
                # The sender (or whoever forged the envelope) is reported in the masked
                # input; this client holds none of its shares and does not mask with it.
                failed.append(sender)
            else:
                held[sender] = shares
        if len(failed) > MAX_FAILED_ENVELOPES:
            raise RemoteProtocolError(
                f"share envelopes from {failed} did not open; at most {MAX_FAILED_ENVELOPES} "
                "peer may be reported"
            )
        if len(held) < session.info.threshold:
            raise RemoteProtocolError(
                f"only {len(held)} share holders in this client's group; threshold is {session.info.threshold}"
            )
        session.held = held
        self._state = CollectingInput(session, tuple(failed))
        return self._masked_input_if_ready()

    def _open_envelope(self, st: SharingKeys, sender: int, blob: bytes) -> PeerShares | None:
        """The shares in ``sender``'s envelope, or None if it does not open or is malformed."""
        try:
            plaintext = aead.decrypt(
                st.channel_keys[sender],
                blob,
                associated_data=d.envelope_ad(
                    sender, self.client_id, self.round, st.session.session_id
                ),
            )
        except DecryptionError:
            return None
        rounds = self.proto.rounds
        if len(plaintext) != _ENVELOPE_HEADER.size + 2 * rounds * shamir.SHARE_BYTES or (
            _ENVELOPE_HEADER.unpack_from(plaintext) != (sender, self.client_id)
        ):
            return None
        body = plaintext[_ENVELOPE_HEADER.size :]
        size = shamir.SHARE_BYTES
        return PeerShares.dealt([body[i * size : (i + 1) * size] for i in range(2 * rounds)], rounds)

    def _masked_input_if_ready(self) -> list[Message]:
        assert isinstance(self._state, CollectingInput)
        if self._input is None and self._encoded_input is None:
            return []
        return self._send_masked_input(self._state)

    def _send_masked_input(self, st: CollectingInput) -> list[Message]:
        session = st.session
        r = session.index
        bits = session.info.encoder.bits
        masked = prg.MaskSum(self.dim, bits)
        if self._encoded_input is not None:
            masked.add_words(self._encoded_input)
        else:
            assert self._input is not None
            masked.add_words(session.info.encoder.encode(self._input, self._rng))
        d.add_self_mask(masked, session.self_mask_seeds[r], session.session_id, self.client_id)
        for peer, record in session.held.items():
            # This round's participants: every peer still HOLDING (the others left or dropped).
            if peer == self.client_id or record.status is not PeerStatus.HOLDING:
                continue
            context = d.round_context(session.contexts[peer], r)
            d.add_pairwise_mask(masked, session.pair_secrets[peer][r], context, self.client_id, peer)
        _erase_round(session, r)
        if session.active is None:
            self._state: State = Unmasking(session)
        else:
            self._state = AwaitingConsistency(session)
        return [
            MaskedInput(
                self.client_id,
                wire.SERVER,
                self.round,
                wire.RingVector(bits, masked.result()),
                st.failed,
                session.session_id,
            )
        ]

    def _on_unmask_request(self, msg: UnmaskRequest) -> list[Message]:
        st = self._state
        assert isinstance(st, Unmasking)
        session = st.session
        _check_session(msg, session.session_id)
        survivors, dropped = set(msg.survivors), set(msg.dropped)
        if survivors & dropped:
            raise RemoteProtocolError(
                f"clients {sorted(survivors & dropped)} listed as both survived and dropped"
            )
        named = survivors | dropped
        if named != _participants(session):
            raise RemoteProtocolError(
                "the unmasking request must settle exactly this round's peers whose shares "
                "this client holds"
            )
        if self.client_id in dropped:
            # Its own mask-key share with t - 1 others would give its input away.
            raise RemoteProtocolError("the unmasking request names this client itself as dropped")
        if len(survivors) < session.info.threshold:
            raise RemoteProtocolError(
                f"only {len(survivors)} survivors in this client's group; threshold is {session.info.threshold}"
            )
        return self._reveal(session, survivors)

    def _reveal(self, session: _Session, survivors: set[int]) -> list[Message]:
        """Settle this round's peers from ``survivors`` and send the one share each allows."""
        settled = sorted(_participants(session))
        for peer in settled:
            record = session.held[peer]
            record.settle(PeerStatus.SURVIVED if peer in survivors else PeerStatus.DROPPED)
        self_mask_shares: list[tuple[int, bytes]] = []
        mask_key_shares: list[tuple[int, bytes]] = []
        for peer in settled:
            status, share = session.held[peer].revealable()
            (self_mask_shares if status is PeerStatus.SURVIVED else mask_key_shares).append(
                (peer, share)
            )
        response = UnmaskResponse(
            self.client_id,
            wire.SERVER,
            self.round,
            tuple(self_mask_shares),
            tuple(mask_key_shares),
            session.session_id,
        )
        if session.index + 1 < self.proto.rounds:
            # The next round's messages carry the next round number; this round's are refused.
            self.round += 1
            session.index += 1
            self._input = self._encoded_input = None
            self._state = AwaitingNextRound(session)
        else:
            self._state = Completed()
        return [response]

    # -- multi-round sessions: the next round ----------------------------------------
    def _on_next_round(self, msg: NextRound) -> list[Message]:
        st = self._state
        assert isinstance(st, AwaitingNextRound)
        session = st.session
        _check_session(msg, session.session_id)
        participants = set(msg.participants)
        if self.client_id not in participants:
            raise RemoteProtocolError("the next round's participants leave out this client")
        # Only peers that survived every round so far may take part: a peer whose
        # mask key was rebuilt (DROPPED) or that left never comes back.
        alive = {peer for peer, record in session.held.items() if record.alive}
        if not participants <= alive:
            raise RemoteProtocolError(
                f"the next round names {sorted(participants - alive)[:10]}, who dropped or left "
                "earlier in the session (or whose shares this client does not hold)"
            )
        if len(participants) < session.info.threshold:
            raise RemoteProtocolError(
                f"only {len(participants)} participants in this client's group; threshold is "
                f"{session.info.threshold}: the session is over"
            )
        for peer in sorted(alive):
            if peer in participants:
                session.held[peer].next_round()
            else:
                session.held[peer].leave()
        self._state = CollectingInput(session)
        return self._masked_input_if_ready()

    # -- the actively secure variant: the consistency check (Bonawitz et al. 2017, Fig. 4) --
    def _on_consistency_check(self, msg: ConsistencyCheck) -> list[Message]:
        st = self._state
        assert isinstance(st, AwaitingConsistency)
        session = st.session
        assert session.active is not None
        _check_session(msg, session.session_id)
        survivors = set(msg.survivors)
        if self.client_id not in survivors:
            raise RemoteProtocolError("the survivor set leaves out this client, which sent its input")
        if not survivors <= set(session.active.cohort):
            raise RemoteProtocolError("the survivor set names clients outside the round")
        group = session.info.neighbours | {self.client_id}
        if len(survivors & group) < session.info.threshold:
            raise RemoteProtocolError(
                f"only {len(survivors & group)} survivors in this client's group; "
                f"threshold is {session.info.threshold}"
            )
        assert self._identity is not None
        signature = self._identity.sign_statement(
            self._statement(
                CONSISTENCY_CONTEXT, session.session_id, d.survivor_payload(msg.survivors)
            )
        )
        # The state moves on: this session signs no other set in this round (the
        # statement binds the round number, so each round's set is signed once).
        self._state = CertifiedUnmasking(session, msg.survivors)
        return [
            ConsistencySignature(
                self.client_id, wire.SERVER, self.round, signature, session.session_id
            )
        ]

    def _on_certified_unmask_request(self, msg: CertifiedUnmaskRequest) -> list[Message]:
        st = self._state
        assert isinstance(st, CertifiedUnmasking)
        session = st.session
        assert session.active is not None
        _check_session(msg, session.session_id)
        if msg.survivors != st.signed:
            raise RemoteProtocolError("the unmasking request is for another set than the one signed")
        if not session.needed:
            from .config import consistency_committee  # config imports this module

            session.committee, session.needed = consistency_committee(
                self.proto, session.active.cohort, session.info.nonce
            )
        members, needed = session.committee, session.needed
        signers = [cid for cid, _ in msg.signatures]
        if len(signers) < needed:
            raise RemoteProtocolError(
                f"{len(signers)} consistency signatures; {needed} are needed before unmasking"
            )
        if not set(signers) <= members:
            raise RemoteProtocolError("a consistency signature from outside the committee")
        statement = self._statement(
            CONSISTENCY_CONTEXT, session.session_id, d.survivor_payload(st.signed)
        )
        assert self.proto.roster is not None
        for cid, signature in msg.signatures:  # distinct: the wire keeps ids strictly increasing
            try:
                self.proto.roster.verify_statement(cid, signature, statement)
            except SignatureError as exc:
                raise RemoteProtocolError(f"client {cid}'s consistency signature: {exc}") from exc
        return self._reveal(session, set(st.signed))


def _run(masks: tuple[keys.KeyPair, ...]) -> bytes:
    """The advertised mask keys: one 32-byte public key per session round."""
    return b"".join(pair.public_bytes for pair in masks)


def _erase_round(session: _Session, r: int) -> None:
    """Forget round ``r``'s seeds once its masked input is out (nothing later needs them)."""
    session.self_mask_seeds = (*session.self_mask_seeds[:r], b"", *session.self_mask_seeds[r + 1 :])
    for peer, secrets in session.pair_secrets.items():
        session.pair_secrets[peer] = (*secrets[:r], b"", *secrets[r + 1 :])


def _participants(session: _Session) -> set[int]:
    """This round's group members (this client included) whose shares this client holds."""
    return {peer for peer, record in session.held.items() if record.status is PeerStatus.HOLDING}
