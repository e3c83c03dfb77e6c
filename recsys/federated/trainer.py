"""The federated training loop: sample, download, train locally, aggregate, apply, evaluate, record.

One round ``t`` of :class:`FederatedTrainer`:

1. the policy picks the round's :class:`~recsys.policy.Plan` from the ledger
   (``None`` ends the run); a plan with ``target_epsilon`` gets its σ
   calibrated for the trainer's planned rounds;
2. every client is sampled independently with probability ``q`` (Poisson
   sampling; the rate is public, the sample is simulated with numpy);
3. each sampled client downloads *all* item parameters (so the download does
   not reveal which items it rated; counted in ``bytes_down``), trains
   locally (:mod:`recsys.federated.local`) and builds its dense upload
   (:mod:`recsys.federated.update`);
4. the uploads go through the round's protocol in
   :func:`protocols.simulate` — real client and server sessions exchanging
   serialized messages — with the plan's simulated dropouts;
5. the server decodes the aggregate and applies the update
   (:class:`~recsys.federated.server.ItemServer`);
6. the round's DP events (``SimulationResult.events``; a non-DP release is a
   :class:`~secagg.privacy.NonPrivateEvent`) are composed into the ledger's
   accountant, the clients evaluate on their own test ratings, and a
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
from typing import Any

import numpy as np
from torch import Tensor

import protocols
from secagg import privacy

from ..data import Ratings
from ..ledger import Ledger, LedgerRow
from ..policy import Plan, Policy, as_policy, round_event
from .aggregation import build_protocol
from .config import FederatedConfig
from .population import ClientPopulation, EvalResult
from .server import ItemServer
from .update import UpdateLayout

__all__ = ["FederatedTrainer", "cohort_uploads"]


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


class FederatedTrainer:
    """Federated biased MF over the users of ``train`` (one client per user).

    Args:
        train, test: ratings split over the same id spaces (e.g.
            :func:`recsys.data.random_split`); user ``u``'s ratings are
            client ``u``'s data. ``test`` may be None (no evaluation).
        policy: a :class:`~recsys.policy.Plan` (the same every round) or a
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
        train: Ratings,
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
        if len(train) == 0:
            raise ValueError("cannot train on an empty rating set")
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"rounds must be a positive int, got {rounds!r}")
        self.config = cfg
        self.policy = as_policy(policy if policy is not None else Plan())
        self.rounds = rounds
        self.population = ClientPopulation(train, test, cfg.n_factors)
        self.server = ItemServer(train.n_items, cfg.n_factors, cfg)
        self.layout = UpdateLayout(train.n_items, cfg.n_factors, weighted=cfg.aggregation == "item")
        self._rng = np.random.default_rng([cfg.seed, 0x5A3])  # sampling and dropouts
        self.ledger = Ledger(
            delta,
            accountant,
            path=ledger_path,
            info={
                "rounds": rounds,
                "n_clients": self.population.n_clients,
                "n_users": train.n_users,
                "n_items": train.n_items,
                "item_dim": self.layout.item_dim,
                "upload_dim": self.layout.dim,
                "model_bytes": self.server.model_bytes,
                "config": cfg.to_dict(),
            },
        )
        self.round = 0
        # In-memory details of the last round (not in the ledger): "plan", "cohort",
        # "agg" (the SimulationResult), "error" (why a protocol aborted).
        self.last: dict[str, Any] = {}
        self._sigmas: dict[tuple[float, float, int], float] = {}

    # -- helpers --------------------------------------------------------------
    def noise_multiplier(self, plan: Plan) -> float | None:
        """σ of a DP plan: given, or calibrated from ``target_epsilon`` for the planned rounds."""
        if not plan.dp:
            return None
        if plan.noise_multiplier is not None:
            return float(plan.noise_multiplier)
        assert plan.target_epsilon is not None
        key = (float(plan.target_epsilon), float(plan.q), self.rounds)
        if key not in self._sigmas:
            self._sigmas[key] = privacy.calibrate_noise_multiplier(
                plan.target_epsilon,
                self.ledger.delta,
                plan.q,
                self.rounds,
                accountant=self.ledger.accountant_kind,
            )
        return self._sigmas[key]

    def sample(self, q: float) -> np.ndarray:
        """Poisson sampling: each client independently with probability ``q``."""
        ids = self.population.client_ids
        if q >= 1.0:
            return ids.copy()
        return ids[self._rng.random(ids.shape[0]) < q]

    def evaluate(self) -> EvalResult:
        """Federated evaluation of the current item tables (see :meth:`ClientPopulation.evaluate`)."""
        cfg = self.config
        factors, bias = self.server.served()
        return self.population.evaluate(
            factors,
            bias,
            global_mean=cfg.mu,
            reg_factors=cfg.reg_factors,
            reg_bias=cfg.reg_bias,
            clip=cfg.rating_scale,
            bias_scale_reg=cfg.bias_scale_reg,
        )

    def client_uploads(self, cohort: np.ndarray, plan: Plan) -> dict[int, np.ndarray]:
        """Local training of ``cohort`` from the current item tables; the vectors they upload."""
        factors, bias = self.server.download()
        vectors = cohort_uploads(
            self.population, self.layout, self.config, factors, bias, cohort, plan
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
        if (
            plan.dp
            and plan.releases
            and plan.dp_mode in ("ddg", "skellam")
            and self.ledger.accountant_kind != "rdp"
        ):
            # Checked before anything is released: their guarantees are RDP bounds.
            raise ValueError(f"dp_mode={plan.dp_mode!r} rounds need accountant='rdp'")
        wall0 = time.perf_counter()
        sigma = self.noise_multiplier(plan)
        cfg = self.config
        row: dict[str, Any] = {
            "bytes_up": 0,
            "bytes_down": 0,
            "client_seconds": 0.0,
            "server_seconds": 0.0,
            "survivors": 0,
            "sampled": 0,
            "train_seconds": 0.0,
            "bytes_down_model": 0,
            "status": "ok",
        }
        events: list[privacy.Event] = []
        self.last = {"plan": plan}
        if not plan.releases:
            row["status"] = "local"
        else:
            cohort = self.sample(plan.q)
            self.last["cohort"] = cohort
            row["sampled"] = len(cohort)
            if len(cohort) == 0:
                row["status"] = "empty"
                events = [round_event(plan, sigma)]
            else:
                events = self._aggregate_round(t, plan, sigma, cohort, row)
        epsilon = self.ledger.compose(events)
        if t % cfg.eval_every == 0 or t >= self.rounds:
            ev = self.evaluate()
            rmse, mae = ev.rmse, ev.mae
        else:
            rmse = mae = float("nan")
        self.round = t
        out = LedgerRow(
            round=t,
            protocol=plan.protocol,
            rmse=rmse,
            mae=mae,
            epsilon=epsilon,
            delta=self.ledger.delta,
            q=plan.q,
            sigma=sigma,
            clip=plan.clip,
            dp_mode=plan.dp_mode if plan.dp else None,
            local_epochs=plan.local_epochs,
            bits=plan.bits if plan.protocol in ("secagg", "secagg+", "paillier") else None,
            wall_seconds=time.perf_counter() - wall0,
            events=[privacy.to_json(e) for e in events],
            plan=plan.to_dict(),
            **row,
        )
        self.ledger.append(out)
        return out

    def _aggregate_round(
        self, t: int, plan: Plan, sigma: float | None, cohort: np.ndarray, row: dict[str, Any]
    ) -> list[privacy.Event]:
        row["bytes_down_model"] = self.server.model_bytes * len(cohort)
        agg = self.run_protocol(t, plan, sigma, cohort, row)
        if agg is None:
            row["status"] = "aborted"
            row["client_seconds"] = row["train_seconds"]
            return []
        self.last["agg"] = agg
        stats = agg.stats
        s0 = time.process_time()
        d_factors, d_bias = self.server.update_from(
            agg.total,
            self.layout,
            survivors=len(agg.survivors),
            expected_clients=plan.q * self.population.n_clients,
            plan=plan,
            noise_multiplier=sigma,
        )
        self.server.apply(d_factors, d_bias)
        row.update(
            bytes_up=stats.bytes_up,
            bytes_down=stats.bytes_down + row["bytes_down_model"],
            client_seconds=stats.client_seconds + row["train_seconds"],
            server_seconds=stats.server_seconds + time.process_time() - s0,
            survivors=len(agg.survivors),
        )
        if not self.server.finite():
            raise FloatingPointError(f"round {t}: the item parameters diverged (lower local_lr?)")
        return list(agg.events) if plan.dp else [privacy.NonPrivateEvent()]

    def run_protocol(
        self, t: int, plan: Plan, sigma: float | None, cohort: np.ndarray, row: dict[str, Any]
    ) -> Any:
        """Carry the cohort's uploads through the round's protocol (the transport hook).

        Returns the aggregate (anything with ``total``, ``survivors``, ``stats``
        and ``events``, like :class:`protocols.SimulationResult`), or None if
        the protocol aborted (the reason goes to ``self.last["error"]``). Sets
        ``row["train_seconds"]`` to the clients' local-training CPU time.
        This default trains the cohort here and runs real sessions through
        :func:`protocols.simulate`; ``examples/flower_recsys.py`` overrides it
        to run the round on Flower, where clients train on their own nodes.
        """
        cfg = self.config
        c0 = time.process_time()
        inputs = self.client_uploads(cohort, plan)
        row["train_seconds"] = time.process_time() - c0
        n_drop = round(plan.dropout * len(cohort))
        dropped = self._rng.choice(cohort, size=n_drop, replace=False) if n_drop else []
        dropout = {int(c): "masked_input" for c in dropped}
        proto = build_protocol(
            plan, n_invited=len(cohort), noise_multiplier=sigma, workers=cfg.workers
        )
        seed = None if cfg.protocol_seed is None else cfg.protocol_seed * 1_000_003 + t
        try:
            return protocols.simulate(
                proto, inputs, dropout=dropout, seed=seed, round=t, workers=cfg.workers
            )
        except protocols.ProtocolAborted as exc:
            self.last["error"] = str(exc)
            return None

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
