"""Client-level DP-FedAvg mechanisms: L2 clipping, central and distributed Gaussian noise.

Each mechanism returns what it did to the data *and* the privacy event that
describes it (dp_accounting's split): feed the event to an accountant
(:class:`~secagg.privacy.RDPAccountant`, :class:`~secagg.privacy.PLDAccountant`).

Reference: McMahan, Ramage, Talwar, Zhang, "Learning Differentially Private
Recurrent Language Models", ICLR 2018 (DP-FedAvg): every client's update is
clipped to L2 norm ``clip`` (so adding or removing one client moves the sum by
at most ``clip``) and Gaussian noise of std ``noise_multiplier · clip`` is
added to the sum.

Adjacency and noise accounting
------------------------------
- :func:`central_gaussian`: the server (trusted) adds all the noise. The event
  is ``GaussianEvent(noise_multiplier)`` under add/remove-one-client
  adjacency. Wrap it in ``PoissonSampledEvent(q, ...)`` when each client is
  sampled independently with probability ``q`` and the sample is hidden from
  the observer.
- :func:`distributed_gaussian_share` / :func:`distributed_gaussian_event`:
  each client adds a share of the noise before secure aggregation so the
  server never sees an un-noised sum. The noise in the aggregate is the sum of
  the shares *that arrived*: with ``k`` of the planned ``m`` clients it has std
  ``noise_multiplier · clip · sqrt(k / m)``, and the event says so (see
  :func:`distributed_gaussian_event`). Shares known to the adversary (its own,
  or those of clients colluding with it) protect nobody: count only honest
  clients. The guarantee is for a change of one reporting client's update
  (replace by zero, its noise share stays), the adjacency of Kairouz, Liu,
  Steinke (ICML 2021).

Floating point: these mechanisms add continuous noise computed in float64 (Box–Muller on 53-bit
CSPRNG uniforms, :func:`secagg.privacy.sampling.gaussian`). Mironov, "On
Significance of the Least Significant Bits for Differential Privacy", CCS
2012, shows that the low-order bits of ``x + float noise`` can reveal ``x``;
the analysis here is of the ideal real-valued mechanism. When the protocol
already works in integers (SecAgg over Z_{2^bits}) prefer the integer
mechanisms :class:`~secagg.privacy.ddg.DistributedDiscreteGaussian` and
:class:`~secagg.privacy.skellam.DistributedSkellam`, which add integer noise
and have no such gap.
"""

from __future__ import annotations

import math
from typing import Literal, overload

import numpy as np

from secagg.privacy.events import GaussianEvent, PoissonSampledEvent
from secagg.privacy.sampling import gaussian
from secagg.randomness import RandomSource, default_rng

__all__ = [
    "central_gaussian",
    "clip_l2",
    "distributed_gaussian_event",
    "distributed_gaussian_share",
    "noise_clients",
]


def _positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def _non_negative(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def _count(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _finite_array(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


@overload
def clip_l2(x: np.ndarray, clip: float, *, return_clipped: Literal[False] = ...) -> np.ndarray: ...


@overload
def clip_l2(
    x: np.ndarray, clip: float, *, return_clipped: Literal[True]
) -> tuple[np.ndarray, bool]: ...


def clip_l2(
    x: np.ndarray, clip: float, *, return_clipped: bool = False
) -> np.ndarray | tuple[np.ndarray, bool]:
    """Scale ``x`` down to L2 norm at most ``clip``: ``x · min(1, clip / ||x||₂)``.

    Per-client clipping of DP-FedAvg (McMahan et al., ICLR 2018, Algorithm 1):
    it bounds the L2 sensitivity of the sum of client updates by ``clip``.
    The output's float64 norm (``np.linalg.norm``) is guaranteed ``<= clip``:
    if the scaled vector overshoots by rounding it is shrunk by an ulp.

    Args:
        x: the update, any shape (the norm is over all entries); finite.
        clip: the L2 bound, positive and finite.
        return_clipped: also return whether ``x`` was actually scaled down.
            The fraction of clipped clients drives adaptive clipping (Andrew
            et al., "Differentially Private Learning with Adaptive Clipping",
            NeurIPS 2021); it is itself private data and must be noised
            before it leaves the client population.

    Returns:
        The clipped float64 copy, or ``(clipped, was_clipped)``.
    """
    arr = _finite_array(x, "x")
    clip = _positive(clip, "clip")
    norm = float(np.linalg.norm(arr))
    was_clipped = norm > clip
    out = arr.copy()
    if was_clipped:
        out *= clip / norm
        # Rounding (of the scaling and of the norm itself, whose error grows with
        # the size) can leave the computed norm a little above clip; the
        # sensitivity proof wants <=, so shrink by a relative step that doubles
        # each time: a few iterations, overshooting by at most 2x what is needed.
        step = 2.0**-52
        while float(np.linalg.norm(out)) > clip:
            out *= 1.0 - step
            step *= 2.0
    if return_clipped:
        return out, bool(was_clipped)
    return out


def central_gaussian(
    total: np.ndarray,
    *,
    clip: float,
    noise_multiplier: float,
    rng: RandomSource | None = None,
    sampling_probability: float | None = None,
) -> tuple[np.ndarray, GaussianEvent | PoissonSampledEvent]:
    """The Gaussian mechanism on a sum of clipped updates: add N(0, (σ·clip)²) per coordinate.

    DP-FedAvg with a trusted server (McMahan et al., ICLR 2018): ``total`` is
    the sum of updates each clipped to L2 norm ``clip`` (:func:`clip_l2`), so
    one client changes it by at most ``clip`` in L2 and the release is the
    Gaussian mechanism with noise multiplier ``σ = noise_multiplier``.

    Args:
        total: the sum of clipped updates (any shape, finite).
        clip: the per-client L2 clip used.
        noise_multiplier: noise std / clip (>= 0; 0 adds nothing and the
            event then means epsilon = infinity).
        rng: randomness source; default the OS CSPRNG. Never pass a
            :class:`~secagg.randomness.DeterministicRandom` outside tests.
        sampling_probability: if clients were Poisson-sampled with this
            probability, the event is wrapped in :class:`PoissonSampledEvent`.

    Returns:
        ``(noised_total, event)`` with ``event = GaussianEvent(noise_multiplier)``
        (or ``PoissonSampledEvent(q, GaussianEvent(noise_multiplier))``).

    Float caveat (Mironov, CCS 2012): see the module docstring.
    """
    arr = _finite_array(total, "total")
    clip = _positive(clip, "clip")
    sigma = _non_negative(noise_multiplier, "noise_multiplier")
    noise = gaussian(arr.size, sigma * clip, default_rng(rng)).reshape(arr.shape)
    event: GaussianEvent | PoissonSampledEvent = GaussianEvent(sigma)
    if sampling_probability is not None:
        event = PoissonSampledEvent(sampling_probability, event)
    return arr + noise, event


def noise_clients(expected_clients: int, dropout_rate: float = 0.0) -> float:
    """How many shares the noise is split into: ``expected_clients · (1 - dropout_rate)``.

    Each client adds ``1 / noise_clients`` of the target noise variance. With
    ``dropout_rate = 0`` the target is met only if every expected client
    reports; with ``dropout_rate = p`` clients over-provision so that the
    target is still met when only ``(1 - p)`` of them report (at the cost of
    more noise, ``1 / (1 - p)`` times the variance, when all report).
    """
    n = _count(expected_clients, "expected_clients", 1)
    p = _non_negative(dropout_rate, "dropout_rate")
    if p >= 1:
        raise ValueError(f"dropout_rate must be in [0, 1), got {p!r}")
    return n * (1.0 - p)


def distributed_gaussian_share(
    x: np.ndarray,
    *,
    clip: float,
    noise_multiplier: float,
    expected_clients: int,
    dropout_rate: float = 0.0,
    rng: RandomSource | None = None,
) -> np.ndarray:
    """One client's share of distributed Gaussian noise: N(0, (σ·clip)² / m) per coordinate.

    With ``m = noise_clients(expected_clients, dropout_rate)`` planned shares,
    the sum of ``m`` independent shares is N(0, (σ·clip)²), the noise of the
    central mechanism (Gaussians are closed under summation). The client
    sends ``clip_l2(x, clip) + share`` into secure aggregation, so the server
    only ever sees a noised sum.

    Args:
        x: the client's update; only its shape is used (the noise has the same shape).
        clip: the per-client L2 clip.
        noise_multiplier: σ, the target noise std of the aggregate / clip.
        expected_clients: the number of clients the noise is planned for.
        dropout_rate: fraction of them expected to drop out; the share is
            enlarged so the target holds if only ``(1 - dropout_rate)`` report.
        rng: randomness source; default the OS CSPRNG (tests only: DeterministicRandom).

    Returns:
        The float64 noise vector (not ``x + noise``). Account for the round with
        :func:`distributed_gaussian_event` once the number of reporting clients is known.

    Float caveat (Mironov, CCS 2012): see the module docstring.
    """
    shape = np.shape(x)
    clip = _positive(clip, "clip")
    sigma = _non_negative(noise_multiplier, "noise_multiplier")
    m = noise_clients(expected_clients, dropout_rate)
    size = int(np.prod(shape)) if shape else 1
    return gaussian(size, sigma * clip / math.sqrt(m), default_rng(rng)).reshape(shape)


def distributed_gaussian_event(
    noise_multiplier: float,
    expected_clients: int,
    actual_clients: int,
    *,
    dropout_rate: float = 0.0,
    sampling_probability: float | None = None,
) -> GaussianEvent | PoissonSampledEvent:
    """The event of a distributed-Gaussian round in which ``actual_clients`` shares arrived.

    Shortfall accounting: each share has variance ``(σ·clip)² / m`` with
    ``m = noise_clients(expected_clients, dropout_rate)``, so the sum of the
    ``k = actual_clients`` shares present has std ``σ · clip · sqrt(k / m)``.
    The event therefore carries the *effective* multiplier
    ``σ_eff = σ · sqrt(k / m)``: below σ when clients dropped beyond the
    planned rate (less privacy than intended), above σ when more reported.

    ``actual_clients`` must count only shares unknown to the adversary: a
    client colluding with the server knows (and can subtract) its own share.

    Args:
        noise_multiplier: σ used by the clients in :func:`distributed_gaussian_share`.
        expected_clients, dropout_rate: as passed to :func:`distributed_gaussian_share`.
        actual_clients: number of honest clients whose noised updates are in the sum (>= 1).
        sampling_probability: wrap in ``PoissonSampledEvent`` for Poisson-sampled clients.

    Returns:
        ``GaussianEvent(σ_eff)`` or ``PoissonSampledEvent(q, GaussianEvent(σ_eff))``.
    """
    sigma = _non_negative(noise_multiplier, "noise_multiplier")
    m = noise_clients(expected_clients, dropout_rate)
    k = _count(actual_clients, "actual_clients", 1)
    event: GaussianEvent | PoissonSampledEvent = GaussianEvent(sigma * math.sqrt(k / m))
    if sampling_probability is not None:
        event = PoissonSampledEvent(sampling_probability, event)
    return event
