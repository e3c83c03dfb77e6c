"""Synchronous rounds in simulated time: the lockstep baseline of buffered training.

:class:`TimedTrainer` is :class:`~recsys.federated.FederatedTrainer` with a
virtual clock (:mod:`protocols.clock`): a round lasts as long as its slowest
sampled client's download, training and upload (the server waits for the
whole cohort, as FedAvg does), plus its protocol session
(:meth:`~protocols.clock.LognormalDelays.session_seconds`; a later round of a
multi-round session counts only its own round trips). A client's
``n``-th task has the same delays here as in a buffered run
(:class:`~recsys.federated.buffered.BufferedTrainer`) on the same
:class:`~protocols.clock.LognormalDelays`, so the two are compared on the same
devices. The delay model's ``drop_probability`` is not used here (dropouts of
a synchronous round are the plan's ``dropout``); give both modes 0 when
comparing times.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from protocols.clock import LognormalDelays

from ..plan import Plan
from .trainer import FederatedTrainer

__all__ = ["TimedTrainer"]


class TimedTrainer(FederatedTrainer):
    """A synchronous trainer whose ledger rows carry ``sim_seconds`` (see the module docstring).

    Takes :class:`FederatedTrainer`'s arguments plus ``delays``.
    """

    def __init__(self, *args: Any, delays: LognormalDelays, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.delays = delays
        self.now = 0.0
        self.tasks: Counter[int] = Counter()

    def simulated_seconds(self, t: int, plan: Plan, cohort: np.ndarray | None) -> float:
        if cohort is not None and len(cohort):
            slowest = 0.0
            for c in cohort:
                slowest = max(slowest, self.delays.task(int(c), self.tasks[int(c)]).total)
                self.tasks[int(c)] += 1
            stages = 0
            if plan.releases:
                proto = plan.protocol_config()
                # A later round of a multi-round session skips the key setup's round trips.
                outcome = self.last.get("agg")
                later = outcome is not None and outcome.session_round > 0
                stages = proto.round_trips_after_setup if later else proto.round_trips
            self.now += slowest + self.delays.session_seconds(cohort, t, stages)
        return self.now
