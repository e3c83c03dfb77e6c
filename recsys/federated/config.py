"""Hyperparameters of a federated MF run that do not change from round to round.

What may change per round (protocol, DP, sampling rate, local epochs, bits)
lives in :class:`recsys.plan.Plan`; what is fixed for the run (the model,
the local optimizer, the server's aggregation rule and optimizer) lives here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["AGGREGATIONS", "SERVER_OPTIMIZERS", "FederatedConfig"]

AGGREGATIONS = ("item", "fedavg")
SERVER_OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class FederatedConfig:
    """The run's fixed settings (defaults: tuned on ML-100K, see benchmarks/recsys.py).

    Model and local training:
        n_factors: latent dimension k.
        reg_factors, reg_bias: per-rating L2 weights, as in
            :func:`recsys.losses.regularized_mse`.
        local_lr: step of the local item pass (per rating, ``reduction="sum"``).
        init_std: item factors start as N(0, init_std^2), item biases at 0.
        global_mean: ``mu`` of the model. ``None`` takes the midpoint of
            ``rating_scale``: the data's mean is itself a statistic of users'
            ratings, and each user's local bias absorbs the offset anyway.
        rating_scale: public (min, max) rating; evaluation clips predictions to it.
        bias_scale_reg: if set, every client also fits a private scale of the
            item bias, predicting ``mu + b_u + (1 + c_u) b_i + p_u.q_i`` — the
            user-specific scaling of the item bias in Koren's baseline
            predictor (Koren, "Collaborative Filtering with Temporal
            Dynamics", KDD 2009) — with this ridge weight per rating on
            ``c_u`` (towards scale 1). It adds no item parameter and changes
            neither the upload's shape nor its bound: ``c_u`` is solved
            exactly with ``b_u`` in the local ridge step
            (:mod:`recsys.federated.local`) and is never uploaded; like
            ``b_u`` it enters the item gradient, which is clipped and noised
            exactly as before, so the DP guarantee and its accounting are
            unchanged, while at evaluation each client personalizes the
            released item biases on its device. ``None``: no scaling.

    Server:
        aggregation: ``"item"`` — per-item weighted FedAvg: every client also
            sends a weight channel (``count_weight`` for each item it rated),
            and the server divides each item's summed delta by its summed
            weight, so an item moves by the mean delta of the clients that
            rated it; ``"fedavg"`` — plain FedAvg, the summed deltas divided
            by the number of survivors (without DP) or by the expected number
            of clients ``q * n_clients`` (with DP, the fixed denominator of
            DP-FedAvg, so the divisor reveals nothing).
        server_optimizer: ``"sgd"`` (``params += server_lr * update``) or
            ``"adam"`` (FedAdam, Reddi et al. ICLR 2021, with ``adam_betas``
            and adaptivity ``adam_tau``).
        count_floor: smallest per-item divisor (in counts) with ``"item"``.
        count_floor_stds: with DP the divisor is at least this many standard
            deviations of the weight channel's noise, so an item nobody rated
            does not divide noise by noise.
        serve_ema: if > 0, the server also keeps an exponential moving average
            of the item tables (``ema <- serve_ema * ema + (1 - serve_ema) *
            params`` after every update) and serves it for evaluation;
            training continues from the raw iterate. Averaging iterates is
            post-processing (no privacy cost) and averages out part of the DP
            noise of successive rounds.

    Simulation:
        download_dtype: ``"float32"`` or ``"float64"``: how the item
            parameters travel to clients (counted in ``bytes_down``; clients
            compute with the values they received).
        seed: model initialization and client sampling (numpy/torch; a
            simulation seed, nothing secret).
        protocol_seed: passed to :func:`protocols.simulate` — FOR TESTS AND
            REPRODUCIBLE SIMULATIONS ONLY: it makes every key, mask and DP
            noise predictable. ``None`` (the default) uses the OS CSPRNG.
        workers: client processes of :func:`protocols.simulate`.
        eval_every: evaluate every this many rounds (and at the last round).
    """

    n_factors: int = 20
    reg_factors: float = 0.1
    reg_bias: float = 0.05
    local_lr: float = 0.2
    init_std: float = 0.1
    global_mean: float | None = None
    rating_scale: tuple[float, float] = (1.0, 5.0)
    bias_scale_reg: float | None = None
    aggregation: str = "item"
    server_optimizer: str = "sgd"
    server_lr: float = 1.0
    adam_betas: tuple[float, float] = (0.9, 0.99)
    adam_tau: float = 1e-3
    count_floor: float = 0.5
    count_floor_stds: float = 3.0
    serve_ema: float = 0.0
    download_dtype: str = "float32"
    seed: int = 0
    protocol_seed: int | None = None
    workers: int = 1
    eval_every: int = 1

    def __post_init__(self) -> None:
        if (
            isinstance(self.n_factors, bool)
            or not isinstance(self.n_factors, int)
            or self.n_factors < 0
        ):
            raise ValueError(f"n_factors must be an int >= 0, got {self.n_factors!r}")
        for name in ("reg_factors", "reg_bias", "init_std", "count_floor_stds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("local_lr", "server_lr", "adam_tau", "count_floor"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        lo, hi = self.rating_scale
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(
                f"rating_scale must be (min, max) with min < max, got {self.rating_scale!r}"
            )
        if self.bias_scale_reg is not None and (
            isinstance(self.bias_scale_reg, bool)
            or not isinstance(self.bias_scale_reg, (int, float))
            or not (math.isfinite(self.bias_scale_reg) and self.bias_scale_reg > 0)
        ):
            raise ValueError(
                f"bias_scale_reg must be a positive finite number or None, got {self.bias_scale_reg!r}"
            )
        if self.global_mean is not None and not math.isfinite(self.global_mean):
            raise ValueError("global_mean must be finite or None")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        if self.server_optimizer not in SERVER_OPTIMIZERS:
            raise ValueError(
                f"server_optimizer must be one of {SERVER_OPTIMIZERS}, got {self.server_optimizer!r}"
            )
        if not 0.0 <= self.serve_ema < 1.0:
            raise ValueError(f"serve_ema must lie in [0, 1), got {self.serve_ema!r}")
        b1, b2 = self.adam_betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"adam_betas must lie in [0, 1), got {self.adam_betas!r}")
        if self.download_dtype not in ("float32", "float64"):
            raise ValueError(
                f"download_dtype must be 'float32' or 'float64', got {self.download_dtype!r}"
            )
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers must be a positive int, got {self.workers!r}")
        if (
            isinstance(self.eval_every, bool)
            or not isinstance(self.eval_every, int)
            or self.eval_every < 1
        ):
            raise ValueError(f"eval_every must be a positive int, got {self.eval_every!r}")

    @property
    def mu(self) -> float:
        """The model's global mean."""
        lo, hi = self.rating_scale
        return float(self.global_mean) if self.global_mean is not None else (lo + hi) / 2.0

    def replace(self, **changes: Any) -> FederatedConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
