"""Exceptions raised by protocol sessions (in the style of h11).

- :class:`LocalProtocolError`: the caller misused a session (e.g. gave an input
  twice, asked for a result that does not exist yet).
- :class:`RemoteProtocolError`: a peer sent something invalid (malformed bytes,
  unknown sender, a message for another stage, inconsistent lists). The session
  that raised it has either ignored the message and stays usable, or has moved
  to its aborted state; :attr:`Session.aborted` tells which.
- :class:`WireFormatError`: bytes that do not decode (a RemoteProtocolError).
- :class:`ProtocolAborted`: the round ended without a result (too few clients
  survived, a peer misbehaved); raised when a result is requested.
- :class:`SnapshotError`: bytes handed to ``proto.restore_client()`` are not a
  valid session snapshot of that configuration (a LocalProtocolError: the
  snapshot comes from the caller's own storage, not from a peer).

Bad argument values (wrong dimension, NaN, a threshold out of range) raise
``ValueError`` naming the argument, as Python users expect.
"""

from __future__ import annotations

__all__ = [
    "LocalProtocolError",
    "ProtocolAborted",
    "ProtocolError",
    "RemoteProtocolError",
    "SnapshotError",
    "WireFormatError",
]


class ProtocolError(Exception):
    """Base class of every protocol error."""


class LocalProtocolError(ProtocolError):
    """The local caller used a session in a way the protocol does not allow."""


class SnapshotError(LocalProtocolError):
    """Not a valid session snapshot: malformed, corrupted, wrong key, or another configuration."""


class RemoteProtocolError(ProtocolError):
    """A peer sent a message the protocol does not allow."""


class WireFormatError(RemoteProtocolError):
    """Bytes that are not a valid message: truncated, oversized, wrong version or type."""


class ProtocolAborted(ProtocolError):
    """The round was aborted; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
