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
- A multi-round session (``SecAgg.rounds`` > 1) agrees each round's pairwise
  secret from that round's own mask keys and binds it to the round index
  (:func:`round_context`), so no two rounds share a mask.

The actively secure variant adds (Bonawitz et al., CCS 2017, Fig. 4; Bell et
al., CCS 2020):

- ``round_id`` = SHA-256 over the config digest, the nonce, the round number
  and the invited ids: what every party can compute right after RoundStart,
  and what the key advertisements are signed under.
- SecAgg+'s graph seed from commit-then-reveal: ``commitment = H(round_id,
  id, r)``; ``graph_seed = H(round_id, every (id, r) by id)``; the session id
  is then ``H(round_id, graph_seed)``, which every client computes.
- The signed payloads (:func:`advert_payload`, :func:`survivor_payload`).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable

from secagg import aead, keys, prg
from secagg.framing import length_prefixed

__all__ = [
    "NO_COMMITMENT",
    "add_pairwise_mask",
    "add_self_mask",
    "advert_payload",
    "channel_key",
    "commitment",
    "envelope_ad",
    "graph_seed",
    "graph_session_id",
    "key_label",
    "mask_key",
    "mask_keys",
    "pair_context",
    "pairwise_secret",
    "round_context",
    "round_id",
    "session_id",
    "signed_pairwise_mask",
    "survivor_payload",
]

#: The commitment field of a SecAgg (complete graph) advertisement: no graph to seed.
NO_COMMITMENT = bytes(32)

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


def round_context(context: bytes, index: int) -> bytes:
    """The pair context of round ``index`` (0-based) of a session: what its pairwise
    secret and mask are derived under."""
    return _hash(b"round-pair", context, struct.pack(">I", index))


def mask_keys(run: bytes) -> list[bytes]:
    """The keys of an advertised run of mask keys, round 0 first."""
    return [run[i : i + 32] for i in range(0, len(run), 32)]


def key_label(index: int, rounds: int) -> str:
    """How errors name round ``index``'s mask key."""
    return "mask" if rounds == 1 else f"mask (round {index})"


def mask_key(run: bytes, index: int) -> bytes:
    """Round ``index``'s mask public key in an advertised run (one 32-byte key per round)."""
    key = run[32 * index : 32 * index + 32]
    if len(key) != 32:
        raise ValueError(f"no mask key for round {index} in a run of {len(run) // 32}")
    return key


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


def _hash(label: bytes, *parts: bytes) -> bytes:
    return hashlib.sha256(length_prefixed(b"secagg-fl/" + label, *parts)).digest()


def round_id(config_digest: bytes, nonce: bytes, round: int, client_ids: Iterable[int]) -> bytes:
    """The id every party computes from RoundStart; advertisements are signed under it."""
    ids = b"".join(_ID.pack(cid) for cid in client_ids)
    return _hash(b"round-id", config_digest, nonce, struct.pack(">Q", round), ids)


def commitment(rid: bytes, cid: int, randomness: bytes) -> bytes:
    """c_i = H(round id, id, r_i): binds client ``cid`` to its graph-seed share before any reveal."""
    return _hash(b"graph-commitment", rid, _ID.pack(cid), randomness)


def graph_seed(rid: bytes, reveals: Iterable[tuple[int, bytes]]) -> bytes:
    """The SecAgg+ graph seed from every revealed ``(id, r_i)`` in id order."""
    return _hash(b"graph-seed", rid, *(_ID.pack(cid) + r for cid, r in sorted(reveals)))


def graph_session_id(rid: bytes, seed: bytes) -> bytes:
    """The active SecAgg+ session id: a function of the round id and the graph seed."""
    return _hash(b"graph-session", rid, seed)


def advert_payload(cid: int, channel_pk: bytes, mask_pk: bytes, commit: bytes) -> bytes:
    """What a key advertisement signs (with the round id, round and config digest)."""
    return _ID.pack(cid) + channel_pk + mask_pk + commit


def survivor_payload(survivors: Iterable[int]) -> bytes:
    """What a consistency signature signs: the sorted survivor ids, 4 bytes each."""
    ids = sorted(survivors)
    return struct.pack(f">{len(ids)}I", *ids)


def committee(seed: bytes, cohort: Iterable[int], size: int) -> frozenset[int]:
    """The ``size`` cohort members with the smallest ``H(seed, id)``: a uniform sample.

    Drawn from the active SecAgg+ graph seed, which no party chooses alone
    (commit-then-reveal), so the server cannot pick the committee either.
    """
    ranked = sorted(cohort, key=lambda cid: _hash(b"committee", seed, _ID.pack(cid)))
    return frozenset(ranked[:size])
