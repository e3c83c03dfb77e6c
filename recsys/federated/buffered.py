"""Buffered asynchronous federated MF (FedBuff) in simulated time.

:class:`BufferedTrainer` runs the rules of :mod:`protocols.buffered` over the
federated MF model: ``concurrency`` clients train at once on whatever model
version they downloaded, each with its delays from a
:class:`~protocols.clock.LognormalDelays`; every ``buffer_size`` submissions
form one session of the plan's protocol (with DP if the plan has it), and the
server applies the aggregate as the synchronous trainer does
(:meth:`FederatedTrainer._apply <recsys.federated.FederatedTrainer>`). A
client's update is :func:`~recsys.federated.cohort_uploads`, the same code
as a synchronous round's.

Staleness weight: the client multiplies its item deltas (factors and biases)
by ``w(τ) = 1/sqrt(1 + τ)`` (FedBuff, Nguyen et al. 2022) before the
protocol masks them, and leaves the per-item count block as it is, so the
per-item mean the server applies is ``Σ w_i Δ_i / Σ c_i`` — FedBuff's
``(1/K) Σ w(τ_i) Δ_i`` per item — and stale updates take smaller steps.

One :class:`~recsys.ledger.LedgerRow` per buffer: ``round`` is the buffer's
sequence number (from 1), ``model_version`` the version it produced,
``staleness_mean``/``staleness_max`` over its updates, ``sim_seconds`` when
it was applied, ``sampled`` the updates it held, ``survivors`` those in its
total, ``discarded``/``lost`` as in :mod:`protocols.buffered`.

Privacy: each buffer's release is its protocol's event, without
amplification by sampling (the plan must have ``q = 1``); a DP plan needs a
per-client cap ``max_contributions`` on tasks, and ``epsilon`` is the
user-level ε of :class:`~protocols.buffered.ContributionAccountant` (the
composition of the buffers holding a client's updates, worst client). A
``target_epsilon`` is spent over ``max_contributions`` releases.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from protocols.buffered import (
    AsyncDriver,
    BufferedServer,
    BufferRelease,
    ContributionAccountant,
    Ticket,
)
from protocols.clock import LognormalDelays
from secagg import privacy

from ..data import Ratings
from ..ledger import LedgerRow
from ..plan import Plan, calibrate
from .aggregation import build_protocol
from .config import FederatedConfig
from .outcome import RoundOutcome
from .population import EvalResult
from .trainer import FederatedTrainer, cohort_uploads

__all__ = ["BufferedTrainer"]


class BufferedTrainer(FederatedTrainer):
    """Federated MF with buffered asynchronous aggregation (see the module docstring).

    Args:
        train, test, plan, config: as :class:`FederatedTrainer` (one fixed
            :class:`~recsys.plan.Plan` with ``q = 1``).
        delays: the clients' simulated delays and dropouts.
        buffer_size: ``K``, updates per buffer (per aggregation session).
        concurrency: ``C``, clients training at once.
        slack: a buffer's session takes ``K + slack`` members at check-in.
        max_staleness: clients refuse a buffer more than this many versions
            newer than the one they trained on.
        max_contributions: per-client cap on tasks (required with DP).
        buffers: planned number of buffers (:meth:`run`'s default).
        session_dropout: fraction of a buffer's clients dropping in its session.
    """

    def __init__(
        self,
        train: Ratings,
        test: Ratings | None,
        plan: Plan,
        config: FederatedConfig | None = None,
        *,
        delays: LognormalDelays,
        buffer_size: int,
        concurrency: int,
        slack: int = 0,
        max_staleness: int = 8,
        max_contributions: int | None = None,
        buffers: int = 20,
        session_dropout: float = 0.0,
        delta: float = 1e-5,
        accountant: str = "pld",
        ledger_path: str | None = None,
        **overrides: Any,
    ) -> None:
        if not isinstance(plan, Plan) or not plan.releases:
            raise ValueError("buffered training needs one Plan with an aggregation protocol")
        if plan.q != 1.0:
            raise ValueError(
                "buffered training samples no cohort (clients arrive when ready): use q=1 "
                "(no amplification by sampling is claimed)"
            )
        if plan.dp and max_contributions is None:
            raise ValueError("a DP plan needs max_contributions (the per-client cap ε is spent over)")
        if max_contributions is not None and (
            isinstance(max_contributions, bool)
            or not isinstance(max_contributions, int)
            or max_contributions < 1
        ):
            raise ValueError(f"max_contributions must be a positive int, got {max_contributions!r}")
        if plan.accountant is not None and plan.accountant != accountant:
            raise ValueError(f"dp_mode={plan.dp_mode!r} needs accountant={plan.accountant!r}")
        super().__init__(
            train, test, plan, config, rounds=buffers, delta=delta, accountant=accountant,
            ledger_path=ledger_path, **overrides,
        )
        self.plan = plan
        self.buffer_size = buffer_size
        self.max_contributions = max_contributions
        self.sigma = self.noise_multiplier(plan)
        self.contributions = ContributionAccountant(accountant)
        self.buffered = BufferedServer(buffer_size, slack=slack, max_staleness=max_staleness)
        seed = self.config.protocol_seed
        self.driver = AsyncDriver(
            self.buffered,
            [int(c) for c in self._clients().client_ids],
            delays,
            concurrency=concurrency,
            protocol=self._protocol,
            train=self._train,
            apply=self._release,
            scaled=slice(0, self.layout.item_dim),
            session_dropout=session_dropout,
            max_tasks=max_contributions,
            seed=self.config.seed,
            protocol_seed=seed,
        )
        self._released = False

    def noise_multiplier(self, plan: Plan) -> float | None:
        """σ of a DP plan: given, or spending ``target_epsilon`` over ``max_contributions``
        unamplified releases (a client is in at most that many buffers)."""
        if not plan.dp or plan.noise_multiplier is not None:
            return super().noise_multiplier(plan)
        assert plan.target_epsilon is not None and self.max_contributions is not None
        return calibrate(
            plan.target_epsilon, self.ledger.delta, 1.0, self.max_contributions,
            self.ledger.accountant_kind,
        )

    # -- the driver's callbacks ---------------------------------------------------
    def _protocol(self, n: int) -> Any:
        return build_protocol(
            self.plan, n_invited=n, noise_multiplier=self.sigma, workers=1
        )

    def _train(self, tickets: list[Ticket]) -> dict[int, np.ndarray]:
        # All tickets checked in on the applied model. A client may hold two of
        # them (it submitted and checked in again): train in passes of distinct
        # clients, in check-in order, so its own parameters carry over.
        out: dict[int, np.ndarray] = {}
        factors, bias = self.server.download()
        todo = list(tickets)
        while todo:
            seen: set[int] = set()
            batch: list[Ticket] = []
            rest: list[Ticket] = []
            for t in todo:
                (rest if t.client in seen else batch).append(t)
                seen.add(t.client)
            cohort = np.array([t.client for t in batch], dtype=np.int64)
            rows = cohort_uploads(
                self._clients(), self.layout, self.config, factors, bias, cohort, self.plan
            )
            out.update({t.id: rows[j] for j, t in enumerate(batch)})
            todo = rest
        return out

    def _release(self, release: BufferRelease) -> None:
        wall0 = time.perf_counter()
        plan, cfg = self.plan, self.config
        t = release.version + 1
        status, update_seconds = "ok", 0.0
        result = release.result
        events: list[privacy.Event] = []
        if result is None:
            status = "aborted" if release.error else "empty"
        else:
            outcome = RoundOutcome.of(result, train_seconds=0.0)
            update_seconds = self._apply(t, plan, self.sigma, outcome)
            events = list(outcome.events) if plan.dp else [privacy.NonPrivateEvent()]
            self.contributions.record((c.client for c in release.contributors), events)
            if not plan.dp:
                self._released = True
        self.round = t
        epsilon = (
            math.inf if self._released else self.contributions.epsilon(self.ledger.delta)
        )
        nan = float("nan")
        ev, eval_bytes = EvalResult(nan, nan, 0, 0), 0
        if t % cfg.eval_every == 0 or t >= self.rounds:
            ev = self.evaluate(plan, round=t)
            done = self.last.get("eval")
            if done is not None and done.stats is not None:
                eval_bytes = done.stats.bytes_up + done.stats.bytes_down
        stats = result.stats if result is not None else None
        held = len(release.contributors) + len(release.lost) + len(release.discarded)
        tau = release.staleness
        row = LedgerRow(
            round=t,
            protocol=plan.protocol,
            rmse=ev.rmse,
            mae=ev.mae,
            epsilon=epsilon,
            delta=self.ledger.delta,
            bytes_up=stats.bytes_up if stats is not None else 0,
            bytes_down=(stats.bytes_down if stats is not None else 0) + self.server.model_bytes * held,
            client_seconds=stats.client_seconds if stats is not None else 0.0,
            server_seconds=(stats.server_seconds if stats is not None else 0.0) + update_seconds,
            survivors=len(release.contributors),
            sampled=held,
            q=1.0,
            sigma=self.sigma,
            clip=plan.clip,
            dp_mode=plan.dp_mode if plan.dp else None,
            local_epochs=plan.local_epochs,
            bits=plan.quantization_bits,
            wall_seconds=time.perf_counter() - wall0,
            bytes_down_model=self.server.model_bytes * held,
            status=status,
            events=[privacy.to_json(e) for e in events],
            plan=plan.to_dict(),
            hr10=ev.hr,
            ndcg10=ev.ndcg,
            eval_bytes=eval_bytes,
            sim_seconds=release.applied_at,
            model_version=release.version + 1,
            staleness_mean=float(np.mean(tau)) if tau else None,
            staleness_max=int(max(tau)) if tau else None,
            discarded=len(release.discarded),
            lost=len(release.lost),
        )
        self.last = {"plan": plan, "release": release, "eval": self.last.get("eval")}
        self.ledger.append(row)

    def expected_clients(self, plan: Plan) -> float:
        """FedBuff's ``1/K``: with DP the public buffer size, never the realised count."""
        return float(self.buffer_size)

    # -- the loop -------------------------------------------------------------------
    def step(self) -> LedgerRow | None:
        """Advance simulated time until the next buffer is applied; its ledger row
        (None when no client can take part any more)."""
        before = len(self.ledger)
        self.driver.run(1)
        return self.ledger.rows[-1] if len(self.ledger) > before else None

    @property
    def now(self) -> float:
        """The simulated time."""
        return self.driver.clock.now
