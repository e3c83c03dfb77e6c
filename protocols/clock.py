"""Simulated time: a virtual clock and heavy-tailed per-client delays.

Nothing here sleeps or reads a wall clock. :class:`VirtualClock` is an event
queue ordered by simulated time (ties by insertion order, so a run is
reproducible); a driver pops the next event and advances ``now`` to it.
:class:`LognormalDelays` says how long a client's work takes: the time to
download the model, train on it and upload the result, and whether it drops
out. Each draw is a pure function of ``(seed, client, task)`` — the ``task``-th
job that client does in the run — so a synchronous and an asynchronous run
that give a client its ``n``-th job see the same delay for it, whatever the
order in which the runs ask.

Delays are lognormal, the heavy-tailed model of device compute and network
times used by FedBuff's simulations (Nguyen et al., AISTATS 2022, Section 5:
"client training times ... follow a long-tail distribution") and by the
FedScale traces: a client has a persistent speed factor
``exp(N(0, client_sigma^2))`` (slow phones stay slow) and every task adds its
own jitter ``exp(N(0, task_sigma^2))``. Delays are public simulation inputs,
not secrets, so they come from numpy generators (never used for a mask or key).

How long a secure-aggregation session itself takes in simulated time is
:meth:`LognormalDelays.session_seconds`: each of the protocol's message stages
is one round trip, which lasts as long as its slowest participant's network
latency (the server waits for everyone it expects in the stage).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from secagg.randomness import DeterministicRandom, standard_normals, uniform_floats

__all__ = ["LognormalDelays", "TaskDelay", "VirtualClock"]

E = TypeVar("E")


class VirtualClock(Generic[E]):
    """A queue of events in simulated seconds; :meth:`pop` moves :attr:`now` forward.

    Events at equal times come out in the order they were scheduled. Time never
    goes backwards: scheduling before :attr:`now` is a ``ValueError``.
    """

    def __init__(self, start: float = 0.0) -> None:
        self.now = float(start)
        self._queue: list[tuple[float, int, E]] = []
        self._seq = 0

    def schedule(self, at: float, event: E) -> None:
        """Queue ``event`` to happen at simulated time ``at`` (>= :attr:`now`)."""
        at = float(at)
        if not math.isfinite(at) or at < self.now:
            raise ValueError(f"cannot schedule at {at!r}: the clock is at {self.now!r}")
        heapq.heappush(self._queue, (at, self._seq, event))
        self._seq += 1

    def after(self, seconds: float, event: E) -> None:
        """Queue ``event`` ``seconds`` (>= 0) from now."""
        self.schedule(self.now + float(seconds), event)

    def pop(self) -> tuple[float, E]:
        """The next event and its time; the clock advances to it (IndexError if empty)."""
        at, _, event = heapq.heappop(self._queue)
        self.now = at
        return at, event

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` (>= 0) pass with no event (e.g. a session's own duration)."""
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"seconds must be finite and >= 0, got {seconds!r}")
        if self._queue and self._queue[0][0] < self.now + seconds:
            raise ValueError("advancing past a queued event; pop it first")
        self.now += float(seconds)

    def peek_time(self) -> float | None:
        """When the next event happens, or None if nothing is queued."""
        return self._queue[0][0] if self._queue else None

    def __len__(self) -> int:
        return len(self._queue)


@dataclass(frozen=True)
class TaskDelay:
    """One task of one client: download, local training, upload (seconds), and whether it drops.

    A client that drops never submits: it vanishes after ``total`` seconds
    (when a synchronous server would notice it missing at the latest).
    """

    download: float
    compute: float
    upload: float
    drops: bool

    @property
    def total(self) -> float:
        return self.download + self.compute + self.upload


def _check_nonneg(value: float, name: str) -> None:
    if isinstance(value, bool) or not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class LognormalDelays:
    """Seedable heavy-tailed delays of every client (see the module docstring).

    Attributes:
        compute_median: median seconds of one local training task.
        network_median: median seconds of one transfer (download, upload, or
            one protocol round trip).
        client_sigma: log-std of the persistent per-client speed factor.
        task_sigma: log-std of each task's own jitter.
        network_sigma: log-std of each transfer.
        drop_probability: chance that a task ends with the client dropping out.
        seed: the delays are a function of ``(seed, client, task)``.
    """

    compute_median: float = 10.0
    network_median: float = 1.0
    client_sigma: float = 1.0
    task_sigma: float = 0.3
    network_sigma: float = 0.5
    drop_probability: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("compute_median", "network_median"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        for name in ("client_sigma", "task_sigma", "network_sigma"):
            _check_nonneg(getattr(self, name), name)
        if not 0.0 <= self.drop_probability < 1.0:
            raise ValueError(f"drop_probability must lie in [0, 1), got {self.drop_probability!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")

    def _stream(self, *path: int) -> DeterministicRandom:
        # Simulated delays and dropouts only (public scheduling, reproducible by design):
        # a ChaCha20 stream per (seed, path), never a numpy generator in this package.
        return DeterministicRandom("protocols.clock/" + "/".join(map(str, (self.seed, *path))))

    def speed(self, client: int) -> float:
        """The client's persistent slowness factor (median 1)."""
        return float(np.exp(self.client_sigma * standard_normals(1, self._stream(0, int(client)))[0]))

    def task(self, client: int, task: int) -> TaskDelay:
        """The ``task``-th job (from 0) of ``client``: always the same for the same arguments."""
        if task < 0 or client < 0:
            raise ValueError("client and task must be >= 0")
        z = standard_normals(3, self._stream(1, int(client), int(task)))
        u = uniform_floats(1, self._stream(2, int(client), int(task)))[0]
        net = self.network_median * np.exp(self.network_sigma * z[1:])
        compute = self.compute_median * self.speed(client) * np.exp(self.task_sigma * z[0])
        return TaskDelay(
            download=float(net[0]),
            compute=float(compute),
            upload=float(net[1]),
            drops=bool(u < self.drop_probability),
        )

    def round_trip(self, client: int, session: int, stage: int) -> float:
        """Seconds of one protocol round trip of ``client`` in stage ``stage`` of session ``session``."""
        z = standard_normals(1, self._stream(3, int(client), int(session), int(stage)))[0]
        return float(self.network_median * np.exp(self.network_sigma * z))

    def session_seconds(self, clients: Iterable[int], session: int, stages: int) -> float:
        """Simulated duration of a ``stages``-stage session over ``clients``.

        Each stage waits for its slowest participant's round trip (the
        stages run one after the other: Bonawitz et al. 2017's rounds are
        sequential).
        """
        members = sorted(int(c) for c in clients)
        if not members:
            return 0.0
        return float(
            sum(max(self.round_trip(c, session, s) for c in members) for s in range(int(stages)))
        )
