"""What both sides of the Flower adapter agree on: record names, the message type, framing.

One place for the names a ServerApp and a ClientApp must share (see the
package docstring for what each record holds).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from secagg.framing import length_prefixed, split_length_prefixed

from ...errors import WireFormatError

__all__ = ["ACTION", "LAST_ROUND_RECORD", "MESSAGE_TYPE", "RECORD", "STATE_RECORD", "state_record"]

ACTION = "secagg_fl"
"""The ClientApp action the handler is registered under (``@app.train(ACTION)``)."""
MESSAGE_TYPE = f"train.{ACTION}"
"""Flower message type of every protocol step."""
RECORD = "secagg-fl"
"""Name of the ConfigRecord that carries protocol messages (both directions)."""
STATE_RECORD = "secagg-fl.session"
"""Prefix of the ConfigRecords in ``context.state`` holding the node's session snapshots
(one per protocol name, :func:`state_record`)."""
LAST_ROUND_RECORD = "secagg-fl.last-round"
"""Name of the ConfigRecord in ``context.state`` holding the last round the node started."""


def state_record(name: str) -> str:
    """The ``context.state`` record of the node's session of protocol ``name`` (a digest
    of the name: names carry public round parameters and may be long)."""
    return f"{STATE_RECORD}.{hashlib.sha256(name.encode()).hexdigest()[:32]}"


def frame(payloads: Iterable[bytes]) -> bytes:
    return length_prefixed(*payloads)


def unframe(data: object) -> list[bytes]:
    if not isinstance(data, bytes):
        raise WireFormatError(f"protocol messages must be bytes, got {type(data).__name__}")
    try:
        return split_length_prefixed(data)
    except ValueError as exc:
        raise WireFormatError(f"malformed message batch: {exc}") from None
