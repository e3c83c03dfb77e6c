"""The SecAgg / SecAgg+ server: collects, relays, and unmasks only the sum.

Stages (Bonawitz et al. 2017 round numbers in brackets)::

    advertise_keys [0] -> share_keys [1] -> masked_input [2] -> unmasking [3] -> completed
                                                                      (any) -> aborted

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
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from secagg import keys, prg, shamir
from secagg.errors import ShamirError
from secagg.randomness import RandomSource, default_rng

from .. import wire
from ..base import Completed, ServerResult, ServerSession, State
from ..errors import RemoteProtocolError
from ..events import DeadlinePassed
from ..messages import Abort, Message, RoundStart
from . import derivation as d
from .messages import (
    AdvertiseKeys,
    KeysAdvertised,
    MaskedInput,
    ShareKeys,
    SharesDelivered,
    UnmaskRequest,
    UnmaskResponse,
)

if TYPE_CHECKING:  # the config module imports this one when it makes a server
    from .config import SecAgg

__all__ = ["SecAggServer"]

Keys = dict[int, tuple[bytes, bytes]]


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
    sharers: frozenset[int]
    masked: dict[int, np.ndarray] = field(default_factory=dict)
    NAME: ClassVar[str] = "masked_input"

    def awaiting(self, server: ServerSession) -> frozenset[int]:
        return self.sharers.difference(self.masked)


@dataclass
class CollectingUnmasking(State):
    keys: Keys
    session_id: bytes
    survivors: frozenset[int]
    dropped: frozenset[int]
    masked: dict[int, np.ndarray]
    requests: dict[int, UnmaskRequest]
    responses: dict[int, UnmaskResponse] = field(default_factory=dict)
    NAME: ClassVar[str] = "unmasking"

    def awaiting(self, server: ServerSession) -> frozenset[int]:
        return frozenset(self.requests).difference(self.responses)


class SecAggServer(ServerSession):
    """A SecAgg or SecAgg+ server session (see module docstring)."""

    TRANSITIONS: ClassVar = {
        (CollectingKeys, AdvertiseKeys): "_on_advertise_keys",
        (CollectingShares, ShareKeys): "_on_share_keys",
        (CollectingMaskedInputs, MaskedInput): "_on_masked_input",
        (CollectingUnmasking, UnmaskResponse): "_on_unmask_response",
        (CollectingKeys, DeadlinePassed): "_close_keys",
        (CollectingShares, DeadlinePassed): "_close_shares",
        (CollectingMaskedInputs, DeadlinePassed): "_close_masked",
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
        self.proto = proto
        self._rng = default_rng(rng)
        self.encoder = proto.encoder(len(self.client_ids))  # ValueError if bits are too few
        self._config_digest = proto.config_digest(self.dim)
        self.nonce = b""
        self.neighbours: dict[int, frozenset[int]] = {}
        self.thresholds: dict[int, int] = {}

    def _initial_state(self) -> State:
        return NotStarted()

    def _on_start(self) -> list[Message]:
        self.nonce = self._rng.bytes(32)
        self.neighbours = self.proto.neighbours(self.client_ids, self.nonce)
        self.thresholds = {
            cid: self.proto.group_threshold(len(peers) + 1, len(self.client_ids))
            for cid, peers in self.neighbours.items()
        }
        self._state = CollectingKeys()
        return [
            RoundStart(
                wire.SERVER, cid, self.round, self.nonce, self._config_digest, self.client_ids
            )
            for cid in self.client_ids
        ]

    # -- helpers -----------------------------------------------------------
    def _group(self, cid: int) -> frozenset[int]:
        return self.neighbours[cid] | {cid}

    def _prune(self, candidates: Iterable[int]) -> frozenset[int]:
        """Remove clients whose sharing group has fewer than t members left, to a fixpoint."""
        alive = set(candidates)
        changed = True
        while changed:
            changed = False
            for cid in sorted(alive):
                if len(self._group(cid) & alive) < self.thresholds[cid]:
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
        if msg.channel_public_key == msg.mask_public_key:
            raise RemoteProtocolError(f"client {msg.sender} advertised the same key twice")
        st.advertised[msg.sender] = (msg.channel_public_key, msg.mask_public_key)
        if len(st.advertised) == len(self.client_ids):
            return self.close_stage()
        return []

    def _close_keys(self, event: DeadlinePassed) -> list[Message]:
        st = self._state
        assert isinstance(st, CollectingKeys)
        # A key advertised by two clients (a copied key) would let one decrypt the
        # other's envelopes: neither takes part.
        uses = Counter(k for pair in st.advertised.values() for k in pair)
        honest = {cid for cid, pair in st.advertised.items() if all(uses[k] == 1 for k in pair)}
        alive = self._prune(honest)
        excluded = set(st.advertised) - alive
        if not alive:
            return self._abort_round(
                "too few clients advertised keys to reach the threshold", st.advertised
            )
        keys_u1 = {cid: st.advertised[cid] for cid in sorted(alive)}
        sid = d.session_id(self._config_digest, self.nonce, [(c, *ks) for c, ks in keys_u1.items()])
        out: list[Message] = [
            KeysAdvertised(
                wire.SERVER,
                cid,
                self.round,
                sid,
                tuple((p, *keys_u1[p]) for p in sorted(self._group(cid) & alive)),
            )
            for cid in keys_u1
        ]
        out += self._exclude(excluded, "too few neighbours advertised keys")
        # Clients that missed the deadline are told too, so none waits forever.
        out += self._exclude(
            set(self.client_ids) - set(st.advertised), "no keys before the deadline"
        )
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
            out.append(SharesDelivered(wire.SERVER, cid, self.round, incoming))
        out += self._exclude(excluded, "too few neighbours shared keys")
        self._state = CollectingMaskedInputs(st.keys, st.session_id, sharers)
        return out

    # -- stage 2: masked input ---------------------------------------------------
    def _on_masked_input(self, msg: MaskedInput) -> list[Message]:
        st = self._state
        assert isinstance(st, CollectingMaskedInputs)
        self._expect_new(msg.sender, st.sharers, st.masked)
        if msg.vector.bits != self.encoder.bits or msg.vector.values.shape != (self.dim,):
            raise RemoteProtocolError(
                f"client {msg.sender} sent a {msg.vector.values.shape[0]}-vector in Z_2^{msg.vector.bits}, "
                f"expected {self.dim} in Z_2^{self.encoder.bits}"
            )
        st.masked[msg.sender] = msg.vector.values
        if len(st.masked) == len(st.sharers):
            return self.close_stage()
        return []

    def _close_masked(self, event: DeadlinePassed) -> list[Message]:
        st = self._state
        assert isinstance(st, CollectingMaskedInputs)
        survivors = self._prune(st.masked)
        dropped = st.sharers - survivors
        # Every dropped client whose pairwise masks sit in a survivor's input must be
        # recoverable from survivors' shares; check before a single share is requested.
        for cid in sorted(dropped):
            if (
                self.neighbours[cid] & survivors
                and len(self._group(cid) & survivors) < self.thresholds[cid]
            ):
                return self._abort_round(
                    f"client {cid} dropped and too few of its neighbours survive to remove its masks",
                    st.sharers,
                )
        if not survivors:
            return self._abort_round("too few clients sent a masked input", st.sharers)
        # Only survivors are asked: a client pruned above has fewer than t survivors
        # in its group and would (rightly) refuse to reveal anything.
        requests = {
            cid: UnmaskRequest(
                wire.SERVER,
                cid,
                self.round,
                tuple(sorted(self._group(cid) & survivors)),
                tuple(sorted(self._group(cid) & dropped)),
            )
            for cid in sorted(survivors)
        }
        out: list[Message] = list(requests.values())
        out += self._exclude(set(st.masked) - survivors, "too few neighbours sent a masked input")
        out += self._exclude(st.sharers - set(st.masked), "no masked input received")
        self._state = CollectingUnmasking(
            st.keys, st.session_id, survivors, dropped, dict(st.masked), requests
        )
        return out

    # -- stage 3: unmasking ------------------------------------------------------
    def _on_unmask_response(self, msg: UnmaskResponse) -> list[Message]:
        st = self._state
        assert isinstance(st, CollectingUnmasking)
        self._expect_new(msg.sender, st.requests, st.responses)
        request = st.requests[msg.sender]
        if (
            tuple(c for c, _ in msg.self_mask_shares) != request.survivors
            or tuple(c for c, _ in msg.mask_key_shares) != request.dropped
        ):
            raise RemoteProtocolError(f"client {msg.sender} answered a different unmasking request")
        for _, share in (*msg.self_mask_shares, *msg.mask_key_shares):
            if len(share) != shamir.SHARE_BYTES:
                raise RemoteProtocolError(f"client {msg.sender} sent a share of the wrong length")
        st.responses[msg.sender] = msg
        if len(st.responses) == len(st.requests):
            return self.close_stage()
        return []

    def _close_unmasking(self, event: DeadlinePassed) -> list[Message]:
        st = self._state
        assert isinstance(st, CollectingUnmasking)
        try:
            self_seeds = self._reconstruct(st, st.survivors, lambda r: r.self_mask_shares)
            needed = {v for v in st.dropped if self.neighbours[v] & st.survivors}
            mask_keys = self._reconstruct(st, needed, lambda r: r.mask_key_shares)
        except _Unrecoverable as exc:
            self._abort(str(exc))
            return []
        bits = self.encoder.bits
        acc = prg.MaskSum(self.dim, bits)
        for cid in st.survivors:
            acc.add_words(st.masked[cid])
            d.add_self_mask(acc, self_seeds[cid], st.session_id, cid, remove=True)
        for v, secret in mask_keys.items():
            try:
                pair = keys.KeyPair.from_private_bytes(secret)
            except ValueError:
                pair = None
            if pair is None or pair.public_bytes != st.keys[v][1]:
                self._abort(f"reconstructed mask key of client {v} does not match its public key")
                return []
            for u in sorted(self.neighbours[v] & st.survivors):
                context = d.pair_context(st.session_id, u, st.keys[u], v, st.keys[v])
                # y_u carries u's signed mask with v; take it back out.
                secret_uv = d.pairwise_secret(pair, st.keys[u][1], context)
                d.add_pairwise_mask(acc, secret_uv, context, u, v, remove=True)
        total = acc.result()
        integers = self.encoder.decode_integers(total)
        self._result = ServerResult(
            total=integers.astype(np.float64) / self.encoder.scale,
            survivors=tuple(sorted(st.survivors)),
            integer_total=integers,
            scale=self.encoder.scale,
        )
        self._state = Completed()
        return []

    def _reconstruct(
        self,
        st: CollectingUnmasking,
        owners: Iterable[int],
        pick: Callable[[UnmaskResponse], Sequence[tuple[int, bytes]]],
    ) -> dict[int, bytes]:
        """Combine the shares of each owner's secret, batching owners with the same holders."""
        by_holders: dict[tuple[tuple[int, ...], int], list[int]] = defaultdict(list)
        for owner in sorted(owners):
            holders = tuple(sorted(self._group(owner) & set(st.responses)))
            if len(holders) < self.thresholds[owner]:
                raise _Unrecoverable(
                    f"only {len(holders)} unmasking responses hold shares of client {owner}; "
                    f"threshold is {self.thresholds[owner]}"
                )
            by_holders[holders, self.thresholds[owner]].append(owner)
        secrets: dict[int, bytes] = {}
        tables: dict[int, dict[int, bytes]] = {}  # each response's shares, indexed once
        for (holders, threshold), group in by_holders.items():
            for h in holders:
                if h not in tables:
                    tables[h] = dict(pick(st.responses[h]))
            points = {h + 1: [tables[h][owner] for owner in group] for h in holders}
            try:
                values = shamir.combine_many(points, threshold, secret_len=32)
            except ShamirError:
                # Name the owner whose shares do not fit one polynomial.
                for i, owner in enumerate(group):
                    try:
                        shamir.combine({x: v[i] for x, v in points.items()}, threshold, 32)
                    except ShamirError as exc:
                        raise _Unrecoverable(
                            f"shares of client {owner} are inconsistent: {exc}"
                        ) from exc
                raise
            secrets.update(zip(group, values))
        return secrets


class _Unrecoverable(Exception):
    """Not enough (consistent) shares to remove a mask."""
