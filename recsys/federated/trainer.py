"""The federated training loop: sample, download, train locally, aggregate, apply, evaluate, record.

One round ``t`` of :class:`FederatedTrainer`:

1. the policy picks the round's :class:`~recsys.plan.Plan` from the ledger
   (``None`` ends the run); a plan with ``target_epsilon`` gets its σ
   calibrated for the trainer's planned rounds (:func:`recsys.plan.calibrate`);
2. every client is sampled independently with probability ``q`` (Poisson
   sampling; the rate is public, the sample is simulated with numpy) — or,
   while a multi-round protocol session serves the plan (``Plan.session_rounds``,
   SecAgg/SecAgg+ with ``q = 1``), the cohort is that session's participants:
   everyone who has not dropped out of it;
3. each sampled client downloads *all* item parameters (so the download does
   not reveal which items it rated; counted in ``bytes_down``), trains
   locally (:mod:`recsys.federated.local`) and builds its dense upload
   (:mod:`recsys.federated.update`);
4. the uploads go through the round's protocol in
   :func:`protocols.simulate` — real client and server sessions exchanging
   serialized messages — with the plan's simulated dropouts; this transport
   hook, :meth:`FederatedTrainer.run_protocol`, returns a
   :class:`~recsys.federated.outcome.RoundOutcome`;
5. the server decodes the aggregate and applies the update
   (:class:`~recsys.federated.server.ItemServer`);
6. the round's DP events (:func:`~recsys.federated.outcome.round_events`)
   are composed into the ledger's accountant, the clients evaluate on their
   own held-out ratings and send their sums through the round's protocol
   (:mod:`recsys.federated.evaluation`; the transport hook
   :meth:`FederatedTrainer.run_evaluation`), and a
   :class:`~recsys.ledger.LedgerRow` is appended.

A round that samples nobody still composes the plan's event (the mechanism
ran on an empty sample; composing it is the conservative choice) and leaves
the model as it was; a round whose protocol aborts releases nothing and
composes nothing.

Caveat on amplification by sampling: the Poisson-sampled events assume the
adversary does not learn who was sampled. The server sees who reports, so the
amplified ε protects the released model against everyone but the server; for
the server itself, use central noise with the unamplified accounting (q=1) or
distributed noise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import numpy as np
from torch import Tensor

import protocols
from protocols.driver import RoundByRound
from secagg import privacy

from ..data import Ratings
from ..ledger import Ledger, LedgerRow, RunInfo
from ..plan import Plan, calibrate
from ..policies import Policy, as_policy
from .aggregation import build_protocol
from .config import FederatedConfig
from .evaluation import client_vectors, evaluation_protocol, from_totals
from .outcome import RoundOutcome, round_events
from .population import ClientDirectory, ClientPopulation, EvalResult
from .server import ItemServer
from .update import UpdateLayout

__all__ = ["FederatedTrainer", "cohort_evaluation_sums", "cohort_uploads"]


def cohort_uploads(
    population: ClientPopulation,
    layout: UpdateLayout,
    config: FederatedConfig,
    factors: Tensor,
    bias: Tensor,
    cohort: np.ndarray,
    plan: Plan,
) -> np.ndarray:
    """What each client of ``cohort`` uploads: local training from the received item
    tables, then the dense encoding (one row per client, in ``cohort`` order).

    The one place that defines a client's round; the in-process trainer runs it
    for a whole cohort, a client on its own device (``examples/flower_recsys.py``)
    for a cohort of one.
    """
    upd, items, local = population.train_cohort(
        cohort,
        factors,
        bias,
        epochs=plan.local_epochs,
        lr=config.local_lr,
        global_mean=config.mu,
        reg_factors=config.reg_factors,
        reg_bias=config.reg_bias,
        bias_scale_reg=config.bias_scale_reg,
    )
    return layout.encode(
        upd.delta_factors,
        upd.delta_bias,
        items,
        local,
        len(cohort),
        count_weight=plan.count_weight,
        coordinate_clip=None if plan.dp else plan.coordinate_clip,
    )


def cohort_evaluation_sums(
    population: ClientPopulation,
    config: FederatedConfig,
    factors: Tensor,
    bias: Tensor,
) -> np.ndarray:
    """Each client's evaluation sums (:mod:`recsys.federated.evaluation`) of the
    received item tables, one row per client of ``population``.

    The one place that defines a client's evaluation, as :func:`cohort_uploads`
    defines its training: the in-process trainer and a node of the Flower app
    both call it.
    """
    return population.client_sums(
        factors,
        bias,
        global_mean=config.mu,
        reg_factors=config.reg_factors,
        reg_bias=config.reg_bias,
        clip=config.rating_scale,
        bias_scale_reg=config.bias_scale_reg,
    )


S = TypeVar("S", bound=RoundByRound)


class SessionSlot(Generic[S]):
    """Where a trainer keeps an open multi-round protocol session, and what it serves.

    A session is reused for a round only if it serves the same key (plan, σ)
    and the round's cohort is exactly its participants; a single-round session
    (``proto.rounds == 1``) is never kept. Any round-by-round session works
    (:class:`protocols.SimulatedSession` here, the Flower adapter's
    ``FlowerSession`` in ``examples/flower_app``).
    """

    def __init__(self) -> None:
        self.session: S | None = None
        self.key: object = None

    def participants(self, key: object) -> tuple[int, ...]:
        """The open session's next participants if it serves ``key`` (else empty)."""
        if self.session is None or self.key != key:
            return ()
        return self.session.participants()

    def get(
        self,
        key: object,
        cohort: list[int],
        make: Callable[[], S],
    ) -> S:
        """The open session if it serves ``key`` with exactly ``cohort``, else ``make()``'s."""
        if self.session is not None and self.participants(key) == tuple(sorted(cohort)):
            return self.session
        self.close()
        session = make()
        if session.rounds > 1:
            self.session, self.key = session, key
        return session

    def release(self, session: S) -> None:
        """After a round: close ``session`` unless it is kept and can go on."""
        if session is not self.session or not session.can_continue:
            session.close()
            if session is self.session:
                self.session, self.key = None, None

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        self.session, self.key = None, None


class FederatedTrainer:
    """Federated biased MF over the users of ``train`` (one client per user).

    Args:
        train, test: ratings split over the same id spaces (e.g.
            :func:`recsys.data.random_split`); user ``u``'s ratings are
            client ``u``'s data. ``test`` may be None (no evaluation).
            A :class:`~recsys.federated.population.ClientDirectory` instead of
            ``train`` (and no ``test``): the server holds no ratings, and a
            subclass's :meth:`run_protocol` and :meth:`run_evaluation` reach
            the clients on their devices (``examples/flower_app``).
        policy: a :class:`~recsys.plan.Plan` (the same every round) or a
            callable ``(round, ledger) -> Plan | None``.
        config: the run's fixed settings; keyword ``overrides`` replace
            single fields (``FederatedTrainer(tr, te, plan, n_factors=10)``).
        rounds: planned number of rounds (what ``target_epsilon`` and the
            budget policy spread ε over; :meth:`run`'s default).
        delta: δ of the reported ε.
        accountant: ``"pld"`` or ``"rdp"``.
        ledger_path: write ``ledger.jsonl`` here as rounds finish.
    """

    def __init__(
        self,
        train: Ratings | ClientDirectory,
        test: Ratings | None = None,
        policy: Plan | Policy | None = None,
        config: FederatedConfig | None = None,
        *,
        rounds: int = 20,
        delta: float = 1e-5,
        accountant: str = "pld",
        ledger_path: str | None = None,
        **overrides: Any,
    ) -> None:
        cfg = (
            (config or FederatedConfig()).replace(**overrides)
            if overrides
            else (config or FederatedConfig())
        )
        if isinstance(train, ClientDirectory):
            if test is not None:
                raise ValueError("a trainer without client data (a ClientDirectory) takes no test set")
        elif len(train) == 0:
            raise ValueError("cannot train on an empty rating set")
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"rounds must be a positive int, got {rounds!r}")
        self.config = cfg
        self.policy = as_policy(policy if policy is not None else Plan())
        self.rounds = rounds
        self.population: ClientPopulation | ClientDirectory = (
            train if isinstance(train, ClientDirectory) else ClientPopulation(train, test, cfg.n_factors)
        )
        self.server = ItemServer(train.n_items, cfg.n_factors, cfg)
        self.layout = UpdateLayout(train.n_items, cfg.n_factors, weighted=cfg.aggregation == "item")
        self._rng = np.random.default_rng([cfg.seed, 0x5A3])  # sampling and dropouts
        self.ledger = Ledger(
            delta,
            accountant,
            path=ledger_path,
            info=RunInfo(
                rounds=rounds,
                n_clients=self.population.n_clients,
                n_users=train.n_users,
                n_items=train.n_items,
                item_dim=self.layout.item_dim,
                upload_dim=self.layout.dim,
                model_bytes=self.server.model_bytes,
                config=cfg.to_dict(),
            ),
        )
        self.round = 0
        # In-memory details of the last round (not in the ledger): "plan", "cohort",
        # "agg" (the RoundOutcome of a completed round), "error" (why a protocol aborted).
        self.last: dict[str, Any] = {}
        # The open multi-round protocol sessions of training and of evaluation.
        self._train_session: SessionSlot[protocols.SimulatedSession] = SessionSlot()
        self._eval_session: SessionSlot[protocols.SimulatedSession] = SessionSlot()

    # -- helpers --------------------------------------------------------------
    def _clients(self) -> ClientPopulation:
        """The simulated clients' data (absent when the clients are remote devices)."""
        if isinstance(self.population, ClientDirectory):
            raise TypeError(
                "this trainer holds no client data (a ClientDirectory): its run_protocol and "
                "run_evaluation must reach the clients' devices"
            )
        return self.population

    def noise_multiplier(self, plan: Plan) -> float | None:
        """σ of a DP plan: given, or calibrated from ``target_epsilon`` for the planned rounds."""
        if not plan.dp:
            return None
        if plan.noise_multiplier is not None:
            return float(plan.noise_multiplier)
        assert plan.target_epsilon is not None
        return calibrate(
            plan.target_epsilon, self.ledger.delta, plan.q, self.rounds, self.ledger.accountant_kind
        )

    def cohort_for(self, plan: Plan, sigma: float | None) -> np.ndarray:
        """The round's clients: the open session's participants while it serves ``plan``
        (with this σ) and can go on, else a fresh Poisson sample (:meth:`sample`)."""
        participants = self._train_session.participants((plan, sigma))
        if participants:
            return np.asarray(participants, dtype=self.population.client_ids.dtype)
        return self.sample(plan.q)

    def close(self) -> None:
        """End the open protocol sessions (their client workers, if any, stop)."""
        self._train_session.close()
        self._eval_session.close()

    def sample(self, q: float) -> np.ndarray:
        """Poisson sampling: each client independently with probability ``q``."""
        ids = self.population.client_ids
        if q >= 1.0:
            return ids.copy()
        return ids[self._rng.random(ids.shape[0]) < q]

    def client_sums(self) -> np.ndarray:
        """Every client's evaluation sums of the served item tables (on their devices)."""
        factors, bias = self.server.served()
        return cohort_evaluation_sums(self._clients(), self.config, factors, bias)

    def evaluate(self, plan: Plan | None = None, *, round: int | None = None) -> EvalResult:
        """Evaluation on the devices, aggregated through ``plan``'s protocol (no DP).

        Every client that holds held-out ratings sends its sums
        (:mod:`recsys.federated.evaluation`) through
        :meth:`run_evaluation`; the server computes the metrics from the
        totals alone. ``plan`` defaults to the last round's (the default
        plan's before any). ``last["eval"]`` keeps the evaluation round's
        :class:`RoundOutcome`. NaN metrics if the evaluation round aborted.
        """
        plan = plan or self.last.get("plan") or Plan()
        t = self.round if round is None else round
        outcome = self.run_evaluation(t, plan)
        self.last["eval"] = outcome
        if outcome is None or outcome.total is None:
            nan = float("nan")
            return EvalResult(nan, nan, 0, 0)
        return from_totals(outcome.total, self.config.rating_scale)

    def run_evaluation(self, t: int, plan: Plan) -> RoundOutcome | None:
        """Carry the clients' evaluation vectors through the protocol (the transport hook).

        The protocol is :func:`~recsys.federated.evaluation.evaluation_protocol`
        of ``plan``. This default computes every client's sums here and runs real sessions
        through :func:`protocols.simulate`, with round number ``2 t + 1``
        (training rounds are even on a transport that needs growing round
        numbers); the Flower app overrides it to evaluate on the nodes.
        Returns None when no client has anything to score.
        """
        sums = self.client_sums()
        ids = np.flatnonzero((sums[:, 2] > 0) | (sums[:, 6] > 0))
        if not len(ids):
            return None
        vectors = client_vectors(sums[ids], self.config.rating_scale)
        inputs = {int(c): vectors[j] for j, c in enumerate(ids)}
        seed = self.config.protocol_seed
        # Every client with held-out ratings, no DP: a multi-round session serves the
        # evaluations of this plan as long as it can (the plan's session rule at q = 1,
        # at most the run's planned rounds; evaluate() may be called between rounds too).
        length = 1
        if plan.releases:
            undivided = plan.replace(q=1.0, clip=None, noise_multiplier=None, target_epsilon=None)
            length = undivided.session_length(self.rounds)
        proto = evaluation_protocol(plan, rounds=length)
        session = self._eval_session.get(
            (plan, None),
            sorted(inputs),
            lambda: protocols.SimulatedSession(
                proto,
                sorted(inputs),
                len(vectors[0]),
                seed=None if seed is None else seed * 1_000_003 + 2 * t + 1,
                round=2 * t + 1,
            ),
        )
        return self._run_in(self._eval_session, session, inputs, {}, train_seconds=0.0)

    def client_uploads(self, cohort: np.ndarray, plan: Plan) -> dict[int, np.ndarray]:
        """Local training of ``cohort`` from the current item tables; the vectors they upload."""
        factors, bias = self.server.download()
        vectors = cohort_uploads(
            self._clients(), self.layout, self.config, factors, bias, cohort, plan
        )
        return {int(cid): vectors[j] for j, cid in enumerate(cohort)}

    # -- the loop -------------------------------------------------------------
    def step(self) -> LedgerRow | None:
        """Run one round; return its ledger row, or None if the policy stopped."""
        t = self.round + 1
        plan = self.policy(t, self.ledger)
        if plan is None:
            return None
        if not isinstance(plan, Plan):
            raise TypeError(f"the policy returned {plan!r}, not a Plan or None")
        needed = plan.accountant
        if needed is not None and needed != self.ledger.accountant_kind:
            # Checked before anything is released (DDG/Skellam bounds are RDP bounds).
            raise ValueError(f"dp_mode={plan.dp_mode!r} rounds need accountant={needed!r}")
        wall0 = time.perf_counter()
        sigma = self.noise_multiplier(plan)
        cfg = self.config
        self.last = {"plan": plan}
        status, sampled, model_down, update_seconds = "local", 0, 0, 0.0
        outcome: RoundOutcome | None = None
        if plan.releases:
            cohort = self.cohort_for(plan, sigma)
            self.last["cohort"] = cohort
            sampled, status = len(cohort), "empty"
            if sampled:
                model_down = self.server.model_bytes * sampled
                outcome = self.run_protocol(t, plan, sigma, cohort)
                if outcome.aborted:
                    status = "aborted"
                    self.last["error"] = outcome.error
                else:
                    status = "ok"
                    self.last["agg"] = outcome
                    update_seconds = self._apply(t, plan, sigma, outcome)
        events = round_events(plan, sigma, outcome, self.ledger.info)
        epsilon = self.ledger.compose(events)
        self.round = t
        nan = float("nan")
        ev, eval_bytes = EvalResult(nan, nan, 0, 0), 0
        if t % cfg.eval_every == 0 or t >= self.rounds:
            ev = self.evaluate(plan, round=t)
            done = self.last.get("eval")
            if done is not None and done.stats is not None:
                eval_bytes = done.stats.bytes_up + done.stats.bytes_down
        stats = outcome.stats if outcome is not None else None
        setup = outcome.setup if outcome is not None else {}
        train_seconds = outcome.train_seconds if outcome is not None else 0.0
        out = LedgerRow(
            round=t,
            protocol=plan.protocol,
            rmse=ev.rmse,
            mae=ev.mae,
            epsilon=epsilon,
            delta=self.ledger.delta,
            bytes_up=stats.bytes_up if stats is not None else 0,
            bytes_down=stats.bytes_down + model_down if stats is not None else 0,
            client_seconds=(stats.client_seconds if stats is not None else 0.0) + train_seconds,
            server_seconds=stats.server_seconds + update_seconds if stats is not None else 0.0,
            survivors=len(outcome.survivors) if outcome is not None else 0,
            session_round=outcome.session_round if outcome is not None else 0,
            setup_bytes=int(setup.get("bytes_up", 0) + setup.get("bytes_down", 0)),
            setup_client_seconds=float(setup.get("client_seconds", 0.0)),
            setup_server_seconds=float(setup.get("server_seconds", 0.0)),
            sampled=sampled,
            q=plan.q,
            sigma=sigma,
            clip=plan.clip,
            dp_mode=plan.dp_mode if plan.dp else None,
            local_epochs=plan.local_epochs,
            bits=plan.quantization_bits,
            wall_seconds=time.perf_counter() - wall0,
            train_seconds=train_seconds,
            bytes_down_model=model_down,
            status=status,
            events=[privacy.to_json(e) for e in events],
            plan=plan.to_dict(),
            hr10=ev.hr,
            ndcg10=ev.ndcg,
            eval_bytes=eval_bytes,
            sim_seconds=self.simulated_seconds(t, plan, self.last.get("cohort")),
        )
        self.ledger.append(out)
        return out

    def expected_clients(self, plan: Plan) -> float:
        """The public cohort size a DP FedAvg update divides by: ``q · n_clients``."""
        return plan.q * self.population.n_clients

    def simulated_seconds(self, t: int, plan: Plan, cohort: np.ndarray | None) -> float:
        """Simulated time at the end of round ``t`` (NaN: this trainer keeps no virtual clock;
        :class:`~recsys.federated.timed.TimedTrainer` does)."""
        return float("nan")

    def _apply(self, t: int, plan: Plan, sigma: float | None, outcome: RoundOutcome) -> float:
        """Apply a completed round's aggregate to the item tables; return the server CPU seconds."""
        assert outcome.total is not None
        s0 = time.process_time()
        d_factors, d_bias = self.server.update_from(
            outcome.total,
            self.layout,
            survivors=len(outcome.survivors),
            expected_clients=self.expected_clients(plan),
            plan=plan,
            noise_multiplier=sigma,
        )
        self.server.apply(d_factors, d_bias)
        seconds = time.process_time() - s0
        if not self.server.finite():
            raise FloatingPointError(f"round {t}: the item parameters diverged (lower local_lr?)")
        return seconds

    def run_protocol(
        self, t: int, plan: Plan, sigma: float | None, cohort: np.ndarray
    ) -> RoundOutcome:
        """Carry the cohort's uploads through the round's protocol (the transport hook).

        Returns the round's :class:`~recsys.federated.outcome.RoundOutcome`
        (aggregate, survivors, stats, DP events and the clients' training CPU
        seconds), or :meth:`RoundOutcome.aborted_with` the reason if the
        protocol aborted. This default trains the cohort here and runs real
        sessions through :func:`protocols.simulate`, the plan's dropouts
        leaving at the protocol's input stage; ``examples/flower_recsys.py``
        overrides it to run the round on Flower, where clients train on their
        own nodes.

        When the plan allows it (:meth:`Plan.session_length
        <recsys.plan.Plan.session_length>` > 1) the round runs in a multi-round
        :class:`protocols.SimulatedSession` that stays open for the following
        rounds of the same plan and σ: the first pays the key setup, the others
        only the masked input and the unmasking; a client that drops is out
        of the session, and a new session (a new setup over the whole
        population) starts when it cannot go on, when the plan changes, or
        after its rounds.
        """
        cfg = self.config
        c0 = time.process_time()
        inputs = self.client_uploads(cohort, plan)
        train_seconds = time.process_time() - c0
        n_drop = len(cohort) - plan.reporting(len(cohort))
        dropped = self._rng.choice(cohort, size=n_drop, replace=False) if n_drop else cohort[:0]
        seed = None if cfg.protocol_seed is None else cfg.protocol_seed * 1_000_003 + t
        proto = build_protocol(
            plan,
            n_invited=len(cohort),
            noise_multiplier=sigma,
            workers=cfg.workers,
            rounds=plan.session_length(self.rounds - t + 1),
        )
        session = self._train_session.get(
            (plan, sigma),
            [int(c) for c in cohort],
            lambda: protocols.SimulatedSession(
                proto, (int(c) for c in cohort), self.layout.dim, seed=seed, round=t, workers=cfg.workers
            ),
        )
        dropout = {int(c): proto.INPUT_STAGE for c in dropped}
        return self._run_in(self._train_session, session, inputs, dropout, train_seconds)

    @staticmethod
    def _run_in(
        slot: SessionSlot[protocols.SimulatedSession],
        session: protocols.SimulatedSession,
        inputs: dict[int, np.ndarray],
        dropout: dict[int, str],
        train_seconds: float,
    ) -> RoundOutcome:
        """One round of ``session`` (kept in ``slot`` while it can go on) as a RoundOutcome."""
        index = session.rounds_run
        try:
            result = session.run_round(inputs, dropout)
        except protocols.ProtocolAborted as exc:
            return RoundOutcome.aborted_with(str(exc), train_seconds=train_seconds)
        finally:
            slot.release(session)
        return RoundOutcome.of(
            result,
            train_seconds=train_seconds,
            session_round=index,
            setup_stages=session.proto.SETUP_STAGES,
        )

    def run(
        self, rounds: int | None = None, *, callback: Callable[[LedgerRow], None] | None = None
    ) -> Ledger:
        """Run up to ``rounds`` more rounds (default: up to the planned rounds); return the ledger."""
        todo = (self.rounds - self.round) if rounds is None else rounds
        for _ in range(max(todo, 0)):
            row = self.step()
            if row is None:
                break
            if callback is not None:
                callback(row)
        return self.ledger
