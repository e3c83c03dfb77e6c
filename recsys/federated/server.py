"""The server: holds the item tables, ships them to clients, applies aggregates.

The server only ever sees what the aggregation protocol releases: the
(possibly noised) sum of the surviving clients' uploads. It decodes it with
the :class:`~recsys.federated.update.UpdateLayout`, turns it into an update
(per-item or plain FedAvg, :class:`~recsys.federated.config.FederatedConfig`)
and applies it with its optimizer (SGD with a server learning rate, or
FedAdam).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ..plan import Plan
from .config import FederatedConfig
from .update import UpdateLayout

__all__ = ["ItemServer"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class ItemServer:
    """Item factors ``(n_items, k)`` and item biases ``(n_items,)`` (float64) and their optimizer."""

    def __init__(self, n_items: int, n_factors: int, config: FederatedConfig) -> None:
        self.config = config
        gen = torch.Generator().manual_seed(config.seed)
        self.item_factors = (
            torch.randn(n_items, n_factors, generator=gen, dtype=torch.float64) * config.init_std
        )
        self.item_bias = torch.zeros(n_items, dtype=torch.float64)
        self._m: Tensor | None = None
        self._v: Tensor | None = None
        self._ema: tuple[Tensor, Tensor] | None = None

    @property
    def n_items(self) -> int:
        return int(self.item_bias.shape[0])

    @property
    def model_bytes(self) -> int:
        """Bytes of the item tables as downloaded (``download_dtype``)."""
        size = 4 if self.config.download_dtype == "float32" else 8
        return (self.item_factors.numel() + self.item_bias.numel()) * size

    def download(self) -> tuple[Tensor, Tensor]:
        """The item tables as a client receives them (rounded to ``download_dtype``), float64."""
        dtype = _DTYPES[self.config.download_dtype]
        return (
            self.item_factors.to(dtype).to(torch.float64),
            self.item_bias.to(dtype).to(torch.float64),
        )

    def served(self) -> tuple[Tensor, Tensor]:
        """The item tables the server serves (for evaluation): the EMA if enabled, as downloaded."""
        if self._ema is None:
            return self.download()
        dtype = _DTYPES[self.config.download_dtype]
        return tuple(t.to(dtype).to(torch.float64) for t in self._ema)  # type: ignore[return-value]

    def update_from(
        self,
        total: np.ndarray,
        layout: UpdateLayout,
        *,
        survivors: int,
        expected_clients: float,
        plan: Plan,
        noise_multiplier: float | None,
    ) -> tuple[Tensor, Tensor]:
        """The (FedAvg) update ``(d_factors, d_bias)`` encoded in an aggregate."""
        factors, bias, weights = layout.decode(total)
        cfg = self.config
        if weights is not None:  # per-item weighted mean
            counts = weights / plan.count_weight
            floor = cfg.count_floor
            if plan.dp and noise_multiplier is not None and plan.clip is not None:
                count_noise = noise_multiplier * plan.clip / plan.count_weight
                floor = max(floor, cfg.count_floor_stds * count_noise)
            denom = np.maximum(counts, floor)
            d_factors, d_bias = factors / denom[:, None], bias / denom
        else:  # plain FedAvg; with DP the public expected cohort size
            cohort = float(expected_clients) if plan.dp else float(max(survivors, 1))
            d_factors, d_bias = factors / cohort, bias / cohort
        return torch.as_tensor(d_factors.copy()), torch.as_tensor(d_bias.copy())

    def apply(self, d_factors: Tensor, d_bias: Tensor) -> None:
        """Apply an update with the server optimizer (the update points downhill)."""
        cfg = self.config
        if cfg.server_optimizer == "sgd":
            self.item_factors += cfg.server_lr * d_factors
            self.item_bias += cfg.server_lr * d_bias
        else:
            self._adam(d_factors, d_bias)
        if cfg.serve_ema > 0:
            if self._ema is None:
                self._ema = (self.item_factors.clone(), self.item_bias.clone())
            else:
                for avg, now in zip(self._ema, (self.item_factors, self.item_bias)):
                    avg.mul_(cfg.serve_ema).add_(now, alpha=1.0 - cfg.serve_ema)

    def _adam(self, d_factors: Tensor, d_bias: Tensor) -> None:
        cfg = self.config
        # FedAdam (Reddi et al. 2021, Algorithm 2): the negated update is the
        # pseudo-gradient; no bias correction, adaptivity tau.
        b1, b2 = cfg.adam_betas
        delta = torch.cat([d_factors, d_bias.unsqueeze(1)], dim=1)
        if self._m is None or self._v is None:
            self._m = torch.zeros_like(delta)
            self._v = torch.full_like(delta, cfg.adam_tau**2)
        self._m.mul_(b1).add_(delta, alpha=1 - b1)
        self._v.mul_(b2).addcmul_(delta, delta, value=1 - b2)
        step = cfg.server_lr * self._m / (self._v.sqrt() + cfg.adam_tau)
        k = d_factors.shape[1]
        self.item_factors += step[:, :k]
        self.item_bias += step[:, k]

    def finite(self) -> bool:
        return bool(
            torch.isfinite(self.item_factors).all() and torch.isfinite(self.item_bias).all()
        )

    def norm(self) -> float:
        return math.sqrt(float(self.item_factors.pow(2).sum() + self.item_bias.pow(2).sum()))
