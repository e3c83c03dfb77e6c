"""What both sides of the Flower adapter agree on: record names, the message type, framing.

One place for the names a ServerApp and a ClientApp must share (see the
package docstring for what each record holds).
"""

from __future__ import annotations

from collections.abc import Iterable

from secagg.framing import length_prefixed, split_length_prefixed

from ...errors import WireFormatError

__all__ = ["ACTION", "LAST_ROUND_RECORD", "MESSAGE_TYPE", "RECORD", "STATE_RECORD"]

ACTION = "secagg_fl"
"""The ClientApp action the handler is registered under (``@app.train(ACTION)``)."""
MESSAGE_TYPE = f"train.{ACTION}"
"""Flower message type of every protocol step."""
RECORD = "secagg-fl"
"""Name of the ConfigRecord that carries protocol messages (both directions)."""
STATE_RECORD = "secagg-fl.session"
"""Name of the ConfigRecord in ``context.state`` holding the node's session snapshot."""
LAST_ROUND_RECORD = "secagg-fl.last-round"
"""Name of the ConfigRecord in ``context.state`` holding the last round the node started."""


def frame(payloads: Iterable[bytes]) -> bytes:
    return length_prefixed(*payloads)


def unframe(data: object) -> list[bytes]:
    if not isinstance(data, bytes):
        raise WireFormatError(f"protocol messages must be bytes, got {type(data).__name__}")
    try:
        return split_length_prefixed(data)
    except ValueError as exc:
        raise WireFormatError(f"malformed message batch: {exc}") from None
