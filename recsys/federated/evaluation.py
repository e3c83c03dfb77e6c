"""Evaluation on the devices, aggregated through the round's protocol.

Every client scores the current model on its own held-out ratings and sends
one short vector of sums (:data:`FIELDS`) through an aggregation round; the
server learns only the totals, from which it computes

- RMSE and MAE over all held-out ratings (sums of squared and absolute
  errors, and their count);
- HR@10 and NDCG@10 under leave-one-out: each client's last-rated held-out
  item (latest timestamp; the last in file order among ties) is ranked by the
  model's score against every item the client has not rated (He et al.,
  "Neural Collaborative Filtering", WWW 2017, section 4.1), and the per-user
  hit and gain are averaged over the clients that ranked one.

The in-process trainer (:meth:`recsys.federated.FederatedTrainer.evaluate`)
and the Flower app (``examples/flower_app``) both go through
:func:`client_vectors` / :func:`evaluation_protocol` / :func:`from_totals`.

Encoding. Each field is divided by a public bound (:func:`field_bounds`) so
every coordinate lies in [0, 1]; the protocol runs with clip 1 and the most
quantization bits it offers, so its fixed-point rounding is far below the
metrics' last printed digit. A client with more than :data:`MAX_TEST_RATINGS`
held-out ratings refuses to encode (its sums would be clipped). The round
carries no DP noise: the totals are released as they are, like the
evaluation metadata of most federated systems; the DP accounting covers
training only.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

import protocols
from protocols import registry

from ..plan import Plan

__all__ = [
    "FIELDS",
    "MAX_TEST_RATINGS",
    "TOP_K",
    "EvalResult",
    "client_vectors",
    "evaluation_protocol",
    "field_bounds",
    "from_sums",
    "from_totals",
]

FIELDS = ("sse", "sae", "count", "scored", "hits", "ndcg", "ranked")
"""Per client: sums of squared and absolute errors, held-out ratings scored, 1 if it
scored any, HR@k and NDCG@k of its leave-one-out item, 1 if it ranked one."""
TOP_K = 10
MAX_TEST_RATINGS = 4096
"""The public bound on one client's held-out ratings that the encoding assumes."""
EVAL_BITS = 52
"""Quantization bits of the evaluation round (capped by what the protocol offers)."""


class EvalResult(NamedTuple):
    """A federated evaluation: error over all clients' held-out ratings, and ranking."""

    rmse: float
    mae: float
    n: int  # held-out ratings scored
    clients: int  # clients that scored any
    hr: float = float("nan")  # HR@TOP_K over the clients that ranked a held-out item
    ndcg: float = float("nan")  # NDCG@TOP_K, likewise
    ranked: int = 0  # clients that ranked a held-out item


def field_bounds(rating_scale: tuple[float, float]) -> np.ndarray:
    """The public bound of each field of :data:`FIELDS` for one client."""
    span = float(rating_scale[1] - rating_scale[0])
    m = float(MAX_TEST_RATINGS)
    return np.array([m * span * span, m * span, m, 1.0, 1.0, 1.0, 1.0])


def client_vectors(sums: np.ndarray, rating_scale: tuple[float, float]) -> np.ndarray:
    """Per-client sums (rows in :data:`FIELDS` order) -> the vectors they upload, in [0, 1]."""
    sums = np.asarray(sums, dtype=np.float64)
    if sums.ndim != 2 or sums.shape[1] != len(FIELDS):
        raise ValueError(f"expected rows of {len(FIELDS)} sums, got shape {sums.shape}")
    if np.any(sums[:, 2] > MAX_TEST_RATINGS):
        raise ValueError(f"a client holds more than {MAX_TEST_RATINGS} held-out ratings")
    return sums / field_bounds(rating_scale)


def from_totals(total: np.ndarray, rating_scale: tuple[float, float]) -> EvalResult:
    """The metrics from the aggregate of :func:`client_vectors` (the server's view)."""
    return from_sums(np.asarray(total, dtype=np.float64).reshape(-1) * field_bounds(rating_scale))


def from_sums(sums: np.ndarray) -> EvalResult:
    """The metrics from the clients' summed :data:`FIELDS` (unscaled)."""
    sse, sae, count, scored, hits, ndcg, ranked = (float(v) for v in np.asarray(sums).reshape(-1))
    n, clients, users = round(count), round(scored), round(ranked)
    nan = float("nan")
    return EvalResult(
        float(np.sqrt(max(sse, 0.0) / n)) if n else nan,
        max(sae, 0.0) / n if n else nan,
        n,
        clients,
        hits / users if users else nan,
        ndcg / users if users else nan,
        users,
    )


def evaluation_protocol(plan: Plan, *, rounds: int = 1) -> protocols.AggregationProtocol:
    """The plan's protocol, without DP, for vectors in [0, 1] (see the module docstring);
    ``rounds`` evaluations per session of a multi-round protocol.

    A plan that runs no protocol (``local``) is evaluated with plaintext sums.
    """
    if not plan.releases:
        return protocols.Plaintext()
    cls = registry.config_class(plan.protocol)
    high = cls.QUANTIZATION_BITS
    options = registry.ProtocolOptions(
        clip=1.0,
        bits=None if high is None else min(EVAL_BITS, high[1]),
        threshold=plan.threshold,
        key_bits=plan.key_bits,
        semi_honest=plan.semi_honest or None,
        rounds=rounds if rounds > 1 else None,
    )
    return registry.create(plan.protocol, options)
