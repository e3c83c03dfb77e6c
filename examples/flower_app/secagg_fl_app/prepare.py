"""Write one partition per SuperNode: each holds one user's ratings (train and held-out).

    python -m secagg_fl_app.prepare --out DATA_DIR --users 4          # synthetic
    python -m secagg_fl_app.prepare --out DATA_DIR --data PATH/u.data

Prints, for each partition, the ``--node-config`` its SuperNode takes. The
ServerApp gets no file: it learns the client ids and the id-space sizes from
the nodes themselves (``query.partition``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .task import save_partition


def prepare(
    out: Path,
    *,
    data: str = "synthetic",
    users: int = 4,
    items: int = 40,
    ratings_per_user: int = 15,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> list[Path]:
    """Split the ratings, write ``out/client-<id>.npz`` for each user with training ratings."""
    from recsys.data import load_ratings, random_split, synthetic

    if data == "synthetic":
        ratings = synthetic(users, items, ratings_per_user, seed=seed)
    else:
        ratings = load_ratings(Path(data).expanduser())
    train, test = random_split(ratings, test_fraction, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for client in np.flatnonzero(np.bincount(train.user, minlength=train.n_users) > 0):
        path = out / f"client-{client}.npz"
        save_partition(
            path,
            int(client),
            train.subset(np.flatnonzero(train.user == client)),
            test.subset(np.flatnonzero(test.user == client)),
        )
        paths.append(path)
    return paths


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--data", default="synthetic", help="'synthetic' or PATH/u.data")
    p.add_argument("--users", type=int, default=4)
    p.add_argument("--items", type=int, default=40)
    p.add_argument("--ratings-per-user", type=int, default=15)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    paths = prepare(
        a.out,
        data=a.data,
        users=a.users,
        items=a.items,
        ratings_per_user=a.ratings_per_user,
        test_fraction=a.test_fraction,
        seed=a.seed,
    )
    for path in paths:
        print(f"--node-config 'partition-file=\"{path.resolve()}\"'")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
