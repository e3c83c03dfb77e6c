"""Per-round plans: how one federated round runs, and what it is planned to release.

A :class:`Plan` says which aggregation protocol carries the clients' updates
(any name in :mod:`protocols.registry`, or ``"local"``: no aggregation),
whether and how they are differentially private (a mode of
:mod:`protocols.dp_modes`), how many clients take part (Poisson rate ``q``),
how many local epochs they train and how finely updates are quantized. Plans
are plain frozen dataclasses; invalid settings raise ``ValueError`` at
construction, so a bad policy fails before any client is asked to do work.
What a protocol accepts (its ``bits`` range, whether it can carry DDG/Skellam
noise or distributed noise at all) is asked of the protocol's config class,
not restated here.

Besides the plan, the DP rules of a run live here once: the DP configuration
of a round (:meth:`Plan.dp_protocol`), the event a round is planned to cause
(:func:`round_event`, which asks that configuration's
:meth:`~protocols.DifferentiallyPrivate.event_for`, the same function the
server's result uses, so planned and actual events cannot drift) and the noise
multiplier that spends a target ε over a run (:func:`calibrate`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from protocols import registry
from protocols.dp import DifferentiallyPrivate
from protocols.dp_modes import DP_MODES, DPMode, dp_mode
from protocols.wire import MAX_KEY_RUN
from secagg import privacy

if TYPE_CHECKING:  # pragma: no cover
    from protocols import AggregationProtocol

__all__ = [
    "DEFAULT_SESSION_ROUNDS",
    "DP_MODES",
    "LOCAL",
    "Plan",
    "calibrate",
    "expected_cohort",
    "plan_protocols",
    "round_event",
]

#: The plan that runs no aggregation at all: clients only refit their own
#: parameters, nothing leaves a device, nothing is released (the non-releasing
#: fallback of a spent privacy budget).
LOCAL = "local"

#: Training rounds one SecAgg/SecAgg+ session serves by default (``Plan.session_rounds``):
#: each client shares one self-mask seed and one mask key per round at the setup, so a
#: longer session costs more setup bytes; a session also ends early when too few of a
#: group remain (dropouts) and a new setup runs.
DEFAULT_SESSION_ROUNDS = 10


def plan_protocols() -> tuple[str, ...]:
    """Protocol names a plan may use: every registered protocol, and ``"local"``."""
    return (*registry.names(), LOCAL)


def _positive(value: Any, name: str, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not (math.isfinite(value) and float(value) > 0)
    ):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def _int_in(value: Any, name: str, lo: int, hi: int) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or not lo <= int(value) <= hi
    ):
        raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {value!r}")


@dataclass(frozen=True)
class Plan:
    """How one round runs. All fields are validated at construction.

    Attributes:
        protocol: a registered protocol (``"plaintext"``, ``"secagg"``,
            ``"secagg+"``, ``"paillier"``, ``"ckks"``, ... see
            :func:`protocols.registry.names`) or ``"local"`` (no aggregation,
            nothing released).
        q: Poisson sampling rate of clients, in (0, 1].
        local_epochs: local epochs per sampled client (>= 1; 2 was best on ML-100K
            without DP, 1 with DP).
        bits: quantization bits of the protocols that quantize, within the
            protocol's ``QUANTIZATION_BITS`` (SecAgg/SecAgg+: the ring
            Z_{2^bits}, 2..64; Paillier: bits per value, 2..52); 2..64 otherwise.
        coordinate_clip: without DP, every coordinate a client sends is
            clipped to ``[-coordinate_clip, coordinate_clip]`` (by the client,
            for every protocol, so all protocols aggregate the same vectors).
            With DP the protocol's per-coordinate clip is derived from ``clip``.
        clip: the DP L2 clip of one client's update; ``None`` means no DP.
        noise_multiplier: σ (noise std / clip). Exactly one of
            ``noise_multiplier`` and ``target_epsilon`` is set when ``clip`` is.
        target_epsilon: instead of σ, the ε to reach over the trainer's planned
            rounds (the trainer calibrates σ with :func:`calibrate`).
        dp_mode: one of :data:`DP_MODES` (``"central"``, ``"distributed"``,
            ``"ddg"``, ``"skellam"``).
        count_weight: the value a client puts in the per-item weight channel
            for each item it rated (see :mod:`recsys.federated`); with DP it
            trades clip budget between item deltas and item counts.
        dropout: fraction of sampled clients that drop out of the protocol at
            its input stage (a simulation knob, in [0, 1)).
        threshold: Shamir threshold of SecAgg/SecAgg+ (fraction of a sharing group);
            ``None`` leaves the protocol's own (see :class:`protocols.SecAgg`
            and :class:`protocols.SecAggPlus`).
        key_bits: Paillier modulus size.
        semi_honest: run SecAgg/SecAgg+ in their semi-honest variant. The
            in-process trainer enrols its simulated clients and runs the
            actively secure variant (the default, False); a deployment whose
            clients hold no enrolled identity key (today's Flower app, see the
            README) must say True, explicitly.
        session_rounds: training rounds served by one protocol session (one
            key setup; see the README, "Multi-round sessions"). ``None``, the
            default, is :data:`DEFAULT_SESSION_ROUNDS` where that is secure
            (a ``MULTI_ROUND`` protocol, SecAgg or SecAgg+, with every client
            in every round, ``q = 1``) and no distributed noise (see
            :meth:`session_length`), and 1 otherwise. An explicit value
            above 1 is refused where it is not: a session's masks cancel only
            over its own cohort, so Poisson sampling per round would need
            every unsampled client to stay online for every unmasking (or a
            new setup per round, which is 1).
    """

    protocol: str = "secagg+"
    q: float = 1.0
    local_epochs: int = 2
    bits: int = 32
    coordinate_clip: float = 4.0
    clip: float | None = None
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    dp_mode: str = "central"
    count_weight: float = 1.0
    dropout: float = 0.0
    threshold: float | None = None
    key_bits: int = 2048
    semi_honest: bool = False
    session_rounds: int | None = None

    def __post_init__(self) -> None:
        if self.protocol != LOCAL and self.protocol not in registry.names():
            raise ValueError(f"protocol must be one of {plan_protocols()}, got {self.protocol!r}")
        if (
            isinstance(self.q, bool)
            or not isinstance(self.q, numbers.Real)
            or not 0.0 < self.q <= 1.0
        ):
            raise ValueError(f"q must lie in (0, 1], got {self.q!r}")
        _int_in(self.local_epochs, "local_epochs", 1, 10_000)
        cls = self.config_class
        lo, hi = (cls.QUANTIZATION_BITS if cls is not None else None) or (2, 64)
        _int_in(self.bits, "bits", lo, hi)
        _positive(self.coordinate_clip, "coordinate_clip")
        _positive(self.clip, "clip", allow_none=True)
        _positive(self.noise_multiplier, "noise_multiplier", allow_none=True)
        _positive(self.target_epsilon, "target_epsilon", allow_none=True)
        _positive(self.count_weight, "count_weight")
        if self.dp_mode not in DP_MODES:
            raise ValueError(f"dp_mode must be one of {DP_MODES}, got {self.dp_mode!r}")
        if not (isinstance(self.dropout, numbers.Real) and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout!r}")
        if self.threshold is not None and not (
            isinstance(self.threshold, numbers.Real)
            and not isinstance(self.threshold, bool)
            and 0.0 < self.threshold <= 1.0
        ):
            raise ValueError(f"threshold must lie in (0, 1] or be None, got {self.threshold!r}")
        _int_in(self.key_bits, "key_bits", 1024, 8192)
        if not isinstance(self.semi_honest, bool):
            raise ValueError(f"semi_honest must be a bool, got {self.semi_honest!r}")
        if self.session_rounds is not None:
            _int_in(self.session_rounds, "session_rounds", 1, MAX_KEY_RUN)
            if self.session_rounds > 1 and not self.multi_round_allowed:
                raise ValueError(
                    f"session_rounds={self.session_rounds} needs a protocol that keeps its keys "
                    f"across rounds (SecAgg, SecAgg+) and every client in every round (q=1); "
                    f"this plan has protocol={self.protocol!r}, q={self.q}. With Poisson "
                    "sampling a session's masks would not cancel over a round's sample unless "
                    "every unsampled client answered every unmasking: use session_rounds=1"
                )
        has_noise = (self.noise_multiplier is not None) + (self.target_epsilon is not None)
        if self.clip is None and has_noise:
            raise ValueError("noise_multiplier/target_epsilon need a DP clip (clip=...)")
        if self.clip is not None and has_noise != 1:
            raise ValueError(
                "with clip set, give exactly one of noise_multiplier and target_epsilon"
            )
        if self.dp and cls is not None:
            mode = self.mode
            if mode.secure_sum and not cls.SECURE_SUM:
                raise ValueError(
                    f"dp_mode={self.dp_mode!r} relies on the server seeing only the sum; "
                    "use a secure protocol or dp_mode='central'"
                )
            if mode.discrete and not cls.INTEGER_RING:
                ring = [n for n in registry.names() if registry.config_class(n).INTEGER_RING]
                raise ValueError(
                    f"dp_mode={self.dp_mode!r} needs a protocol that sums in an integer ring "
                    f"({' or '.join(ring)})"
                )
        elif self.count_weight > self.coordinate_clip:
            raise ValueError("count_weight must not exceed coordinate_clip (it would be clipped)")

    @property
    def multi_round_allowed(self) -> bool:
        """True if one session may serve several rounds of this plan (see ``session_rounds``)."""
        cls = self.config_class
        return cls is not None and cls.MULTI_ROUND and self.q >= 1.0

    def session_length(self, remaining: int) -> int:
        """Rounds the next session of this plan serves when ``remaining`` rounds are left.

        The default (``session_rounds=None``) keeps distributed noise (the
        ``secure_sum`` DP modes) to one round per session: each client's noise
        share is fixed by its configuration, so a session whose participants
        thin out round after round would carry less noise in every later round
        (the events account for it, but ε would grow faster than planned);
        ``session_rounds`` set explicitly accepts that.
        """
        if self.session_rounds is None:
            spread_noise = self.dp and self.mode.secure_sum
            wanted = DEFAULT_SESSION_ROUNDS if self.multi_round_allowed and not spread_noise else 1
        else:
            wanted = self.session_rounds
        return max(1, min(wanted, int(remaining)))

    @property
    def dp(self) -> bool:
        """True when the round's release is differentially private."""
        return self.clip is not None

    @property
    def releases(self) -> bool:
        """True when the round releases an aggregate (every protocol but ``"local"``)."""
        return self.protocol != LOCAL

    @property
    def config_class(self) -> type[AggregationProtocol] | None:
        """The registered config class of :attr:`protocol` (None for ``"local"``)."""
        return None if self.protocol == LOCAL else registry.config_class(self.protocol)

    @property
    def mode(self) -> DPMode:
        """What :attr:`dp_mode` needs (see :mod:`protocols.dp_modes`)."""
        return dp_mode(self.dp_mode)

    @property
    def accountant(self) -> str | None:
        """The accountant this plan's releases need (``"rdp"`` for DDG/Skellam), or None."""
        return self.mode.accountant if self.dp and self.releases else None

    @property
    def quantization_bits(self) -> int | None:
        """:attr:`bits` if the protocol quantizes to them, else None (the ledger's ``bits``)."""
        cls = self.config_class
        return self.bits if cls is not None and cls.QUANTIZATION_BITS is not None else None

    def protocol_config(
        self, clip: float | None = None, *, workers: int | None = None, rounds: int = 1
    ) -> AggregationProtocol:
        """The protocol of this plan, without DP (see :func:`recsys.federated.build_protocol`).

        ``clip`` is the per-coordinate clip (default ``coordinate_clip``),
        ``workers`` the processes the protocol may start for its own work,
        ``rounds`` the rounds of one session (:meth:`session_length`).
        """
        if rounds > 1 and not self.multi_round_allowed:
            raise ValueError(f"a {self.protocol!r} session of this plan runs one round")
        if not self.releases:
            raise ValueError("a 'local' plan runs no aggregation protocol")
        options = registry.ProtocolOptions(
            clip=float(self.coordinate_clip if clip is None else clip),
            bits=self.bits,
            threshold=self.threshold,
            key_bits=self.key_bits,
            workers=workers,
            semi_honest=self.semi_honest or None,
            rounds=rounds if rounds > 1 else None,
        )
        return registry.create(self.protocol, options)

    def dp_protocol(
        self, inner: AggregationProtocol, noise_multiplier: float, n_invited: int
    ) -> DifferentiallyPrivate:
        """``inner`` wrapped in this plan's DP for a round inviting ``n_invited`` clients.

        The noise is split over the invited cohort (``expected_clients =
        n_invited``), over-provisioned for the plan's ``dropout``, and the event
        is amplified by the plan's Poisson rate ``q`` when ``q < 1``.
        """
        if not self.dp:
            raise ValueError("the plan has no DP (clip=None)")
        assert self.clip is not None
        return DifferentiallyPrivate(
            inner,
            mode=self.dp_mode,
            clip=float(self.clip),
            noise_multiplier=float(noise_multiplier),
            expected_clients=int(n_invited),
            dropout_rate=float(self.dropout),
            sampling_probability=self.q if self.q < 1.0 else None,
        )

    def reporting(self, n_invited: int) -> int:
        """How many of ``n_invited`` clients report: all but ``round(dropout · n_invited)``,
        the ones the simulation drops at the protocol's input stage."""
        return int(n_invited) - round(self.dropout * int(n_invited))

    def replace(self, **changes: Any) -> Plan:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def cost_key(self) -> tuple[Any, ...]:
        """The fields that decide a round's cost (used to match ledger rows)."""
        return (self.protocol, self.bits, self.key_bits, self.dp_mode if self.dp else None)


def expected_cohort(plan: Plan, n_clients: int) -> int:
    """The cohort a round of ``plan`` expects from ``n_clients``: ``max(1, round(q · n_clients))``."""
    return max(1, round(plan.q * int(n_clients)))


def round_event(
    plan: Plan,
    noise_multiplier: float | None = None,
    *,
    n_invited: int | None = None,
    dim: int | None = None,
) -> privacy.Event:
    """The DP event one round of ``plan`` is *planned* to cause.

    A DP round inviting ``n_invited`` clients of ``dim`` values each, of
    which :meth:`Plan.reporting` report, causes the event
    :meth:`~protocols.DifferentiallyPrivate.event_for` of the round's DP
    configuration (:meth:`Plan.dp_protocol`): the very event the server's
    result carries when that many report. ``n_invited`` and ``dim`` are
    required for DP plans (the distributed noise is split over the cohort;
    DDG/Skellam's granularity depends on both). A non-DP release is
    :class:`~secagg.privacy.NonPrivateEvent`, a ``"local"`` round
    :class:`~secagg.privacy.NoOpEvent`.
    """
    if not plan.releases:
        return privacy.NoOpEvent()
    if not plan.dp:
        return privacy.NonPrivateEvent()
    sigma = plan.noise_multiplier if noise_multiplier is None else noise_multiplier
    if sigma is None:
        raise ValueError("the plan has target_epsilon but no noise multiplier: calibrate first")
    if n_invited is None or dim is None:
        raise ValueError("a DP round's planned event needs its cohort size and dimension")
    proto = plan.dp_protocol(plan.protocol_config(), float(sigma), n_invited)
    # A round in which nobody reports aborts and releases nothing; plan for one.
    return proto.event_for(int(dim), max(1, plan.reporting(n_invited)))


@functools.lru_cache(maxsize=128)
def calibrate(target_epsilon: float, delta: float, q: float, rounds: int, accountant: str) -> float:
    """σ such that ``rounds`` Poisson-sampled (rate ``q``) Gaussian rounds spend
    ``target_epsilon`` at ``delta`` by ``accountant`` (``"pld"`` or ``"rdp"``).

    The one calibration of a run: the trainer (plans with ``target_epsilon``)
    and :class:`~recsys.policies.BudgetPolicy` both ask it; results are cached
    (calibration is a root search over the accountant).
    """
    return privacy.calibrate_noise_multiplier(
        float(target_epsilon), float(delta), float(q), int(rounds), accountant=accountant
    )
