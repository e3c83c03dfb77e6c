"""secagg.privacy.events: validation, hashing, closed-registry JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg import privacy
from secagg.privacy import (
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

ALL_EVENTS = [
    NoOpEvent(),
    NonPrivateEvent(),
    GaussianEvent(1.1),
    LaplaceEvent(0.5),
    PoissonSampledEvent(0.01, GaussianEvent(1.1)),
    SelfComposedEvent(LaplaceEvent(2.0), 7),
    ComposedEvent((GaussianEvent(1.0), NoOpEvent())),
    DistributedDiscreteGaussianEvent(
        l2_sensitivity=100.0, l1_sensitivity=1000.0, sigma=20.0, num_clients=10, dimension=64
    ),
    SkellamEvent(l1_sensitivity=1000.0, l2_sensitivity=100.0, mu=4000.0),
]


@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda e: type(e).__name__)
def test_json_round_trip_every_type(event: Event) -> None:
    s = to_json(event)
    assert json.loads(s)["type"] == type(event).__name__
    back = event_from_json(s)
    assert back == event
    assert type(back) is type(event)
    assert hash(back) == hash(event)


def test_json_round_trip_nested() -> None:
    event = ComposedEvent(
        (*tuple(ALL_EVENTS), SelfComposedEvent(ComposedEvent(tuple(ALL_EVENTS)), 3))
    )
    assert event_from_json(to_json(event)) == event
    assert event_from_json(to_json(event).encode()) == event


def test_all_names_exported() -> None:
    for name in [
        "Event",
        "GaussianEvent",
        "LaplaceEvent",
        "PoissonSampledEvent",
        "SelfComposedEvent",
        "ComposedEvent",
        "NoOpEvent",
        "NonPrivateEvent",
        "DistributedDiscreteGaussianEvent",
        "SkellamEvent",
        "to_json",
        "event_from_json",
        "RDPAccountant",
        "PLDAccountant",
        "calibrate_noise_multiplier",
    ]:
        assert name in privacy.__all__
        assert getattr(privacy, name) is not None


@pytest.mark.parametrize(
    "payload",
    [
        '{"type": "os.system"}',
        '{"type": "Event"}',
        '{"type": "secagg.privacy.events.GaussianEvent", "noise_multiplier": 1}',
        '{"type": "builtins.eval"}',
        '{"type": "GaussianEvent", "noise_multiplier": 1.0, "extra": 2}',
        '{"type": "GaussianEvent"}',
        '{"noise_multiplier": 1.0}',
        '{"type": 3}',
        "[1, 2]",
        '"GaussianEvent"',
        "not json",
        '{"type": "GaussianEvent", "noise_multiplier": "1.0"}',
        '{"type": "GaussianEvent", "noise_multiplier": -1.0}',
        '{"type": "GaussianEvent", "noise_multiplier": NaN}',
        '{"type": "GaussianEvent", "noise_multiplier": Infinity}',
        '{"type": "GaussianEvent", "noise_multiplier": true}',
        '{"type": "SelfComposedEvent", "event": {"type": "NoOpEvent"}, "count": 2.5}',
        '{"type": "SelfComposedEvent", "event": {"type": "NoOpEvent"}, "count": -1}',
        '{"type": "PoissonSampledEvent", "sampling_probability": 1.5, "event": {"type": "NoOpEvent"}}',
        '{"type": "PoissonSampledEvent", "sampling_probability": 0.5, "event": {"type": "Nope"}}',
        '{"type": "PoissonSampledEvent", "sampling_probability": 0.5, "event": 1}',
        '{"type": "ComposedEvent", "events": {"type": "NoOpEvent"}}',
        '{"type": "ComposedEvent", "events": [{"type": "NoOpEvent"}, {"type": "X"}]}',
    ],
)
def test_event_from_json_rejects(payload: str) -> None:
    with pytest.raises(ValueError):
        event_from_json(payload)


def test_event_from_json_bounds_nesting() -> None:
    s = '{"type": "NoOpEvent"}'
    for _ in range(200):
        s = '{"type": "SelfComposedEvent", "count": 1, "event": ' + s + "}"
    with pytest.raises(ValueError, match="deeply"):
        event_from_json(s)


def test_to_json_rejects_foreign_subclass() -> None:
    class Foreign(GaussianEvent):
        pass

    with pytest.raises(ValueError):
        to_json(Foreign(1.0))
    with pytest.raises(ValueError):
        to_json("GaussianEvent")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("factory", "field"),
    [
        (lambda: GaussianEvent(-1.0), "noise_multiplier"),
        (lambda: GaussianEvent(math.nan), "noise_multiplier"),
        (lambda: GaussianEvent(math.inf), "noise_multiplier"),
        (lambda: GaussianEvent("1"), "noise_multiplier"),
        (lambda: GaussianEvent(True), "noise_multiplier"),
        (lambda: LaplaceEvent(-0.1), "noise_multiplier"),
        (lambda: PoissonSampledEvent(-0.1, GaussianEvent(1.0)), "sampling_probability"),
        (lambda: PoissonSampledEvent(1.1, GaussianEvent(1.0)), "sampling_probability"),
        (lambda: PoissonSampledEvent(0.5, 1.0), "event"),
        (lambda: SelfComposedEvent(GaussianEvent(1.0), -1), "count"),
        (lambda: SelfComposedEvent(GaussianEvent(1.0), 2.0), "count"),
        (lambda: SelfComposedEvent(GaussianEvent(1.0), True), "count"),
        (lambda: SelfComposedEvent("x", 2), "event"),
        (lambda: ComposedEvent((GaussianEvent(1.0), "x")), "events"),
        (lambda: ComposedEvent("abc"), "events"),
        (lambda: DistributedDiscreteGaussianEvent(-1.0, 1.0, 1.0, 2, 3), "l2_sensitivity"),
        (lambda: DistributedDiscreteGaussianEvent(1.0, -1.0, 1.0, 2, 3), "l1_sensitivity"),
        (lambda: DistributedDiscreteGaussianEvent(1.0, 1.0, 0.0, 2, 3), "sigma"),
        (lambda: DistributedDiscreteGaussianEvent(1.0, 1.0, 1.0, 0, 3), "num_clients"),
        (lambda: DistributedDiscreteGaussianEvent(1.0, 1.0, 1.0, 2, 0), "dimension"),
        (lambda: DistributedDiscreteGaussianEvent(1.0, 1.0, 1.0, 2.5, 3), "num_clients"),
        (lambda: SkellamEvent(-1.0, 1.0, 1.0), "l1_sensitivity"),
        (lambda: SkellamEvent(1.0, -1.0, 1.0), "l2_sensitivity"),
        (lambda: SkellamEvent(1.0, 1.0, 0.0), "mu"),
    ],
)
def test_validation_names_the_field(factory, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        factory()


def test_events_are_frozen_normalised_and_hashable() -> None:
    e = GaussianEvent(np.float32(1.5))
    assert type(e.noise_multiplier) is float
    with pytest.raises(AttributeError):
        e.noise_multiplier = 2.0  # type: ignore[misc]
    c = ComposedEvent([GaussianEvent(1.0), LaplaceEvent(1)])
    assert isinstance(c.events, tuple)
    assert c == ComposedEvent((GaussianEvent(1.0), LaplaceEvent(1.0)))
    assert len({c, ComposedEvent((GaussianEvent(1.0), LaplaceEvent(1.0)))}) == 1
    s = SelfComposedEvent(NoOpEvent(), np.int64(3))
    assert type(s.count) is int


_leaf = st.one_of(
    st.just(NoOpEvent()),
    st.just(NonPrivateEvent()),
    st.floats(0, 100, allow_nan=False).map(GaussianEvent),
    st.floats(0, 100, allow_nan=False).map(LaplaceEvent),
    st.builds(
        DistributedDiscreteGaussianEvent,
        st.floats(0, 1e6),
        st.floats(0, 1e6),
        st.floats(0.5, 1e3),
        st.integers(1, 10_000),
        st.integers(1, 10**7),
    ),
    st.builds(SkellamEvent, st.floats(0, 1e6), st.floats(0, 1e6), st.floats(1e-3, 1e9)),
)
_events = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.builds(PoissonSampledEvent, st.floats(0, 1), inner),
        st.builds(SelfComposedEvent, inner, st.integers(0, 10**9)),
        st.lists(inner, max_size=4).map(lambda xs: ComposedEvent(tuple(xs))),
    ),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(_events)
def test_json_round_trip_property(event: Event) -> None:
    assert event_from_json(to_json(event)) == event
