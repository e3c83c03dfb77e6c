"""What one round's aggregation gave, as a value, and the DP events it caused.

The trainer's transport hook (:meth:`FederatedTrainer.run_protocol
<recsys.federated.FederatedTrainer.run_protocol>`) carries a cohort's uploads
through the round's protocol — in process with :func:`protocols.simulate`, or
over Flower in ``examples/flower_recsys.py`` — and returns a
:class:`RoundOutcome`; the trainer turns it into the ledger row.
:func:`round_events` is the one place that says which DP events a round
composes, whether it ran, aborted, sampled nobody or released nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

import protocols
from secagg import privacy

from ..ledger import RunInfo
from ..plan import Plan, expected_cohort, round_event

__all__ = ["RoundOutcome", "round_events"]


@dataclass(frozen=True)
class RoundOutcome:
    """One round through its protocol.

    Attributes:
        train_seconds: the clients' local-training CPU seconds (0 where the
            clients train on their own devices and do not report it).
        total: the released aggregate (None if the protocol aborted).
        survivors: ids of the clients whose uploads are in ``total``.
        stats: the protocol's bytes and CPU seconds (None if it aborted).
        events: the DP events the protocol reported (empty without DP).
        error: why the protocol aborted, or None.
        session_round: the round's index in its protocol session (0: it ran the setup).
        setup: the part of ``stats`` spent in the protocol's ``SETUP_STAGES``
            (:meth:`protocols.Stats.share`; zeros after a session's first round).
    """

    train_seconds: float = 0.0
    total: np.ndarray | None = None
    survivors: tuple[int, ...] = ()
    stats: protocols.Stats | None = None
    events: tuple[privacy.Event, ...] = ()
    error: str | None = None
    session_round: int = 0
    setup: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        result: Any,
        *,
        train_seconds: float,
        session_round: int = 0,
        setup_stages: tuple[str, ...] = (),
    ) -> RoundOutcome:
        """From a driver's result: anything with ``total``, ``survivors``, ``stats``
        and ``events`` (:class:`protocols.SimulationResult`, the Flower adapter's round);
        ``setup_stages`` are the protocol's ``SETUP_STAGES``."""
        stats: protocols.Stats = result.stats
        return cls(
            train_seconds=float(train_seconds),
            total=result.total,
            survivors=tuple(int(c) for c in result.survivors),
            stats=stats,
            events=tuple(result.events),
            session_round=int(session_round),
            setup=stats.share(setup_stages),
        )

    @classmethod
    def aborted_with(cls, error: str, *, train_seconds: float = 0.0) -> RoundOutcome:
        """A round whose protocol aborted (it released nothing)."""
        return cls(train_seconds=float(train_seconds), error=str(error))

    @property
    def aborted(self) -> bool:
        return self.error is not None


def round_events(
    plan: Plan, noise_multiplier: float | None, outcome: RoundOutcome | None, info: RunInfo
) -> list[privacy.Event]:
    """The DP events one round of ``plan`` composes into the ledger.

    ``outcome`` is None when the protocol did not run. Then a ``"local"`` plan
    released nothing (no event), and a round that sampled nobody composes the
    *planned* event of the expected cohort (:func:`recsys.plan.round_event`,
    sizes from the run's ``info``: the mechanism ran on an empty sample;
    composing it is the conservative choice). A round whose
    protocol aborted released nothing; one that ran composes the events its
    protocol reported with DP, or a :class:`~secagg.privacy.NonPrivateEvent`.
    """
    if not plan.releases:
        return []
    if outcome is None:
        n_invited = expected_cohort(plan, info.n_clients)
        return [round_event(plan, noise_multiplier, n_invited=n_invited, dim=info.upload_dim)]
    if outcome.aborted:
        return []
    return list(outcome.events) if plan.dp else [privacy.NonPrivateEvent()]
