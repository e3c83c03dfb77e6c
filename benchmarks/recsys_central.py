"""Centralized biased-MF baseline on MovieLens-100K: the figures federated runs are compared to.

    .venv/bin/python benchmarks/recsys_central.py PATH/u.data [--out JSON] [--seed 0]

Get ``u.data`` with ``/work/shared/tools/fetch-movielens-100k`` (it prints the
path) or :func:`recsys.data.download_movielens`; never commit the data.

On the acceptance split (``random_split(ratings, test_fraction=0.2, seed=0)``)
it reports test RMSE and MAE of

1. the global-mean predictor (the training mean for every rating);
2. the bias-only model ``mu + b_u + b_i`` fitted by ALS with Surprise's
   ``BaselineOnly`` settings (reg_u=15, reg_i=10, 10 sweeps);
3. the bias-only model trained by the same SGD loop as MF (``n_factors=0``);
4. biased MF with :class:`recsys.centralized.CentralizedConfig`'s defaults
   (the tuned hyperparameters), with its per-epoch history.

Predictions are clipped to the rating scale (1..5) for every model. Runs are
deterministic given ``--seed``; torch runs on one thread (``--threads``) so the
figures do not depend on the machine's core count. Results go to
``benchmarks/results/recsys_central.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# First on the path, even if REPO is already on it further down (Ray, for one,
# exports PYTHONPATH): otherwise this directory's secagg.py would shadow the package.
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from recsys.baselines import fit_biases, global_mean_predictions  # noqa: E402
from recsys.centralized import CentralizedConfig, train_centralized  # noqa: E402
from recsys.data import load_ratings, random_split  # noqa: E402
from recsys.metrics import mae, rmse  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="MovieLens u.data (or ratings.dat)")
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "benchmarks" / "results" / "recsys_central.json",
        help="where to write the results (default: benchmarks/results/recsys_central.json)",
    )
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0, help="split and training seed")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    ratings = load_ratings(args.data)
    train, test = random_split(ratings, args.test_fraction, seed=args.seed)
    scale = ratings.rating_range
    print(
        f"data: {args.data} ({len(ratings)} ratings, {ratings.n_users} users, "
        f"{ratings.n_items} items); split {len(train)}/{len(test)} seed {args.seed}"
    )

    results: dict[str, dict[str, float]] = {}

    def record(name: str, pred, seconds: float) -> None:
        results[name] = {
            "test_rmse": rmse(pred, test.rating),
            "test_mae": mae(pred, test.rating),
            "seconds": seconds,
        }

    t = time.perf_counter()
    record("global_mean", global_mean_predictions(train, test), time.perf_counter() - t)

    t = time.perf_counter()
    biases = fit_biases(train)
    record("bias_als", biases.predict(test.user, test.item, clip=scale), time.perf_counter() - t)

    config = CentralizedConfig(seed=args.seed)

    def progress(s) -> None:
        if not args.quiet:
            print(
                f"  epoch {s.epoch:3d}  loss {s.loss:.4f}  train rmse {s.train_rmse:.4f}  "
                f"test rmse {s.test_rmse:.4f}  mae {s.test_mae:.4f}  ({s.seconds:.2f}s)",
                flush=True,
            )

    t = time.perf_counter()
    bias_sgd = train_centralized(train, test, config, n_factors=0)
    results["bias_sgd"] = {
        "test_rmse": bias_sgd.final.test_rmse,
        "test_mae": bias_sgd.final.test_mae,
        "seconds": time.perf_counter() - t,
    }

    print(f"biased MF, defaults: {config}")
    t = time.perf_counter()
    mf = train_centralized(train, test, config, on_epoch=progress)
    results["biased_mf"] = {
        "test_rmse": mf.final.test_rmse,
        "test_mae": mf.final.test_mae,
        "train_rmse": mf.final.train_rmse,
        "seconds": time.perf_counter() - t,
    }

    print()
    print(f"{'model':<12} {'test RMSE':>10} {'test MAE':>10} {'seconds':>8}")
    labels = {
        "global_mean": "global mean",
        "bias_als": "bias (ALS)",
        "bias_sgd": "bias (SGD)",
        "biased_mf": "biased MF",
    }
    for key, label in labels.items():
        r = results[key]
        print(f"{label:<12} {r['test_rmse']:>10.4f} {r['test_mae']:>10.4f} {r['seconds']:>8.1f}")

    report = {
        "benchmark": "recsys_central",
        "data": {
            "path": str(args.data),
            "md5": hashlib.md5(args.data.read_bytes(), usedforsecurity=False).hexdigest()
            if args.data.is_file()
            else None,
            "ratings": len(ratings),
            "users": ratings.n_users,
            "items": ratings.n_items,
        },
        "split": {
            "kind": "random_split",
            "test_fraction": args.test_fraction,
            "seed": args.seed,
            "train": len(train),
            "test": len(test),
        },
        "config": dataclasses.asdict(config),
        "bias_als_settings": {"reg_user": 15.0, "reg_item": 10.0, "sweeps": 10},
        "results": results,
        "history": [dataclasses.asdict(s) for s in mf.history],
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": args.threads,
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
