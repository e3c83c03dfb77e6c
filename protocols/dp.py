"""Differential privacy inside any aggregation protocol (a wrapper config).

``protocols.DifferentiallyPrivate(inner, mode=..., clip=..., noise_multiplier=...)``
behaves like ``inner`` (same sessions, messages and dropout stages) and adds
client-level DP (McMahan et al. 2018, "Learning Differentially Private
Recurrent Language Models"): every client L2-clips its update to ``clip``,
noise of standard deviation ``noise_multiplier * clip`` ends up in the sum,
and the server's result carries the DP event of the round
(``result.events``, ``SimulationResult.events``) for an accountant.

Modes:

- ``"central"``: the server adds N(0, (σ·clip)²) to the decoded sum. The
  server itself sees the exact sum; the guarantee protects what it releases.
- ``"distributed"``: each client adds Gaussian noise with variance
  (σ·clip)² / m, m = expected_clients·(1 - dropout_rate), before encoding, so
  the sum carries the full noise when m clients report; nobody, including
  the server, sees a sum with less. If only k < m clients report, the event
  records the effective multiplier σ·sqrt(k/m) (the shortfall is accounted,
  never hidden). Continuous noise is then quantized by the protocol's
  encoding; see the floating-point caveats in :mod:`secagg.privacy.sampling`.
- ``"ddg"`` / ``"skellam"``: integer noise in Z_{2^bits} for SecAgg and SecAgg+
  (Kairouz, Liu, Steinke ICML 2021; Agarwal, Kairouz, Liu NeurIPS 2021): each
  client rotates (randomized Hadamard from the public round nonce), scales,
  conditionally rounds and adds discrete noise, and the masked sum is decoded
  with modular clipping. Accounting is exact for the integer mechanism.

Binding (what a client checks, so that a deviating server cannot change its
noise): the wrapper's whole configuration (mode, clip, σ, expected_clients,
dropout_rate, sampling_probability, max_clients, and the inner protocol's
digest) is in the config digest of every RoundStart; a client with any other
DP configuration, or without DP, refuses the round (RemoteProtocolError, its
session aborted, nothing sent). A client's noise share is a function of its
own configuration only, never of the client list the server sends; in the
distributed modes (``"distributed"``, ``"ddg"``, ``"skellam"``)
``expected_clients`` is therefore required, and a client refuses a RoundStart
that invites fewer than ``expected_clients`` clients: after the configured
dropout allowance, ``n_invited·(1 - dropout_rate)`` reporters must cover the
``m = expected_clients·(1 - dropout_rate)`` shares the noise is split over,
which holds exactly when ``n_invited >= expected_clients``. For DDG/Skellam
the ring's headroom is planned for ``max_clients`` summands (default
``expected_clients``), and a client also refuses more than ``max_clients``
invited clients (their sum could wrap). A round in which fewer clients report
than planned still completes, and its event carries the noise actually
present (:meth:`DifferentiallyPrivate.event_for`). Central mode has no cohort
rule: there the server adds the noise.

Multi-round sessions (an inner SecAgg/SecAgg+ with ``rounds`` > 1): the cohort
rule is checked once, at the RoundStart of the setup; every round then takes
a fresh input, fresh noise and (DDG/Skellam) its own rotation
(:meth:`DifferentiallyPrivate.rotation_seed` of the nonce and the round's
index in the session), and releases one event computed from that round's
survivors, so a later round with fewer participants accounts for the smaller
noise it carries.

For ``"central"`` and ``"distributed"`` the inner protocol still clips each
coordinate to its own ``clip``: set it comfortably above the DP ``clip`` (plus
a few noise standard deviations in distributed mode), or the per-coordinate
clipping of noised values distorts the noise.

``sampling_probability`` (when clients were Poisson-sampled by the caller)
wraps the round's event in a PoissonSampledEvent. Amplification by sampling
holds only against observers who do not learn who was sampled (not the
server, which sees who reports).
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from secagg import modular
from secagg.randomness import RandomSource, default_rng

from . import snapshot as _snapshot
from .base import (
    AggregationProtocol,
    ClientSession,
    ServerResult,
    ServerSession,
    check_config_digest,
    check_input,
    check_positive,
)
from .cost import CostEstimate
from .dp_modes import DP_MODES, dp_mode
from .errors import LocalProtocolError, RemoteProtocolError, SnapshotError
from .events import LocalEvent
from .messages import Message, RoundStart

if TYPE_CHECKING:  # pragma: no cover
    from secagg.privacy import Event
    from secagg.privacy.rotated_integer import RotatedIntegerMechanism

# The methods that draw noise or build a mechanism import secagg.privacy themselves:
# its accountants load scipy, which neither this config nor ``import protocols`` needs.

__all__ = ["DP_MODES", "DifferentiallyPrivate", "IntegerRingClient", "IntegerRingConfig", "ring_bits"]

# Version label of the DP fields in the config digest: bump it whenever a field
# is added or its encoding, or the mechanisms' fixed parameters, change.
_DIGEST_LABEL = b"secagg-fl/dp/v2"

# The float64 mantissa bounds the integer mechanisms' ring (see rotated_integer).
_MAX_MECHANISM_BITS = 52


@runtime_checkable
class IntegerRingConfig(Protocol):
    """A config whose aggregate is an exact sum in Z_{2^bits}: it states its ring width."""

    bits: int


@runtime_checkable
class IntegerRingClient(Protocol):
    """A client session that takes an input already encoded in its ring (SecAgg, SecAgg+)."""

    def provide_encoded_input(self, ring: np.ndarray) -> list[Message]: ...


def ring_bits(config: AggregationProtocol) -> int:
    """The ring width ``bits`` of an ``INTEGER_RING`` config (ValueError for any other)."""
    if not config.INTEGER_RING or not isinstance(config, IntegerRingConfig):
        raise ValueError(f"{config.NAME} does not aggregate in an integer ring Z_{{2^bits}}")
    return config.bits


def _optional_count(value: int | None) -> bytes:
    # Canonical: None is the empty field, a count is 8 bytes (fields are length-prefixed).
    return b"" if value is None else struct.pack(">Q", value)


def _real(value: float) -> bytes:
    return struct.pack(">d", float(value) + 0.0)  # + 0.0: -0.0 and 0.0 encode alike


@dataclass(frozen=True)
class DifferentiallyPrivate(AggregationProtocol):
    """Client-level DP around ``inner`` (see the module docstring, "Binding", for what
    a client checks).

    Args:
        inner: the aggregation protocol that carries the (noised) inputs.
        mode: ``"central"``, ``"distributed"``, ``"ddg"`` or ``"skellam"``.
        clip: L2 norm bound of one client's input.
        noise_multiplier: σ, the noise standard deviation in units of ``clip``.
        expected_clients: clients the noise is split over (required in the
            distributed modes; a client refuses a round inviting fewer).
        dropout_rate: over-provision distributed noise for this dropout rate.
        sampling_probability: Poisson sampling rate of clients, if any.
        max_clients: DDG/Skellam only: summands the ring's headroom is planned
            for (default ``expected_clients``; a client refuses a round
            inviting more).
    """

    inner: AggregationProtocol
    mode: str = "central"
    clip: float = 1.0
    noise_multiplier: float = 1.0
    expected_clients: int | None = None
    dropout_rate: float = 0.0
    sampling_probability: float | None = None
    max_clients: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.inner, AggregationProtocol) or isinstance(
            self.inner, DifferentiallyPrivate
        ):
            raise ValueError("inner must be a (non-DP) aggregation protocol")
        if self.mode not in DP_MODES:
            raise ValueError(f"mode must be one of {DP_MODES}, got {self.mode!r}")
        mode = dp_mode(self.mode)
        if mode.discrete and not self.inner.INTEGER_RING:
            raise ValueError(
                f"mode={self.mode!r} needs an integer secure aggregation (SecAgg or SecAggPlus)"
            )
        for name in ("clip", "noise_multiplier"):
            check_positive(getattr(self, name), name)
        for name in ("expected_clients", "max_clients"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"{name} must be a positive int or None, got {value!r}")
        if mode.secure_sum and self.expected_clients is None:
            raise ValueError(
                f"mode={self.mode!r} needs expected_clients: each client's noise share is "
                "split over that many clients, a number the client must know by itself"
            )
        if self.max_clients is not None:
            if not mode.discrete:
                raise ValueError("max_clients is a setting of the ddg and skellam modes")
            assert self.expected_clients is not None
            if self.max_clients < self.expected_clients:
                raise ValueError(
                    f"max_clients={self.max_clients} is below expected_clients={self.expected_clients}"
                )
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {self.dropout_rate!r}")
        q = self.sampling_probability
        if q is not None and not 0.0 < q <= 1.0:
            raise ValueError(f"sampling_probability must be in (0, 1] or None, got {q!r}")

    @property
    def NAME(self) -> str:  # type: ignore[override]
        return f"{self.inner.NAME}/dp-{self.mode}"

    @property
    def DROPOUT_STAGES(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.inner.DROPOUT_STAGES

    @property
    def INPUT_STAGE(self) -> str:  # type: ignore[override]
        return self.inner.INPUT_STAGE

    @property
    def identity_required(self) -> bool:
        """The inner protocol's."""
        return self.inner.identity_required

    @property
    def round_trips(self) -> int:
        """The inner protocol's (the noise travels in its messages)."""
        return self.inner.round_trips

    @property
    def round_trips_after_setup(self) -> int:
        """The inner protocol's."""
        return self.inner.round_trips_after_setup

    @property
    def SETUP_STAGES(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.inner.SETUP_STAGES

    @property
    def minimum_cohort(self) -> int:
        """The inner protocol's (the noise adds no minimum of its own)."""
        return self.inner.minimum_cohort

    @property
    def required_accountant(self) -> str | None:
        """``"rdp"`` for DDG/Skellam (see :attr:`protocols.dp_modes.DPMode.accountant`)."""
        return dp_mode(self.mode).accountant

    @property
    def ring_headroom(self) -> int | None:
        """DDG/Skellam: the most summands the ring is planned for (None in the other modes)."""
        if not dp_mode(self.mode).discrete:
            return None
        return self.max_clients or self.expected_clients

    def cost(self, n_clients: float, dim: int) -> CostEstimate:
        """The inner protocol's (noise costs no bytes; DDG/Skellam pad to a power of two)."""
        return self.inner.cost(n_clients, self._inner_dim(dim))

    def _digest_fields(self) -> tuple[bytes, ...]:
        # Every field that changes what a client adds or what the event claims,
        # each its own length-prefixed item (config_digest frames them).
        # max_clients enters resolved, so equal behaviour gives equal digests.
        return (
            _DIGEST_LABEL,
            self.inner.config_digest(0),
            self.mode.encode(),
            _real(self.clip),
            _real(self.noise_multiplier),
            _optional_count(self.expected_clients),
            _real(self.dropout_rate),
            b"" if self.sampling_probability is None else _real(self.sampling_probability),
            _optional_count(self.ring_headroom),
        )

    def check_cohort(self, n_invited: int) -> None:
        """Refuse a cohort that would carry less noise than configured (ValueError).

        The rule of the module docstring: in the distributed modes at least
        ``expected_clients`` invited; for DDG/Skellam at most the ring's
        headroom (:attr:`ring_headroom`). Central mode accepts any cohort.
        """
        if self.expected_clients is not None and dp_mode(self.mode).secure_sum:
            if n_invited < self.expected_clients:
                raise ValueError(
                    f"{n_invited} invited clients cannot carry the noise split over "
                    f"expected_clients={self.expected_clients}"
                )
        headroom = self.ring_headroom
        if headroom is not None and n_invited > headroom:
            raise ValueError(
                f"{n_invited} invited clients exceed the {headroom} the ring is planned for"
            )

    def integer_mechanism(self, dim: int, rotation_seed: bytes) -> RotatedIntegerMechanism:
        """The DDG/Skellam mechanism of a round (public parameters only).

        Built from this configuration alone: the client list of a round never
        changes a client's noise. ``rotation_seed`` only picks the rotation
        (:meth:`rotation_seed`); it does not change the event.
        """
        from secagg.privacy import DistributedDiscreteGaussian, DistributedSkellam

        headroom = self.ring_headroom
        if headroom is None or self.expected_clients is None:
            raise ValueError(f"mode={self.mode!r} has no integer mechanism")
        cls = DistributedDiscreteGaussian if self.mode == "ddg" else DistributedSkellam
        return cls(
            dim,
            self.clip,
            min(ring_bits(self.inner), _MAX_MECHANISM_BITS),
            self.expected_clients,
            self.noise_multiplier,
            rotation_seed=rotation_seed,
            dropout_rate=self.dropout_rate,
            max_clients=headroom,
        )

    @staticmethod
    def rotation_seed(nonce: bytes, index: int = 0) -> bytes:
        """The Hadamard rotation seed of round ``index`` of the session with this public
        nonce (0, the only round of a single-round session, keeps the seed it always had)."""
        suffix = b"" if index == 0 else struct.pack(">I", index)
        return hashlib.sha256(b"secagg-fl/dp-rotation\x00" + nonce + suffix).digest()

    def event_for(self, dim: int, n_reporting: int) -> Event:
        """The DP event of a round in which ``n_reporting`` clients' inputs are in the sum.

        The one formula of a round's event: the server's result carries it,
        and planners (``recsys.plan.round_event``) ask it before the round.
        Central: ``GaussianEvent(σ)``. Distributed: the effective multiplier
        ``σ·sqrt(k/m)`` of the ``k = n_reporting`` shares present
        (:func:`secagg.privacy.distributed_gaussian_event`). DDG/Skellam: the
        integer mechanism's event for ``k`` shares (KLS Thm. 1; Agarwal et al.
        Thm. 3.5). Wrapped in ``PoissonSampledEvent`` with ``sampling_probability``.
        """
        from secagg import privacy

        q = self.sampling_probability
        if self.mode == "central":
            event: Event = privacy.GaussianEvent(self.noise_multiplier)
            return event if q is None else privacy.PoissonSampledEvent(q, event)
        assert self.expected_clients is not None  # __post_init__: the distributed modes
        if self.mode == "distributed":
            return privacy.distributed_gaussian_event(
                self.noise_multiplier,
                self.expected_clients,
                n_reporting,
                dropout_rate=self.dropout_rate,
                sampling_probability=q,
            )
        # The event does not depend on the rotation, so any seed gives it.
        mechanism = self.integer_mechanism(dim, self.rotation_seed(bytes(32)))
        return mechanism.event(n_reporting, sampling_probability=q)

    def _inner_dim(self, dim: int) -> int:
        from secagg.privacy.rotation import next_power_of_two

        # The integer mechanisms rotate in a power-of-two dimension.
        return next_power_of_two(dim) if dp_mode(self.mode).discrete else dim

    def server(
        self, client_ids: Iterable[int], dim: int, *, rng: RandomSource | None = None, round: int = 0
    ) -> DPServer:
        ids = list(client_ids)
        self.check_cohort(len(ids))
        inner = self.inner.server(ids, self._inner_dim(dim), rng=rng, round=round)
        if not isinstance(inner, ServerSession):  # the inner config is never a wrapper
            raise TypeError(f"{self.inner.NAME} made a {type(inner).__name__}, not a ServerSession")
        return DPServer(self, inner, dim, rng)

    @property
    def rounds_per_session(self) -> int:
        """The inner protocol's (multi-round SecAgg/SecAgg+)."""
        return self.inner.rounds_per_session

    @property
    def variant(self) -> str | None:
        """The inner protocol's variant (SecAgg/SecAgg+: "active", "semi-honest", "unbound")."""
        return getattr(self.inner, "variant", None)

    def with_roster(self, roster: Any) -> DifferentiallyPrivate:
        """This wrapper around ``inner.with_roster(roster)`` (the actively secure SecAgg)."""
        inner: Any = self.inner
        return dataclasses.replace(self, inner=inner.with_roster(roster))

    def client(
        self,
        client_id: int,
        dim: int,
        *,
        rng: RandomSource | None = None,
        round: int = 0,
        identity: Any = None,
    ) -> DPClient:
        """The inner client wrapped; ``identity`` goes to an actively secure inner config."""
        maker: Any = self.inner
        extra = {} if identity is None else {"identity": identity}
        inner = maker.client(client_id, self._inner_dim(dim), rng=rng, round=round, **extra)
        if not isinstance(inner, ClientSession):  # the inner config is never a wrapper
            raise TypeError(f"{self.inner.NAME} made a {type(inner).__name__}, not a ClientSession")
        return DPClient(self, inner, dim, rng)


class _Delegating:
    """Forwards the session interface to the wrapped session."""

    inner: ClientSession | ServerSession

    def start(self) -> list[Message]:
        return self.inner.start()

    @property
    def stage(self) -> str:
        return self.inner.stage

    @property
    def finished(self) -> bool:
        return self.inner.finished

    @property
    def aborted(self) -> bool:
        return self.inner.aborted

    @property
    def abort_reason(self) -> str | None:
        return self.inner.abort_reason


class DPClient(_Delegating):
    """Checks the round against its own configuration, clips and noises the
    client's input, then hands it to the inner client.

    On the wire a RoundStart carries the DP configuration's digest; the inner
    client, which knows only its own configuration, is handed the same
    message with the inner digest once this session has checked it.
    """

    # Besides the inner session's own fields (see ClientSession.SNAPSHOT_FIELDS).
    # _input_round: the inner round the input belongs to (a multi-round session
    # takes one input per round).
    SNAPSHOT_FIELDS = ("_input", "_round_start", "_handed_over", "_input_round")

    def __init__(
        self, proto: DifferentiallyPrivate, inner: ClientSession, dim: int, rng: RandomSource | None
    ) -> None:
        self.inner: ClientSession = inner
        self.proto, self.dim = proto, dim
        self._digest = proto.config_digest(dim)
        self._inner_digest = proto.inner.config_digest(inner.dim)
        self._rng = default_rng(rng)
        self._input: np.ndarray | None = None
        self._round_start: RoundStart | None = None
        self._handed_over = False
        self._input_round = -1

    @property
    def party_id(self) -> int:
        return self.inner.party_id

    @property
    def round(self) -> int:
        return self.inner.round

    def snapshot(self, *, key: bytes | None = None) -> bytes:
        """The session as bytes, for ``proto.restore_client()`` (see :mod:`protocols.snapshot`).

        Holds the clipped input and the inner session's secrets: keep it on the
        client, or pass a 32-byte ``key`` to encrypt it.
        """
        return _snapshot.dump_client(self, key=key)

    def _snapshot_fields(self) -> dict[str, object]:
        fields = {name: getattr(self, name) for name in self.SNAPSHOT_FIELDS}
        return {**fields, "inner": self.inner._snapshot_fields()}

    def _restore_fields(self, fields: dict) -> None:
        expected = {*self.SNAPSHOT_FIELDS, "inner"}
        if set(fields) != expected or not isinstance(fields["inner"], dict):
            raise SnapshotError(f"DPClient snapshot has fields {sorted(map(str, fields))}")
        if (
            not isinstance(fields["_handed_over"], bool)
            or not isinstance(fields["_round_start"], (RoundStart, type(None)))
            or type(fields["_input_round"]) is not int
        ):
            raise SnapshotError("DPClient snapshot fields have the wrong types")
        self.inner._restore_fields(fields["inner"])
        for name in self.SNAPSHOT_FIELDS:
            setattr(self, name, fields[name])

    def provide_input(self, x: np.ndarray) -> list[Message]:
        if self._input is not None and self._input_round == self.inner.round:
            raise LocalProtocolError("input already provided")
        from secagg.privacy import clip_l2

        arr = check_input(x, self.dim)
        # A new round of a multi-round session (the inner round moved on): a new input.
        self._input, self._input_round = clip_l2(arr, self.proto.clip), self.inner.round
        self._handed_over = False
        return self._hand_over()

    def receive(self, message: Message | bytes | bytearray | memoryview) -> list[Message]:
        if isinstance(message, (bytes, bytearray, memoryview)):
            message = Message.from_bytes(message)
        if isinstance(message, RoundStart) and self.inner._started and not self.inner.finished:
            message = self._bind(message)
        out = self.inner.receive(message)
        if isinstance(message, RoundStart) and not self.inner.aborted:
            self._round_start = message
            out += self._hand_over()
        return out

    def _bind(self, msg: RoundStart) -> RoundStart:
        """The RoundStart for the inner client, once it matches this configuration.

        Otherwise the session aborts (as the inner one would for its own
        digest) and RemoteProtocolError propagates: nothing is sent.
        """
        try:
            check_config_digest(self._digest, msg.config_digest)
            try:
                self.proto.check_cohort(len(msg.client_ids))
            except ValueError as exc:
                raise RemoteProtocolError(f"the server's cohort is refused: {exc}") from None
        except RemoteProtocolError as exc:
            self.inner._abort(f"remote protocol error: {exc}")
            raise
        return dataclasses.replace(msg, config_digest=self._inner_digest)

    def _hand_over(self) -> list[Message]:
        # Noise needs the round's public nonce (the DDG/Skellam rotation), so
        # the input reaches the inner session once RoundStart has been seen.
        if self._handed_over or self._input is None or self._round_start is None:
            return []
        self._handed_over = True
        p = self.proto
        if p.mode == "central":
            return self.inner.provide_input(self._input)
        if p.mode == "distributed":
            from secagg.privacy import distributed_gaussian_share

            assert p.expected_clients is not None  # required in this mode
            noise = distributed_gaussian_share(
                self._input,
                clip=p.clip,
                noise_multiplier=p.noise_multiplier,
                expected_clients=p.expected_clients,
                dropout_rate=p.dropout_rate,
                rng=self._rng,
            )
            return self.inner.provide_input(self._input + noise)
        inner = self.inner
        if not isinstance(inner, IntegerRingClient):
            raise LocalProtocolError(f"{p.inner.NAME} clients take no ring-encoded input")
        index = self.inner.round - self._round_start.round  # the round within the session
        mechanism = p.integer_mechanism(self.dim, p.rotation_seed(self._round_start.nonce, index))
        ring = mechanism.client_encode(self._input, self._rng)
        return inner.provide_encoded_input(modular.reduce(ring, ring_bits(p.inner)))


class DPServer(_Delegating):
    """Runs the inner server, then decodes/noises the sum and records the DP event.

    Its RoundStarts carry the DP configuration's digest (see :class:`DPClient`).
    """

    def __init__(
        self, proto: DifferentiallyPrivate, inner: ServerSession, dim: int, rng: RandomSource | None
    ) -> None:
        self.inner: ServerSession = inner
        self.proto, self.dim = proto, dim
        self._digest = proto.config_digest(dim)
        self._rng = default_rng(rng)
        self._nonce: bytes | None = None
        self._first_round = inner.round
        self._result: ServerResult | None = None

    def start(self) -> list[Message]:
        self._result = None  # a multi-round session's next round has its own result
        out: list[Message] = []
        for msg in self.inner.start():
            if isinstance(msg, RoundStart):
                self._nonce = msg.nonce  # one nonce per round, in every RoundStart
                msg = dataclasses.replace(msg, config_digest=self._digest)
            out.append(msg)
        return out

    def receive(self, message: Message | bytes | bytearray | memoryview) -> list[Message]:
        return self.inner.receive(message)

    def handle(self, event: LocalEvent) -> list[Message]:
        return self.inner.handle(event)

    def close_stage(self) -> list[Message]:
        return self.inner.close_stage()

    @property
    def awaiting(self) -> frozenset[int]:
        return self.inner.awaiting

    @property
    def client_ids(self) -> tuple[int, ...]:
        return self.inner.client_ids

    @property
    def result(self) -> ServerResult:
        if self._result is None:
            self._result = self._finish(self.inner.result)
        return self._result

    def next_participants(self) -> tuple[frozenset[int], str | None]:
        """The inner multi-round server's next participants (see SecAggServer)."""
        inner: Any = self.inner
        if not hasattr(inner, "next_participants"):
            return frozenset(), f"{self.proto.inner.NAME} sessions run one round"
        participants: tuple[frozenset[int], str | None] = inner.next_participants()
        return participants

    def _finish(self, res: ServerResult) -> ServerResult:
        p, k = self.proto, len(res.survivors)
        if p.mode == "central":
            from secagg.privacy import central_gaussian

            total, _ = central_gaussian(
                res.total, clip=p.clip, noise_multiplier=p.noise_multiplier, rng=self._rng
            )
        elif p.mode == "distributed":
            total = res.total
        else:
            assert self._nonce is not None and res.integer_total is not None
            index = self.inner.round - self._first_round
            mechanism = p.integer_mechanism(self.dim, p.rotation_seed(self._nonce, index))
            ring = modular.reduce(
                np.asarray(res.integer_total, dtype=np.int64).view(np.uint64), ring_bits(p.inner)
            )
            total = mechanism.server_decode(ring, k)
        return dataclasses.replace(
            res, total=total, integer_total=None, scale=None, events=(p.event_for(self.dim, k),)
        )
