"""Privacy events: what a mechanism did, as plain data.

Follows the split of Google's ``dp_accounting`` library: a mechanism (what
noise is added) *emits* an event; an accountant (:class:`~secagg.privacy.RDPAccountant`,
:class:`~secagg.privacy.PLDAccountant`) composes events and answers
``epsilon`` for a ``delta``. Events are frozen dataclasses, validated on
construction (a :class:`ValueError` naming the offending field), hashable and
comparable, and serialisable to JSON through a *closed* registry of names
(:func:`to_json` / :func:`event_from_json`): the decoder never imports or
calls anything named in the data.

References
----------
- dp_accounting ``dp_event.py`` (Google, https://github.com/google/differential-privacy).
- Kairouz, Liu, Steinke. "The Distributed Discrete Gaussian Mechanism for
  Federated Learning with Secure Aggregation", ICML 2021.
- Agarwal, Kairouz, Liu. "The Skellam Mechanism for Differentially Private
  Federated Learning", NeurIPS 2021.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from typing import Any

__all__ = [
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


# --------------------------------------------------------------------------
# Validation helpers. They normalise numeric fields (numpy scalars, ints) to
# plain Python float/int so that equality, hashing and JSON are predictable.
# --------------------------------------------------------------------------


def _real(obj: object, name: str, *, positive: bool = False) -> float:
    """Return ``obj`` as a finite, non-negative float (``> 0`` if ``positive``)."""
    value = getattr(obj, name)
    # bool is an Integral; ``GaussianEvent(True)`` is almost surely a bug.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{type(obj).__name__}.{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{type(obj).__name__}.{name} must be finite, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{type(obj).__name__}.{name} must be > 0, got {value!r}")
    if value < 0:
        raise ValueError(f"{type(obj).__name__}.{name} must be >= 0, got {value!r}")
    object.__setattr__(obj, name, value)
    return value


def _integer(obj: object, name: str, *, minimum: int) -> int:
    """Return ``obj.name`` as a Python int ``>= minimum``."""
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{type(obj).__name__}.{name} must be an integer, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{type(obj).__name__}.{name} must be >= {minimum}, got {value!r}")
    object.__setattr__(obj, name, value)
    return value


def _event(obj: object, name: str) -> Event:
    value = getattr(obj, name)
    if not isinstance(value, Event):
        raise ValueError(f"{type(obj).__name__}.{name} must be an Event, got {value!r}")
    return value


# --------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Event:
    """Base class of every privacy event (dp_accounting's ``DpEvent``).

    Do not instantiate directly; accountants dispatch on the concrete type.
    """


@dataclasses.dataclass(frozen=True)
class NoOpEvent(Event):
    """An event that releases nothing and costs no privacy (dp_accounting ``NoOpDpEvent``)."""


@dataclasses.dataclass(frozen=True)
class NonPrivateEvent(Event):
    """A release with no privacy guarantee: composing it makes epsilon infinite.

    Mirrors dp_accounting's ``NonPrivateDpEvent``.
    """


@dataclasses.dataclass(frozen=True)
class GaussianEvent(Event):
    """Gaussian mechanism: noise ``N(0, (noise_multiplier * Δ₂)²)`` for L2 sensitivity ``Δ₂``.

    ``noise_multiplier`` is the ratio std / L2 sensitivity. ``0`` means no noise
    (infinite epsilon). RDP of order α is ``α / (2 σ²)`` (Mironov, "Rényi
    Differential Privacy", CSF 2017, Prop. 7).
    """

    noise_multiplier: float

    def __post_init__(self) -> None:
        _real(self, "noise_multiplier")


@dataclasses.dataclass(frozen=True)
class LaplaceEvent(Event):
    """Laplace mechanism: noise ``Lap(0, noise_multiplier * Δ₁)`` for L1 sensitivity ``Δ₁``.

    ``noise_multiplier`` is the ratio scale / L1 sensitivity, so the pure-DP
    epsilon is ``1 / noise_multiplier`` (Dwork, McSherry, Nissim, Smith, TCC
    2006). ``0`` means no noise (infinite epsilon).
    """

    noise_multiplier: float

    def __post_init__(self) -> None:
        _real(self, "noise_multiplier")


@dataclasses.dataclass(frozen=True)
class PoissonSampledEvent(Event):
    """Run ``event`` on a Poisson subsample: each record is kept with ``sampling_probability``.

    Privacy amplification by sampling; for a Gaussian inner event this is the
    Sampled Gaussian Mechanism (Abadi et al., CCS 2016; Mironov, Talwar,
    Zhang, "Rényi Differential Privacy of the Sampled Gaussian Mechanism",
    2019). Adjacency is add/remove-one-record.
    """

    sampling_probability: float
    event: Event

    def __post_init__(self) -> None:
        q = _real(self, "sampling_probability")
        if q > 1:
            raise ValueError(
                f"PoissonSampledEvent.sampling_probability must be in [0, 1], got {q!r}"
            )
        _event(self, "event")


@dataclasses.dataclass(frozen=True)
class SelfComposedEvent(Event):
    """``event`` repeated ``count`` times (adaptive composition)."""

    event: Event
    count: int

    def __post_init__(self) -> None:
        _event(self, "event")
        _integer(self, "count", minimum=0)


@dataclasses.dataclass(frozen=True)
class ComposedEvent(Event):
    """The adaptive composition of ``events`` in order (a list is accepted and stored as a tuple)."""

    events: tuple[Event, ...]

    def __post_init__(self) -> None:
        events = self.events
        if isinstance(events, (str, bytes)) or not isinstance(events, (tuple, list)):
            raise ValueError(
                f"ComposedEvent.events must be a tuple of Events, got {type(events).__name__}"
            )
        for i, e in enumerate(events):
            if not isinstance(e, Event):
                raise ValueError(f"ComposedEvent.events[{i}] must be an Event, got {e!r}")
        object.__setattr__(self, "events", tuple(events))


@dataclasses.dataclass(frozen=True)
class DistributedDiscreteGaussianEvent(Event):
    """Distributed discrete Gaussian: each of ``num_clients`` adds ``N_Z(0, sigma²)`` per coordinate.

    Noise is added in the integer domain (after scaling and rounding) and
    summed by secure aggregation, so the aggregate noise is a sum of
    ``num_clients`` independent discrete Gaussians per coordinate. Sensitivities
    ``l2_sensitivity`` and ``l1_sensitivity`` are in those integer units;
    ``dimension`` is the number of coordinates. Kairouz, Liu, Steinke, "The
    Distributed Discrete Gaussian Mechanism for Federated Learning with
    Secure Aggregation", ICML 2021 (Theorem 1 / Prop. 14 give the RDP bound).
    """

    l2_sensitivity: float
    l1_sensitivity: float
    sigma: float
    num_clients: int
    dimension: int

    def __post_init__(self) -> None:
        _real(self, "l2_sensitivity")
        _real(self, "l1_sensitivity")
        _real(self, "sigma", positive=True)
        _integer(self, "num_clients", minimum=1)
        _integer(self, "dimension", minimum=1)


@dataclasses.dataclass(frozen=True)
class SkellamEvent(Event):
    """Skellam mechanism: the aggregate noise is Skellam with variance ``mu`` per coordinate.

    Sensitivities are in the integer domain. Agarwal, Kairouz, Liu, "The
    Skellam Mechanism for Differentially Private Federated Learning",
    NeurIPS 2021 (Theorem 3.5 gives the RDP bound).
    """

    l1_sensitivity: float
    l2_sensitivity: float
    mu: float

    def __post_init__(self) -> None:
        _real(self, "l1_sensitivity")
        _real(self, "l2_sensitivity")
        _real(self, "mu", positive=True)


# --------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------

_TYPE_KEY = "type"

#: Closed registry ``name -> class``: the only names :func:`event_from_json`
#: accepts. Written out by hand (not filled by ``__init_subclass__``) so a
#: subclass defined elsewhere can never become decodable by accident.
_REGISTRY: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        NoOpEvent,
        NonPrivateEvent,
        GaussianEvent,
        LaplaceEvent,
        PoissonSampledEvent,
        SelfComposedEvent,
        ComposedEvent,
        DistributedDiscreteGaussianEvent,
        SkellamEvent,
    )
}


def _to_obj(event: Event) -> dict[str, Any]:
    if _REGISTRY.get(type(event).__name__) is not type(event):
        raise ValueError(f"cannot serialise {type(event).__name__}: not a registered event")
    out: dict[str, Any] = {_TYPE_KEY: type(event).__name__}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if isinstance(value, Event):
            value = _to_obj(value)
        elif isinstance(value, tuple):
            value = [_to_obj(e) for e in value]
        out[f.name] = value
    return out


def to_json(event: Event) -> str:
    """Serialise ``event`` (recursively) to a JSON string.

    The format is ``{"type": "<ClassName>", <field>: <value>, ...}`` with
    nested events as nested objects. Inverse of :func:`event_from_json`.
    """
    if not isinstance(event, Event):
        raise ValueError(f"to_json expects an Event, got {type(event).__name__}")
    return json.dumps(_to_obj(event), sort_keys=True, allow_nan=False)


# Fields whose values are nested events (decoded recursively); everything
# else must be a JSON number.
_EVENT_FIELDS = {"event"}
_EVENT_TUPLE_FIELDS = {"events"}
_MAX_DEPTH = 64  # bounds recursion on hostile input


def _from_obj(obj: Any, depth: int) -> Event:
    if depth > _MAX_DEPTH:
        raise ValueError("event JSON nested too deeply")
    if not isinstance(obj, dict):
        raise ValueError(f"event JSON must be an object, got {type(obj).__name__}")
    name = obj.get(_TYPE_KEY)
    if not isinstance(name, str):
        raise ValueError(f"event JSON needs a string {_TYPE_KEY!r} field")
    cls = _REGISTRY.get(name)  # closed registry: never import by name
    if cls is None:
        raise ValueError(f"unknown event type {name!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    given = set(obj) - {_TYPE_KEY}
    if given - names:
        raise ValueError(f"unknown field(s) for {name}: {sorted(given - names)}")
    if names - given:
        raise ValueError(f"missing field(s) for {name}: {sorted(names - given)}")
    kwargs: dict[str, Any] = {}
    for key in names:
        value = obj[key]
        if key in _EVENT_FIELDS:
            value = _from_obj(value, depth + 1)
        elif key in _EVENT_TUPLE_FIELDS:
            if not isinstance(value, list):
                raise ValueError(f"{name}.{key} must be a JSON array")
            value = tuple(_from_obj(v, depth + 1) for v in value)
        kwargs[key] = value
    return cls(**kwargs)  # __post_init__ validates types and ranges


def event_from_json(s: str | bytes) -> Event:
    """Parse an event serialised by :func:`to_json`.

    Only the event classes of this module are accepted; unknown type names,
    unknown or missing fields and out-of-range values raise :class:`ValueError`.
    """
    try:
        obj = json.loads(s)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"invalid event JSON: {exc}") from exc
    return _from_obj(obj, 0)
