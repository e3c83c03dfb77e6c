"""Configuration objects of SecAgg and SecAgg+ (the public entry points)."""

from __future__ import annotations

import dataclasses
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from secagg.encoding import FixedPointEncoder
from secagg.identity import IdentityKeyPair, Roster
from secagg.randomness import RandomSource

from .. import wire
from ..base import AggregationProtocol, check_positive, check_threshold, resolve_threshold
from ..cost import CostEstimate
from ..errors import LocalProtocolError
from . import client as _client  # noqa: F401  (registers the client's snapshot state classes)
from . import messages as _messages  # noqa: F401  (registers the SecAgg wire types on import)
from .derivation import committee
from .graph import (
    auto_threshold,
    choose_degree,
    committee_size,
    complete_graph,
    harary_graph,
    harary_neighbours,
)

if TYPE_CHECKING:  # the session modules import this one
    from .client import SecAggClient
    from .server import SecAggServer

__all__ = ["ACTIVE", "SEMI_HONEST", "UNBOUND", "SecAgg", "SecAggPlus", "consistency_committee"]

#: :attr:`SecAgg.variant` values: which guarantee a configuration's sessions give.
ACTIVE = "active"
SEMI_HONEST = "semi-honest"
UNBOUND = "unbound"
_UNBOUND_MESSAGE = (
    "this configuration names no variant: pass roster=... for the actively secure variant, "
    "or semi_honest=True to accept the weaker one"
)


def consistency_committee(
    proto: SecAgg, cohort: Sequence[int], seed: bytes
) -> tuple[frozenset[int], int]:
    """Who certifies the survivor set, and how many of them must sign it (T_sig).

    The one definition, used by the server (it waits for that many committee
    signatures) and by the client (it reveals nothing with fewer). Honest
    clients sign at most one set per round of a session, so two different sets can both
    reach T_sig only if at least ``2 T_sig - m`` of the m signers are corrupt:

    * SecAgg (complete graph): every client, T_sig = t, the active threshold
      t > 2n/3 (Bonawitz et al., CCS 2017, Fig. 4 "ConsistencyCheck" and
      section 6.2: secure against a malicious server with fewer than n/3
      corrupt clients, since 2t - n > n/3).
    * SecAgg+: a committee of m clients sampled from the graph seed (which the
      clients contribute, so the server cannot choose it), with m and T_sig
      from :func:`~protocols.secagg.graph.committee_size` for the config's
      corrupt fraction, dropout rate and targets: m = 40, T_sig = 29 for any
      n >= 60 with the defaults, so a client checks 29 signatures, not n/2.
      When no committee smaller than the cohort meets the targets, every
      client signs and T_sig = floor((n + c) / 2) + 1 with c = floor(corrupt
      fraction * n). (Bell et al., CCS 2020, bound the corrupt clients of a
      random neighbourhood the same way; the committee is this library's
      construction, not theirs.)
    """
    n = len(cohort)
    if not isinstance(proto, SecAggPlus):
        return frozenset(cohort), proto.group_threshold(n, n)
    size, needed = committee_size(
        n,
        corrupt_fraction=proto.corrupt_fraction,
        dropout_rate=proto.dropout_rate,
        security_bits=proto.security_bits,
        correctness_bits=proto.correctness_bits,
    )
    if size >= n:
        return frozenset(cohort), needed
    return committee(seed, cohort, size), needed


@dataclass(frozen=True)
class SecAgg(AggregationProtocol):
    """Secure aggregation on the complete graph (Bonawitz et al., CCS 2017).

    The server learns the sum of the surviving clients' clipped, quantized
    inputs and nothing else, against an honest-but-curious server colluding
    with fewer than ``threshold`` clients (see the README's threat model).

    Exactly one of two variants (the default names neither, so the weaker one
    is never reached by accident; such a config can be described and costed
    but makes no sessions, :class:`LocalProtocolError`):

    * ``roster=...`` (:class:`secagg.identity.Roster`): the actively secure
      variant of Bonawitz et al. (CCS 2017, section 4, Fig. 4): signed key
      advertisements, the consistency check round, t > 2n/3; clients need
      their identity key (``proto.client(cid, dim, identity=...)``).
      :meth:`with_roster` binds a roster to a copy.
    * ``semi_honest=True``: the protocol against an honest-but-curious server.

    :attr:`variant` says which (``"active"``, ``"semi-honest"``, ``"unbound"``);
    the variant and the roster digest are in the config digest.

    Args:
        threshold: Shamir threshold, as a fraction of a client's sharing group
            (itself and its neighbours) in (0, 1], or an absolute count >= 1,
            or None (the default) for the variant's own: a strict majority
            (semi-honest) or the smallest t > 2n/3 (active; an explicit
            threshold <= 2n/3 is refused there).
        bits: inputs are summed in Z_{2^bits}; 2 <= bits <= 64. The encoding
            leaves headroom for every invited client, so the sum cannot wrap.
        clip: every coordinate is clipped to [-clip, clip] before encoding.
        share_margin: the server reconstructs a secret only from at least
            ``t + share_margin`` shares. It always decodes every share it
            received as a Reed-Solomon codeword (:mod:`secagg.robust`): with
            ``m`` shares beyond t, ``m // 2`` lying clients are corrected and
            named (:attr:`SecAggServer.blame`) and up to ``m`` are detected
            (the round aborts). With the default 0 a round may end with
            exactly t responses for a secret, and then one lying client can
            corrupt the total undetectably; ``share_margin=1`` rules that out
            (a lie is always detected) at the cost of one more survivor per
            group, ``2`` also names the liar and completes the round. The
            SecAgg+ degree and automatic threshold count it.
        min_clients: a client refuses a RoundStart inviting fewer clients (a
            server that lists only its target, or the target and a few sybils,
            would otherwise learn the input from the "sum"). The server refuses
            to run such a round too. Default 2 (no round of one client).
        roster: client id -> Ed25519 identity key: the actively secure variant.
        semi_honest: True for the semi-honest variant (no roster allowed).
        rounds: aggregation rounds one session runs after a single key setup
            (:mod:`protocols.secagg.client`, "Multi-round sessions"): each client advertises one
            mask key per round and shares one self-mask seed and one mask key
            per round, and every round after the first costs only the masked
            input and the unmasking (plus the consistency check when active).
            1 (the default) is the single-round protocol.
    """

    threshold: float | int | None = None
    bits: int = 32
    clip: float = 1.0
    share_margin: int = 0
    min_clients: int = 2
    roster: Roster | None = None
    semi_honest: bool = False
    rounds: int = 1

    NAME: ClassVar[str] = "secagg"
    # "reveal" (active SecAgg+) and "consistency" (active) are stages of the actively
    # secure variant; a semi-honest client dropping there drops at the next stage it has.
    DROPOUT_STAGES: ClassVar[tuple[str, ...]] = (
        "advertise_keys",
        "reveal",
        "share_keys",
        "masked_input",
        "consistency",
        "unmasking",
    )
    SETUP_STAGES: ClassVar[tuple[str, ...]] = ("advertise_keys", "reveal", "share_keys")
    MULTI_ROUND: ClassVar[bool] = True
    QUANTIZATION_BITS: ClassVar[tuple[int, int] | None] = (2, 64)
    # The masked sum is exact in Z_{2^bits}: clients may hand in ring elements
    # (provide_encoded_input) and the result carries integer_total.
    INTEGER_RING: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.roster is not None and not isinstance(self.roster, Roster):
            raise TypeError(f"roster must be a secagg.identity.Roster, got {type(self.roster).__name__}")
        if not isinstance(self.semi_honest, bool):
            raise TypeError(f"semi_honest must be a bool, got {self.semi_honest!r}")
        if self.roster is not None and self.semi_honest:
            raise ValueError("a roster selects the actively secure variant; semi_honest=True refuses it")
        self._check_threshold()
        if (
            isinstance(self.bits, bool)
            or not isinstance(self.bits, int)
            or not 2 <= self.bits <= 64
        ):
            raise ValueError(f"bits must be an int in [2, 64], got {self.bits!r}")
        check_positive(self.clip, "clip")
        if (
            isinstance(self.share_margin, bool)
            or not isinstance(self.share_margin, int)
            or not 0 <= self.share_margin <= 255
        ):
            raise ValueError(f"share_margin must be an int in [0, 255], got {self.share_margin!r}")
        if (
            isinstance(self.min_clients, bool)
            or not isinstance(self.min_clients, int)
            or not 1 <= self.min_clients < 2**32
        ):
            raise ValueError(f"min_clients must be an int >= 1, got {self.min_clients!r}")
        if (
            isinstance(self.rounds, bool)
            or not isinstance(self.rounds, int)
            or not 1 <= self.rounds <= wire.MAX_KEY_RUN
        ):
            raise ValueError(
                f"rounds must be an int in [1, {wire.MAX_KEY_RUN}], got {self.rounds!r}"
            )

    def _check_threshold(self) -> None:
        if self.threshold is not None:  # None: the variant's default
            check_threshold(self.threshold)

    @property
    def identity_required(self) -> bool:
        """True for the actively secure variant (a roster)."""
        return self.active

    @property
    def round_trips(self) -> int:
        """Four (Bonawitz et al. 2017's rounds 0-3), plus the consistency check when
        active, plus the graph-seed reveal in active SecAgg+ (DROPOUT_STAGES lists
        every variant's stages). An unbound config counts as active: the one place
        it runs is :func:`protocols.simulate`, which enrols its clients."""
        if self.semi_honest:
            return 4
        return 5 + self.CLIENT_SEEDED_GRAPH

    @property
    def round_trips_after_setup(self) -> int:
        """Round trips of each round of a multi-round session after its first: the
        masked input and the unmasking, plus the consistency check when active."""
        return 2 if self.semi_honest else 3

    @property
    def minimum_cohort(self) -> int:
        """``min_clients``: clients and server refuse smaller rounds."""
        return self.min_clients

    # -- the variant -----------------------------------------------------
    @property
    def variant(self) -> str:
        """``"active"`` (a roster), ``"semi-honest"`` or ``"unbound"`` (makes no sessions)."""
        if self.roster is not None:
            return ACTIVE
        return SEMI_HONEST if self.semi_honest else UNBOUND

    @property
    def active(self) -> bool:
        """True for the actively secure variant."""
        return self.roster is not None

    # Whether the actively secure variant derives its graph from the clients'
    # commit-then-reveal randomness (SecAgg+; SecAgg's graph is complete).
    CLIENT_SEEDED_GRAPH: ClassVar[bool] = False

    @property
    def seeds_graph(self) -> bool:
        """True if the graph comes from the clients' commit-then-reveal (active SecAgg+)."""
        return self.CLIENT_SEEDED_GRAPH and self.active

    def with_roster(self, roster: Roster) -> SecAgg:
        """A copy of this configuration bound to ``roster`` (the actively secure variant)."""
        return dataclasses.replace(self, roster=roster, semi_honest=False)

    def _require_variant(self) -> None:
        if self.roster is None and not self.semi_honest:
            raise LocalProtocolError(_UNBOUND_MESSAGE)

    # -- graph and thresholds (public so drivers and tests can inspect them) --
    def neighbours(self, client_ids: Sequence[int], nonce: bytes) -> dict[int, frozenset[int]]:
        """Each client's neighbours for a round (the complete graph here)."""
        return complete_graph(client_ids)

    def neighbours_of(self, client_ids: Sequence[int], nonce: bytes, cid: int) -> frozenset[int]:
        """One client's neighbours (what a client session computes)."""
        return frozenset(client_ids) - {cid}

    def group_threshold(self, group_size: int, n_clients: int) -> int:
        """The Shamir threshold for a sharing group of ``group_size`` (client + neighbours).

        ``n_clients`` is the number of clients invited to the round (SecAgg+
        with an automatic threshold needs it; here it only bounds the group).
        """
        if group_size > n_clients:
            raise ValueError(f"a sharing group of {group_size} among {n_clients} clients")
        t = self._resolve_threshold(group_size, n_clients)
        if 2 * t <= group_size:
            raise ValueError(
                f"threshold {t} is not a strict majority of a sharing group of {group_size}"
            )
        return t

    def _resolve_threshold(self, group_size: int, n_clients: int) -> int:
        if self.threshold is None:
            # The variant's default: the smallest t > 2n/3 against a malicious server
            # (Bonawitz et al. 2017, section 6.2), a strict majority otherwise.
            return 2 * group_size // 3 + 1 if self.active else group_size // 2 + 1
        t = resolve_threshold(check_threshold(self.threshold), group_size)
        if self.active and 3 * t <= 2 * group_size:
            raise ValueError(
                f"threshold {t} of {group_size} is not above 2n/3, which the actively secure "
                "variant needs (Bonawitz et al. 2017, section 6.2); leave threshold=None for "
                f"the smallest admissible one ({2 * group_size // 3 + 1})"
            )
        return t

    def _cost_degree(self, n_clients: int) -> int:
        """Neighbours of a client in a round of ``n_clients`` (the cost model's peers)."""
        return max(n_clients - 1, 0)

    def cost(self, n_clients: float, dim: int) -> CostEstimate:
        """Masked input of ``ceil(bits/8)`` bytes per value plus ~250 bytes of keys,
        shares and envelopes per neighbour; one mask expansion per neighbour and
        itself (~1e-8 s per value each) and ~4e-4 s of key agreement and AEAD per
        neighbour on a client; the server unmasks (~5e-9 s per value and client)."""
        n = max(float(n_clients), 1.0)
        peers = self._cost_degree(round(n))
        return CostEstimate(
            upload_bytes=math.ceil(self.bits / 8) * dim + 250.0 * peers,
            download_bytes=250.0 * peers if peers else 200.0,
            client_seconds=1e-8 * dim * (peers + 1) + 4e-4 * peers,
            server_seconds=5e-9 * dim * n + 1e-4 * n * peers,
        )

    def encoder(self, n_clients: int) -> FixedPointEncoder:
        """The fixed-point encoder for a round with ``n_clients`` invited clients."""
        return FixedPointEncoder(clip=float(self.clip), bits=self.bits, max_summands=n_clients)

    def _threshold_field(self) -> float:
        # None is the variant's default. For the semi-honest SecAgg that is a strict
        # majority, exactly what threshold=0.5 resolves to, so it keeps that digest.
        return 0.5 if self.threshold is None else float(self.threshold)

    def _digest_fields(self) -> tuple[bytes, ...]:
        fields: tuple[bytes, ...] = (
            struct.pack(">d", self._threshold_field()),
            struct.pack(">B", self.bits),
            struct.pack(">d", float(self.clip)),
            struct.pack(">B", self.share_margin),
            struct.pack(">I", self.min_clients),
        )
        # The semi-honest digest is the one configs had before variants existed (its
        # snapshots still restore); the others add the variant, and the roster digest
        # (cached by the Roster), so parties with different rosters refuse each other.
        if self.rounds != 1:  # a single-round config keeps the digest it always had
            fields = (*fields, b"rounds", struct.pack(">I", self.rounds))
        if self.roster is not None:
            return (*fields, ACTIVE.encode(), self.roster.digest)
        if not self.semi_honest:
            return (*fields, UNBOUND.encode())
        return fields

    # -- sessions --------------------------------------------------------
    def server(
        self,
        client_ids: Iterable[int],
        dim: int,
        *,
        rng: RandomSource | None = None,
        round: int = 0,
    ) -> SecAggServer:
        """A server session; the active variant refuses a cohort outside its roster (ValueError)."""
        from .server import SecAggServer

        self._require_variant()
        return SecAggServer(self, client_ids, dim, rng=rng, round=round)

    def client(
        self,
        client_id: int,
        dim: int,
        *,
        rng: RandomSource | None = None,
        round: int = 0,
        identity: IdentityKeyPair | None = None,
    ) -> SecAggClient:
        """A client session. The active variant needs the client's ``identity``, whose
        public key must be ``roster[client_id]``; the semi-honest one takes none."""
        from .client import SecAggClient

        self._require_variant()
        if self.roster is None:
            if identity is not None:
                raise LocalProtocolError("the semi-honest variant signs nothing: pass no identity")
        else:
            if not isinstance(identity, IdentityKeyPair):
                raise LocalProtocolError(
                    f"the actively secure variant needs client {client_id}'s identity key "
                    "(identity=IdentityKeyPair)"
                )
            if self.roster.get(client_id) != identity.public_key:
                raise LocalProtocolError(
                    f"the identity's public key is not the roster's key of client {client_id}"
                )
        return SecAggClient(self, client_id, dim, rng=rng, round=round, identity=identity)


@dataclass(frozen=True)
class SecAggPlus(SecAgg):
    """SecAgg+ (Bell et al., CCS 2020): masks and shares only along a random k-regular graph.

    Each client talks to k = O(log n) neighbours, so its cost grows with
    log n rather than n. ``k`` is chosen by :func:`~protocols.secagg.graph.choose_degree`
    from the security/correctness targets below unless given explicitly
    (odd k needs an even number of clients; ``k >= n - 1`` means the complete graph).

    Args:
        threshold: as for :class:`SecAgg`, or ``None`` (the default) to choose
            it with the degree: the largest threshold meeting the correctness
            target, at least a strict majority of each sharing group
            (:func:`~protocols.secagg.graph.auto_threshold`). At n = 943 with
            the default targets that is k = 28 and t = 17 of 29, where
            ``threshold=0.5`` needs k = 36: fewer key agreements and masks per
            client, and a higher bar for colluding neighbours.
        k: the graph degree, or None to derive it from the targets.
        corrupt_fraction: assumed fraction of clients colluding with the server.
        dropout_rate: assumed fraction of clients that drop out.
        security_bits: a client's mask key is exposed with probability <= 2^-security_bits.
        correctness_bits: a round fails for lack of shares with probability <= 2^-correctness_bits.
    """

    threshold: float | int | None = None
    k: int | None = None
    corrupt_fraction: float = 0.05
    dropout_rate: float = 0.05
    security_bits: int = 40
    correctness_bits: int = 20

    NAME: ClassVar[str] = "secagg+"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k is not None and (
            isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 2
        ):
            raise ValueError(f"k must be an int >= 2 or None, got {self.k!r}")
        for name in ("corrupt_fraction", "dropout_rate"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        for name in ("security_bits", "correctness_bits"):
            if not 1 <= getattr(self, name) <= 128:
                raise ValueError(f"{name} must be in [1, 128], got {getattr(self, name)!r}")

    # Bell et al. 2020 assume a graph the server did not choose: the active variant
    # derives its seed from the clients' randomness (protocols.secagg.derivation).
    CLIENT_SEEDED_GRAPH: ClassVar[bool] = True

    def degree(self, n_clients: int) -> int:
        """The graph degree for a round of ``n_clients`` clients."""
        if self.k is not None:
            # An odd degree needs an even number of clients; round up otherwise.
            k = self.k + 1 if self.k % 2 and n_clients % 2 else self.k
            return min(k, n_clients - 1)
        return choose_degree(
            n_clients,
            self.threshold,
            corrupt_fraction=self.corrupt_fraction,
            dropout_rate=self.dropout_rate,
            security_bits=self.security_bits,
            correctness_bits=self.correctness_bits,
            margin=self.share_margin,
        )

    def _cost_degree(self, n_clients: int) -> int:
        return self.degree(max(n_clients, 3))

    def _check_threshold(self) -> None:
        if self.threshold is not None:  # None: chosen with the degree
            super()._check_threshold()

    def _threshold_field(self) -> float:
        # -1 stands for the automatic threshold (a real one is > 0).
        return -1.0 if self.threshold is None else float(self.threshold)

    def _resolve_threshold(self, group_size: int, n_clients: int) -> int:
        if self.threshold is not None:
            # Not the 2n/3 rule of the complete graph: SecAgg+ bounds the corrupt
            # neighbours through the degree search (Bell et al. 2020, Thm. 3.6).
            return resolve_threshold(check_threshold(self.threshold), group_size)
        return auto_threshold(
            group_size,
            n_clients,
            dropout_rate=self.dropout_rate,
            correctness_bits=self.correctness_bits,
            margin=self.share_margin,
        )

    def neighbours(self, client_ids: Sequence[int], nonce: bytes) -> dict[int, frozenset[int]]:
        return harary_graph(client_ids, self.degree(len(client_ids)), nonce)

    def neighbours_of(self, client_ids: Sequence[int], nonce: bytes, cid: int) -> frozenset[int]:
        return harary_neighbours(client_ids, self.degree(len(client_ids)), nonce, cid)

    def _digest_fields(self) -> tuple[bytes, ...]:
        return (
            *super()._digest_fields(),
            struct.pack(">q", -1 if self.k is None else self.k),
            struct.pack(">dd", self.corrupt_fraction, self.dropout_rate),
            struct.pack(">II", self.security_bits, self.correctness_bits),
        )
