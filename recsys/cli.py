"""Command line of the federated recommender (``python -m recsys`` / ``recsys``).

Subcommands:

* ``train`` — federated MF on MovieLens or synthetic data through one of the
  aggregation protocols, optionally with user-level DP; prints a progress bar
  and one ledger row per round, writes ``ledger.jsonl``, ``ledger.png`` and
  ``run.json`` (the settings) to ``--out``.
* ``compare`` — one PNG comparing the ledgers of several runs (accuracy vs
  ε vs cost).
* ``demo`` — a short synthetic run with SecAgg+ and distributed DP.

Examples::

    python -m recsys train --data synthetic --protocol secagg+ --rounds 20 \\
        --epsilon 8 --delta 1e-5 --seed 0 --out runs/secaggplus-eps8
    python -m recsys train --data ~/.cache/movielens/ml-100k/u.data \\
        --protocol plaintext --rounds 40 --out runs/plain
    python -m recsys compare runs/plain runs/secaggplus-eps8 --out runs/compare.png
    python -m recsys train --data synthetic --protocol secagg+ --async --rounds 40 \
        --buffer-size 20 --concurrency 100 --out runs/fedbuff

With ``--async`` the run is buffered asynchronous training (FedBuff,
:mod:`recsys.federated.buffered`) in simulated time: ``--rounds`` counts
buffers, one ledger row each; ``--clock`` gives a synchronous run the same
simulated time (:mod:`recsys.federated.timed`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the commands import their modules when run (torch is heavy)
    from .data import Ratings
    from .ledger import LedgerRow
    from .plan import Plan
    from .policies import Policy

__all__ = ["build_parser", "main"]

#: Defaults of ``train --epsilon`` (flags given explicitly win): the best
#: settings found on ML-100K at eps = 1, 3, 8 (see benchmarks/recsys.py). Under
#: user-level DP with ~1000 users the noise swamps latent factors, so the
#: best model is the bias-only one (k = 0) trained with full local steps and
#: served as an average of the last iterates. Each client also scales the
#: released item biases by its own factor (``bias_scale_reg``, Koren's
#: user-specific scaling of the item bias), fitted on its device at no
#: privacy cost (mean of 3 runs at delta = 1e-4, 20 rounds: eps = 8 0.9475 ->
#: 0.9369, eps = 3 0.9618 -> 0.9554, eps = 1 0.9909 -> 0.9877).
DP_DEFAULTS: dict[str, Any] = {
    "clip": 1.0,
    "count_weight": 0.3,
    "dp_mode": "central",
    "local_epochs": 1,
    "n_factors": 0,
    "local_lr": 1.0,
    "serve_ema": 0.85,
    "count_floor": 3.0,
    "bias_scale_reg": 0.1,
}

_DP_CONFIG_KEYS = ("n_factors", "local_lr", "serve_ema", "count_floor", "bias_scale_reg")


def _epsilon(text: str) -> float:
    value = float(text)
    if not (value > 0):
        raise argparse.ArgumentTypeError(f"epsilon must be > 0 or inf, got {text}")
    return value


def _load_data(args: argparse.Namespace) -> tuple[Ratings, Ratings, Ratings]:
    from .data import load_ratings, random_split, synthetic

    spec, seed = args.data, args.seed
    if spec == "synthetic":
        ratings = synthetic(
            n_users=args.synthetic_users,
            n_items=args.synthetic_items,
            ratings_per_user=args.synthetic_ratings,
            seed=seed,
        )
    else:
        ratings = load_ratings(Path(spec).expanduser())
    return ratings, *random_split(ratings, args.test_fraction, seed=seed)


def _format_row(row: LedgerRow) -> str:
    eps = "inf" if math.isinf(row.epsilon) else f"{row.epsilon:.3f}"
    rmse = "  -   " if math.isnan(row.rmse) else f"{row.rmse:.4f}"
    mae = "  -   " if math.isnan(row.mae) else f"{row.mae:.4f}"
    hr = "  -   " if math.isnan(row.hr10) else f"{row.hr10:.4f}"
    ndcg = "  -   " if math.isnan(row.ndcg10) else f"{row.ndcg10:.4f}"
    return (
        f"round {row.round:3d}  {row.protocol:9s} rmse {rmse} mae {mae} "
        f"hr@10 {hr} ndcg@10 {ndcg} eps {eps:>7s}  "
        f"up {row.bytes_up / 1e6:8.2f} MB  down {row.bytes_down / 1e6:8.2f} MB  "
        f"client {row.client_seconds:7.2f} s  server {row.server_seconds:6.2f} s  "
        f"survivors {row.survivors}/{row.sampled}"
        + ("" if row.status == "ok" else f"  [{row.status}]")
    )


def _dp(args: argparse.Namespace) -> bool:
    return args.epsilon is not None and math.isfinite(args.epsilon)


def _default_accountant(args: argparse.Namespace) -> str:
    """``pld``, unless the DP mode's events need another (``rdp`` for DDG/Skellam)."""
    from protocols.dp_modes import dp_mode

    return (dp_mode(args.dp_mode).accountant if args.dp_mode else None) or "pld"


def _base_plan(args: argparse.Namespace) -> Plan:
    """The plan the flags describe (with DP, σ is a placeholder the policy calibrates)."""
    from .policy import Plan

    dp = _dp(args)
    common: dict[str, Any] = {
        "q": args.q,
        "bits": args.bits,
        "key_bits": args.key_bits,
        "dropout": args.dropout,
        "coordinate_clip": args.coordinate_clip,
        "session_rounds": args.session_rounds,
    }
    if dp:
        common.update(
            clip=args.clip if args.clip is not None else DP_DEFAULTS["clip"],
            noise_multiplier=1.0,  # placeholder: BudgetPolicy calibrates σ
            dp_mode=args.dp_mode or DP_DEFAULTS["dp_mode"],
            count_weight=(
                args.count_weight if args.count_weight is not None else DP_DEFAULTS["count_weight"]
            ),
        )
    elif args.count_weight is not None:
        common["count_weight"] = args.count_weight
    if args.local_epochs is not None:
        common["local_epochs"] = args.local_epochs
    elif dp:
        common["local_epochs"] = DP_DEFAULTS["local_epochs"]
    return Plan(protocol=args.protocol, **common)


def _make_policy(args: argparse.Namespace) -> Plan | Policy:
    from .policy import BudgetPolicy, CostAwarePolicy

    dp = _dp(args)
    base: Any = _base_plan(args)
    if args.policy == "cost":
        # Prefer the requested protocol; fall back to SecAgg+ at fewer bits.
        candidates = [base]
        if args.protocol != "secagg+":
            candidates.append(base.replace(protocol="secagg+", bits=min(args.bits, 52)))
        candidates.append(base.replace(protocol="secagg+", bits=24))
        base = CostAwarePolicy(
            candidates,
            max_upload_bytes=args.max_upload_mb * 1e6 if args.max_upload_mb else None,
            max_client_seconds=args.max_client_seconds,
        )
    if dp:
        return BudgetPolicy(args.epsilon, base=base)
    return base


def _train(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from .federated import FederatedConfig, FederatedTrainer
    from .plots import plot_run

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ratings, train, test = _load_data(args)
    overrides: dict[str, Any] = {"seed": args.seed, "workers": args.workers}
    if _dp(args):
        overrides.update({k: DP_DEFAULTS[k] for k in _DP_CONFIG_KEYS})
    for name in ("n_factors", "local_lr", "reg_factors", "reg_bias", "server_lr"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    if args.server_optimizer:
        overrides["server_optimizer"] = args.server_optimizer
    if args.serve_ema is not None:
        overrides["serve_ema"] = args.serve_ema
    if args.bias_scale_reg is not None:
        overrides["bias_scale_reg"] = args.bias_scale_reg or None  # 0 turns it off
    if args.reproducible:
        overrides["protocol_seed"] = args.seed
    config = FederatedConfig(**overrides)
    policy = _make_policy(args)
    common: dict[str, Any] = {
        "delta": args.delta,
        "accountant": args.accountant or _default_accountant(args),
        "ledger_path": str(out / "ledger.jsonl"),
    }
    trainer: FederatedTrainer
    if args.asynchronous:
        trainer = _buffered_trainer(args, train, test, config, common)
    elif args.clock:
        from .federated.timed import TimedTrainer

        trainer = TimedTrainer(
            train, test, policy, config, rounds=args.rounds, delays=_delays(args), **common
        )
    else:
        trainer = FederatedTrainer(train, test, policy, config, rounds=args.rounds, **common)
    settings = {
        "argv": sys.argv[1:],
        "args": {k: v for k, v in vars(args).items() if k != "func"},
        "data": {"ratings": len(ratings), "train": len(train), "test": len(test)},
        "config": config.to_dict(),
        "info": {k: v for k, v in trainer.ledger.info.to_dict().items() if k != "config"},
    }
    (out / "run.json").write_text(json.dumps(settings, indent=2, default=str) + "\n")
    print(
        f"data {args.data}: {len(ratings)} ratings, {ratings.n_users} users, "
        f"{ratings.n_items} items; {trainer.population.n_clients} clients; "
        f"upload dim {trainer.layout.dim}; protocol {args.protocol}; "
        + (
            f"DP target eps={args.epsilon:g} at delta={args.delta:g}"
            if args.epsilon is not None and math.isfinite(args.epsilon)
            else "no DP"
        )
    )
    if len(test):
        from .baselines import global_mean_predictions
        from .metrics import rmse

        ref = rmse(global_mean_predictions(train, test), test.rating)
        print(f"reference: the global-mean predictor has test RMSE {ref:.4f}")
    start = time.perf_counter()
    with tqdm(total=args.rounds, unit="round", disable=args.no_progress, file=sys.stderr) as bar:

        def report(row: LedgerRow) -> None:
            bar.write(_format_row(row), file=sys.stdout)
            bar.set_postfix(rmse=f"{row.rmse:.4f}", eps=f"{row.epsilon:.2f}")
            bar.update(1)

        try:
            ledger = trainer.run(callback=report)
        finally:
            trainer.close()
    if len(ledger) < args.rounds:
        print(f"the policy stopped after {len(ledger)} rounds (privacy budget spent)")
    plot_run(ledger, out / "ledger.png", title=f"federated MF — {args.protocol} — {args.data}")
    if args.asynchronous or args.clock:
        from .plots import plot_simulated_time

        plot_simulated_time({args.protocol: ledger}, out / "time.png")
        print(f"time:   {out / 'time.png'}")
    final = ledger.last
    if final is not None:
        eps = "inf" if math.isinf(final.epsilon) else f"{final.epsilon:.3f}"
        print(
            f"final test RMSE {final.rmse:.4f} MAE {final.mae:.4f} HR@10 {final.hr10:.4f} "
            f"NDCG@10 {final.ndcg10:.4f} eps {eps} "
            f"(delta {final.delta:g}) after {final.round} rounds in "
            f"{time.perf_counter() - start:.1f} s"
        )
    print(f"ledger: {out / 'ledger.jsonl'}\nplot:   {out / 'ledger.png'}")
    return 0


def _delays(args: argparse.Namespace) -> Any:
    from protocols.clock import LognormalDelays

    return LognormalDelays(
        compute_median=args.compute_median,
        network_median=args.network_median,
        client_sigma=args.client_sigma,
        drop_probability=args.drop_probability,
        seed=args.seed,
    )


def _buffered_trainer(
    args: argparse.Namespace, train: Ratings, test: Ratings, config: Any, common: dict[str, Any]
) -> Any:
    """The ``--async`` trainer: one fixed plan (q = 1); with DP, ε spent over the cap."""
    from .federated.buffered import BufferedTrainer

    if args.policy == "cost":
        raise SystemExit("--async runs one fixed plan; --policy cost is for synchronous rounds")
    if args.q != 1.0:
        raise SystemExit("--async samples no cohort: leave --q at 1")
    plan = _base_plan(args)
    if _dp(args):
        # The BudgetPolicy's placeholder σ becomes a target ε over the per-client cap.
        plan = plan.replace(noise_multiplier=None, target_epsilon=args.epsilon)
    return BufferedTrainer(
        train,
        test,
        plan,
        config,
        delays=_delays(args),
        buffer_size=args.buffer_size,
        concurrency=args.concurrency,
        slack=args.slack,
        max_staleness=args.max_staleness,
        max_contributions=args.max_contributions,
        buffers=args.rounds,
        **common,
    )


def _compare(args: argparse.Namespace) -> int:
    from .ledger import read_jsonl
    from .plots import plot_comparison

    runs = {}
    for run in args.runs:
        p = Path(run)
        path = p / "ledger.jsonl" if p.is_dir() else p
        runs[p.stem if p.is_file() else p.name] = read_jsonl(path)
    plot_comparison(runs, args.out)
    for name, rows in runs.items():
        last = [r for r in rows if not math.isnan(r.rmse)]
        if last:
            r = last[-1]
            up = sum(x.bytes_up for x in rows) / 1e6
            print(
                f"{name:30s} rmse {r.rmse:.4f} eps {r.epsilon:.3f} rounds {r.round} up {up:.1f} MB"
            )
    print(f"plot: {args.out}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    """A short synthetic run: SecAgg+ with distributed DP, a few rounds."""
    argv = [
        "train",
        "--data",
        "synthetic",
        "--synthetic-users",
        str(args.users),
        "--synthetic-items",
        "300",
        "--synthetic-ratings",
        "40",
        "--protocol",
        "secagg+",
        "--rounds",
        str(args.rounds),
        "--epsilon",
        str(args.epsilon),
        "--delta",
        "1e-5",
        "--dp-mode",
        "distributed",
        "--factors",
        "4",
        "--seed",
        str(args.seed),
        "--workers",
        "2",
        "--out",
        args.out,
    ]
    print("recsys " + " ".join(argv))
    return main(argv)


def build_parser() -> argparse.ArgumentParser:
    from protocols import registry
    from protocols.dp_modes import DP_MODES

    parser = argparse.ArgumentParser(
        prog="recsys",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    tr = sub.add_parser("train", help="federated MF training through an aggregation protocol")
    tr.add_argument("--data", required=True, help="'synthetic', PATH/u.data or PATH/ratings.dat")
    tr.add_argument("--protocol", choices=registry.names(), default="secagg+")
    tr.add_argument("--rounds", type=int, default=20)
    tr.add_argument(
        "--epsilon",
        type=_epsilon,
        default=None,
        help="user-level DP target over the run; omitted or 'inf' means no DP",
    )
    tr.add_argument("--delta", type=float, default=1e-5)
    tr.add_argument("--seed", type=int, default=0, help="data split, init and client sampling")
    tr.add_argument("--out", required=True, help="run directory (ledger.jsonl, ledger.png)")
    g = tr.add_argument_group("round plan")
    g.add_argument("--q", type=float, default=1.0, help="Poisson sampling rate of clients")
    g.add_argument("--local-epochs", type=int, default=None, help="default 2 (1 with DP)")
    g.add_argument("--bits", type=int, default=32, help="quantization bits (SecAgg, Paillier)")
    g.add_argument("--key-bits", type=int, default=2048, help="Paillier modulus bits")
    g.add_argument("--coordinate-clip", type=float, default=4.0)
    g.add_argument("--clip", type=float, default=None, help="DP L2 clip of one upload")
    g.add_argument("--dp-mode", choices=DP_MODES)
    g.add_argument("--count-weight", type=float, default=None)
    g.add_argument("--dropout", type=float, default=0.0, help="simulated dropout fraction")
    g.add_argument(
        "--session-rounds",
        type=int,
        default=None,
        help="rounds per SecAgg/SecAgg+ key setup (default: 10 where secure, see the README; "
        "1: a setup every round)",
    )
    g.add_argument(
        "--policy",
        choices=("fixed", "cost"),
        default="fixed",
        help="'cost': fall back to SecAgg+ (fewer bits) when over --max-upload-mb",
    )
    g.add_argument("--max-upload-mb", type=float, default=None)
    g.add_argument("--max-client-seconds", type=float, default=None)
    m = tr.add_argument_group("model and optimization")
    m.add_argument("--factors", dest="n_factors", type=int, default=None)
    m.add_argument("--lr", dest="local_lr", type=float, default=None, help="local item step")
    m.add_argument("--reg", dest="reg_factors", type=float, default=None)
    m.add_argument("--reg-bias", dest="reg_bias", type=float, default=None)
    m.add_argument("--server-lr", type=float, default=None)
    m.add_argument("--server-optimizer", choices=("sgd", "adam"), default=None)
    m.add_argument("--serve-ema", type=float, default=None, help="server iterate averaging")
    m.add_argument(
        "--bias-scale-reg",
        type=float,
        default=None,
        help="clients fit a private scale of the item bias with this ridge per rating "
        "(default 0.1 with DP, off without; 0 turns it off)",
    )
    s = tr.add_argument_group("simulation")
    s.add_argument("--test-fraction", type=float, default=0.2)
    s.add_argument("--synthetic-users", type=int, default=943)
    s.add_argument("--synthetic-items", type=int, default=1682)
    s.add_argument("--synthetic-ratings", type=int, default=50, help="ratings per user")
    s.add_argument(
        "--accountant",
        choices=("pld", "rdp"),
        default=None,
        help="default: pld (rdp for --dp-mode ddg/skellam, whose bounds are RDP)",
    )
    s.add_argument("--workers", type=int, default=1, help="client processes in the simulator")
    s.add_argument("--threads", type=int, default=1, help="torch threads")
    s.add_argument(
        "--reproducible",
        action="store_true",
        help="seed the protocols' keys, masks and noise (simulation only: predictable secrets)",
    )
    s.add_argument("--no-progress", action="store_true")
    a = tr.add_argument_group(
        "asynchronous training (FedBuff) and simulated time",
        "lognormal per-client delays (protocols.clock), seeded by --seed",
    )
    a.add_argument("--async", dest="asynchronous", action="store_true",
                   help="buffered asynchronous training; --rounds counts buffers")
    a.add_argument("--clock", action="store_true",
                   help="synchronous rounds in simulated time (the same delays as --async)")
    a.add_argument("--buffer-size", type=int, default=20, help="K: updates per buffer/session")
    a.add_argument("--concurrency", type=int, default=100, help="C: clients training at once")
    a.add_argument("--slack", type=int, default=5, help="a buffer's session takes K + slack members")
    a.add_argument("--max-staleness", type=int, default=20,
                   help="clients refuse a buffer this many versions past their base")
    a.add_argument("--max-contributions", type=int, default=None,
                   help="per-client cap on tasks (required with --epsilon: eps is spent over it)")
    a.add_argument("--compute-median", type=float, default=10.0, help="seconds of local training")
    a.add_argument("--network-median", type=float, default=1.0, help="seconds per transfer")
    a.add_argument("--client-sigma", type=float, default=1.0,
                   help="log-std of the per-client speed factor")
    a.add_argument("--drop-probability", type=float, default=0.0,
                   help="chance a client drops while training (--async)")
    tr.set_defaults(func=_train)

    cmp_ = sub.add_parser("compare", help="plot several runs against each other")
    cmp_.add_argument("runs", nargs="+", help="run directories or ledger.jsonl files")
    cmp_.add_argument("--out", required=True, help="PNG path")
    cmp_.set_defaults(func=_compare)

    demo = sub.add_parser("demo", help="a short synthetic run with SecAgg+ and DP")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--users", type=int, default=120)
    demo.add_argument("--rounds", type=int, default=4)
    demo.add_argument("--epsilon", type=float, default=8.0)
    demo.add_argument("--out", default="runs/demo")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
