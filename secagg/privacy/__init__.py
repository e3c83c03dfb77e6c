"""Differential privacy, dp_accounting-style: events, accountants, calibration.

A mechanism (what noise is added) emits an :class:`Event` (what happened, as
data); an accountant (:class:`RDPAccountant`, :class:`PLDAccountant`) composes
events and answers ``epsilon`` for a ``delta`` (or ``delta`` for an
``epsilon``); :func:`calibrate_noise_multiplier` inverts that.

Example::

    from secagg import privacy
    acct = privacy.PLDAccountant()
    acct.compose(privacy.PoissonSampledEvent(0.01, privacy.GaussianEvent(1.1)), count=10_000)
    acct.get_epsilon(delta=1e-5)
"""

from __future__ import annotations

# --- events (accounting engineer) ---
from secagg.privacy.events import (
    ComposedEvent,
    DistributedDiscreteGaussianEvent,
    Event,
    GaussianEvent,
    LaplaceEvent,
    NonPrivateEvent,
    NoOpEvent,
    PoissonSampledEvent,
    SelfComposedEvent,
    SkellamEvent,
    event_from_json,
    to_json,
)

__all__ = [
    # --- events (accounting engineer) ---
    "ComposedEvent",
    "DistributedDiscreteGaussianEvent",
    "Event",
    "GaussianEvent",
    "LaplaceEvent",
    "NoOpEvent",
    "NonPrivateEvent",
    "PoissonSampledEvent",
    "SelfComposedEvent",
    "SkellamEvent",
    "event_from_json",
    "to_json",
]
