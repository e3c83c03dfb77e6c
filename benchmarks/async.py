"""Synchronous vs buffered asynchronous (FedBuff) federated MF in simulated time, same delays.

    .venv/bin/python benchmarks/async.py --data PATH/u.data [--protocols plaintext secagg+]
        [--dp-epsilon 8] [--json PATH]
    .venv/bin/python benchmarks/async.py --quick        # synthetic, a few seconds (smoke test)

Both modes see the same devices: one :class:`protocols.clock.LognormalDelays`
(per-client speed factor lognormal with log-std ``--client-sigma``, per-task
jitter, lognormal network), and a client's ``n``-th task takes the same time
in either mode. Synchronous FedAvg (:class:`recsys.federated.timed.TimedTrainer`)
samples a cohort with rate ``cohort / n_clients`` each round and waits for its
slowest member; FedBuff (:class:`recsys.federated.buffered.BufferedTrainer`)
keeps ``--concurrency`` clients training and applies every ``--buffer``
updates, each weighted by ``1/sqrt(1 + staleness)``. The asynchronous run stops
at the synchronous run's simulated end, or once it has applied ``--work-ratio``
times the synchronous run's client updates, whichever comes first.

Reported per setting: simulated seconds until test RMSE <= 0.920 (evaluated
after every synchronous round and every ``--eval-every`` buffers; the first
evaluation at or under the target), the speed-up (sync time / async time),
final RMSE of both (the target is async <= sync + 0.005), staleness, updates
discarded as too stale, bytes, and wall/CPU seconds of the run. With
``--dp-epsilon`` both modes also run with user-level DP (central Gaussian,
the CLI's DP model defaults): synchronous rounds amplified by Poisson
sampling over the planned rounds, buffered releases unamplified with each
client capped at ``--max-contributions`` tasks (ε spent over those).

Evaluation is the federated one (each client's sums), summed in plaintext for
every run: it measures the model and is not part of the private run (through
SecAgg+ it costs ~9 s per evaluation of 943 clients and gives the same sums up
to quantization). The defaults (cohort and concurrency 200, K = 20, the
asynchronous server step 0.3, FedBuff's tuned server learning rate; the
synchronous run keeps the trainer's 1.0) were chosen on ML-100K plaintext:
K = 50 or a server step of 1.0 made the asynchronous run plateau at RMSE
0.935-0.94.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# First on the path: this directory's secagg.py would shadow the package.
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from protocols.clock import LognormalDelays  # noqa: E402
from recsys.cli import _DP_CONFIG_KEYS, DP_DEFAULTS  # noqa: E402
from recsys.data import load_ratings, random_split, synthetic  # noqa: E402
from recsys.federated import FederatedConfig  # noqa: E402
from recsys.federated.buffered import BufferedTrainer  # noqa: E402
from recsys.federated.timed import TimedTrainer  # noqa: E402
from recsys.ledger import LedgerRow  # noqa: E402
from recsys.plan import Plan  # noqa: E402

TARGET_RMSE = 0.920
RESULTS = REPO / "benchmarks" / "results" / "async.json"


def _time_to(rows: list[LedgerRow], target: float) -> float | None:
    hit = next((r for r in rows if not math.isnan(r.rmse) and r.rmse <= target), None)
    return None if hit is None else float(hit.sim_seconds)


def _final_rmse(rows: list[LedgerRow]) -> float | None:
    scored = [r.rmse for r in rows if not math.isnan(r.rmse)]
    return scored[-1] if scored else None


def _summary(rows: list[LedgerRow], wall: float, cpu: float, target: float) -> dict[str, Any]:
    return {
        "rows": len(rows),
        "sim_seconds": float(rows[-1].sim_seconds) if rows else 0.0,
        "sim_seconds_to_target": _time_to(rows, target),
        "final_rmse": _final_rmse(rows),
        "best_rmse": min((r.rmse for r in rows if not math.isnan(r.rmse)), default=None),
        "updates_applied": sum(r.survivors for r in rows),
        "epsilon": rows[-1].epsilon if rows and math.isfinite(rows[-1].epsilon) else None,
        "mb_up": sum(r.bytes_up for r in rows) / 1e6,
        "mb_down": sum(r.bytes_down for r in rows) / 1e6,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "curve": [
            [float(r.sim_seconds), r.rmse] for r in rows if not math.isnan(r.rmse)
        ],
    }


class _PlaintextEvaluation:
    """Score with plaintext sums of the clients' evaluation vectors (a measurement of the
    model, not part of the private run; SecAgg+ would give the same sums up to quantization
    at ~9 s per evaluation of 943 clients)."""

    def evaluate(self, plan: Plan | None = None, *, round: int | None = None) -> Any:
        return super().evaluate(Plan("plaintext"), round=round)  # type: ignore[misc]


class _TimedSync(_PlaintextEvaluation, TimedTrainer):
    pass


class _Buffered(_PlaintextEvaluation, BufferedTrainer):
    pass


def _first_time_at(rows: list[LedgerRow], level: float | None) -> float | None:
    return None if level is None else _time_to(rows, level)


def compare(
    train: Any, test: Any, protocol: str, args: argparse.Namespace, *, epsilon: float | None
) -> dict[str, Any]:
    n_clients = len(set(train.user.tolist()))
    delays = LognormalDelays(
        compute_median=args.compute_median,
        network_median=args.network_median,
        client_sigma=args.client_sigma,
        task_sigma=args.task_sigma,
        network_sigma=args.network_sigma,
        seed=args.seed,
    )
    overrides: dict[str, Any] = {"n_factors": args.factors, "seed": args.seed, "protocol_seed": args.seed}
    dp_plan: dict[str, Any] = {}
    if epsilon is not None:
        # The CLI's DP run (bias-only model, server iterate averaging).
        overrides.update({k: DP_DEFAULTS[k] for k in _DP_CONFIG_KEYS})
        dp_plan = {k: DP_DEFAULTS[k] for k in ("clip", "count_weight", "dp_mode", "local_epochs")}
        dp_plan["target_epsilon"] = epsilon
    q = min(1.0, args.cohort / n_clients)
    delta = args.delta
    print(f"\n== {protocol}{' eps=' + str(epsilon) if epsilon else ''}: sync cohort ~{args.cohort} "
          f"(q={q:.3f}), async C={args.concurrency} K={args.buffer} ==", flush=True)

    cfg = FederatedConfig(**{**overrides, "eval_every": 1})
    sync_plan = Plan(protocol, q=q, **dp_plan)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    sync = _TimedSync(train, test, sync_plan, cfg, delays=delays, rounds=args.rounds, delta=delta)
    for row in sync.run():
        print(f"  sync  round {row.round:3d} t={row.sim_seconds:9.1f} rmse {row.rmse:.4f} "
              f"eps {row.epsilon:.2f}", flush=True)
    s = _summary(sync.ledger.rows, time.perf_counter() - wall0, time.process_time() - cpu0,
                 args.target)

    acfg = FederatedConfig(**{**overrides, "eval_every": args.eval_every,
                              "server_lr": args.async_server_lr})
    async_plan = Plan(protocol, q=1.0, **dp_plan)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    trainer = _Buffered(
        train, test, async_plan, acfg, delays=delays, buffer_size=args.buffer,
        concurrency=args.concurrency, slack=args.slack, max_staleness=args.max_staleness,
        max_contributions=args.max_contributions if epsilon is not None else None,
        buffers=10**6, delta=delta,
    )
    budget = args.work_ratio * s["updates_applied"]
    applied = 0
    while applied < budget and trainer.now < s["sim_seconds"]:
        row = trainer.step()
        if row is None:
            break
        applied += row.survivors
        if not math.isnan(row.rmse):
            print(f"  async buffer {row.round:4d} t={row.sim_seconds:9.1f} rmse {row.rmse:.4f} "
                  f"staleness {row.staleness_mean or 0:.2f} (max {row.staleness_max}) "
                  f"eps {row.epsilon:.2f}", flush=True)
    if math.isnan(trainer.ledger.rows[-1].rmse):  # score the final model
        ev = trainer.evaluate(async_plan)
        trainer.ledger.rows[-1].rmse, trainer.ledger.rows[-1].mae = ev.rmse, ev.mae
    a = _summary(trainer.ledger.rows, time.perf_counter() - wall0, time.process_time() - cpu0,
                 args.target)
    taus = [r.staleness_mean for r in trainer.ledger.rows if r.staleness_mean is not None]
    a["staleness_mean"] = sum(taus) / len(taus) if taus else None
    a["staleness_max"] = max((r.staleness_max or 0) for r in trainer.ledger.rows)
    a["discarded"] = sum(r.discarded for r in trainer.ledger.rows)
    a["lost"] = sum(r.lost for r in trainer.ledger.rows)
    a["max_contributions_used"] = trainer.contributions.contributions()
    speedup = (
        s["sim_seconds_to_target"] / a["sim_seconds_to_target"]
        if s["sim_seconds_to_target"] and a["sim_seconds_to_target"] else None
    )
    # A level both can be asked about: the synchronous run's final RMSE + 0.005.
    level = s["final_rmse"] + 0.005 if s["final_rmse"] else None
    t_sync, t_async = _first_time_at(sync.ledger.rows, level), _first_time_at(trainer.ledger.rows, level)
    out = {
        "protocol": protocol,
        "level_sync_final_plus_0.005": level,
        "sim_seconds_to_level": {"sync": t_sync, "async": t_async},
        "speedup_to_level": t_sync / t_async if t_sync and t_async else None,
        "epsilon": epsilon,
        "sync": s,
        "async": a,
        "speedup_to_target": speedup,
        "final_rmse_gap": (
            a["final_rmse"] - s["final_rmse"] if a["final_rmse"] and s["final_rmse"] else None
        ),
    }
    print(f"  -> time to rmse<={args.target}: sync {s['sim_seconds_to_target']} s, "
          f"async {a['sim_seconds_to_target']} s, speed-up {speedup}; final rmse sync "
          f"{s['final_rmse']}, async {a['final_rmse']}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="PATH/u.data (default: fetch ML-100K; --quick: synthetic)")
    ap.add_argument("--quick", action="store_true", help="small synthetic data, plaintext only")
    ap.add_argument("--json", type=Path, default=RESULTS)
    ap.add_argument("--protocols", nargs="+", default=["plaintext", "secagg+"])
    ap.add_argument("--dp-epsilon", type=float, default=None, help="also run user-level DP")
    ap.add_argument("--dp-protocol", default="plaintext")
    ap.add_argument("--delta", type=float, default=1e-4)
    ap.add_argument("--rounds", type=int, default=30, help="synchronous rounds")
    ap.add_argument("--cohort", type=int, default=200, help="expected synchronous cohort")
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--buffer", type=int, default=20)
    ap.add_argument("--slack", type=int, default=5)
    ap.add_argument("--max-staleness", type=int, default=20)
    ap.add_argument("--max-contributions", type=int, default=20)
    ap.add_argument("--eval-every", type=int, default=3)
    ap.add_argument("--work-ratio", type=float, default=2.0,
                    help="the async run stops after this many times the sync run's client updates "
                    "(or at the sync run's simulated end)")
    ap.add_argument("--async-server-lr", type=float, default=0.3,
                    help="FedBuff's server step (the synchronous run keeps the default 1.0)")
    ap.add_argument("--factors", type=int, default=20)
    ap.add_argument("--target", type=float, default=TARGET_RMSE)
    ap.add_argument("--compute-median", type=float, default=10.0)
    ap.add_argument("--network-median", type=float, default=1.0)
    ap.add_argument("--client-sigma", type=float, default=1.0)
    ap.add_argument("--task-sigma", type=float, default=0.3)
    ap.add_argument("--network-sigma", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        train, test = random_split(synthetic(200, 80, 20, rank=3, seed=0), 0.2, seed=0)
        data = "synthetic(200, 80, 20)"
        args.protocols, args.rounds, args.cohort, args.concurrency = ["plaintext"], 4, 40, 40
        args.buffer, args.slack, args.eval_every, args.factors = 10, 2, 2, 3
        args.target = 1.5
    else:
        path = args.data or subprocess.run(
            ["/work/shared/tools/fetch-movielens-100k"], capture_output=True, text=True, check=True
        ).stdout.strip()
        train, test = random_split(load_ratings(path), 0.2, seed=0)
        data = path
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    runs = [compare(train, test, p, args, epsilon=None) for p in args.protocols]
    if args.dp_epsilon is not None:
        runs.append(compare(train, test, args.dp_protocol, args, epsilon=args.dp_epsilon))
    result = {
        "benchmark": "async",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "data": data,
        "quick": args.quick,
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_before": load0, "load_after": os.getloadavg()[0]},
        "wall_seconds": time.perf_counter() - t0,
        "runs": runs,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
