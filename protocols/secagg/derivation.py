"""Every key, label and mask that a client and the server must derive identically.

Kept in one place so the client (which masks) and the server (which unmasks)
cannot drift apart. Binding, so that nothing from one round or session can be
replayed into another:

- ``session_id`` = SHA-256 over the config digest, the round nonce and every
  advertised ``(id, channel key, mask key)`` triple, length-prefixed.
- Pairwise derivations additionally bind both parties' ids and public keys
  (:func:`pair_context`): in SecAgg+ a client sees only its neighbours' keys
  and cannot recompute ``session_id`` itself, so this keeps a pairwise secret
  tied to the exact keys it was agreed from.
- AEAD associated data binds sender, receiver, round and session id.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable

from secagg import aead, keys, prg
from secagg.framing import length_prefixed

__all__ = [
    "add_pairwise_mask",
    "add_self_mask",
    "channel_key",
    "envelope_ad",
    "pair_context",
    "pairwise_secret",
    "session_id",
    "signed_pairwise_mask",
]

_ID = struct.Struct(">I")


def session_id(
    config_digest: bytes, nonce: bytes, triples: Iterable[tuple[int, bytes, bytes]]
) -> bytes:
    """The round's session id over the config, nonce and all advertised keys."""
    parts = [length_prefixed(_ID.pack(cid), c_pk, s_pk) for cid, c_pk, s_pk in triples]
    return keys.session_id(config_digest, nonce, *parts)


def pair_context(
    sid: bytes, u: int, u_keys: tuple[bytes, bytes], v: int, v_keys: tuple[bytes, bytes]
) -> bytes:
    """A symmetric per-pair context: the same for (u, v) and (v, u)."""
    (a, a_keys), (b, b_keys) = sorted(((u, u_keys), (v, v_keys)))
    return hashlib.sha256(
        length_prefixed(b"secagg-fl/pair", sid, _ID.pack(a), *a_keys, _ID.pack(b), *b_keys)
    ).digest()


def channel_key(own: keys.KeyPair, peer_public: bytes, context: bytes) -> bytes:
    """The AES-GCM key for share envelopes between two clients."""
    return keys.agree(own, peer_public, label=b"channel", session_id=context)


def pairwise_secret(own: keys.KeyPair, peer_public: bytes, context: bytes) -> bytes:
    """s_uv: the PRG seed of the pairwise mask between two clients."""
    return keys.agree(own, peer_public, label=b"pairwise-mask", session_id=context)


def envelope_ad(sender: int, receiver: int, round: int, sid: bytes) -> bytes:
    return aead.associated_data(sender=sender, receiver=receiver, round=round, session_id=sid)


def add_self_mask(
    acc: prg.MaskSum, seed: bytes, sid: bytes, owner: int, *, remove: bool = False
) -> None:
    """Add PRG(b_u), the self mask of client ``owner``, to ``acc`` (subtract it with ``remove``)."""
    acc.add_mask(seed, length_prefixed(b"self-mask", sid, _ID.pack(owner)), subtract=remove)


def add_pairwise_mask(
    acc: prg.MaskSum,
    secret: bytes,
    context: bytes,
    owner: int,
    peer: int,
    *,
    remove: bool = False,
) -> None:
    """Add ``owner``'s signed pairwise mask with ``peer`` to ``acc``, or take it out with ``remove``.

    ``owner`` masks its input with ``signed_pairwise_mask(owner, peer) *
    PRG(s_uv)``; ``remove=True`` applies the opposite sign, which is what the
    server does for a dropped peer's masks left in a survivor's input.
    """
    subtract = signed_pairwise_mask(owner, peer) < 0
    acc.add_mask(secret, length_prefixed(b"pairwise-mask", context), subtract=subtract != remove)


def signed_pairwise_mask(owner: int, peer: int) -> int:
    """+1 if ``owner`` adds PRG(s_uv) to its input, -1 if it subtracts it.

    The lower id adds and the higher id subtracts, so the masks of two
    survivors cancel in the sum.
    """
    if owner == peer:
        raise ValueError("no pairwise mask with oneself")
    return 1 if owner < peer else -1
