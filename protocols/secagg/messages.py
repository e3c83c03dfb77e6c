"""Messages of SecAgg and SecAgg+ (Bonawitz et al. CCS 2017, rounds 0-3; Bell et al. CCS 2020).

Every message after the key advertisement carries the round's ``session_id``
(last field); a session refuses one from another session (RemoteProtocolError),
so a message replayed from another round with the same number is not taken.

``STAGE`` is the protocol round a message belongs to; a client that drops
out at a stage sends none of that stage's messages (nor any later ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .. import wire
from ..messages import Message, register

__all__ = [
    "MAX_FAILED_ENVELOPES",
    "AdvertiseKeys",
    "KeysAdvertised",
    "MaskedInput",
    "ShareKeys",
    "SharesDelivered",
    "UnmaskRequest",
    "UnmaskResponse",
]


@register
@dataclass(frozen=True, eq=False)
class AdvertiseKeys(Message):
    """Client → server: the client's channel and mask public keys (X25519)."""

    channel_public_key: bytes
    mask_public_key: bytes

    TYPE: ClassVar[int] = 16
    STAGE: ClassVar[str] = "advertise_keys"
    SCHEMA: ClassVar = (
        ("channel_public_key", wire.Fixed(32)),
        ("mask_public_key", wire.Fixed(32)),
    )


@register
@dataclass(frozen=True, eq=False)
class KeysAdvertised(Message):
    """Server → client: the session id and the keys of the client's neighbours (and its own)."""

    session_id: bytes
    keys: tuple[tuple[int, bytes, bytes], ...]

    TYPE: ClassVar[int] = 17
    STAGE: ClassVar[str] = "share_keys"
    SCHEMA: ClassVar = (("session_id", wire.Fixed(32)), ("keys", wire.KEY_TRIPLES))


@register
@dataclass(frozen=True, eq=False)
class ShareKeys(Message):
    """Client → server: one AES-GCM envelope of Shamir shares per neighbour (recipient id)."""

    envelopes: tuple[tuple[int, bytes], ...]

    session_id: bytes = bytes(32)  # the round's (KeysAdvertised.session_id); checked on receipt

    TYPE: ClassVar[int] = 18
    STAGE: ClassVar[str] = "share_keys"
    SCHEMA: ClassVar = (("envelopes", wire.ID_PAIRS), ("session_id", wire.Fixed(32)))


@register
@dataclass(frozen=True, eq=False)
class SharesDelivered(Message):
    """Server → client: the envelopes addressed to the client (sender id), relayed."""

    envelopes: tuple[tuple[int, bytes], ...]

    session_id: bytes = bytes(32)  # the round's (KeysAdvertised.session_id); checked on receipt

    TYPE: ClassVar[int] = 19
    STAGE: ClassVar[str] = "masked_input"
    SCHEMA: ClassVar = (("envelopes", wire.ID_PAIRS), ("session_id", wire.Fixed(32)))


#: How many peers one MaskedInput may report in ``failed``. One: with a single
#: malicious client an honest client sees at most one bad envelope, and the
#: server drops every reported peer, so a larger budget would let one lying
#: client remove that many honest ones (protocols.secagg.server explains the rule).
MAX_FAILED_ENVELOPES = 1


@register
@dataclass(frozen=True, eq=False)
class MaskedInput(Message):
    """Client → server: the masked input vector in Z_{2^bits}, and the peers it accuses.

    ``failed`` lists the peers whose share envelope did not open (AES-GCM
    failed, or a malformed plaintext): the client holds none of their shares
    and left its pairwise mask with them out of ``vector``. The server's rule
    for them is in :mod:`protocols.secagg.server` ("One malicious client").
    """

    vector: wire.RingVector
    failed: tuple[int, ...] = ()

    session_id: bytes = bytes(32)  # the round's (KeysAdvertised.session_id); checked on receipt

    TYPE: ClassVar[int] = 20
    STAGE: ClassVar[str] = "masked_input"
    SCHEMA: ClassVar = (
        ("vector", wire.RING_VECTOR),
        ("failed", wire.IDS),
        ("session_id", wire.Fixed(32)),
    )


@register
@dataclass(frozen=True, eq=False)
class UnmaskRequest(Message):
    """Server → client: which of the client's share-holding neighbours survived or dropped."""

    survivors: tuple[int, ...]
    dropped: tuple[int, ...]

    session_id: bytes = bytes(32)  # the round's (KeysAdvertised.session_id); checked on receipt

    TYPE: ClassVar[int] = 21
    STAGE: ClassVar[str] = "unmasking"
    SCHEMA: ClassVar = (("survivors", wire.IDS), ("dropped", wire.IDS), ("session_id", wire.Fixed(32)))


@register
@dataclass(frozen=True, eq=False)
class UnmaskResponse(Message):
    """Client → server: self-mask shares of survivors, mask-key shares of dropped clients."""

    self_mask_shares: tuple[tuple[int, bytes], ...]
    mask_key_shares: tuple[tuple[int, bytes], ...]

    session_id: bytes = bytes(32)  # the round's (KeysAdvertised.session_id); checked on receipt

    TYPE: ClassVar[int] = 22
    STAGE: ClassVar[str] = "unmasking"
    SCHEMA: ClassVar = (
        ("self_mask_shares", wire.ID_PAIRS),
        ("mask_key_shares", wire.ID_PAIRS),
        ("session_id", wire.Fixed(32)),
    )
