"""Communication graphs: complete (SecAgg) and random Harary (SecAgg+).

SecAgg+ (Bell, Bonawitz, Gascón, Lepoint, Raykova, CCS 2020) replaces the
complete graph by a random k-regular graph, so each client exchanges keys and
shares with k = O(log n) neighbours. We use the Harary graph H(n, k) with its
vertices relabelled by a public random permutation derived from the round
nonce: every party computes the same graph from the ``RoundStart`` message.

:func:`choose_degree` picks k from n and a stated target, by a union bound over
clients of two binomial tails (a heuristic reading of Bell et al.'s analysis,
which treats a neighbourhood as a random sample):

- security: a client's mask key is exposed only if at least t of its k
  neighbours are corrupt: ``n * P[Bin(k, corrupt_fraction) >= t] <= 2^-security_bits``;
- correctness: a survivor's self mask is recoverable unless fewer than t of its
  k + 1 share holders respond: ``n * P[Bin(k+1, 1-dropout_rate) < t] <= 2^-correctness_bits``.

With a fixed threshold *fraction* the two conditions pull t in opposite
directions, and one of them is usually met with a huge margin (at n = 943,
5 % corrupt and 5 % dropout, t = k/2 + 1 fails a round with probability
2^-39 where 2^-20 is asked, while security forces k = 36). With
``threshold=None`` the threshold is chosen with the degree
(:func:`auto_threshold`): for each candidate k the *largest* t that still
meets the correctness target, never below a strict majority of the group;
the smallest k whose t then meets the security target wins (k = 28, t = 17
of 29 in that example). A larger t only makes collusion harder; the majority
floor keeps the Bonawitz et al. condition under which no two disjoint sets
of holders can each reach t. The tails are summed exactly enough by
:mod:`~protocols.secagg.binomial` (no scipy in a SecAgg+ round).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence

from ..base import resolve_threshold
from . import binomial

__all__ = [
    "auto_threshold",
    "choose_degree",
    "committee_size",
    "complete_graph",
    "harary_graph",
    "harary_neighbours",
]


def complete_graph(client_ids: Sequence[int]) -> dict[int, frozenset[int]]:
    """Every client is every other client's neighbour."""
    everyone = frozenset(client_ids)
    return {cid: everyone - {cid} for cid in client_ids}


@functools.lru_cache(maxsize=16)
def _public_permutation(client_ids: tuple[int, ...], nonce: bytes) -> tuple[int, ...]:
    # Sorting by a hash keyed with the round nonce is a uniform permutation up to
    # SHA-256 collisions; it is public randomness, so no secret key is needed.
    # Cached: in a simulation every session of a round shares one process.
    def key(c: int) -> bytes:
        return hashlib.sha256(b"secagg-fl/harary\x00" + nonce + c.to_bytes(4, "big")).digest()

    return tuple(sorted(client_ids, key=key))


@functools.lru_cache(maxsize=16)
def _positions(order: tuple[int, ...]) -> dict[int, int]:
    return {c: i for i, c in enumerate(order)}


def harary_graph(client_ids: Sequence[int], k: int, nonce: bytes) -> dict[int, frozenset[int]]:
    """The k-regular Harary graph H(n, k) on a nonce-seeded random ordering.

    Position i is joined to positions i ± 1, ..., i ± floor(k/2) (mod n), and,
    for odd k, to the opposite position i + n/2 (which needs n even).
    ``k >= n - 1`` gives the complete graph.
    """
    return {cid: harary_neighbours(client_ids, k, nonce, cid) for cid in client_ids}


def harary_neighbours(client_ids: Sequence[int], k: int, nonce: bytes, cid: int) -> frozenset[int]:
    """One client's neighbours in :func:`harary_graph` (all a client needs to compute)."""
    n = len(client_ids)
    if k >= n - 1:
        return frozenset(client_ids) - {cid}
    if k < 2:
        raise ValueError(f"k must be >= 2, got {k}")
    if k % 2 and n % 2:
        raise ValueError(
            f"a k-regular graph with odd k={k} needs an even number of clients, got {n}"
        )
    order = _public_permutation(tuple(client_ids), nonce)
    i = _positions(order)[cid]
    half = k // 2
    peers = {order[(i + j) % n] for j in range(-half, half + 1) if j != 0}
    if k % 2:
        peers.add(order[(i + n // 2) % n])
    return frozenset(peers)


def _majority(group_size: int) -> int:
    """The smallest strict majority of a group: ``floor(group_size / 2) + 1``."""
    return group_size // 2 + 1


@functools.lru_cache(maxsize=1024)
def auto_threshold(
    group_size: int, n: int, *, dropout_rate: float, correctness_bits: int, margin: int = 0
) -> int:
    """The largest t meeting the correctness target for groups of ``group_size`` among n clients.

    ``n * P[Bin(group_size, 1 - dropout_rate) < t + margin] <= 2^-correctness_bits``
    (the server needs ``t + margin`` shares of each secret, ``margin`` to check
    them), searched from ``group_size - margin`` down to a strict majority; a
    group too small to meet the target at a majority gets the majority
    (correctness then rests on fewer dropouts than assumed).
    """
    floor = _majority(group_size)
    for t in range(group_size - margin, floor - 1, -1):
        if (
            n * binomial.cdf(t + margin - 1, group_size, 1.0 - dropout_rate)
            <= 2.0**-correctness_bits
        ):
            return t
    return floor


@functools.lru_cache(maxsize=256)
def choose_degree(
    n: int,
    threshold: float | int | None,
    *,
    corrupt_fraction: float,
    dropout_rate: float,
    security_bits: int,
    correctness_bits: int,
    margin: int = 0,
) -> int:
    """The smallest even degree k meeting the security and correctness targets (see module doc).

    ``threshold=None`` chooses the threshold with the degree (:func:`auto_threshold`).
    A round is stuck when fewer than ``t + margin`` members of a group survive
    (the server's share margin). Returns ``n - 1`` (the complete graph) when
    no smaller k does.
    """
    # An absolute threshold t needs groups of at least t + margin members.
    smallest = max(2, threshold + margin - 1) if isinstance(threshold, int) else 2
    for k in range(smallest + smallest % 2, n - 1, 2):
        if threshold is None:
            t = auto_threshold(
                k + 1,
                n,
                dropout_rate=dropout_rate,
                correctness_bits=correctness_bits,
                margin=margin,
            )
        else:
            t = resolve_threshold(threshold, k + 1)
        exposed = n * binomial.sf(t - 1, k, corrupt_fraction)
        stuck = n * binomial.cdf(t + margin - 1, k + 1, 1.0 - dropout_rate)
        if exposed <= 2.0**-security_bits and stuck <= 2.0**-correctness_bits:
            return k
    return max(n - 1, 0)


@functools.lru_cache(maxsize=64)
def committee_size(
    n: int,
    *,
    corrupt_fraction: float,
    dropout_rate: float,
    security_bits: int,
    correctness_bits: int,
) -> tuple[int, int]:
    """The smallest consistency committee ``(size m, signatures needed T)`` for n clients.

    The committee certifies the survivor set in the actively secure SecAgg+
    (see :func:`protocols.secagg.config.consistency_committee`). Honest members
    sign one set each, so two different sets can both gather T signatures only
    if at least ``2T - m`` members are corrupt; the committee is a uniform sample
    of the cohort drawn from the clients' contributed graph seed, so its corrupt
    members are hypergeometric, whose tails are bounded by the binomial ones
    (Hoeffding 1963, Theorem 4):

    - security: ``P[Bin(m, corrupt_fraction) >= 2T - m] <= 2^-security_bits``;
    - liveness: ``P[Bin(m, 1 - dropout_rate) < T] <= 2^-correctness_bits``.

    For each m the largest T meeting liveness is the most secure one, so it is
    the one tried. Returns ``(n, T)``
    with ``T = floor((n + c) / 2) + 1``, ``c = floor(corrupt_fraction * n)``
    (every client signs; two sets need more than c corrupt signers) when no
    smaller committee meets both targets.
    """
    for m in range(3, n):
        # The largest T the committee still reaches with the asked probability.
        t = m
        while t > m // 2 and binomial.cdf(t - 1, m, 1.0 - dropout_rate) > 2.0**-correctness_bits:
            t -= 1
        if t <= m // 2:
            continue
        if binomial.sf(2 * t - m - 1, m, corrupt_fraction) <= 2.0**-security_bits:
            return m, t
    corrupt = int(corrupt_fraction * n)
    return n, (n + corrupt) // 2 + 1
