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

import numpy as np

from secagg import modular
from secagg.randomness import RandomSource, default_rng

from . import snapshot as _snapshot
from .base import AggregationProtocol, ServerResult, check_input, check_positive
from .cost import CostEstimate
from .dp_modes import DP_MODES, dp_mode
from .errors import LocalProtocolError, SnapshotError
from .events import LocalEvent
from .messages import Message, RoundStart

# The methods that draw noise or build a mechanism import secagg.privacy themselves:
# its accountants load scipy, which neither this config nor ``import protocols`` needs.

__all__ = ["DP_MODES", "DifferentiallyPrivate"]


@dataclass(frozen=True)
class DifferentiallyPrivate(AggregationProtocol):
    """Client-level DP around ``inner`` (see module docstring).

    Args:
        inner: the aggregation protocol that carries the (noised) inputs.
        mode: ``"central"``, ``"distributed"``, ``"ddg"`` or ``"skellam"``.
        clip: L2 norm bound of one client's input.
        noise_multiplier: σ, the noise standard deviation in units of ``clip``.
        expected_clients: clients the distributed noise is split over
            (default: every invited client).
        dropout_rate: over-provision distributed noise for this dropout rate.
        sampling_probability: Poisson sampling rate of clients, if any.
    """

    inner: AggregationProtocol
    mode: str = "central"
    clip: float = 1.0
    noise_multiplier: float = 1.0
    expected_clients: int | None = None
    dropout_rate: float = 0.0
    sampling_probability: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.inner, AggregationProtocol) or isinstance(
            self.inner, DifferentiallyPrivate
        ):
            raise ValueError("inner must be a (non-DP) aggregation protocol")
        if self.mode not in DP_MODES:
            raise ValueError(f"mode must be one of {DP_MODES}, got {self.mode!r}")
        if dp_mode(self.mode).discrete and not self.inner.INTEGER_RING:
            raise ValueError(
                f"mode={self.mode!r} needs an integer secure aggregation (SecAgg or SecAggPlus)"
            )
        for name in ("clip", "noise_multiplier"):
            check_positive(getattr(self, name), name)
        if self.expected_clients is not None and (
            not isinstance(self.expected_clients, int) or self.expected_clients < 1
        ):
            raise ValueError(
                f"expected_clients must be a positive int or None, got {self.expected_clients!r}"
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
    def required_accountant(self) -> str | None:
        """``"rdp"`` for DDG/Skellam (see :attr:`protocols.dp_modes.DPMode.accountant`)."""
        return dp_mode(self.mode).accountant

    def cost(self, n_clients: float, dim: int) -> CostEstimate:
        """The inner protocol's (noise costs no bytes; DDG/Skellam pad to a power of two)."""
        return self.inner.cost(n_clients, self._inner_dim(dim))

    def _digest_fields(self) -> tuple[bytes, ...]:
        return (
            self.inner.config_digest(0),
            self.mode.encode(),
            struct.pack(">dd", self.clip, self.noise_multiplier),
        )

    def _expected(self, n_invited: int) -> int:
        return self.expected_clients or n_invited

    def integer_mechanism(self, dim: int, n_invited: int, nonce: bytes):
        """The DDG/Skellam mechanism of a round (public parameters only)."""
        from secagg.privacy import DistributedDiscreteGaussian, DistributedSkellam

        cls = DistributedDiscreteGaussian if self.mode == "ddg" else DistributedSkellam
        return cls(
            dim,
            self.clip,
            min(self.inner.bits, 52),  # every INTEGER_RING protocol has bits
            self._expected(n_invited),
            self.noise_multiplier,
            rotation_seed=hashlib.sha256(b"secagg-fl/dp-rotation\x00" + nonce).digest(),
            dropout_rate=self.dropout_rate,
            max_clients=n_invited,
        )

    def _inner_dim(self, dim: int) -> int:
        from secagg.privacy.rotation import next_power_of_two

        # The integer mechanisms rotate in a power-of-two dimension.
        return next_power_of_two(dim) if dp_mode(self.mode).discrete else dim

    def server(self, client_ids: Iterable[int], dim: int, *, rng=None, round: int = 0) -> DPServer:
        ids = list(client_ids)
        inner = self.inner.server(ids, self._inner_dim(dim), rng=rng, round=round)
        return DPServer(self, inner, dim, len(ids), rng)

    def client(self, client_id: int, dim: int, *, rng=None, round: int = 0) -> DPClient:
        inner = self.inner.client(client_id, self._inner_dim(dim), rng=rng, round=round)
        return DPClient(self, inner, dim, rng)


class _Delegating:
    """Forwards the session interface to the wrapped session."""

    def __init__(self, inner) -> None:
        self.inner = inner

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
    """Clips and noises the client's input, then hands it to the inner client."""

    # Besides the inner session's own fields (see ClientSession.SNAPSHOT_FIELDS).
    SNAPSHOT_FIELDS = ("_input", "_round_start", "_handed_over")

    def __init__(
        self, proto: DifferentiallyPrivate, inner, dim: int, rng: RandomSource | None
    ) -> None:
        super().__init__(inner)
        self.proto, self.dim = proto, dim
        self._rng = default_rng(rng)
        self._input: np.ndarray | None = None
        self._round_start: RoundStart | None = None
        self._handed_over = False

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
        if not isinstance(fields["_handed_over"], bool) or not isinstance(
            fields["_round_start"], (RoundStart, type(None))
        ):
            raise SnapshotError("DPClient snapshot fields have the wrong types")
        self.inner._restore_fields(fields["inner"])
        for name in self.SNAPSHOT_FIELDS:
            setattr(self, name, fields[name])

    def provide_input(self, x: np.ndarray) -> list[Message]:
        if self._input is not None:
            raise LocalProtocolError("input already provided")
        from secagg.privacy import clip_l2

        arr = check_input(x, self.dim)
        self._input = clip_l2(arr, self.proto.clip)
        return self._hand_over()

    def receive(self, message) -> list[Message]:
        if isinstance(message, (bytes, bytearray, memoryview)):
            message = Message.from_bytes(message)
        out = self.inner.receive(message)
        if isinstance(message, RoundStart) and not self.inner.aborted:
            self._round_start = message
            out += self._hand_over()
        return out

    def _hand_over(self) -> list[Message]:
        # Noise needs the round's public parameters (invited clients, nonce), so
        # the input reaches the inner session once RoundStart has been seen.
        if self._handed_over or self._input is None or self._round_start is None:
            return []
        self._handed_over = True
        p, n = self.proto, len(self._round_start.client_ids)
        if p.mode == "central":
            return self.inner.provide_input(self._input)
        if p.mode == "distributed":
            from secagg.privacy import distributed_gaussian_share

            noise = distributed_gaussian_share(
                self._input,
                clip=p.clip,
                noise_multiplier=p.noise_multiplier,
                expected_clients=p._expected(n),
                dropout_rate=p.dropout_rate,
                rng=self._rng,
            )
            return self.inner.provide_input(self._input + noise)
        mechanism = p.integer_mechanism(self.dim, n, self._round_start.nonce)
        ring = mechanism.client_encode(self._input, self._rng)
        return self.inner.provide_encoded_input(modular.reduce(ring, p.inner.bits))


class DPServer(_Delegating):
    """Runs the inner server, then decodes/noises the sum and records the DP event."""

    def __init__(self, proto: DifferentiallyPrivate, inner, dim: int, n_invited: int, rng) -> None:
        super().__init__(inner)
        self.proto, self.dim, self.n_invited = proto, dim, n_invited
        self._rng = default_rng(rng)
        self._result: ServerResult | None = None

    def receive(self, message) -> list[Message]:
        return self.inner.receive(message)

    def handle(self, event: LocalEvent) -> list[Message]:
        return self.inner.handle(event)

    def close_stage(self) -> list[Message]:
        return self.inner.close_stage()

    @property
    def awaiting(self) -> frozenset[int]:
        return self.inner.awaiting

    @property
    def client_ids(self):
        return self.inner.client_ids

    @property
    def result(self) -> ServerResult:
        if self._result is None:
            self._result = self._finish(self.inner.result)
        return self._result

    def _finish(self, res: ServerResult) -> ServerResult:
        p, k, q = self.proto, len(res.survivors), self.proto.sampling_probability
        if p.mode == "central":
            from secagg.privacy import central_gaussian

            total, event = central_gaussian(
                res.total,
                clip=p.clip,
                noise_multiplier=p.noise_multiplier,
                rng=self._rng,
                sampling_probability=q,
            )
        elif p.mode == "distributed":
            from secagg.privacy import distributed_gaussian_event

            total = res.total
            event = distributed_gaussian_event(
                p.noise_multiplier,
                p._expected(self.n_invited),
                k,
                dropout_rate=p.dropout_rate,
                sampling_probability=q,
            )
        else:
            mechanism = p.integer_mechanism(self.dim, self.n_invited, self.inner.nonce)
            assert res.integer_total is not None
            ring = modular.reduce(
                np.asarray(res.integer_total, dtype=np.int64).view(np.uint64), p.inner.bits
            )
            total = mechanism.server_decode(ring, k)
            event = mechanism.event(k, sampling_probability=q)
        return dataclasses.replace(
            res, total=total, integer_total=None, scale=None, events=(event,)
        )
