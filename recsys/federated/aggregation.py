"""From a round's :class:`~recsys.plan.Plan` to a :mod:`protocols` configuration.

The protocol itself comes from the registry (:mod:`protocols.registry`, via
:meth:`Plan.protocol_config <recsys.plan.Plan.protocol_config>`), so a newly
registered protocol needs nothing here.

Per-coordinate clipping: SecAgg, SecAgg+, Paillier and CKKS clip every
coordinate to ``[-clip, clip]`` before encoding, and their fixed-point scale
is set by that clip (coarser with a larger clip). Without DP the client has
already clipped each coordinate to ``plan.coordinate_clip``, which becomes the
protocol's clip. With DP each upload is L2-clipped to ``plan.clip``, so every
coordinate is within ``plan.clip``; in distributed mode a client adds its
noise share before encoding, so the bound adds ``NOISE_STDS`` standard
deviations of that share (a larger coordinate would be clipped, distorting the
noise, which the DP wrapper's docstring warns about).
"""

from __future__ import annotations

import math

import protocols

from ..plan import Plan

__all__ = ["NOISE_STDS", "build_protocol", "coordinate_bound"]

#: Standard deviations of a client's distributed noise share left as headroom.
NOISE_STDS = 7.0


def coordinate_bound(plan: Plan, n_invited: int, noise_multiplier: float | None) -> float:
    """The largest coordinate a client can hand to the protocol under ``plan``."""
    if not plan.dp:
        return float(plan.coordinate_clip)
    assert plan.clip is not None
    if plan.dp_mode == "distributed" and noise_multiplier is not None:
        shares = max(n_invited * (1.0 - plan.dropout), 1.0)
        return plan.clip * (1.0 + NOISE_STDS * noise_multiplier / math.sqrt(shares))
    return float(plan.clip)


def build_protocol(
    plan: Plan,
    *,
    n_invited: int,
    noise_multiplier: float | None = None,
    workers: int = 1,
    rounds: int = 1,
) -> protocols.AggregationProtocol:
    """The protocol configuration of one session of ``plan`` with ``n_invited`` clients.

    ``noise_multiplier`` is the round's σ (required when ``plan.dp``; a plan
    with ``target_epsilon`` must be calibrated by the caller). ``workers`` is
    the simulator's process count; Paillier then encrypts on one process per
    worker instead of starting its own pool inside each. ``rounds``: rounds
    the session serves (:meth:`Plan.session_length <recsys.plan.Plan.session_length>`).
    """
    if not plan.releases:
        raise ValueError("a 'local' plan runs no aggregation protocol")
    # A protocol with its own process pool (Paillier) runs one process per
    # simulator worker rather than a pool inside each; threshold None leaves
    # each protocol its own default (SecAgg 0.5; SecAgg+ chooses it with k).
    inner = plan.protocol_config(
        coordinate_bound(plan, n_invited, noise_multiplier),
        workers=1 if workers > 1 else None,
        rounds=rounds,
    )
    if not plan.dp:
        return inner
    if noise_multiplier is None:
        raise ValueError("a DP plan needs its noise multiplier (calibrate target_epsilon first)")
    return plan.dp_protocol(inner, float(noise_multiplier), n_invited)
