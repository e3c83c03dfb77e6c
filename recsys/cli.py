"""Command line of the federated recommender (``python -m recsys`` / ``recsys``)."""

from __future__ import annotations

import argparse
import sys

import numpy as np

import protocols


def _demo(args: argparse.Namespace) -> int:
    n, dim = 50, 10_000
    rng = np.random.default_rng(args.seed)
    inputs = {cid: rng.normal(0, 0.3, dim) for cid in range(n)}
    dropout = {3: "advertise_keys", 11: "share_keys", 17: "masked_input", 29: "unmasking"}
    proto = protocols.SecAggPlus(threshold=0.5, bits=32, clip=1.0)
    agg = protocols.simulate(proto, inputs, dropout=dropout, seed=args.seed)
    exact = np.sum([np.clip(inputs[c], -1, 1) for c in agg.survivors], axis=0)
    s = agg.stats
    print(f"SecAgg+ round: {n} clients, {dim} coordinates, k={proto.degree(n)}, dropouts {dropout}")
    print(
        f"survivors: {len(agg.survivors)}; max |secure sum - plain sum| = {np.abs(agg.total - exact).max():.2e}"
    )
    print(
        f"upload {s.bytes_up / len(agg.survivors) / dim:.2f} bytes/coordinate/client; "
        f"client CPU {s.client_seconds:.2f} s total, server CPU {s.server_seconds:.2f} s"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="a short private aggregation demo")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
