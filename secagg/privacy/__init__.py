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

from secagg.privacy.accountant import PrivacyAccountant, UnsupportedEventError
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
from secagg.privacy.rdp import (
    DEFAULT_RDP_ORDERS,
    RDPAccountant,
    compute_delta_from_rdp,
    compute_epsilon_from_rdp,
)

__all__ = [
    "DEFAULT_RDP_ORDERS",
    "ComposedEvent",
    "DistributedDiscreteGaussianEvent",
    "Event",
    "GaussianEvent",
    "LaplaceEvent",
    "NoOpEvent",
    "NonPrivateEvent",
    "PoissonSampledEvent",
    "PrivacyAccountant",
    "RDPAccountant",
    "SelfComposedEvent",
    "SkellamEvent",
    "UnsupportedEventError",
    "compute_delta_from_rdp",
    "compute_epsilon_from_rdp",
    "event_from_json",
    "to_json",
]
