"""The policies that choose each round's :class:`~recsys.plan.Plan`.

A *policy* is anything callable as ``policy(round, ledger) -> Plan | None``:
it sees the run so far (the :class:`~recsys.ledger.Ledger`: accuracy,
cumulative ε, bytes and seconds per round, and the run's
:class:`~recsys.ledger.RunInfo`) and picks the next round's plan, or ``None``
to stop training.

Three policies ship here:

* :class:`FixedPolicy` — the same plan every round (what a bare ``Plan``
  given to the trainer becomes, see :func:`as_policy`).
* :class:`BudgetPolicy` — spends a target ε over the planned rounds: it
  calibrates the noise multiplier with :func:`recsys.plan.calibrate` and,
  before every round, checks with the ledger's accountant that composing the
  round keeps ε within the target; once it would not, it stops (or switches
  to a non-releasing plan).
* :class:`CostAwarePolicy` — picks, from an ordered list of candidate plans,
  the first whose expected per-round cost (bytes per client, client and
  server seconds) fits a budget, using the costs observed in the ledger and,
  for plans not yet run, the protocol's own cost model
  (:meth:`protocols.AggregationProtocol.cost`, via :func:`estimate_cost`); it
  also skips Paillier above a number of clients, where SecAgg+ is far cheaper.

Policies compose: ``BudgetPolicy(8.0, base=CostAwarePolicy([...]))`` lets the
cost policy choose the protocol and the budget policy set the noise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from protocols.cost import CostEstimate

from .plan import Plan, _int_in, _positive, calibrate, expected_cohort, round_event

if TYPE_CHECKING:  # pragma: no cover
    from .ledger import Ledger

__all__ = [
    "BudgetPolicy",
    "CostAwarePolicy",
    "CostEstimate",
    "FixedPolicy",
    "Policy",
    "as_policy",
    "estimate_cost",
]


class Policy(Protocol):
    """``policy(round, ledger) -> Plan | None`` (``None`` stops training)."""

    def __call__(self, round: int, ledger: Ledger, /) -> Plan | None: ...


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


class BudgetPolicy:
    """Spend ``target_epsilon`` (at the ledger's δ) over the planned rounds, never more.

    Args:
        target_epsilon: the ε budget of the whole run.
        base: the plan (or a policy giving the plan) whose DP settings are
            used; it must set ``clip`` (its σ / target_epsilon is ignored:
            this policy sets σ). Default: SecAgg+ with central DP, clip 1.
        rounds: rounds to spread the budget over (default: the trainer's
            planned rounds, ``ledger.info.rounds``).
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
    discretization, and checks each round with its planned event
    (:func:`recsys.plan.round_event`: the exact DDG/Skellam event for the
    expected cohort, the one the server's result carries).
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
        """σ such that ``rounds`` Poisson-sampled Gaussian rounds spend the target
        (:func:`recsys.plan.calibrate`)."""
        return calibrate(self.target_epsilon, delta, q, rounds, accountant)

    def __call__(self, round: int, ledger: Ledger) -> Plan | None:
        base = self.base(round, ledger)
        if base is None:
            return None
        if not base.dp:
            raise ValueError("BudgetPolicy needs a base plan with a DP clip (clip=...)")
        if self.noise_multiplier is None:
            rounds = self.rounds or ledger.info.rounds
            if rounds < 1:
                raise ValueError("BudgetPolicy needs rounds= or a ledger with info.rounds")
            self.noise_multiplier = self.calibrate(
                base.q, rounds, ledger.delta, ledger.accountant_kind
            )
        discrete = base.mode.discrete
        sigma = self.noise_multiplier * (1.0 + self.DISCRETE_MARGIN if discrete else 1.0)
        plan = base.replace(noise_multiplier=sigma, target_epsilon=None)
        info = ledger.info
        check = round_event(
            plan, n_invited=expected_cohort(plan, info.n_clients), dim=info.upload_dim
        )
        if ledger.epsilon_after(check) > self.target_epsilon:
            if self.exhausted_at is None:
                self.exhausted_at = round
            return self.on_exhausted
        return plan


def estimate_cost(plan: Plan, n_clients: float, dim: int, model_bytes: int) -> CostEstimate:
    """The prior cost of one round of ``plan`` with ``n_clients`` sampled clients.

    ``dim`` is the upload dimension, ``model_bytes`` the size of the item
    parameters each client downloads (added to the protocol's download). The
    protocol part is the protocol's own model
    (:meth:`protocols.AggregationProtocol.cost`); a ``"local"`` round costs
    nothing.
    """
    if not plan.releases:
        return CostEstimate(0.0, 0.0, 0.0, 0.0)
    est = plan.protocol_config().cost(n_clients, dim)
    return CostEstimate(
        est.upload_bytes, model_bytes + est.download_bytes, est.client_seconds, est.server_seconds
    )


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
    :func:`estimate_cost` with the ledger's ``info.n_clients``,
    ``info.upload_dim`` and ``info.model_bytes``. The chosen plan and the
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
        return estimate_cost(plan, plan.q * info.n_clients, info.upload_dim, info.model_bytes)

    def _fits(self, est: CostEstimate) -> bool:
        return all(
            limit is None or getattr(est, name) <= limit for name, limit in self.budget.items()
        )

    def __call__(self, round: int, ledger: Ledger) -> Plan | None:
        n_clients = float(ledger.info.n_clients)
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
