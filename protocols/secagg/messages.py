"""Messages of SecAgg and SecAgg+ (Bonawitz et al. CCS 2017, rounds 0-3; Bell et al. CCS 2020).

Every message after the key advertisement carries the round's ``session_id``
(last field); a session refuses one from another session (RemoteProtocolError),
so a message replayed from another round with the same number is not taken.

The actively secure variant (a roster; :mod:`protocols.secagg.config`) uses
its own message types for the steps it changes: :class:`SignedAdvertiseKeys`
and :class:`SignedKeysAdvertised` (Bonawitz et al., CCS 2017, Fig. 4, round 0
with signatures), :class:`Commitments` and :class:`Reveal` (SecAgg+ only: the
graph seed from contributed randomness), :class:`ConsistencyCheck` and
:class:`ConsistencySignature` (Fig. 4, round 3 "ConsistencyCheck"), and
:class:`CertifiedUnmaskRequest` (round 4, carrying the signatures). The
semi-honest messages keep their layout.

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
    "CertifiedUnmaskRequest",
    "Commitments",
    "ConsistencyCheck",
    "ConsistencySignature",
    "KeysAdvertised",
    "MaskedInput",
    "NextRound",
    "Reveal",
    "ShareKeys",
    "SharesDelivered",
    "SignedAdvertiseKeys",
    "SignedKeysAdvertised",
    "UnmaskRequest",
    "UnmaskResponse",
]


@register
@dataclass(frozen=True, eq=False)
class AdvertiseKeys(Message):
    """Client → server: the client's channel and mask public keys (X25519).

    ``mask_public_key`` holds one 32-byte mask key per round of the session
    (``SecAgg.rounds``; one in a single-round session), back to back.
    """

    channel_public_key: bytes
    mask_public_key: bytes

    TYPE: ClassVar[int] = 16
    STAGE: ClassVar[str] = "advertise_keys"
    SCHEMA: ClassVar = (
        ("channel_public_key", wire.Fixed(32)),
        ("mask_public_key", wire.KEY_RUN),
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


@register
@dataclass(frozen=True, eq=False)
class NextRound(Message):
    """Server → client (multi-round session): the next round begins, with these participants.

    ``participants`` are the recipient's sharing group members (itself
    included) that take part in the round; the header carries the round
    number. The client answers with its :class:`MaskedInput` once it has the
    round's input; it refuses a participant that dropped or left earlier.
    """

    participants: tuple[int, ...]
    session_id: bytes

    TYPE: ClassVar[int] = 30
    STAGE: ClassVar[str] = "masked_input"
    SCHEMA: ClassVar = (("participants", wire.IDS), ("session_id", wire.Fixed(32)))


# -- the actively secure variant ----------------------------------------------------


@register
@dataclass(frozen=True, eq=False)
class SignedAdvertiseKeys(Message):
    """Client → server: the two X25519 keys, a commitment and an Ed25519 signature.

    The signature is over ``Statement(ADVERTISE_CONTEXT, round id, round,
    config digest, payload=id || channel key || mask key || commitment)``
    (:func:`protocols.secagg.derivation.advert_payload`). ``commitment`` is
    ``H(round id, id, r)`` of the client's graph-seed randomness in SecAgg+
    and 32 zero bytes in SecAgg, whose complete graph needs no seed.
    """

    channel_public_key: bytes
    mask_public_key: bytes
    commitment: bytes
    signature: bytes

    TYPE: ClassVar[int] = 23
    STAGE: ClassVar[str] = "advertise_keys"
    SCHEMA: ClassVar = (
        ("channel_public_key", wire.Fixed(32)),
        ("mask_public_key", wire.KEY_RUN),
        ("commitment", wire.Fixed(32)),
        ("signature", wire.Fixed(64)),
    )


@register
@dataclass(frozen=True, eq=False)
class Commitments(Message):
    """Server → client (SecAgg+): every advertiser's commitment ``(id, c_i)``, before any reveal."""

    commitments: tuple[tuple[int, bytes], ...]

    TYPE: ClassVar[int] = 24
    STAGE: ClassVar[str] = "reveal"
    SCHEMA: ClassVar = (("commitments", wire.ID_DIGESTS),)


@register
@dataclass(frozen=True, eq=False)
class Reveal(Message):
    """Client → server (SecAgg+): the 32 random bytes the client committed to."""

    randomness: bytes
    round_id: bytes

    TYPE: ClassVar[int] = 25
    STAGE: ClassVar[str] = "reveal"
    SCHEMA: ClassVar = (("randomness", wire.Fixed(32)), ("round_id", wire.Fixed(32)))


@register
@dataclass(frozen=True, eq=False)
class SignedKeysAdvertised(Message):
    """Server → client: the neighbours' signed advertisements, and (SecAgg+) every reveal.

    ``keys`` holds ``(id, channel key, mask key, commitment, signature)`` of
    the client and its neighbours; ``reveals`` the ``(id, r_i)`` of every
    committed client in SecAgg+ (empty in SecAgg).
    """

    session_id: bytes
    keys: tuple[tuple[int, bytes, bytes, bytes, bytes], ...]
    reveals: tuple[tuple[int, bytes], ...]

    TYPE: ClassVar[int] = 26
    STAGE: ClassVar[str] = "share_keys"
    SCHEMA: ClassVar = (
        ("session_id", wire.Fixed(32)),
        ("keys", wire.SIGNED_KEYS),
        ("reveals", wire.ID_DIGESTS),
    )


@register
@dataclass(frozen=True, eq=False)
class ConsistencyCheck(Message):
    """Server → client: the set S of clients whose masked inputs the server holds."""

    survivors: tuple[int, ...]
    session_id: bytes

    TYPE: ClassVar[int] = 27
    STAGE: ClassVar[str] = "consistency"
    SCHEMA: ClassVar = (("survivors", wire.IDS), ("session_id", wire.Fixed(32)))


@register
@dataclass(frozen=True, eq=False)
class ConsistencySignature(Message):
    """Client → server: its signature on S (``Statement(CONSISTENCY_CONTEXT, ...)``)."""

    signature: bytes
    session_id: bytes

    TYPE: ClassVar[int] = 28
    STAGE: ClassVar[str] = "consistency"
    SCHEMA: ClassVar = (("signature", wire.Fixed(64)), ("session_id", wire.Fixed(32)))


@register
@dataclass(frozen=True, eq=False)
class CertifiedUnmaskRequest(Message):
    """Server → client: S and at least T_sig signatures on it; the client settles its peers from S."""

    survivors: tuple[int, ...]
    signatures: tuple[tuple[int, bytes], ...]
    session_id: bytes

    TYPE: ClassVar[int] = 29
    STAGE: ClassVar[str] = "unmasking"
    SCHEMA: ClassVar = (
        ("survivors", wire.IDS),
        ("signatures", wire.SIGNATURES),
        ("session_id", wire.Fixed(32)),
    )
