"""Per-round plans and the policies that choose them.

A :class:`Plan` says how one federated round runs: which aggregation protocol
carries the clients' updates, whether and how they are differentially private,
how many clients take part (Poisson rate ``q``), how many local epochs they
train and how finely updates are quantized. A *policy* is anything callable as
``policy(round, ledger) -> Plan | None``: it sees the run so far (the
:class:`~recsys.ledger.Ledger`: accuracy, cumulative ε, bytes and seconds per
round) and picks the next round's plan, or ``None`` to stop training.

Three policies ship here:

* :class:`FixedPolicy` — the same plan every round (what a bare ``Plan``
  given to the trainer becomes, see :func:`as_policy`).
* :class:`BudgetPolicy` — spends a target ε over the planned rounds: it
  calibrates the noise multiplier with
  :func:`secagg.privacy.calibrate_noise_multiplier` and, before every round,
  checks with the ledger's accountant that composing the round keeps ε within
  the target; once it would not, it stops (or switches to a non-releasing
  plan).
* :class:`CostAwarePolicy` — picks, from an ordered list of candidate plans,
  the first whose expected per-round cost (bytes per client, client and
  server seconds) fits a budget, using the costs observed in the ledger and a
  rough analytical prior (:func:`estimate_cost`) for plans not yet run; it
  also skips Paillier above a number of clients, where SecAgg+ is far cheaper.

Policies compose: ``BudgetPolicy(8.0, base=CostAwarePolicy([...]))`` lets the
cost policy choose the protocol and the budget policy set the noise.

Plans are plain frozen dataclasses; invalid settings raise ``ValueError`` at
construction, so a bad policy fails before any client is asked to do work.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from secagg import privacy

if TYPE_CHECKING:  # pragma: no cover
    from .ledger import Ledger

__all__ = [
    "DP_MODES",
    "PROTOCOLS",
    "BudgetPolicy",
    "CostAwarePolicy",
    "CostEstimate",
    "FixedPolicy",
    "Plan",
    "Policy",
    "as_policy",
    "estimate_cost",
    "round_event",
]

#: Protocol names a plan may use. ``"local"`` runs no aggregation at all:
#: clients only refit their own parameters, nothing leaves a device, nothing is
#: released (the non-releasing fallback of a spent privacy budget).
PROTOCOLS = ("plaintext", "secagg", "secagg+", "paillier", "ckks", "local")
#: DP modes, as in :class:`protocols.DifferentiallyPrivate`.
DP_MODES = ("central", "distributed", "ddg", "skellam")
_SECURE = ("secagg", "secagg+", "paillier", "ckks")


def _positive(value: Any, name: str, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not (math.isfinite(value) and value > 0)
    ):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def _int_in(value: Any, name: str, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {value!r}")


@dataclass(frozen=True)
class Plan:
    """How one round runs. All fields are validated at construction.

    Attributes:
        protocol: ``"plaintext"``, ``"secagg"``, ``"secagg+"``, ``"paillier"``,
            ``"ckks"`` or ``"local"`` (no aggregation, nothing released).
        q: Poisson sampling rate of clients, in (0, 1].
        local_epochs: local epochs per sampled client (>= 1; 2 was best on ML-100K
            without DP, 1 with DP).
        bits: quantization bits of the integer protocols (SecAgg/SecAgg+: the
            ring Z_{2^bits}, 2..64; Paillier: bits per value, 2..52).
        coordinate_clip: without DP, every coordinate a client sends is
            clipped to ``[-coordinate_clip, coordinate_clip]`` (by the client,
            for every protocol, so all protocols aggregate the same vectors).
            With DP the protocol's per-coordinate clip is derived from ``clip``.
        clip: the DP L2 clip of one client's update; ``None`` means no DP.
        noise_multiplier: σ (noise std / clip). Exactly one of
            ``noise_multiplier`` and ``target_epsilon`` is set when ``clip`` is.
        target_epsilon: instead of σ, the ε to reach over the trainer's planned
            rounds (the trainer calibrates σ with
            :func:`secagg.privacy.calibrate_noise_multiplier`).
        dp_mode: ``"central"``, ``"distributed"``, ``"ddg"`` or ``"skellam"``.
        count_weight: the value a client puts in the per-item weight channel
            for each item it rated (see :mod:`recsys.federated`); with DP it
            trades clip budget between item deltas and item counts.
        dropout: fraction of sampled clients that drop out of the protocol at
            its input stage (a simulation knob, in [0, 1)).
        threshold: Shamir threshold of SecAgg/SecAgg+ (fraction of a sharing group);
            ``None`` lets SecAgg+ choose it with its degree (the largest
            threshold meeting its correctness target, see
            :class:`protocols.SecAggPlus`) and gives SecAgg 0.5.
        key_bits: Paillier modulus size.
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

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if (
            isinstance(self.q, bool)
            or not isinstance(self.q, numbers.Real)
            or not 0.0 < self.q <= 1.0
        ):
            raise ValueError(f"q must lie in (0, 1], got {self.q!r}")
        _int_in(self.local_epochs, "local_epochs", 1, 10_000)
        _int_in(self.bits, "bits", 2, 52 if self.protocol == "paillier" else 64)
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
        has_noise = (self.noise_multiplier is not None) + (self.target_epsilon is not None)
        if self.clip is None and has_noise:
            raise ValueError("noise_multiplier/target_epsilon need a DP clip (clip=...)")
        if self.clip is not None and has_noise != 1:
            raise ValueError(
                "with clip set, give exactly one of noise_multiplier and target_epsilon"
            )
        if self.dp and self.protocol != "local":
            if self.dp_mode != "central" and self.protocol == "plaintext":
                raise ValueError(
                    f"dp_mode={self.dp_mode!r} relies on the server seeing only the sum; "
                    "use a secure protocol or dp_mode='central'"
                )
            if self.dp_mode in ("ddg", "skellam"):
                if self.protocol not in ("secagg", "secagg+"):
                    raise ValueError(f"dp_mode={self.dp_mode!r} needs protocol secagg or secagg+")
        elif self.count_weight > self.coordinate_clip:
            raise ValueError("count_weight must not exceed coordinate_clip (it would be clipped)")

    @property
    def dp(self) -> bool:
        """True when the round's release is differentially private."""
        return self.clip is not None

    @property
    def releases(self) -> bool:
        """True when the round releases an aggregate (every protocol but ``"local"``)."""
        return self.protocol != "local"

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


class Policy(Protocol):
    """``policy(round, ledger) -> Plan | None`` (``None`` stops training)."""

    def __call__(self, round: int, ledger: Ledger) -> Plan | None: ...


@dataclass(frozen=True)
class FixedPolicy:
    """The same plan every round."""

    plan: Plan

    def __call__(self, round: int, ledger: Ledger) -> Plan:
        return self.plan


def as_policy(plan_or_policy: Plan | Callable[[int, Ledger], Plan | None]) -> Policy:
    """A :class:`Plan` becomes a :class:`FixedPolicy`; a callable is used as is."""
    if isinstance(plan_or_policy, Plan):
        return FixedPolicy(plan_or_policy)
    if callable(plan_or_policy):
        return plan_or_policy
    raise TypeError(
        f"expected a Plan or a callable (round, ledger) -> Plan, got {plan_or_policy!r}"
    )


def round_event(plan: Plan, noise_multiplier: float | None = None) -> privacy.Event:
    """The DP event one round of ``plan`` is *planned* to cause.

    Central and distributed Gaussian rounds (all clients reporting) cause
    exactly this event; DDG/Skellam rounds are approximated by the Gaussian
    with the same σ. A non-DP release is :class:`~secagg.privacy.NonPrivateEvent`,
    a ``"local"`` round :class:`~secagg.privacy.NoOpEvent`.
    """
    if not plan.releases:
        return privacy.NoOpEvent()
    if not plan.dp:
        return privacy.NonPrivateEvent()
    sigma = plan.noise_multiplier if noise_multiplier is None else noise_multiplier
    if sigma is None:
        raise ValueError("the plan has target_epsilon but no noise multiplier: calibrate first")
    event: privacy.Event = privacy.GaussianEvent(float(sigma))
    if plan.q < 1.0:
        event = privacy.PoissonSampledEvent(plan.q, event)
    return event


class BudgetPolicy:
    """Spend ``target_epsilon`` (at the ledger's δ) over the planned rounds, never more.

    Args:
        target_epsilon: the ε budget of the whole run.
        base: the plan (or a policy giving the plan) whose DP settings are
            used; it must set ``clip`` (its σ / target_epsilon is ignored:
            this policy sets σ). Default: SecAgg+ with central DP, clip 1.
        rounds: rounds to spread the budget over (default: the trainer's
            planned rounds, ``ledger.info["rounds"]``).
        on_exhausted: what to run once another round would exceed the
            budget: ``None`` stops training; a plan must be non-releasing
            (``protocol="local"``).

    The noise multiplier is calibrated once, on the first call, with the
    ledger's accountant kind, for ``base``'s ``q``; before every round the
    policy composes the round's event into a copy of the ledger's accountant
    and runs the round only if ε stays within the target. Central mode and
    distributed mode without dropouts cause exactly the planned event, so the
    ledger's ε never exceeds the target; with dropouts in distributed mode the
    shortfall is accounted (the event carries the effective σ) and may push ε
    slightly past the plan. DDG/Skellam rounds are accounted by RDP for the
    discrete mechanism, which the Gaussian only approximates; for them the
    policy adds ``DISCRETE_MARGIN`` more noise than the Gaussian calibration
    asks for and checks with that Gaussian, leaving the slack for the
    discretization (their ε then stays a little below the target).
    """

    #: Relative σ margin for DDG/Skellam rounds (see the class docstring).
    DISCRETE_MARGIN = 0.03

    def __init__(
        self,
        target_epsilon: float,
        base: Plan | Policy | None = None,
        *,
        rounds: int | None = None,
        on_exhausted: Plan | None = None,
    ) -> None:
        _positive(target_epsilon, "target_epsilon")
        self.target_epsilon = float(target_epsilon)
        self.base = as_policy(base if base is not None else Plan(clip=1.0, noise_multiplier=1.0))
        if rounds is not None:
            _int_in(rounds, "rounds", 1, 10**9)
        self.rounds = rounds
        if on_exhausted is not None and on_exhausted.releases:
            raise ValueError("on_exhausted must be a non-releasing plan (protocol='local') or None")
        self.on_exhausted = on_exhausted
        self.noise_multiplier: float | None = None
        self.exhausted_at: int | None = None

    def calibrate(self, q: float, rounds: int, delta: float, accountant: str) -> float:
        """σ such that ``rounds`` Poisson-sampled Gaussian rounds spend the target."""
        return privacy.calibrate_noise_multiplier(
            self.target_epsilon, delta, q, rounds, accountant=accountant
        )

    def __call__(self, round: int, ledger: Ledger) -> Plan | None:
        base = self.base(round, ledger)
        if base is None:
            return None
        if not base.dp:
            raise ValueError("BudgetPolicy needs a base plan with a DP clip (clip=...)")
        if self.noise_multiplier is None:
            rounds = self.rounds or int(ledger.info.get("rounds", 0))
            if rounds < 1:
                raise ValueError("BudgetPolicy needs rounds= or a ledger with info['rounds']")
            self.noise_multiplier = self.calibrate(
                base.q, rounds, ledger.delta, ledger.accountant_kind
            )
        discrete = base.dp_mode in ("ddg", "skellam")
        sigma = self.noise_multiplier * (1.0 + self.DISCRETE_MARGIN if discrete else 1.0)
        plan = base.replace(noise_multiplier=sigma, target_epsilon=None)
        check = round_event(plan, self.noise_multiplier)
        if ledger.epsilon_after(check) > self.target_epsilon:
            if self.exhausted_at is None:
                self.exhausted_at = round
            return self.on_exhausted
        return plan


# ---------------------------------------------------------------------------
# Cost model and the cost-aware policy.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CostEstimate:
    """Expected cost of one round: bytes per sampled client, seconds of CPU."""

    upload_bytes: float  # per client
    download_bytes: float  # per client (model + protocol messages)
    client_seconds: float  # per client
    server_seconds: float  # whole round
    source: str = "prior"  # "prior" (analytical) or "observed" (from the ledger)


# Rough CPU priors on a 2-core 2020s laptop-class machine (seconds). They only
# rank plans before any round of them ran; the ledger's observations replace
# them as soon as one did (see benchmarks/recsys.py for measured figures).
_SECONDS_PER_VALUE = {
    "plaintext": 2e-8,
    "secagg": 1e-8,  # per value per mask expanded (self + each neighbour)
    "secagg+": 1e-8,
    "paillier": 6e-5,
    "ckks": 3e-6,
}
_SECONDS_PER_PEER = 4e-4  # key agreement, shares, AEAD per neighbour


def _secagg_degree(plan: Plan, n: int) -> int:
    import protocols  # local import: only the cost model needs the protocol configs

    if plan.protocol == "secagg":
        return max(n - 1, 0)
    return protocols.SecAggPlus(threshold=plan.threshold, bits=min(plan.bits, 64)).degree(max(n, 3))


def estimate_cost(plan: Plan, n_clients: float, dim: int, model_bytes: int) -> CostEstimate:
    """An analytical estimate of one round of ``plan`` with ``n_clients`` sampled clients.

    ``dim`` is the upload dimension, ``model_bytes`` the size of the item
    parameters a client downloads. Byte counts follow the wire formats
    (SecAgg: ``ceil(bits/8)`` bytes per coordinate plus per-neighbour key
    material; Paillier: ciphertexts of ``2 * key_bits`` bits each packing
    ``key_bits / (bits + log2 n)`` values; CKKS: about 33 bytes per value at
    N=8192); seconds are rough priors.
    """
    n = max(float(n_clients), 1.0)
    p = plan.protocol
    if p == "local":
        return CostEstimate(0.0, 0.0, 0.0, 0.0)
    if p == "plaintext":
        up, peers = 8.0 * dim, 0
    elif p in ("secagg", "secagg+"):
        peers = _secagg_degree(plan, round(n))
        up = math.ceil(plan.bits / 8) * dim + 250.0 * peers
    elif p == "paillier":
        peers = 0
        slot = plan.bits + math.ceil(math.log2(n + 1)) + 1
        per_ct = max((plan.key_bits - 2) // slot, 1)
        up = math.ceil(dim / per_ct) * plan.key_bits / 4
    else:  # ckks
        peers = 0
        up = 33.0 * dim
    down = model_bytes + (250.0 * peers if peers else 200.0)
    if p in ("secagg", "secagg+"):
        client_s = _SECONDS_PER_VALUE[p] * dim * (peers + 1) + _SECONDS_PER_PEER * peers
        server_s = 5e-9 * dim * n + 1e-4 * n * peers
    elif p == "paillier":
        client_s = _SECONDS_PER_VALUE[p] * dim
        server_s = 1e-6 * dim * n / 30 + 2e-4 * dim  # ciphertext products + decryption
    else:
        client_s = _SECONDS_PER_VALUE[p] * dim
        server_s = _SECONDS_PER_VALUE[p] * dim * n
    return CostEstimate(up, down, client_s, server_s)


def _observed_cost(plan: Plan, ledger: Ledger) -> CostEstimate | None:
    """Mean per-client cost of past rounds run with the same cost-relevant settings."""
    key = plan.cost_key()
    rows = [
        r
        for r in ledger.rows
        if r.sampled and r.status == "ok" and r.plan and Plan.from_dict(r.plan).cost_key() == key
    ]
    if not rows:
        return None
    rows = rows[-5:]  # recent rounds: costs drift with the sample size
    k = len(rows)
    return CostEstimate(
        upload_bytes=sum(r.bytes_up / max(r.survivors, 1) for r in rows) / k,
        download_bytes=sum(r.bytes_down / r.sampled for r in rows) / k,
        client_seconds=sum(r.client_seconds / r.sampled for r in rows) / k,
        server_seconds=sum(r.server_seconds for r in rows) / k,
        source="observed",
    )


class CostAwarePolicy:
    """The first candidate plan whose expected round cost fits the budget.

    Args:
        candidates: plans in order of preference (e.g. most protective first).
        max_upload_bytes: budget of bytes one client uploads per round.
        max_download_bytes: budget of bytes one client downloads per round.
        max_client_seconds: budget of CPU seconds one client spends per round
            (local training plus protocol).
        max_server_seconds: budget of server CPU seconds per round.
        max_paillier_clients: above this many expected clients a Paillier
            candidate is skipped: its decryptor and server work grow with the
            number of clients times the dimension, SecAgg+'s only with log n.
        fallback: which plan to run when no candidate fits: ``"cheapest"``
            (smallest estimated upload) or ``"stop"`` (return None).

    Estimates come from the ledger (mean of the last rounds with the same
    protocol, bits and key size) or, for a plan not yet run, from
    :func:`estimate_cost` with ``ledger.info['n_clients']``,
    ``['upload_dim']`` and ``['model_bytes']``. The chosen plan and the
    reason are kept in :attr:`decisions`.
    """

    def __init__(
        self,
        candidates: Sequence[Plan],
        *,
        max_upload_bytes: float | None = None,
        max_download_bytes: float | None = None,
        max_client_seconds: float | None = None,
        max_server_seconds: float | None = None,
        max_paillier_clients: int = 200,
        fallback: str = "cheapest",
    ) -> None:
        self.candidates = list(candidates)
        if not self.candidates or not all(isinstance(c, Plan) for c in self.candidates):
            raise ValueError("candidates must be a non-empty sequence of Plan")
        for name, value in (
            ("max_upload_bytes", max_upload_bytes),
            ("max_download_bytes", max_download_bytes),
            ("max_client_seconds", max_client_seconds),
            ("max_server_seconds", max_server_seconds),
        ):
            _positive(value, name, allow_none=True)
        if fallback not in ("cheapest", "stop"):
            raise ValueError(f"fallback must be 'cheapest' or 'stop', got {fallback!r}")
        _int_in(max_paillier_clients, "max_paillier_clients", 1, 10**9)
        self.budget = {
            "upload_bytes": max_upload_bytes,
            "download_bytes": max_download_bytes,
            "client_seconds": max_client_seconds,
            "server_seconds": max_server_seconds,
        }
        self.max_paillier_clients = max_paillier_clients
        self.fallback = fallback
        self.decisions: list[tuple[int, Plan | None, str]] = []

    def estimate(self, plan: Plan, ledger: Ledger) -> CostEstimate:
        """Expected cost of ``plan`` for the next round (observed if possible)."""
        observed = _observed_cost(plan, ledger)
        if observed is not None:
            return observed
        info = ledger.info
        n = plan.q * float(info.get("n_clients", 1))
        return estimate_cost(
            plan, n, int(info.get("upload_dim", 1)), int(info.get("model_bytes", 0))
        )

    def _fits(self, est: CostEstimate) -> bool:
        return all(
            limit is None or getattr(est, name) <= limit for name, limit in self.budget.items()
        )

    def __call__(self, round: int, ledger: Ledger) -> Plan | None:
        n_clients = float(ledger.info.get("n_clients", 1))
        considered: list[tuple[Plan, CostEstimate]] = []
        for plan in self.candidates:
            if plan.protocol == "paillier" and plan.q * n_clients > self.max_paillier_clients:
                continue
            est = self.estimate(plan, ledger)
            considered.append((plan, est))
            if self._fits(est):
                self.decisions.append((round, plan, f"fits ({est.source} estimate)"))
                return plan
        if self.fallback == "stop" or not considered:
            self.decisions.append((round, None, "no candidate fits the budget"))
            return None
        plan, est = min(considered, key=lambda pe: pe[1].upload_bytes)
        self.decisions.append((round, plan, f"cheapest; none fits ({est.source} estimate)"))
        return plan
