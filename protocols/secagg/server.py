"""The SecAgg / SecAgg+ server: collects, relays, and unmasks only the sum.

Stages (Bonawitz et al. 2017 round numbers in brackets)::

    advertise_keys [0] -> share_keys [1] -> masked_input [2] -> unmasking [3] -> completed
                                                                      (any) -> aborted

and in the actively secure variant (a roster; Bonawitz et al. 2017, Fig. 4)::

    advertise_keys [0] (-> reveal, SecAgg+) -> share_keys [1] -> masked_input [2]
        -> consistency [3] -> unmasking [4] -> completed

The active server verifies every advertisement's signature against the
roster (a bad one is refused and blamed: that client advertised nothing) and
relays it with the keys; in SecAgg+ it collects every advertiser's
commitment, broadcasts them, collects the reveals, and only then computes the
graph (from the clients' randomness, not its nonce) and relays keys along it;
a missing reveal aborts the round. After the masked inputs it announces the
survivor set S, collects signatures on S (a bad one is refused and blamed),
and asks for shares only with at least T_sig of them from the consistency
committee (:func:`~protocols.secagg.config.consistency_committee`: everyone in
SecAgg, a sample drawn from the graph seed in SecAgg+), which it forwards so
that every client can check them.

A stage ends when every client expected in it has answered, or when the
driver's deadline passes (``handle(DeadlinePassed(stage))``, or
:meth:`~protocols.ServerSession.close_stage`). The server
then continues with whoever answered, provided every remaining client still
has at least ``t`` members of its sharing group (itself and its neighbours)
left; clients whose groups fell below ``t`` are removed, repeatedly, until
that holds (for SecAgg's complete graph: until at least ``t`` clients remain).
If nobody is left, the round aborts. Before any share is requested, the server
also checks that every share it will need can be reconstructed, so a round
that must fail aborts before anything is revealed.

Every incoming message is fully validated before any state changes, so a
rejected message (:class:`RemoteProtocolError`) leaves the server usable.

One malicious client
--------------------
Bonawitz et al. (CCS 2017, section 6) let the adversary control clients as
well as the server. Against a deviating *server* nothing here is claimed (that
needs signed keys and the consistency check round). Against *one* deviating
client, with an honest server, the rules below make a lie cost no more than
dropping out: the liar drops itself, and by a false report at most one honest
peer as well. No rule needs to know who lied (without signatures the server
cannot tell):

* Keys: an AdvertiseKeys with an invalid, small-order or repeated X25519 key
  (:func:`secagg.keys.check_public_key`) is refused; the client is then one
  that advertised nothing, and no peer ever sees the key.
* Envelopes: a client that cannot open peer v's envelope (AES-GCM fails or
  the plaintext is malformed) keeps none of v's shares, leaves its pairwise
  mask with v out of its masked input, and reports v in
  ``MaskedInput.failed``, which may name at most
  :data:`~protocols.secagg.messages.MAX_FAILED_ENVELOPES` (one) peer; a
  report naming more is refused with the whole masked input. The server
  drops every reported peer *for everyone*: its input is not summed and its
  self-mask seed is never requested, and its mask key is rebuilt from the
  clients that did open its envelope, which are exactly the survivors that
  masked with it (:meth:`SecAggServer._masked_with`). A peer is thus either
  survived for every client or dropped for every client, and each client
  reveals one share per peer (the client's invariant). With one malicious
  client m: if m garbles its envelopes, every honest client that got one
  reports m (its only bad envelope) and m alone is dropped; if it garbled all
  of them nobody masked with m and nothing of m's is needed. If m reports an
  honest v instead, v is dropped: m removes itself (it may still be summed)
  plus the one it accuses, and naming two peers removes only m.
  Still open: if m lets between 1 and t + margin - 1 surviving peers open its
  envelope and garbles the rest, those peers masked with m but are too few to
  rebuild m's mask key; the round then aborts before any share is requested,
  naming m (the operator leaves it out of the next round). An honest client
  with bad envelopes from two peers (two malicious clients) aborts.
* Wrong shares: each secret is decoded from every share received, as a
  Reed-Solomon codeword (:func:`secagg.robust.decode_many`; McEliece and
  Sarwate 1981, Gao 2003), from at least ``t + share_margin`` shares. Up to
  ``(n' - t) // 2`` wrong shares among ``n'`` are corrected and their senders
  (share x = client id + 1) named in :attr:`SecAggServer.blame`; up to
  ``n' - t`` are detected and the round aborts, naming whose secret it was
  and who held its shares (the liar among them cannot be told apart). With exactly t shares (possible only with
  ``share_margin=0``, the default) nothing can be checked, and one lying
  client corrupts the total undetectably; the server always waits for every
  awaited response until the deadline, so that happens only when the other
  holders did not answer in time.
* What no rule here prevents: a masked input is uniformly random to the
  server, so a client may contribute any value in Z_{2^bits} as its input.

Multi-round sessions
--------------------
With ``rounds=R`` (:mod:`protocols.secagg.client`, "Multi-round sessions",
gives the security argument) the server keeps the setup's keys, session id,
graph and thresholds, and after each round's unmasking enters
:class:`RoundCompleted` (``finished``, with that round's ``result``).
``start()`` then begins the next round: the participants are the clients
that answered the unmasking, pruned to groups of at least t + margin
(:meth:`SecAggServer.next_participants`); each gets a ``NextRound`` naming its
participating group members, and clients pruned away are told they are out.
The session cannot go on (LocalProtocolError; run a new setup) when its R
rounds are used up, fewer than ``min_clients`` remain, or (active) fewer than
T_sig consistency-committee members remain. A dropped client's round-r mask
key is rebuilt for round r only; the client is out for the rest of the session.
From the second round on the server adds each masked input to one running
sum as it arrives (memory O(d), not O(n d)); a client whose input is in that
sum but whose group then falls below t + margin cannot be taken out again,
so that round aborts (and with it the session) where the setup round would
have excluded the client.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from secagg import keys, prg, robust, shamir
from secagg.errors import InvalidKeyError, ShamirError, SignatureError, UndecodableSharesError
from secagg.identity import ADVERTISE_CONTEXT, CONSISTENCY_CONTEXT, Statement
from secagg.randomness import RandomSource, default_rng

from .. import wire
from ..base import Completed, ServerResult, ServerSession, State
from ..errors import LocalProtocolError, RemoteProtocolError
from ..events import DeadlinePassed
from ..messages import Abort, Message, RoundStart
from . import derivation as d
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

if TYPE_CHECKING:  # the config module imports this one when it makes a server
    from .config import SecAgg

__all__ = ["SecAggServer"]

Keys = dict[int, tuple[bytes, bytes]]
#: An active client's advertisement beyond its keys: (commitment, signature).
Signed = dict[int, tuple[bytes, bytes]]
#: What a client's unmasking response must cover: (survivors, dropped) of the peers it holds.
Expected = dict[int, tuple[tuple[int, ...], tuple[int, ...]]]


@dataclass
class NotStarted(State):
    NAME: ClassVar[str] = "not_started"


@dataclass
class CollectingKeys(State):
    advertised: Keys = field(default_factory=dict)
    NAME: ClassVar[str] = "advertise_keys"

    def awaiting(self, server: ServerSession) -> frozenset[int]:
        return frozenset(server.client_ids).difference(self.advertised)


@dataclass
class CollectingSignedKeys(State):
    advertised: Keys = field(default_factory=dict)
    signed: Signed = field(default_factory=dict)
    NAME: ClassVar[str] = "advertise_keys"

    def awaiting(self, server: ServerSession) -> frozenset[int]:
        return frozenset(server.client_ids).difference(self.advertised)


@dataclass
class CollectingReveals(State):
    advertised: Keys
    signed: Signed
    reveals: dict[int, bytes] = field(default_factory=dict)
    NAME: ClassVar[str] = "reveal"

    def awaiting(self, server: ServerSession) -> frozenset[int]:
        return frozenset(self.advertised).difference(self.reveals)


@dataclass
class CollectingShares(State):
    keys: Keys
    session_id: bytes
    envelopes: dict[int, dict[int, bytes]] = field(default_factory=dict)
    NAME: ClassVar[str] = "share_keys"

    def awaiting(self, server: ServerSession) -> frozenset[int]:
        return frozenset(self.keys).difference(self.envelopes)


@dataclass
class CollectingMaskedInputs(State):
    keys: Keys
    session_id: bytes
    sharers: frozenset[int]  # this round's participants
    # Each sender's masked input; after the setup round only who sent (None), the inputs
    # going straight into ``running`` (module docstring, "Multi-round sessions").
    masked: dict[int, np.ndarray | None] = field(default_factory=dict)
    failed: dict[int, frozenset[int]] = field(default_factory=dict)  # who reported whom
    running: prg.MaskSum | None = None
    NAME: ClassVar[str] = "masked_input"

    def awaiting(self, server: ServerSession) -> frozenset[int]:
        return self.sharers.difference(self.masked)


@dataclass
class _Announced:
    """A round once its masked inputs are in: what the consistency check and the
    unmasking both carry (each state adds its own fields after these)."""

    keys: Keys
    session_id: bytes
    survivors: frozenset[int]
    dropped: frozenset[int]
    masked: dict[int, np.ndarray | None]
    failed: dict[int, frozenset[int]]
    running: prg.MaskSum | None

    def announced(self) -> dict[str, Any]:
        """These fields by name, to build the next state from."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(_Announced)}


@dataclass
class CollectingSignatures(_Announced, State):
    signatures: dict[int, bytes] = field(default_factory=dict)
    payload: bytes = b""  # what each signature signs: survivor_payload(survivors), built once
    NAME: ClassVar[str] = "consistency"

    def awaiting(self, server: ServerSession) -> frozenset[int]:
        return self.survivors.difference(self.signatures)


@dataclass
class RoundCompleted(Completed):
    """Multi-round session: a round's result is out; ``start()`` begins the next round.

    ``alive`` are the clients that answered this round's unmasking: only they
    may take part in the next round. ``unanswered`` were asked and did not
    answer: the next round tells them they are out, so none waits forever.
    """

    alive: frozenset[int] = frozenset()
    unanswered: frozenset[int] = frozenset()
    NAME: ClassVar[str] = "round_completed"


@dataclass
class CollectingUnmasking(_Announced, State):
    expected: Expected
    responses: dict[int, UnmaskResponse] = field(default_factory=dict)
    NAME: ClassVar[str] = "unmasking"

    def awaiting(self, server: ServerSession) -> frozenset[int]:
        return frozenset(self.expected).difference(self.responses)


class SecAggServer(ServerSession):
    """A SecAgg or SecAgg+ server session (see module docstring)."""

    TRANSITIONS: ClassVar = {
        (CollectingKeys, AdvertiseKeys): "_on_advertise_keys",
        (CollectingSignedKeys, SignedAdvertiseKeys): "_on_signed_advertise_keys",
        (CollectingReveals, Reveal): "_on_reveal",
        (CollectingShares, ShareKeys): "_on_share_keys",
        (CollectingMaskedInputs, MaskedInput): "_on_masked_input",
        (CollectingSignatures, ConsistencySignature): "_on_consistency_signature",
        (CollectingUnmasking, UnmaskResponse): "_on_unmask_response",
        (CollectingKeys, DeadlinePassed): "_close_keys",
        (CollectingSignedKeys, DeadlinePassed): "_close_signed_keys",
        (CollectingReveals, DeadlinePassed): "_close_reveals",
        (CollectingShares, DeadlinePassed): "_close_shares",
        (CollectingMaskedInputs, DeadlinePassed): "_close_masked",
        (CollectingSignatures, DeadlinePassed): "_close_signatures",
        (CollectingUnmasking, DeadlinePassed): "_close_unmasking",
    }

    def __init__(
        self,
        proto: SecAgg,
        client_ids: Iterable[int],
        dim: int,
        *,
        rng: RandomSource | None = None,
        round: int = 0,
    ) -> None:
        super().__init__(client_ids, dim, round)
        if len(self.client_ids) < proto.min_clients:
            raise ValueError(
                f"{len(self.client_ids)} clients, the configuration needs at least {proto.min_clients}"
            )
        if proto.roster is not None and not set(self.client_ids) <= set(proto.roster):
            outside = sorted(set(self.client_ids) - set(proto.roster))
            raise ValueError(f"clients {outside[:10]} are not in the roster")
        self.proto = proto
        self._rng = default_rng(rng)
        self.encoder = proto.encoder(len(self.client_ids))  # ValueError if bits are too few
        self._config_digest = proto.config_digest(self.dim)
        self.nonce = b""
        self.round_id = b""  # the active variant's (derivation.round_id)
        self.graph_seed = b""  # the nonce, or in the active SecAgg+ the clients' seed
        self.neighbours: dict[int, frozenset[int]] = {}
        self.thresholds: dict[int, int] = {}
        #: Clients caught deviating this round, with what they did (a wrong share,
        #: a reported envelope, a signature that does not verify). Other refused
        #: messages are not listed: the driver sees those.
        self.blame: dict[int, str] = {}
        #: The session round in progress (0-based; ``round`` is the first round's number
        #: plus this). A multi-round session (``proto.rounds`` > 1) keeps its keys,
        #: shares and graph for every round.
        self.index = 0
        self._keys: Keys = {}
        self._session_id = b""
        self._committee_of: tuple[frozenset[int], int] | None = None

    def _initial_state(self) -> State:
        return NotStarted()

    def _on_start(self) -> list[Message]:
        self.nonce = self._rng.bytes(32)
        if self.proto.active:
            self.round_id = d.round_id(self._config_digest, self.nonce, self.round, self.client_ids)
        if not self.proto.seeds_graph:  # else the graph waits for the reveals
            self._set_graph(self.nonce)
        self._state = CollectingSignedKeys() if self.proto.active else CollectingKeys()
        return [
            RoundStart(
                wire.SERVER, cid, self.round, self.nonce, self._config_digest, self.client_ids
            )
            for cid in self.client_ids
        ]

    # -- helpers -----------------------------------------------------------
    def _set_graph(self, seed: bytes) -> None:
        self.graph_seed = seed
        self.neighbours = self.proto.neighbours(self.client_ids, seed)
        self.thresholds = {
            cid: self.proto.group_threshold(len(peers) + 1, len(self.client_ids))
            for cid, peers in self.neighbours.items()
        }

    def _statement(self, context: bytes, sid: bytes, payload: bytes) -> Statement:
        return Statement(context, sid, self.round, self._config_digest, payload)

    def _verify(self, cid: int, signature: bytes, statement: Statement, what: str) -> None:
        """Refuse (and blame) a signature that does not verify under ``cid``'s roster key."""
        assert self.proto.roster is not None
        try:
            self.proto.roster.verify_statement(cid, signature, statement)
        except SignatureError as exc:
            self.blame[cid] = f"its {what} signature does not verify"
            raise RemoteProtocolError(f"client {cid}'s {what}: {exc}") from exc

    def _group(self, cid: int) -> frozenset[int]:
        return self.neighbours[cid] | {cid}

    def _need(self, cid: int) -> int:
        """Shares of each of ``cid``'s secrets the server needs: t, plus the margin to check them."""
        return self.thresholds[cid] + self.proto.share_margin

    def _masked_with(
        self, failed: dict[int, frozenset[int]], v: int, among: frozenset[int]
    ) -> frozenset[int]:
        """The clients in ``among`` whose masked input holds a pairwise mask with ``v``.

        They are also exactly the ones in ``among`` that hold ``v``'s shares: a
        client masks with the peers whose envelopes it opened, and only those.
        """
        return frozenset(w for w in self.neighbours[v] & among if v not in failed.get(w, ()))

    def _prune(self, candidates: Iterable[int]) -> frozenset[int]:
        """Remove clients whose sharing group has fewer than t + margin members left, to a fixpoint."""
        alive = set(candidates)
        changed = True
        while changed:
            changed = False
            for cid in sorted(alive):
                if len(self._group(cid) & alive) < self._need(cid):
                    alive.discard(cid)
                    changed = True
        return frozenset(alive)

    def _expect_new(self, sender: int, expected: Iterable[int], answered: dict) -> None:
        if sender not in expected:
            raise RemoteProtocolError(f"client {sender} is not part of stage {self.stage!r}")
        if sender in answered:
            raise RemoteProtocolError(f"duplicate {self.stage} message from client {sender}")

    # -- stage 0: advertise keys ----------------------------------------------
    def _on_advertise_keys(self, msg: AdvertiseKeys) -> list[Message]:
        st = self._state
        assert isinstance(st, CollectingKeys)
        self._expect_new(msg.sender, self.client_ids, st.advertised)
        _check_keys(msg, self.proto.rounds)
        st.advertised[msg.sender] = (msg.channel_public_key, msg.mask_public_key)
        if len(st.advertised) == len(self.client_ids):
            return self.close_stage()
        return []

    def _on_signed_advertise_keys(self, msg: SignedAdvertiseKeys) -> list[Message]:
        st = self._state
        assert isinstance(st, CollectingSignedKeys)
        self._expect_new(msg.sender, self.client_ids, st.advertised)
        _check_keys(msg, self.proto.rounds)
        if not self.proto.seeds_graph and msg.commitment != d.NO_COMMITMENT:
            raise RemoteProtocolError(f"client {msg.sender} committed to a seed SecAgg has none of")
        payload = d.advert_payload(
            msg.sender, msg.channel_public_key, msg.mask_public_key, msg.commitment
        )
        statement = self._statement(ADVERTISE_CONTEXT, self.round_id, payload)
        self._verify(msg.sender, msg.signature, statement, "key advertisement")
        st.advertised[msg.sender] = (msg.channel_public_key, msg.mask_public_key)
        st.signed[msg.sender] = (msg.commitment, msg.signature)
        if len(st.advertised) == len(self.client_ids):
            return self.close_stage()
        return []

    def _close_keys(self, event: DeadlinePassed) -> list[Message]:
        st = self._state
        assert isinstance(st, CollectingKeys)
        return self._relay_keys(st.advertised, None, ())

    def _close_signed_keys(self, event: DeadlinePassed) -> list[Message]:
        st = self._state
        assert isinstance(st, CollectingSignedKeys)
        if not self.proto.seeds_graph:
            return self._relay_keys(st.advertised, st.signed, ())
        if not st.advertised:
            return self._abort_round("no client advertised keys", ())
        # Commit-then-reveal (Bell et al. 2020 assume a graph the server did not pick):
        # everyone sees the commitments before anyone reveals.
        commitments = tuple((cid, st.signed[cid][0]) for cid in sorted(st.advertised))
        out: list[Message] = [
            Commitments(wire.SERVER, cid, self.round, commitments) for cid in sorted(st.advertised)
        ]
        out += self._exclude(
            set(self.client_ids) - set(st.advertised), "no keys before the deadline"
        )
        self._state = CollectingReveals(st.advertised, st.signed)
        return out

    def _on_reveal(self, msg: Reveal) -> list[Message]:
        st = self._state
        assert isinstance(st, CollectingReveals)
        if msg.round_id != self.round_id:
            raise RemoteProtocolError(f"Reveal from client {msg.sender} belongs to another session")
        self._expect_new(msg.sender, st.advertised, st.reveals)
        if d.commitment(self.round_id, msg.sender, msg.randomness) != st.signed[msg.sender][0]:
            self.blame[msg.sender] = "its reveal does not open its commitment"
            raise RemoteProtocolError(f"client {msg.sender}'s reveal does not open its commitment")
        st.reveals[msg.sender] = msg.randomness
        if len(st.reveals) == len(st.advertised):
            return self.close_stage()
        return []

    def _close_reveals(self, event: DeadlinePassed) -> list[Message]:
        st = self._state
        assert isinstance(st, CollectingReveals)
        missing = sorted(set(st.advertised) - set(st.reveals))
        if missing:
            # Every client would refuse a subset of the committed reveals (that choice
            # would let the server grind the graph); an honest server aborts.
            return self._abort_round(
                f"clients {missing[:10]} committed to the graph seed and did not reveal",
                st.advertised,
            )
        reveals = tuple(sorted(st.reveals.items()))
        seed = d.graph_seed(self.round_id, reveals)
        self._set_graph(seed)
        return self._relay_keys(
            st.advertised, st.signed, reveals, d.graph_session_id(self.round_id, seed)
        )

    def _relay_keys(
        self,
        advertised: Keys,
        signed: Signed | None,
        reveals: tuple[tuple[int, bytes], ...],
        sid: bytes | None = None,
    ) -> list[Message]:
        """Send every remaining client its group's keys (signed ones with their signatures)."""
        # A key advertised by two clients (a copied key) would let one decrypt the
        # other's envelopes: neither takes part.
        uses = Counter(k for pair in advertised.values() for k in _all_keys(pair))
        honest = {
            cid for cid, pair in advertised.items() if all(uses[k] == 1 for k in _all_keys(pair))
        }
        alive = self._prune(honest)
        excluded = set(advertised) - alive
        if not alive:
            return self._abort_round(
                "too few clients advertised keys to reach the threshold", advertised
            )
        keys_u1 = {cid: advertised[cid] for cid in sorted(alive)}
        if sid is None:
            sid = d.session_id(
                self._config_digest, self.nonce, [(c, *ks) for c, ks in keys_u1.items()]
            )
        out: list[Message] = []
        for cid in keys_u1:
            group = sorted(self._group(cid) & alive)
            if signed is None:
                out.append(
                    KeysAdvertised(
                        wire.SERVER, cid, self.round, sid, tuple((p, *keys_u1[p]) for p in group)
                    )
                )
            else:
                out.append(
                    SignedKeysAdvertised(
                        wire.SERVER,
                        cid,
                        self.round,
                        sid,
                        tuple((p, *keys_u1[p], *signed[p]) for p in group),
                        reveals,
                    )
                )
        out += self._exclude(excluded, "too few neighbours advertised keys")
        # Clients that missed the deadline are told too, so none waits forever.
        out += self._exclude(set(self.client_ids) - set(advertised), "no keys before the deadline")
        self._keys, self._session_id = keys_u1, sid
        self._state = CollectingShares(keys_u1, sid)
        return out

    def _exclude(self, clients: Iterable[int], reason: str) -> list[Message]:
        return [
            Abort(wire.SERVER, cid, self.round, f"excluded from the round: {reason}")
            for cid in sorted(clients)
        ]

    # -- stage 1: share keys -----------------------------------------------------
    def _on_share_keys(self, msg: ShareKeys) -> list[Message]:
        st = self._state
        assert isinstance(st, CollectingShares)
        _check_session(msg, st.session_id)
        self._expect_new(msg.sender, st.keys, st.envelopes)
        recipients = {cid for cid, _ in msg.envelopes}
        expected = (self.neighbours[msg.sender] & set(st.keys)) - {msg.sender}
        if recipients != expected:
            raise RemoteProtocolError(
                f"client {msg.sender} sent shares to {sorted(recipients)}, expected {sorted(expected)}"
            )
        st.envelopes[msg.sender] = dict(msg.envelopes)
        if len(st.envelopes) == len(st.keys):
            return self.close_stage()
        return []

    def _close_shares(self, event: DeadlinePassed) -> list[Message]:
        st = self._state
        assert isinstance(st, CollectingShares)
        sharers = self._prune(st.envelopes)
        excluded = set(st.envelopes) - sharers
        if not sharers:
            return self._abort_round("too few clients shared their keys", st.envelopes)
        out: list[Message] = []
        for cid in sorted(sharers):
            incoming = tuple(
                (sender, st.envelopes[sender][cid])
                for sender in sorted(self.neighbours[cid] & sharers)
            )
            out.append(SharesDelivered(wire.SERVER, cid, self.round, incoming, st.session_id))
        out += self._exclude(excluded, "too few neighbours shared keys")
        self._state = CollectingMaskedInputs(st.keys, st.session_id, sharers)
        return out

    # -- stage 2: masked input ---------------------------------------------------
    def _on_masked_input(self, msg: MaskedInput) -> list[Message]:
        st = self._state
        assert isinstance(st, CollectingMaskedInputs)
        _check_session(msg, st.session_id)
        self._expect_new(msg.sender, st.sharers, st.masked)
        if msg.vector.bits != self.encoder.bits or msg.vector.values.shape != (self.dim,):
            raise RemoteProtocolError(
                f"client {msg.sender} sent a {msg.vector.values.shape[0]}-vector in Z_2^{msg.vector.bits}, "
                f"expected {self.dim} in Z_2^{self.encoder.bits}"
            )
        delivered = (self.neighbours[msg.sender] & st.sharers) - {msg.sender}
        if msg.failed and self.index:
            raise RemoteProtocolError(
                f"client {msg.sender} reports envelopes in round {self.index} of the session; "
                "envelopes are opened once, at the key setup"
            )
        if not set(msg.failed) <= delivered:
            raise RemoteProtocolError(
                f"client {msg.sender} reports envelopes from {sorted(set(msg.failed) - delivered)}, "
                "which it was not sent"
            )
        if len(msg.failed) > MAX_FAILED_ENVELOPES:
            raise RemoteProtocolError(
                f"client {msg.sender} reports {len(msg.failed)} peers; at most "
                f"{MAX_FAILED_ENVELOPES} may be reported"
            )
        if st.running is None:
            st.masked[msg.sender] = msg.vector.values
        else:
            st.running.add_words(msg.vector.values)
            st.masked[msg.sender] = None
        if msg.failed:
            st.failed[msg.sender] = frozenset(msg.failed)
        if len(st.masked) == len(st.sharers):
            return self.close_stage()
        return []

    def _close_masked(self, event: DeadlinePassed) -> list[Message]:
        st = self._state
        assert isinstance(st, CollectingMaskedInputs)
        # A reported peer is dropped for everyone: its reporter left its mask with it
        # out, so its input cannot be in the sum (module docstring, "One malicious client").
        reported: dict[int, list[int]] = defaultdict(list)
        for u in sorted(st.failed):
            for v in st.failed[u]:
                reported[v].append(u)
        for v, reporters in reported.items():
            self.blame[v] = f"its share envelopes to {reporters} did not open"
        survivors = self._prune(set(st.masked) - set(reported))
        dropped = st.sharers - survivors
        # Every dropped client whose pairwise masks sit in a survivor's input must be
        # recoverable from survivors' shares; check before a single share is requested.
        for cid in sorted(dropped):
            holders = self._masked_with(st.failed, cid, survivors)
            if holders and len(holders) < self._need(cid):
                return self._abort_round(
                    f"client {cid} dropped and only {len(holders)} of the survivors that masked "
                    f"with it hold its shares; {self._need(cid)} are needed to remove its masks"
                    + (f" ({self.blame[cid]})" if cid in reported else ""),
                    st.sharers,
                )
        if not survivors:
            return self._abort_round("too few clients sent a masked input", st.sharers)
        if st.running is not None and set(st.masked) - survivors:
            # Their inputs are in the running sum and cannot be taken out again.
            return self._abort_round(
                f"clients {sorted(set(st.masked) - survivors)[:10]} sent masked inputs but too "
                "few of their sharing groups did; after the setup round the server keeps only "
                "the running sum, so the session ends (a new setup follows)",
                st.sharers,
            )
        outcome = _Announced(
            st.keys, st.session_id, survivors, dropped, dict(st.masked), dict(st.failed), st.running
        )
        out: list[Message] = []
        out += self._exclude(set(st.masked) - survivors, "too few neighbours sent a masked input")
        out += self._exclude(st.sharers - set(st.masked), "no masked input received")
        if self.proto.active:
            members, needed = self._committee()
            if len(survivors & members) < needed:
                return self._abort_round(
                    f"{len(survivors & members)} surviving committee members can never give "
                    f"the {needed} consistency signatures unmasking needs",
                    st.sharers,
                )
            # Bonawitz et al. 2017, Fig. 4, round 3 (ConsistencyCheck): announce S.
            announced = tuple(sorted(survivors))
            out[:0] = [
                ConsistencyCheck(wire.SERVER, cid, self.round, announced, st.session_id)
                for cid in announced
            ]
            self._state = CollectingSignatures(
                **outcome.announced(), payload=d.survivor_payload(survivors)
            )
            return out
        # Only survivors are asked: a client pruned above has fewer than t survivors
        # in its group and would (rightly) refuse to reveal anything.
        expected = self._expected(st.failed, survivors, dropped, survivors)
        out[:0] = [
            UnmaskRequest(wire.SERVER, cid, self.round, *expected[cid], st.session_id)
            for cid in sorted(expected)
        ]
        self._state = CollectingUnmasking(**outcome.announced(), expected=expected)
        return out

    def _committee(self) -> tuple[frozenset[int], int]:
        """The consistency committee and T_sig (the graph seed is known by then; fixed
        for the session, so computed once)."""
        if self._committee_of is None:
            from .config import consistency_committee  # config imports this module

            self._committee_of = consistency_committee(self.proto, self.client_ids, self.graph_seed)
        return self._committee_of

    def _expected(
        self,
        failed: dict[int, frozenset[int]],
        survivors: frozenset[int],
        dropped: frozenset[int],
        asked: Iterable[int],
    ) -> Expected:
        """What each asked client holds: its group's survivors, and its dropped peers
        except those it reported (it holds no shares of those)."""
        return {
            cid: (
                tuple(sorted(self._group(cid) & survivors)),
                tuple(sorted((self.neighbours[cid] & dropped) - failed.get(cid, frozenset()))),
            )
            for cid in sorted(asked)
        }

    # -- stage 3 (active): consistency check ---------------------------------------
    def _on_consistency_signature(self, msg: ConsistencySignature) -> list[Message]:
        st = self._state
        assert isinstance(st, CollectingSignatures)
        _check_session(msg, st.session_id)
        self._expect_new(msg.sender, st.survivors, st.signatures)
        statement = self._statement(CONSISTENCY_CONTEXT, st.session_id, st.payload)
        self._verify(msg.sender, msg.signature, statement, "consistency")
        st.signatures[msg.sender] = msg.signature
        if len(st.signatures) == len(st.survivors):
            return self.close_stage()
        return []

    def _close_signatures(self, event: DeadlinePassed) -> list[Message]:
        st = self._state
        assert isinstance(st, CollectingSignatures)
        members, needed = self._committee()
        certifying = sorted((cid, sig) for cid, sig in st.signatures.items() if cid in members)
        if len(certifying) < needed:
            return self._abort_round(
                f"{len(certifying)} consistency signatures from the committee, {needed} are needed",
                st.survivors,
            )
        # T_sig committee signatures (by id) suffice for every client's check. Every
        # survivor signs (an honest client reveals only for a set it signed itself), and
        # the signers' inputs stay in the sum whether or not they are on the committee.
        proof = tuple(certifying[:needed])
        announced = tuple(sorted(st.survivors))
        asked = frozenset(st.signatures)
        expected = self._expected(st.failed, st.survivors, st.dropped, asked)
        out: list[Message] = [
            CertifiedUnmaskRequest(wire.SERVER, cid, self.round, announced, proof, st.session_id)
            for cid in sorted(asked)
        ]
        out += self._exclude(st.survivors - asked, "no consistency signature received")
        self._state = CollectingUnmasking(**st.announced(), expected=expected)
        return out

    # -- stage 3: unmasking ------------------------------------------------------
    def _on_unmask_response(self, msg: UnmaskResponse) -> list[Message]:
        st = self._state
        assert isinstance(st, CollectingUnmasking)
        _check_session(msg, st.session_id)
        self._expect_new(msg.sender, st.expected, st.responses)
        survivors, dropped = st.expected[msg.sender]
        if (
            tuple(c for c, _ in msg.self_mask_shares) != survivors
            or tuple(c for c, _ in msg.mask_key_shares) != dropped
        ):
            raise RemoteProtocolError(f"client {msg.sender} answered a different unmasking request")
        for _, share in (*msg.self_mask_shares, *msg.mask_key_shares):
            if len(share) != shamir.SHARE_BYTES:
                raise RemoteProtocolError(f"client {msg.sender} sent a share of the wrong length")
            if int.from_bytes(share, "big") >= shamir.FIELD_PRIME:
                raise RemoteProtocolError(f"client {msg.sender} sent a share outside the field")
        st.responses[msg.sender] = msg
        if len(st.responses) == len(st.expected):
            return self.close_stage()
        return []

    def _close_unmasking(self, event: DeadlinePassed) -> list[Message]:
        st = self._state
        assert isinstance(st, CollectingUnmasking)
        try:
            self_seeds = self._reconstruct(
                st, st.survivors, lambda r: r.self_mask_shares, "self-mask seed"
            )
            needed = {v for v in st.dropped if self._masked_with(st.failed, v, st.survivors)}
            mask_keys = self._reconstruct(st, needed, lambda r: r.mask_key_shares, "mask key")
        except _Unrecoverable as exc:
            self._abort(str(exc))
            return []
        bits = self.encoder.bits
        r = self.index
        acc = prg.MaskSum(self.dim, bits) if st.running is None else st.running
        for cid in st.survivors:
            vector = st.masked[cid]
            if vector is not None:
                acc.add_words(vector)
            d.add_self_mask(acc, self_seeds[cid], st.session_id, cid, remove=True)
        for v, secret in mask_keys.items():
            try:
                pair = keys.KeyPair.from_private_bytes(secret)
            except ValueError:
                pair = None
            if pair is None or pair.public_bytes != d.mask_key(st.keys[v][1], r):
                self._abort(f"reconstructed mask key of client {v} does not match its public key")
                return []
            for u in sorted(self._masked_with(st.failed, v, st.survivors)):
                context = d.round_context(
                    d.pair_context(st.session_id, u, st.keys[u], v, st.keys[v]), r
                )
                # y_u carries u's signed mask with v; take it back out.
                secret_uv = d.pairwise_secret(pair, d.mask_key(st.keys[u][1], r), context)
                d.add_pairwise_mask(acc, secret_uv, context, u, v, remove=True)
        total = acc.result()
        integers = self.encoder.decode_integers(total)
        self._result = ServerResult(
            total=integers.astype(np.float64) / self.encoder.scale,
            survivors=tuple(sorted(st.survivors)),
            integer_total=integers,
            scale=self.encoder.scale,
        )
        if r + 1 < self.proto.rounds:
            self._state = RoundCompleted(
                frozenset(st.responses), frozenset(st.expected) - frozenset(st.responses)
            )
        else:
            self._state = Completed()
        return []

    # -- multi-round sessions: the next round (module docstring, "Multi-round sessions") --
    @property
    def rounds_left(self) -> int:
        """Rounds this session can still run after the current one, keys permitting."""
        return self.proto.rounds - self.index - 1

    def next_participants(self) -> tuple[frozenset[int], str | None]:
        """Who would take part in the next round, and why the session cannot go on (or None).

        The participants are the clients that answered the last unmasking,
        pruned until every one of them keeps ``t + share_margin`` members of
        its sharing group (the shares were split with that threshold at the
        setup); the session is over when none remain, when fewer than
        ``min_clients`` remain, or when the consistency committee could no longer
        certify a survivor set. After its last round the session is
        ``Completed``, not between rounds. A new setup (a new session) follows.
        """
        st = self._state
        if not isinstance(st, RoundCompleted):
            return frozenset(), f"the server is in stage {self.stage!r}, not between rounds"
        alive = self._prune(st.alive)
        if len(alive) < max(self.proto.min_clients, 1):
            return alive, (
                f"{len(alive)} clients could take part in another round; the session needs "
                f"{max(self.proto.min_clients, 1)} with t of each sharing group"
            )
        if self.proto.active:
            members, needed = self._committee()
            if len(alive & members) < needed:
                return alive, (
                    f"{len(alive & members)} consistency committee members are left; "
                    f"{needed} must sign each round's survivor set"
                )
        return alive, None

    def start(self) -> list[Message]:
        """Begin the session (the key setup and its first round), or its next round.

        A multi-round session between rounds starts the next one: every
        participant (:meth:`next_participants`) is sent its group's
        participants; clients left out are told they are out of the session.
        :class:`LocalProtocolError` if the session cannot go on.
        """
        if not isinstance(self._state, RoundCompleted):
            return super().start()
        participants, reason = self.next_participants()
        if reason is not None:
            raise LocalProtocolError(f"no further round in this session: {reason}")
        left_out = (self._state.alive - participants) | self._state.unanswered
        self.round += 1
        self.index += 1
        self.blame = {}
        out: list[Message] = [
            NextRound(
                wire.SERVER,
                cid,
                self.round,
                tuple(sorted(self._group(cid) & participants)),
                self._session_id,
            )
            for cid in sorted(participants)
        ]
        out += [
            Abort(
                wire.SERVER,
                cid,
                self.round,
                "excluded from the session: too few of its sharing group are left",
            )
            for cid in sorted(left_out)
        ]
        # From here on the server keeps one running sum, not every masked input: O(d)
        # memory in the round however many clients take part.
        self._state = CollectingMaskedInputs(
            self._keys,
            self._session_id,
            participants,
            running=prg.MaskSum(self.dim, self.encoder.bits),
        )
        return out

    def _reconstruct(
        self,
        st: CollectingUnmasking,
        owners: Iterable[int],
        pick: Callable[[UnmaskResponse], Sequence[tuple[int, bytes]]],
        what: str,
    ) -> dict[int, bytes]:
        """Decode each owner's secret from its shares, batching owners with the same holders.

        Reed-Solomon decoding (:mod:`secagg.robust`) corrects up to
        ``(n' - t) // 2`` wrong shares among the ``n'`` received and names
        their senders in :attr:`blame`; more wrong shares than that, or fewer
        than t + margin shares, raise :class:`_Unrecoverable`: never a wrong secret
        from at most ``margin`` liars (module docstring, "Wrong shares").
        """
        tables = {h: dict(pick(r)) for h, r in st.responses.items()}  # each response indexed once
        by_holders: dict[tuple[tuple[int, ...], int], list[int]] = defaultdict(list)
        for owner in sorted(owners):
            holders = tuple(h for h in sorted(tables) if owner in tables[h])
            if len(holders) < self._need(owner):
                raise _Unrecoverable(
                    f"only {len(holders)} unmasking responses hold shares of client {owner}'s "
                    f"{what}; {self._need(owner)} are needed (threshold {self.thresholds[owner]} "
                    f"plus a margin of {self.proto.share_margin} to check them)"
                )
            by_holders[holders, self.thresholds[owner]].append(owner)
        secrets: dict[int, bytes] = {}
        for (holders, threshold), group in by_holders.items():
            # Share x-coordinates are client_id + 1 (the client's split_many convention).
            points = {h + 1: [tables[h][owner] for owner in group] for h in holders}
            try:
                decoded = robust.decode_many(points, threshold, secret_len=32)
            except UndecodableSharesError as exc:
                owner = group[exc.secret_index or 0]
                raise _Unrecoverable(
                    f"the {len(holders)} shares of client {owner}'s {what} (held by "
                    f"{list(holders)}) are inconsistent: more than {exc.max_errors} are wrong, "
                    "so the liars cannot be told apart"
                ) from exc
            except ShamirError as exc:  # decodes to a value no client could have shared
                raise _Unrecoverable(f"shares of a {what} are inconsistent: {exc}") from exc
            for owner, liars in zip(group, decoded.liars, strict=True):
                for x in sorted(liars):
                    self.blame[x - 1] = f"sent a wrong share of client {owner}'s {what}"
            secrets.update(zip(group, decoded.secrets, strict=True))
        return secrets


def _all_keys(pair: tuple[bytes, bytes]) -> list[bytes]:
    """A client's channel key and each of its mask keys (one per session round)."""
    channel, run = pair
    return [channel, *d.mask_keys(run)]


def _check_keys(msg: AdvertiseKeys | SignedAdvertiseKeys, rounds: int) -> None:
    """Refuse a repeated, invalid or small-order X25519 key (the module docstring, "Keys"),
    and a run of mask keys that is not one per session round."""
    if len(msg.mask_public_key) != 32 * rounds:
        raise RemoteProtocolError(
            f"client {msg.sender} advertised {len(msg.mask_public_key) // 32} mask keys; the "
            f"session has {rounds} rounds"
        )
    advertised = _all_keys((msg.channel_public_key, msg.mask_public_key))
    if len(set(advertised)) != len(advertised):
        raise RemoteProtocolError(f"client {msg.sender} advertised the same key twice")
    # Refused here, so a small-order key never reaches (and never fails) a peer;
    # the client is left out of the round like one that advertised nothing.
    for what, public in zip(
        ["channel", *(d.key_label(i, rounds) for i in range(rounds))], advertised, strict=True
    ):
        try:
            keys.check_public_key(public)
        except InvalidKeyError as exc:
            raise RemoteProtocolError(
                f"client {msg.sender} advertised an invalid {what} key: {exc}"
            ) from exc


def _check_session(
    msg: ShareKeys | MaskedInput | ConsistencySignature | UnmaskResponse, session_id: bytes
) -> None:
    # Checked before the duplicate check: a replay from another session must not
    # count as this client's message (the real one is still accepted after it).
    if msg.session_id != session_id:
        raise RemoteProtocolError(
            f"{type(msg).__name__} from client {msg.sender} belongs to another session"
        )


class _Unrecoverable(Exception):
    """Not enough (consistent) shares to remove a mask."""
