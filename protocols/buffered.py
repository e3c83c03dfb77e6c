"""Buffered asynchronous aggregation (FedBuff) with one secure-aggregation session per buffer.

FedBuff (Nguyen et al., "Federated Learning with Buffered Asynchronous
Aggregation", AISTATS 2022, Algorithm 1): clients download the current model
whenever they are ready, train, and submit; the server collects ``K`` updates
in a buffer and applies their aggregate, each update scaled by a staleness
weight. FedBuff kept the buffer in a trusted execution environment; here each
buffer is one session of an ordinary aggregation protocol from the registry
(plaintext, SecAgg, SecAgg+, Paillier, any of them under
:class:`~protocols.DifferentiallyPrivate`), run through
:func:`protocols.simulate` — the approach of So et al.'s buffered
asynchronous secure aggregation (2021) and LightSecAgg (MLSys 2022), which
show that a buffer's sum can be computed by an ordinary secure-aggregation
round over the clients in it.

The rules, each in one place:

- **Staleness weight** (:func:`staleness_weight`): ``w(τ) = 1/sqrt(1 + τ)``,
  FedBuff's polynomial rule (Section 3, "staleness scaling", following Xie et
  al. 2019). ``τ`` counts the buffers closed between the version the client
  trained on and the version its buffer is applied to.
- **Versions**: buffer ``b`` (numbered from 0 in closing order) produces
  model version ``b + 1`` from version ``b``. The server reports ``b`` to the
  buffer's clients when it closes the buffer; an aborted buffer produces a
  version equal to the previous one.
- **Who joins which session** (:class:`BufferedServer`): a client checking
  in (downloading) becomes a member of the open buffer, which takes the next
  ``K + slack`` distinct clients to check in (a member that drops frees its
  slot); after that check-ins go to the next buffer. A buffer closes as soon
  as it holds ``K`` updates.
- **Late and dropped clients**: a member that submits after its buffer
  closed is *moved*, update unchanged, to the oldest buffer still open that
  does not already hold that client (opening one if needed); its staleness
  is computed afresh when that buffer closes. A client that drops while
  training submits nothing. A client whose staleness exceeds ``max_staleness``
  when its buffer closes refuses to contribute: its update is *discarded*
  (recorded, never silently). A client that drops inside the session, and
  every client of a session that aborts, is recorded as *lost*.
- **Who weights**: the client (:func:`client_contribution`) multiplies its
  update by ``w(τ)`` *before* the protocol encodes and masks it, because the
  server only ever sees the sum. The server controls τ through the version it
  reports, so the client bounds it: a reported version older than the
  client's base, or one making ``τ > max_staleness`` (a weight outside
  ``[w(max_staleness), 1]``), is refused with :class:`StaleVersionError`.
  A server can still lower any client's weight down to ``w(max_staleness)``
  by reporting a later version; it cannot raise it above 1 or scale an update
  by anything the client did not agree to.
- **DP** (:class:`ContributionAccountant`): each buffer release is one event
  (its protocol's). Participation is not Poisson sampling (who is in a buffer
  follows arrival times), so no amplification is claimed; instead each client
  is capped at ``max_contributions`` tasks and a client's ε is the
  composition of the events of the buffers that hold its updates.

:class:`AsyncDriver` moves it all in simulated time (:mod:`protocols.clock`):
``concurrency`` clients train at once, each task's delays come from
:class:`~protocols.clock.LognormalDelays`, and each closed buffer's session
takes :meth:`~protocols.clock.LognormalDelays.session_seconds`. The model is
the caller's: the driver calls ``train(tickets)`` to get updates from the
current model and ``apply(release)`` to apply a finished buffer.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from secagg import privacy
from secagg.randomness import DeterministicRandom, random_below, uniform_floats

from .base import AggregationProtocol
from .clock import LognormalDelays, VirtualClock
from .errors import LocalProtocolError, ProtocolAborted, RemoteProtocolError
from .simulate import SimulationResult, simulate

__all__ = [
    "AsyncDriver",
    "Buffer",
    "BufferRelease",
    "BufferedServer",
    "ContributionAccountant",
    "StaleVersionError",
    "Ticket",
    "client_contribution",
    "staleness_weight",
]


def staleness_weight(tau: int) -> float:
    """FedBuff's staleness weight ``1 / sqrt(1 + τ)`` (Nguyen et al. 2022, Section 3)."""
    if isinstance(tau, bool) or not isinstance(tau, (int, np.integer)) or tau < 0:
        raise ValueError(f"staleness must be an int >= 0, got {tau!r}")
    return 1.0 / math.sqrt(1.0 + int(tau))


class StaleVersionError(RemoteProtocolError):
    """The server reported a version the client refuses (older than its base, or too stale)."""


def client_contribution(
    update: np.ndarray,
    base_version: int,
    reported_version: int,
    max_staleness: int,
    scaled: slice = slice(None),
) -> np.ndarray:
    """What a client hands to the buffer's protocol: its update times ``w(τ)``.

    ``τ = reported_version - base_version``; the client refuses (raises
    :class:`StaleVersionError`) a reported version below its base or with
    ``τ > max_staleness``. ``scaled`` selects the coordinates the weight
    multiplies (e.g. a model delta but not a per-item count block that
    normalises it); the rest is sent as is. Runs on the client, before the
    protocol's encoding and masking.
    """
    tau = int(reported_version) - int(base_version)
    if tau < 0:
        raise StaleVersionError(
            f"reported version {reported_version} is older than the trained-on version {base_version}"
        )
    if tau > max_staleness:
        raise StaleVersionError(f"staleness {tau} exceeds max_staleness={max_staleness}")
    out = np.array(update, dtype=np.float64, copy=True)
    out[scaled] *= staleness_weight(tau)
    return out


@dataclass(frozen=True)
class Ticket:
    """One task: ``client`` trained on model ``base_version`` (``id`` unique in the run)."""

    id: int
    client: int
    base_version: int


@dataclass
class Buffer:
    """One buffer and its session: members checked in, tickets submitted into it."""

    index: int  # creation order (not the version; see BufferedServer)
    members: set[int] = field(default_factory=set)  # ticket ids assigned at check-in
    clients: set[int] = field(default_factory=set)  # clients holding a slot (members or moved in)
    submitted: list[Ticket] = field(default_factory=list)
    resolved: set[int] = field(default_factory=set)  # member tickets that submitted or dropped
    dropped: set[int] = field(default_factory=set)  # member tickets whose client left (slot freed)
    version: int | None = None  # the version reported when it closed

    @property
    def closed(self) -> bool:
        return self.version is not None


class BufferedServer:
    """The buffer bookkeeping of the module docstring (no clock, no model, no protocol).

    Every ticket ends in exactly one of :attr:`fate`'s states: ``"applied"``
    (in a buffer's total), ``"dropped"`` (the client left while training),
    ``"discarded"`` (refused its staleness), ``"lost"`` (dropped in the
    session, or the session aborted); tickets without a fate are still out.
    A client holds one ticket at a time, from check-in until the buffer its
    update is in closes (or it drops): a fast client cannot run ahead on one
    model version, opening a buffer per task while slower ones train.
    """

    def __init__(self, buffer_size: int, *, slack: int = 0, max_staleness: int = 8) -> None:
        for name, value, lo in (("buffer_size", buffer_size, 1), ("slack", slack, 0),
                                ("max_staleness", max_staleness, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
        self.buffer_size, self.slack, self.max_staleness = buffer_size, slack, max_staleness
        self.buffers: list[Buffer] = []
        self.closed_count = 0  # buffers closed so far = the version the next one reports
        self.applied_version = 0  # the version clients download
        self.tickets: dict[int, Ticket] = {}
        self.home: dict[int, int] = {}  # ticket id -> index of the buffer it is in
        self.fate: dict[int, str] = {}
        self._busy: set[int] = set()

    # -- client events ---------------------------------------------------------
    def check_in(self, client: int) -> Ticket:
        """``client`` downloads the applied version and joins the open buffer's session."""
        client = int(client)
        if client in self._busy:
            raise LocalProtocolError(f"client {client} already holds a task")
        ticket = Ticket(len(self.tickets), client, self.applied_version)
        buf = self._open_for(client, members=True)
        buf.members.add(ticket.id)
        buf.clients.add(client)
        self.tickets[ticket.id] = ticket
        self.home[ticket.id] = buf.index
        self._busy.add(client)
        return ticket

    def submit(self, ticket_id: int) -> Buffer | None:
        """The ticket's update arrived; return the buffer that must close now, if any."""
        ticket = self._outstanding(ticket_id)
        home = self.buffers[self.home[ticket.id]]
        home.resolved.add(ticket.id)
        if home.closed or len(home.submitted) >= self.buffer_size:
            # Late (its buffer closed, or is full and due to close): moved, update unchanged,
            # into the oldest open buffer without this client. A buffer never holds more than K.
            home = self._open_for(ticket.client, members=False)
            home.clients.add(ticket.client)
            self.home[ticket.id] = home.index
        home.submitted.append(ticket)
        return self._due(home)

    def drop(self, ticket_id: int) -> None:
        """The ticket's client left while training (its slot in an open buffer is freed)."""
        ticket = self._outstanding(ticket_id)
        self._busy.discard(ticket.client)
        self.fate[ticket.id] = "dropped"
        home = self.buffers[self.home[ticket.id]]
        home.resolved.add(ticket.id)
        if not home.closed:
            home.dropped.add(ticket.id)
            home.clients.discard(ticket.client)
        return None

    # -- buffer events ---------------------------------------------------------
    def close(self, buf: Buffer) -> int:
        """Close ``buf``: it takes no more tickets; return the version it reports."""
        if buf.closed:
            raise LocalProtocolError(f"buffer {buf.index} is already closed")
        if not buf.submitted:
            raise LocalProtocolError(f"buffer {buf.index} holds no update")
        buf.version = self.closed_count
        self.closed_count += 1
        self._busy.difference_update(t.client for t in buf.submitted)  # free for the next version
        return buf.version

    def available(self, client: int) -> bool:
        """Whether ``client`` may check in (it holds no ticket: see the class docstring)."""
        return int(client) not in self._busy

    def settle(self, buf: Buffer, fates: dict[int, str]) -> None:
        """Record the fate of every ticket submitted into the closed ``buf``."""
        if not buf.closed:
            raise LocalProtocolError("settle a buffer after closing it")
        if set(fates) != {t.id for t in buf.submitted}:
            raise LocalProtocolError("settle needs a fate for exactly the buffer's tickets")
        for tid, what in fates.items():
            if what not in ("applied", "discarded", "lost"):
                raise ValueError(f"unknown fate {what!r}")
            if tid in self.fate:
                raise LocalProtocolError(f"ticket {tid} already has a fate ({self.fate[tid]})")
            self.fate[tid] = what

    def applied(self, buf: Buffer) -> None:
        """``buf``'s version is now what clients download (buffers apply in closing order)."""
        assert buf.version is not None
        if buf.version != self.applied_version:
            raise LocalProtocolError(
                f"buffer of version {buf.version} applied out of order (at {self.applied_version})"
            )
        self.applied_version = buf.version + 1

    # -- helpers ---------------------------------------------------------------
    def _outstanding(self, ticket_id: int) -> Ticket:
        ticket = self.tickets.get(int(ticket_id))
        if ticket is None:
            raise LocalProtocolError(f"unknown ticket {ticket_id!r}")
        home = self.buffers[self.home[ticket.id]]
        if ticket.id in self.fate or ticket.id in home.resolved or ticket in home.submitted:
            raise LocalProtocolError(f"ticket {ticket.id} was already submitted or dropped")
        return ticket

    def _open_for(self, client: int, *, members: bool) -> Buffer:
        cap = self.buffer_size + self.slack
        for buf in self.buffers:
            if buf.closed or client in buf.clients or len(buf.submitted) >= self.buffer_size:
                continue
            if members and len(buf.members) - len(buf.dropped) >= cap:
                continue
            return buf
        buf = Buffer(len(self.buffers))
        self.buffers.append(buf)
        return buf

    def _due(self, buf: Buffer) -> Buffer | None:
        return buf if not buf.closed and len(buf.submitted) >= self.buffer_size else None

    def open_tickets(self) -> list[int]:
        """Tickets submitted into buffers that are not closed yet (pending at the end of a run)."""
        return [t.id for b in self.buffers if not b.closed for t in b.submitted]


@dataclass(frozen=True)
class BufferRelease:
    """One closed buffer and what its session released.

    ``contributors`` are the tickets whose weighted updates are in ``total``;
    ``staleness``/``weights`` are theirs, in the same order. ``discarded``
    refused their staleness, ``lost`` dropped in the session or were in an
    aborted one. Times are simulated seconds.
    """

    buffer: int
    version: int
    contributors: tuple[Ticket, ...]
    staleness: tuple[int, ...]
    weights: tuple[float, ...]
    discarded: tuple[Ticket, ...]
    lost: tuple[Ticket, ...]
    closed_at: float
    applied_at: float
    result: SimulationResult | None
    error: str | None = None

    @property
    def total(self) -> np.ndarray | None:
        return None if self.result is None else self.result.total


class ContributionAccountant:
    """User-level ε of buffered releases: per client, the composition of its buffers' events.

    No amplification by sampling is claimed (who lands in a buffer follows
    arrival times, not Poisson sampling). A client's loss comes only from the
    buffers that hold its updates; the others depend on it only through
    earlier releases (post-processing), provided participation does not
    depend on the data (it follows the simulated delays). The neighbouring
    relation is *zero-out*: one client's updates replaced by zeros, its slots
    kept (Kairouz et al., ICML 2021, Section 2), which is the per-release
    sensitivity the DP wrapper clips to. ε is the maximum over clients;
    clients with equal event lists share one composition.
    """

    def __init__(self, kind: str = "pld") -> None:
        if kind not in ("pld", "rdp"):
            raise ValueError(f"accountant must be 'pld' or 'rdp', got {kind!r}")
        self.kind = kind
        self.events: dict[int, list[privacy.Event]] = {}
        self._cache: dict[tuple[str, ...], float] = {}

    def record(self, clients: Iterable[int], events: Sequence[privacy.Event]) -> None:
        """A release whose sum holds ``clients``' updates caused ``events``."""
        for c in clients:
            self.events.setdefault(int(c), []).extend(events)

    def contributions(self) -> int:
        """The most releases any one client is in."""
        return max((len(v) for v in self.events.values()), default=0)

    def epsilon(self, delta: float) -> float:
        """max over clients of ε(δ) of that client's events (0 before any release)."""
        best = 0.0
        for evs in self.events.values():
            key = tuple(sorted(privacy.to_json(e) for e in evs))
            if key not in self._cache:
                acct = privacy.PLDAccountant() if self.kind == "pld" else privacy.RDPAccountant()
                for e in evs:
                    acct.compose(e)
                self._cache[key] = float(acct.get_epsilon(delta))
            best = max(best, self._cache[key])
        return best


class AsyncDriver:
    """FedBuff in simulated time over a caller's model (see the module docstring).

    Args:
        server: the buffer bookkeeping.
        clients: who may check in (sampled uniformly from the idle ones).
        delays: every task's delays and dropouts, and each session's duration.
        concurrency: clients training at once (``C``).
        protocol: buffer size -> the protocol of a buffer with that many
            clients (so DP noise and SecAgg thresholds fit each session).
        train: tickets -> their updates, trained from the currently applied
            model (the driver calls it before the model changes).
        apply: called with each release in version order, at its ``applied_at``.
        scaled: the coordinates the staleness weight multiplies.
        session_dropout: fraction of a buffer's clients that drop at the
            protocol's input stage (a simulation knob).
        max_tasks: per-client cap on tasks (None: no cap).
        seed: check-in sampling and session dropouts; also the sessions'
            seed (``protocols.simulate``, FOR SIMULATIONS ONLY) unless
            ``protocol_seed`` is None, which uses the OS CSPRNG.
    """

    def __init__(
        self,
        server: BufferedServer,
        clients: Sequence[int],
        delays: LognormalDelays,
        *,
        concurrency: int,
        protocol: Callable[[int], AggregationProtocol],
        train: Callable[[list[Ticket]], dict[int, np.ndarray]],
        apply: Callable[[BufferRelease], None],
        scaled: slice = slice(None),
        session_dropout: float = 0.0,
        max_tasks: int | None = None,
        seed: int = 0,
        protocol_seed: int | None = None,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive int, got {concurrency!r}")
        if not 0.0 <= session_dropout < 1.0:
            raise ValueError(f"session_dropout must lie in [0, 1), got {session_dropout!r}")
        self.server, self.delays, self.concurrency = server, delays, concurrency
        self.clients = np.array(sorted({int(c) for c in clients}), dtype=np.int64)
        if not len(self.clients):
            raise ValueError("no clients")
        if len(self.clients) < server.buffer_size:
            # Each client holds one update per buffer: fewer clients never fill one.
            raise ValueError(
                f"{len(self.clients)} clients cannot fill a buffer of {server.buffer_size}"
            )
        self._protocol, self._train, self._apply = protocol, train, apply
        self.scaled, self.session_dropout, self.max_tasks = scaled, session_dropout, max_tasks
        self.protocol_seed = protocol_seed
        # Scheduling only (which idle client checks in next, who drops in a session's
        # simulation): never a key, share or mask. Sessions draw theirs from the OS CSPRNG
        # (simulate(seed=None)) unless protocol_seed asks for reproducible tests.
        self._rng = DeterministicRandom(f"protocols.buffered/{seed}")
        self.clock: VirtualClock[tuple[str, int]] = VirtualClock()
        self.tasks: Counter[int] = Counter()  # tasks started per client
        self.updates: dict[int, np.ndarray] = {}  # ticket id -> trained update
        self._untrained: list[Ticket] = []
        self._running: set[int] = set()  # clients training now
        self._last_apply = 0.0
        self.releases: list[BufferRelease] = []
        self._pending: dict[int, BufferRelease] = {}  # buffer index -> release awaiting apply
        self._started = False

    # -- the loop --------------------------------------------------------------
    def run(self, buffers: int) -> list[BufferRelease]:
        """Advance until ``buffers`` more buffers were applied (or nothing can happen)."""
        goal = len(self.releases) + int(buffers)
        if not self._started:
            self._started = True
            self._refill()
        while len(self.releases) < goal and len(self.clock):
            _, (kind, key) = self.clock.pop()
            if kind == "arrive":
                self._running.discard(self.server.tickets[key].client)
                self._closed(self.server.submit(key))
                self._refill()
            elif kind == "drop":
                self._running.discard(self.server.tickets[key].client)
                self.server.drop(key)
                self._refill()
            else:  # "apply"
                self._finish(key)
        return self.releases[goal - int(buffers):]

    def _refill(self) -> None:
        while len(self._running) < self.concurrency:
            idle = [
                c for c in self.clients
                if self.server.available(int(c))
                and (self.max_tasks is None or self.tasks[int(c)] < self.max_tasks)
            ]
            if not idle:
                return
            client = int(idle[random_below(len(idle), self._rng)])
            ticket = self.server.check_in(client)
            delay = self.delays.task(client, self.tasks[client])
            self.tasks[client] += 1
            self._running.add(client)
            self._untrained.append(ticket)
            self.clock.after(delay.total, ("drop" if delay.drops else "arrive", ticket.id))

    def _flush_training(self) -> None:
        if self._untrained:
            batch, self._untrained = self._untrained, []
            got = self._train(batch)
            if set(got) != {t.id for t in batch}:
                raise LocalProtocolError("train must return one update per ticket")
            self.updates.update(got)

    def _closed(self, buf: Buffer | None) -> None:
        if buf is None:
            return
        self._flush_training()
        version = self.server.close(buf)
        fates: dict[int, str] = {}
        inputs: dict[int, np.ndarray] = {}
        kept: list[tuple[Ticket, int]] = []
        discarded: list[Ticket] = []
        for t in buf.submitted:
            update = self.updates.pop(t.id)
            try:
                inputs[t.client] = client_contribution(
                    update, t.base_version, version, self.server.max_staleness, self.scaled
                )
            except StaleVersionError:
                discarded.append(t)
                fates[t.id] = "discarded"
                continue
            kept.append((t, version - t.base_version))
        now = self.clock.now
        result: SimulationResult | None = None
        error: str | None = None
        lost: list[Ticket] = []
        duration = 0.0
        proto = self._protocol(max(len(kept), 1))
        # Too few left for the protocol's own minimum cohort (SecAgg refuses fewer than
        # min_clients): no session, the updates are lost.
        minimum = proto.minimum_cohort
        if kept and len(kept) < minimum:
            error = f"{len(kept)} updates, the protocol needs at least {minimum}"
        elif kept:
            n_drop = round(self.session_dropout * len(kept))
            # A uniform n_drop-subset: the ranks of i.i.d. uniform keys.
            order = np.argsort(uniform_floats(len(kept), self._rng), kind="stable")[:n_drop]
            dropout = {kept[int(i)][0].client: proto.INPUT_STAGE for i in order}
            seed = None if self.protocol_seed is None else self.protocol_seed * 1_000_003 + version
            duration = self.delays.session_seconds(inputs, buf.index, proto.round_trips)
            try:
                result = simulate(proto, inputs, dropout=dropout, seed=seed, round=version)
            except ProtocolAborted as exc:
                error = str(exc)
        survivors = set(result.survivors) if result is not None else set()
        contributors = [(t, tau) for t, tau in kept if t.client in survivors]
        for t, _ in kept:
            if t.client in survivors:
                fates[t.id] = "applied"
            else:
                fates[t.id] = "lost"
                lost.append(t)
        self.server.settle(buf, fates)
        applied_at = max(now + duration, self._last_apply)
        self._last_apply = applied_at
        release = BufferRelease(
            buffer=buf.index,
            version=version,
            contributors=tuple(t for t, _ in contributors),
            staleness=tuple(tau for _, tau in contributors),
            weights=tuple(staleness_weight(tau) for _, tau in contributors),
            discarded=tuple(discarded),
            lost=tuple(lost),
            closed_at=now,
            applied_at=applied_at,
            result=result,
            error=error,
        )
        self._pending[buf.index] = release
        self.clock.schedule(applied_at, ("apply", buf.index))

    def _finish(self, index: int) -> None:
        release = self._pending.pop(index)
        # Updates of clients that checked in on the version about to be replaced.
        self._flush_training()
        self._apply(release)
        self.server.applied(self.server.buffers[index])
        self.releases.append(release)
