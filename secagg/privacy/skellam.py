"""The distributed Skellam mechanism over Z_{2^bits}.

Agarwal, Kairouz, Liu, "The Skellam Mechanism for Differentially Private
Federated Learning", NeurIPS 2021 (AKL below). Same client pipeline as the
distributed discrete Gaussian (:mod:`secagg.privacy.rotated_integer`: clip,
scale by 1/γ, public Hadamard rotation, conditional randomized rounding,
reduce mod 2^bits), but each client adds symmetric Skellam noise ``Sk(μ_local)``
(difference of two Poisson(μ_local/2), variance μ_local) per coordinate.
Skellam is closed under summation, so the aggregate noise of ``k`` clients is
exactly ``Sk(k·μ_local)``: no "sum of discrete Gaussians is nearly discrete
Gaussian" slack (KLS's τ), which helps when many clients each add little noise.

The mechanism emits a :class:`~secagg.privacy.events.SkellamEvent`; its RDP
(AKL Theorem 3.5) is :func:`secagg.privacy.rdp_formulas.rdp_skellam`.
"""

from __future__ import annotations

import math

import numpy as np

from secagg.privacy.events import PoissonSampledEvent, SkellamEvent
from secagg.privacy.rotated_integer import RotatedIntegerMechanism
from secagg.privacy.sampling import MAX_POISSON_LAMBDA, skellam
from secagg.randomness import RandomSource

__all__ = ["DistributedSkellam"]


class DistributedSkellam(RotatedIntegerMechanism):
    """The distributed Skellam mechanism (Agarwal, Kairouz, Liu, NeurIPS 2021).

    Same constructor, encoding and decoding as
    :class:`~secagg.privacy.ddg.DistributedDiscreteGaussian`; ``sigma`` is
    the per-client noise std in integer units, so each client adds
    ``Sk(σ²)`` per coordinate and ``k`` clients give ``Sk(kσ²)``. The
    granularity is solved numerically against a Chernoff bound using the
    Skellam moment generating function ``exp(μ(cosh t - 1))`` (Skellam is
    sub-exponential, not sub-Gaussian).
    """

    # Skellam(σ²) is a difference of two Poisson(σ²/2): keep σ²/2 = 2^47, half of
    # MAX_POISSON_LAMBDA, so float rounding of σ never crosses the limit.
    _MAX_SIGMA = math.sqrt(MAX_POISSON_LAMBDA)

    def _noise(self, n: int, rng: RandomSource) -> np.ndarray:
        return skellam(n, self._sigma**2, rng)

    def _noise_log_mgf(self, t: float, sigma: float, clients: int) -> float:
        # log E[e^{tX}] for X ~ Sk(μ) = Poisson(μ/2) - Poisson(μ/2) is μ(cosh t - 1).
        try:
            return clients * sigma * sigma * (math.cosh(t) - 1.0)
        except OverflowError:
            return math.inf

    def aggregate_noise_variance(self, num_clients: int) -> float:
        """Per-coordinate variance, real units, of the noise in a sum of ``num_clients`` encodings: ``γ² k σ²``."""
        return self._gamma**2 * int(num_clients) * self._sigma**2

    def event(
        self, num_clients: int, *, sampling_probability: float | None = None
    ) -> SkellamEvent | PoissonSampledEvent:
        """``SkellamEvent(l1_sensitivity=Δ₁, l2_sensitivity=Δ₂, mu=k σ²)`` for ``k = num_clients``.

        Integer units; ``mu`` is the aggregate noise variance per coordinate
        of the ``k`` honest shares present. Wrapped in
        :class:`PoissonSampledEvent` when ``sampling_probability`` is given.
        """
        k = int(num_clients)
        if k < 1:
            raise ValueError(f"num_clients must be >= 1, got {num_clients!r}")
        event: SkellamEvent | PoissonSampledEvent = SkellamEvent(
            l1_sensitivity=self._l1_bound, l2_sensitivity=self._l2_bound, mu=k * self._sigma**2
        )
        if sampling_probability is not None:
            event = PoissonSampledEvent(sampling_probability, event)
        return event
