"""Centralized biased MF on ML-100K: HR@10 and NDCG@10 under the federated evaluation's protocol.

    .venv/bin/python benchmarks/recsys_ranking.py PATH/u.data

The acceptance split (``random_split(ratings, 0.2, seed=0)``), the tuned
:class:`recsys.centralized.CentralizedConfig`; each user's last-rated held-out
item is ranked by the model's own user and item parameters against the items
the user has not rated (:mod:`recsys.federated.evaluation`; the federated runs
report the same metrics in their ledgers, ``python -m recsys train``).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, sys.path[0] is benchmarks/, whose recsys.py would shadow the package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np  # noqa: E402
import torch  # noqa: E402

from recsys.centralized import evaluate, train_centralized  # noqa: E402
from recsys.data import load_ratings, random_split  # noqa: E402
from recsys.federated import ClientPopulation, heldout_ranks  # noqa: E402
from recsys.federated.evaluation import TOP_K  # noqa: E402
from recsys.metrics import hit_and_ndcg  # noqa: E402


def main() -> int:
    torch.set_num_threads(1)
    train, test = random_split(load_ratings(sys.argv[1]), 0.2, seed=0)
    model = train_centralized(train, test).model
    rmse, mae = evaluate(model, test, clip=(1.0, 5.0))
    pop = ClientPopulation(train, test, 1)  # the held-out items and the rated masks only
    users = np.flatnonzero(pop.heldout_item >= 0)
    idx = torch.as_tensor(users)
    with torch.no_grad():
        ranks = heldout_ranks(
            model.user_factors[idx].double(),
            model.user_bias[idx].double(),
            model.item_factors.double(),
            model.item_bias.double(),
            torch.as_tensor(pop.heldout_item[users]),
            pop.rated[idx],
            global_mean=float(model.global_mean),
        )
    hit, gain = hit_and_ndcg(ranks.numpy(), TOP_K)
    print(
        f"centralized MF: RMSE {rmse:.4f} MAE {mae:.4f} HR@{TOP_K} {hit.mean():.4f} "
        f"NDCG@{TOP_K} {gain.mean():.4f} over {len(users)} users"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
