"""Local events: what a driver tells a server session that is not a peer's message.

A local event never goes on the wire (it has no type code and no bytes); it is
fed with :meth:`ServerSession.handle` and dispatched through the same
``TRANSITIONS`` table as messages, so every way a stage can end is listed in
one place per session class.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DeadlinePassed", "LocalEvent"]


@dataclass(frozen=True)
class LocalEvent:
    """Base class of the events a driver feeds to a server session."""


@dataclass(frozen=True)
class DeadlinePassed(LocalEvent):
    """The driver's deadline for stage ``stage`` passed: close it with whoever answered.

    The event names the stage it closes because a driver's timer may fire
    after the stage already ended (the last answer arrived first): a server
    in another stage refuses it with :class:`~protocols.LocalProtocolError`
    and stays unchanged, so a stale deadline can never close the next stage.
    Stage names do not repeat within a round, so the name is enough. The
    session never reads a clock: *when* a deadline passes is the driver's
    decision alone.
    """

    stage: str
