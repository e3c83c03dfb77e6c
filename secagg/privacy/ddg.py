"""The distributed discrete Gaussian mechanism over Z_{2^bits}.

Kairouz, Liu, Steinke, "The Distributed Discrete Gaussian Mechanism for
Federated Learning with Secure Aggregation", ICML 2021 (KLS below; arXiv
2102.06387), Algorithm 1: the pipeline of
:mod:`secagg.privacy.rotated_integer` (clip, scale by 1/γ, public Hadamard
rotation, conditional randomized rounding, reduce mod 2^bits) with discrete
Gaussian noise ``N_Z(0, σ²)`` per coordinate
(:func:`~secagg.privacy.sampling.discrete_gaussian`).

Privacy: the mechanism emits a
:class:`~secagg.privacy.events.DistributedDiscreteGaussianEvent` (integer
sensitivities ``Δ₂, Δ₁ = min(√D·Δ₂, Δ₂²)``, per-client σ, number of honest
shares, dimension); its RDP (KLS Theorem 1 / Proposition 14) is
:func:`secagg.privacy.rdp_formulas.rdp_distributed_discrete_gaussian`. The
adjacency is a change of one reporting client's update (replaced by zero, its
noise share staying in), the setting of KLS.
"""

from __future__ import annotations

import numpy as np

from secagg.privacy.events import DistributedDiscreteGaussianEvent, PoissonSampledEvent
from secagg.privacy.rotated_integer import RotatedIntegerMechanism
from secagg.privacy.sampling import discrete_gaussian, discrete_gaussian_variance
from secagg.randomness import RandomSource

__all__ = ["DistributedDiscreteGaussian"]


class DistributedDiscreteGaussian(RotatedIntegerMechanism):
    """The distributed discrete Gaussian mechanism of Kairouz, Liu, Steinke (ICML 2021).

    Args:
        dim: dimension of the client updates (encodings have ``padded_dim``).
        l2_clip: per-client L2 clip ``c`` in real units.
        bits: the modulus is ``2^bits`` (2..52); the secure-aggregation modulus
            must be ``2^B`` with ``B >= bits``.
        expected_clients: number of clients the noise is planned for.
        noise_multiplier: target aggregate noise std / ``c`` (real units) when
            ``noise_clients(expected_clients, dropout_rate)`` clients report;
            each client adds ``N_Z(0, σ²)`` with ``σ = z c / (γ √m)``.
        rotation_seed: the public per-round seed of the Hadamard rotation.
        sigma: alternatively, the per-client std directly in integer units.
        beta: conditional-rounding parameter (KLS default ``e^{-1/2}``).
        gamma: granularity; default :meth:`_solve_gamma` for ``wrap_probability``.
        dropout_rate: over-provision noise for this expected dropout fraction.
        max_clients: most summands the modulus must hold (default ``expected_clients``;
            raise it under Poisson sampling, e.g. mean + 4·sd).
        wrap_probability: target bound on P[any coordinate of a sum of
            ``max_clients`` encodings wraps].

    Use :meth:`client_encode` on each client, sum in ``Z_{2^bits}``,
    :meth:`server_decode`, and :meth:`event` with the number of honest clients
    whose encodings are in the sum.
    """

    def _noise(self, n: int, rng: RandomSource) -> np.ndarray:
        return discrete_gaussian(n, self._sigma, rng)

    def _noise_log_mgf(self, t: float, sigma: float, clients: int) -> float:
        # N_Z(0, σ²) is σ²-sub-Gaussian (Canonne, Kamath, Steinke 2020), and
        # proxies of independent summands add.
        return 0.5 * t * t * clients * sigma * sigma

    def aggregate_noise_variance(self, num_clients: int) -> float:
        """Per-coordinate variance, in real units, of the noise in a sum of ``num_clients`` encodings.

        ``γ² · num_clients · Var[N_Z(0, σ²)]``; rounding adds at most
        ``γ² · num_clients / 4`` more. The rotation is orthonormal, so the
        decoded error has the same per-coordinate variance on average.
        """
        return self._gamma**2 * int(num_clients) * discrete_gaussian_variance(self._sigma)

    def event(
        self, num_clients: int, *, sampling_probability: float | None = None
    ) -> DistributedDiscreteGaussianEvent | PoissonSampledEvent:
        """The privacy event of a round whose sum holds ``num_clients`` honest encodings.

        ``DistributedDiscreteGaussianEvent(l2_sensitivity=Δ₂, l1_sensitivity=Δ₁,
        sigma=σ, num_clients=k, dimension=D)`` in integer units (KLS Theorem 1).
        With fewer clients than planned the aggregate noise ``kσ²`` is smaller
        and the event says so. Count only clients whose noise the adversary
        does not know. With ``sampling_probability`` (Poisson sampling of
        clients, amplification against observers who do not learn who was
        sampled, i.e. not the aggregation server) the event is wrapped in
        :class:`PoissonSampledEvent`.
        """
        k = int(num_clients)
        if k < 1:
            raise ValueError(f"num_clients must be >= 1, got {num_clients!r}")
        event: DistributedDiscreteGaussianEvent | PoissonSampledEvent = DistributedDiscreteGaussianEvent(
            l2_sensitivity=self._l2_bound,
            l1_sensitivity=self._l1_bound,
            sigma=self._sigma,
            num_clients=k,
            dimension=self.padded_dim,
        )
        if sampling_probability is not None:
            event = PoissonSampledEvent(sampling_probability, event)
        return event
