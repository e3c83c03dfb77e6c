"""The driver loop shared by every transport: :func:`protocols.simulate`, the Flower adapter, yours.

A server session is sans-I/O; something has to move its messages, decide
when a stage is over and keep the accounts. That loop is the same whatever
carries the bytes, so it lives here once and a transport only says how one
step travels (:class:`Transport`)::

    outbox = server.start()
    while the server is not finished:
        if nothing is in flight:   server.handle(DeadlinePassed(server.stage))
        else:                      send the outbox, feed every reply to server.receive()
    send what the server said last (e.g. Abort), so live clients end their sessions

Rules the loop applies, for every transport alike:

- A client the transport reports as lost (no reply before its deadline, a
  transport error, a simulated dropout), or whose message the server refused
  (with ``drop_refused``), is *dropped*: it is never sent anything again and
  whatever else it sends is ignored. A transport signals that a stage's
  deadline passed by reporting the clients that missed it as lost; once
  nothing is in flight the loop closes the stage (docs/design.md, "Sessions
  and the driver": dropouts are the driver's decision, never a timer inside
  a session).
- A message is accepted only from the channel of the client its header
  names as sender (:func:`protocols.wire.read_header`; the transport says
  which client each payload came from); otherwise that client is dropped.
- Accounting (:class:`~protocols.simulate.Stats`): the server's bytes count
  every message it produced (a message to a dropped client costs it the
  same), the clients' received bytes what was delivered, the clients' sent
  bytes what reached the server's inbox. Server CPU time (``cpu_clock``) is
  filed under the stage of the message that caused it, ``start()`` and
  closing under the stage the server was in; client CPU time is what the
  transport reports, per stage.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from . import wire
from .errors import RemoteProtocolError
from .events import DeadlinePassed
from .messages import Message

if TYPE_CHECKING:
    from .base import ServerInterface
    from .simulate import Stats

__all__ = ["Delivery", "RoundByRound", "Transport", "drive"]


@dataclass
class Delivery:
    """What came back from one step of a :class:`Transport`.

    Attributes:
        messages: ``(client id, payload)`` in arrival order; the id is the
            client whose channel carried the payload (not the header's claim).
        lost: client id -> why the transport lost it (it will not answer).
        client_seconds: stage -> CPU seconds the clients spent in this step.
    """

    messages: list[tuple[int, bytes]] = field(default_factory=list)
    lost: dict[int, str] = field(default_factory=dict)
    client_seconds: dict[str, float] = field(default_factory=dict)


class Transport(Protocol):
    """Carries one step: server messages to clients, and the clients' answers back."""

    def exchange(self, batch: list[tuple[int, bytes]]) -> Delivery:
        """Deliver ``batch`` (recipient client id, payload), return what the clients sent.

        ``batch`` is never empty and never names a dropped client. A client's
        failure must not raise: report the client in :attr:`Delivery.lost`.
        """
        ...


class RoundByRound:
    """What a driver that runs one session over a fixed cohort round by round keeps, and
    the one rule for who takes part next (:class:`protocols.SimulatedSession`, the Flower
    adapter's ``FlowerSession``).

    A subclass sets ``proto``, ``cohort`` (sorted client ids), ``rounds_run`` (0),
    ``_server`` (None until the first round) and ``_closed`` (False).
    """

    proto: Any
    cohort: tuple[int, ...]
    rounds_run: int
    _server: Any
    _closed: bool

    @property
    def rounds(self) -> int:
        """Rounds one session of this protocol can run (``proto.rounds_per_session``)."""
        return int(self.proto.rounds_per_session)

    def participants(self) -> tuple[int, ...]:
        """The clients the next round runs over (empty once the session is over)."""
        if self._closed:
            return ()
        if self._server is None:
            return self.cohort
        if self.rounds_run >= self.rounds or self._server.aborted:
            return ()
        alive, reason = self._server.next_participants()
        return () if reason is not None else tuple(sorted(alive))

    @property
    def can_continue(self) -> bool:
        """True if another round of this session can run."""
        return bool(self.participants())

    def close(self) -> None:
        """End the session: it runs no further round (subclasses also free what they hold)."""
        self._closed = True


def drive(
    server: ServerInterface,
    transport: Transport,
    stats: Stats,
    *,
    cpu_clock: Callable[[], float] = time.process_time,
    drop_refused: bool = True,
) -> dict[int, str]:
    """Run ``server`` (not yet started) to the end over ``transport``; return the dropped clients.

    Args:
        server: a fresh server session (any protocol, DP wrapper included).
        transport: how messages travel (:class:`Transport`).
        stats: filled in place (bytes, messages, CPU seconds by role and stage).
        cpu_clock: the CPU clock charged to the server (``time.process_time``
            when this process runs only the server, ``time.thread_time`` when
            other threads share it).
        drop_refused: a message the server refuses (RemoteProtocolError, the
            server itself is unchanged) drops its sender; otherwise the error
            propagates (an in-process simulation of honest clients has none).

    Returns:
        client id -> why it was dropped, in the order they were. The caller
        reads ``server.result`` (or ``server.aborted``) afterwards.
    """
    dropped: dict[int, str] = {}

    def call(
        stage: str, fn: Callable[..., list[Message]], *args: object
    ) -> list[tuple[int, bytes]]:
        t0 = cpu_clock()
        produced: list[Message] = fn(*args)
        stats._add("server", stage, cpu_clock() - t0)
        out = [(m.recipient, m.to_bytes()) for m in produced]
        for m, (_, payload) in zip(produced, out, strict=True):
            stats._count_bytes("server", m.STAGE, len(payload))
        return out

    def step(outbox: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
        batch = [(cid, payload) for cid, payload in outbox if cid not in dropped]
        if not batch:
            return []
        for _, payload in batch:
            stats.bytes_received["client"] += len(payload)
        delivery = transport.exchange(batch)
        for stage, seconds in delivery.client_seconds.items():
            stats._add("client", stage, seconds)
        for cid, why in delivery.lost.items():
            dropped.setdefault(cid, why)
        replies: list[tuple[int, bytes]] = []
        for cid, payload in delivery.messages:
            if cid in dropped or server.finished:
                continue
            try:
                header = wire.read_header(payload)
                if header.sender != cid:
                    raise RemoteProtocolError(
                        f"client {cid} sent a message as client {header.sender}"
                    )
                stats._count_bytes("client", header.stage, len(payload))
                stats.bytes_received["server"] += len(payload)
                replies += call(header.stage, server.receive, payload)
            except RemoteProtocolError as exc:
                if not drop_refused:
                    raise
                dropped.setdefault(cid, f"refused message: {exc}")  # the server is unchanged
        return replies

    outbox = call(server.stage, server.start)
    while not server.finished:
        if any(cid not in dropped for cid, _ in outbox):
            outbox = step(outbox)
        else:  # nothing in flight: the stage is over
            stage = server.stage
            outbox = call(stage, server.handle, DeadlinePassed(stage))
    step(outbox)  # e.g. Abort messages: let live clients end their sessions
    return dropped
