"""Write one partition per SuperNode (one user's ratings, train and held-out), its identity key and the roster.

    python -m secagg_fl_app.prepare --out DATA_DIR --users 4          # synthetic
    python -m secagg_fl_app.prepare --out DATA_DIR --data PATH/u.data

Prints, for each partition, the ``--node-config`` its SuperNode takes, and the
``roster-file`` run config of the ServerApp. The ServerApp gets no ratings: it
learns the client ids and the id-space sizes from the nodes themselves
(``query.partition``), and only the public roster (client id -> Ed25519
identity key), with which SecAgg/SecAgg+ run actively secure. Writing every
identity key here stands in for device registration
(:func:`secagg_fl_app.task.write_identities`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .task import ROSTER_FILE, identity_path, save_partition, write_identities


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
    """Split the ratings, write ``out/client-<id>.npz`` for each user with training ratings,
    ``out/client-<id>.identity`` (its identity key) and ``out/roster.bin``."""
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
    write_identities(out, paths)
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
        files = (("partition-file", path), ("identity-file", identity_path(path)), ("roster-file", a.out / ROSTER_FILE))
        config = " ".join(f'{key}=\"{p.resolve()}\"' for key, p in files)
        print(f"--node-config '{config}'")
    print(f"ServerApp: --run-config 'roster-file=\"{(a.out / ROSTER_FILE).resolve()}\"'")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
