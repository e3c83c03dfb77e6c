"""Differential privacy, dp_accounting-style: events, accountants, calibration.

A mechanism (what noise is added) emits an :class:`Event` (what happened, as
data); an accountant (:class:`RDPAccountant`, :class:`PLDAccountant`) composes
events and answers ``epsilon`` for a ``delta`` (or ``delta`` for an
``epsilon``); :func:`calibrate_noise_multiplier` inverts that. The RDP of
every event is in :mod:`secagg.privacy.rdp_formulas` and nowhere else.

Example::

    from secagg import privacy
    acct = privacy.PLDAccountant()
    acct.compose(privacy.PoissonSampledEvent(0.01, privacy.GaussianEvent(1.1)), count=10_000)
    acct.get_epsilon(delta=1e-5)
"""

from __future__ import annotations

from secagg.privacy.accountant import PrivacyAccountant, UnsupportedEventError
from secagg.privacy.calibration import calibrate_noise_multiplier
from secagg.privacy.ddg import DistributedDiscreteGaussian
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
from secagg.privacy.mechanisms import (
    central_gaussian,
    clip_l2,
    distributed_gaussian_event,
    distributed_gaussian_share,
)
from secagg.privacy.pld import PLDAccountant
from secagg.privacy.rdp import (
    DEFAULT_RDP_ORDERS,
    RDPAccountant,
    compute_delta_from_rdp,
    compute_epsilon_from_rdp,
)
from secagg.privacy.rdp_formulas import rdp_poisson_subsampled
from secagg.privacy.rotated_integer import choose_gamma
from secagg.privacy.rotation import RandomizedHadamard
from secagg.privacy.skellam import DistributedSkellam

__all__ = [
    "DEFAULT_RDP_ORDERS",
    "ComposedEvent",
    "DistributedDiscreteGaussian",
    "DistributedDiscreteGaussianEvent",
    "DistributedSkellam",
    "Event",
    "GaussianEvent",
    "LaplaceEvent",
    "NoOpEvent",
    "NonPrivateEvent",
    "PLDAccountant",
    "PoissonSampledEvent",
    "PrivacyAccountant",
    "RDPAccountant",
    "RandomizedHadamard",
    "SelfComposedEvent",
    "SkellamEvent",
    "UnsupportedEventError",
    "calibrate_noise_multiplier",
    "central_gaussian",
    "choose_gamma",
    "clip_l2",
    "compute_delta_from_rdp",
    "compute_epsilon_from_rdp",
    "distributed_gaussian_event",
    "distributed_gaussian_share",
    "event_from_json",
    "rdp_poisson_subsampled",
    "to_json",
]
