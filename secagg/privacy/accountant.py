"""Common base of the privacy accountants and the event normal form they share.

An accountant (dp_accounting's ``PrivacyAccountant``) receives events through
:meth:`PrivacyAccountant.compose` and answers :meth:`~PrivacyAccountant.get_epsilon`
and :meth:`~PrivacyAccountant.get_delta`. Both accountants here first rewrite an
event tree into a multiset of *leaves* (one primitive mechanism, possibly
Poisson-subsampled, with a repetition count), so composition order never
changes the answer and ``compose(e, count=2)`` is exactly ``compose(e); compose(e)``.

Adjacency is add/remove-one-record throughout (dp_accounting's
``ADD_OR_REMOVE_ONE``), the setting of DP-SGD / DP-FedAvg with Poisson sampling.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import numbers
from collections.abc import Iterator
from typing import TypeVar

from secagg.errors import SecaggError
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
)

__all__ = ["PrivacyAccountant", "UnsupportedEventError"]


class UnsupportedEventError(SecaggError, NotImplementedError):
    """The accountant cannot (soundly) account for this event.

    Raised by :meth:`PrivacyAccountant.compose` before any state changes, so
    the accountant stays usable.
    """


# ---------------------------------------------------------------------------
# Leaves: the normal form of an event tree.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, order=True)
class _SampledGaussian:
    """Gaussian with noise multiplier ``sigma > 0`` on a Poisson sample of rate ``q`` (q=1: none)."""

    q: float
    sigma: float


@dataclasses.dataclass(frozen=True, order=True)
class _SampledLaplace:
    """Laplace with noise multiplier ``b > 0`` on a Poisson sample of rate ``q``."""

    q: float
    b: float


@dataclasses.dataclass(frozen=True, order=True)
class _SampledNonPrivate:
    """A non-private release on a Poisson sample of rate ``q`` (q=1: plain non-private)."""

    q: float


@dataclasses.dataclass(frozen=True)
class _Discrete:
    """A distributed discrete Gaussian or Skellam event on a Poisson sample of rate ``q``."""

    event: DistributedDiscreteGaussianEvent | SkellamEvent
    q: float = 1.0


@dataclasses.dataclass(frozen=True)
class _Unsupported:
    """A sub-event no accountant here can handle soundly, with the reason."""

    event: Event
    reason: str


_Leaf = _SampledGaussian | _SampledLaplace | _SampledNonPrivate | _Discrete | _Unsupported


def _effective_gaussian(event: Event) -> float | None:
    """Noise multiplier of the single Gaussian equivalent to ``event``, or None.

    A composition of Gaussian queries on the same data is exactly a single
    Gaussian query with ``sigma_eff = (sum sigma_i^-2)^(-1/2)`` (Mironov,
    Talwar, Zhang 2019, Sec. 3; dp_accounting's
    ``_effective_gaussian_noise_multiplier``). Returns ``math.inf`` for a tree
    with no Gaussian at all (only NoOps), ``0.0`` if a zero-noise Gaussian or a
    non-private event is inside, and ``None`` if anything else is inside.
    """
    if isinstance(event, NoOpEvent):
        return math.inf
    if isinstance(event, NonPrivateEvent):
        return 0.0
    if isinstance(event, GaussianEvent):
        return event.noise_multiplier
    if isinstance(event, SelfComposedEvent):
        s = _effective_gaussian(event.event)
        if s is None:
            return None
        if event.count == 0 or s == math.inf:
            return math.inf
        return s / math.sqrt(event.count) if s > 0 else 0.0
    if isinstance(event, ComposedEvent):
        inv_sq = 0.0
        for e in event.events:
            s = _effective_gaussian(e)
            if s is None:
                return None
            if s == 0:
                inv_sq = math.inf
            elif s < math.inf:
                inv_sq += s**-2
        if inv_sq == 0:
            return math.inf
        return 0.0 if inv_sq == math.inf else inv_sq**-0.5
    return None


def _leaves(event: Event, count: int, q: float = 1.0) -> Iterator[tuple[_Leaf, int]]:
    """Yield ``(leaf, count)`` pairs whose composition is exactly ``event`` x ``count``."""
    if count == 0 or q == 0:
        return
    if isinstance(event, NoOpEvent):
        return
    if isinstance(event, NonPrivateEvent):
        yield _SampledNonPrivate(q), count
    elif isinstance(event, GaussianEvent):
        s = event.noise_multiplier
        yield (_SampledGaussian(q, s) if s > 0 else _SampledNonPrivate(q)), count
    elif isinstance(event, LaplaceEvent):
        b = event.noise_multiplier
        yield (_SampledLaplace(q, b) if b > 0 else _SampledNonPrivate(q)), count
    elif isinstance(event, PoissonSampledEvent):
        # Poisson sampling at rate q2 of a Poisson sample at rate q is a
        # Poisson sample at rate q*q2: each record is kept independently.
        yield from _leaves(event.event, count, q * event.sampling_probability)
    elif isinstance(event, (SelfComposedEvent, ComposedEvent)):
        if q == 1.0:
            if isinstance(event, SelfComposedEvent):
                yield from _leaves(event.event, count * event.count)
            else:
                for e in event.events:
                    yield from _leaves(e, count)
            return
        # One Poisson sample shared by several mechanisms: only a Gaussian
        # composition has a known exact reduction (to one Gaussian).
        sigma_eff = _effective_gaussian(event)
        if sigma_eff is None:
            yield (
                _Unsupported(
                    event,
                    "a Poisson-sampled composition is only supported when every "
                    "sub-event is Gaussian (it then reduces to one Gaussian)",
                ),
                count,
            )
        elif sigma_eff == 0:
            yield _SampledNonPrivate(q), count
        elif sigma_eff < math.inf:
            yield _SampledGaussian(q, sigma_eff), count
    elif isinstance(event, (DistributedDiscreteGaussianEvent, SkellamEvent)):
        yield _Discrete(event, q), count
    else:
        yield _Unsupported(event, f"unknown event type {type(event).__name__}"), count


def _validate_count(count: object) -> int:
    if isinstance(count, bool) or not isinstance(count, numbers.Integral):
        raise ValueError(f"count must be a non-negative integer, got {count!r}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count!r}")
    return int(count)


def _validate_delta(delta: object) -> float:
    if isinstance(delta, bool) or not isinstance(delta, numbers.Real):
        raise ValueError(f"delta must be a real number in [0, 1], got {delta!r}")
    d = float(delta)
    if not 0.0 <= d <= 1.0:  # also rejects NaN
        raise ValueError(f"delta must be in [0, 1], got {delta!r}")
    return d


def _validate_epsilon(epsilon: object) -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real):
        raise ValueError(f"epsilon must be a non-negative real number, got {epsilon!r}")
    e = float(epsilon)
    if not e >= 0.0:  # also rejects NaN; +inf is allowed (delta is then 0)
        raise ValueError(f"epsilon must be >= 0, got {epsilon!r}")
    return e


_A = TypeVar("_A", bound="PrivacyAccountant")


class PrivacyAccountant(abc.ABC):
    """Base class: compose :class:`~secagg.privacy.Event` s, query (ε, δ).

    Mirrors dp_accounting's ``PrivacyAccountant`` (``compose`` returns the
    accountant, so calls chain). Composition is order-independent: state is a
    multiset of leaf mechanisms with counts, summed in a canonical order.
    Neighbouring relation: add/remove one record.
    """

    def __init__(self) -> None:
        self._counts: dict[_Leaf, int] = {}
        self._ledger: list[Event] = []

    # -- subclass hooks -------------------------------------------------------
    @abc.abstractmethod
    def _check_leaf(self, leaf: _Leaf) -> str | None:
        """Return None if ``leaf`` is supported, else the reason it is not."""

    def _state_changed(self) -> None:
        """Called after every successful compose (invalidate caches)."""

    # -- public API -------------------------------------------------------------
    def supports(self, event: Event) -> bool:
        """True if :meth:`compose` would accept ``event``."""
        if not isinstance(event, Event):
            return False
        return all(self._check_leaf(leaf) is None for leaf, _ in _leaves(event, 1))

    def compose(self: _A, event: Event, count: int = 1) -> _A:
        """Compose ``event`` ``count`` times (adaptive composition); return ``self``.

        Raises :class:`ValueError` for a non-event or a bad count and
        :class:`UnsupportedEventError` for an event this accountant cannot
        bound; in both cases nothing is composed.
        """
        if not isinstance(event, Event):
            raise ValueError(f"compose expects an Event, got {type(event).__name__}")
        count = _validate_count(count)
        pending: list[tuple[_Leaf, int]] = []
        for leaf, c in _leaves(event, count):
            reason = leaf.reason if isinstance(leaf, _Unsupported) else self._check_leaf(leaf)
            if reason is not None:
                raise UnsupportedEventError(
                    f"{type(self).__name__} cannot account for {event!r}: {reason}"
                )
            pending.append((leaf, c))
        for leaf, c in pending:
            self._counts[leaf] = self._counts.get(leaf, 0) + c
        if count:
            self._ledger.append(event if count == 1 else SelfComposedEvent(event, count))
        self._state_changed()
        return self

    @property
    def ledger(self) -> ComposedEvent:
        """Everything composed so far, as one event (serialisable with ``to_json``)."""
        return ComposedEvent(tuple(self._ledger))

    @abc.abstractmethod
    def get_epsilon(self, delta: float) -> float:
        """Smallest ε (≥ 0) this accountant certifies for ``delta``; ``inf`` if none."""

    @abc.abstractmethod
    def get_delta(self, epsilon: float) -> float:
        """Smallest δ this accountant certifies for ``epsilon``."""

    def _pure_epsilon(self) -> float:
        """ε of pure (ε, 0)-DP if everything composed is (sampled) Laplace, else inf.

        Basic composition of pure DP (Dwork, McSherry, Nissim, Smith 2006)
        with amplification by Poisson sampling, log(1 + q(e^{1/b} - 1)) per
        step (Balle, Barthe, Gaboardi, NeurIPS 2018). Accountants take the
        minimum with their own answer: RDP conversion, and the PLD's
        round-off allowances, do not always recover it at tiny δ.
        """
        total = 0.0
        for leaf, c in self._counts.items():
            if c == 0:
                continue
            if not isinstance(leaf, _SampledLaplace):
                return math.inf
            total += (
                c / leaf.b if leaf.q == 1.0 else c * math.log1p(leaf.q * math.expm1(1.0 / leaf.b))
            )
        return total

    def _sorted_leaves(self) -> list[tuple[_Leaf, int]]:
        # Canonical order (type name, then fields) so sums do not depend on
        # the order events were composed in.
        return sorted(
            ((leaf, c) for leaf, c in self._counts.items() if c),
            key=lambda lc: (type(lc[0]).__name__, repr(lc[0])),
        )
