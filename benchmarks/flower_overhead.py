"""What running a protocol through Flower costs, per round, over our in-process simulator.

Run from the repository root (needs the ``flower`` extra)::

    .venv/bin/python benchmarks/flower_overhead.py             # n=10, d=10,000, 5 rounds
    .venv/bin/python benchmarks/flower_overhead.py --quick     # d=1,000, 2 rounds
    .venv/bin/python benchmarks/flower_overhead.py --json PATH

Same protocol configuration, same n and d, in the same run:

- ``simulate``: :func:`protocols.simulate`, client sessions in this process
  (``workers=1``) and in 2 forked workers (``workers=2``); wall seconds of
  the whole call.
- ``flower``: :func:`protocols.adapters.flower.run_round` inside a
  ServerApp, clients in a ``ClientApp`` on Flower's simulation engine (Ray
  backend, ``n`` virtual SuperNodes on 2 Ray actors of 1 CPU each, the
  2-core budget of this machine); wall seconds of the ``run_round`` call.
  Every client step restores the session from its snapshot in
  ``context.state`` and stores the new one. Ray start-up and the first
  (import-heavy) round of the actors are excluded: one warm-up round first.
- ``floor``: one Flower round trip that carries nothing (a ``query`` echo
  to every node): Flower's own cost per step (its grid polls for replies
  every 0.1 s), times the round trips a protocol round needs.

Reported per protocol: median wall seconds per round, the ratio flower /
simulate(workers=1), round trips, and the share of the Flower round that is
the empty-transport floor. Protocol bytes are the same on both paths (the
sessions are the same); they are printed as a check. Clients' vectors are
public test data drawn on each client (the simulator gets the same shapes).
Writes every raw number to JSON (default ``benchmarks/results/flower_overhead.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")  # flwr reads it at import time
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# benchmarks/ holds a secagg.py: keep this directory off sys.path so that
# `import secagg` (used by protocols) finds the package, not that script.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import protocols  # noqa: E402

try:
    import flwr
    from flwr.app import ConfigRecord, Context, Message, RecordDict
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    from protocols.adapters import flower as fa
except ImportError as exc:  # pragma: no cover - environment
    sys.exit(f"this benchmark needs Flower: pip install 'secagg-fl[flower]' ({exc})")


def make_protocols(names: list[str]) -> dict[str, protocols.AggregationProtocol]:
    table = {
        "plaintext": protocols.Plaintext(),
        "secagg+": protocols.SecAggPlus(threshold=0.5, bits=32, clip=1.0, semi_honest=True),
        "secagg": protocols.SecAgg(threshold=0.5, bits=32, clip=1.0, semi_honest=True),
        "paillier": protocols.Paillier(key_bits=2048, bits=32, clip=1.0),
        "ckks": protocols.CKKS(clip=1.0),
    }
    return {name: table[name] for name in names}


class ClientVector:
    """input_fn: public test data, drawn on the client from its partition id and the round."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def __call__(self, message: Message, context: Context) -> np.ndarray:
        r = int(message.content.config_records[fa.RECORD]["round"])
        rng = np.random.default_rng([int(context.node_config["partition-id"]), r])
        return rng.uniform(-1.0, 1.0, self.dim)


def build_client_app(table, dim: int):
    app = fa.make_client_app(table, ClientVector(dim))

    @app.query("echo")
    def echo(message: Message, context: Context) -> Message:
        return Message(RecordDict({"echo": ConfigRecord({"ok": True})}), reply_to=message)

    return app


def time_simulate(proto, n: int, d: int, rounds: int, workers: int) -> dict[str, Any]:
    walls, bytes_up = [], []
    for r in range(rounds):
        rng = np.random.default_rng(r)
        inputs = {c: rng.uniform(-1.0, 1.0, d) for c in range(n)}
        t0 = time.perf_counter()
        agg = protocols.simulate(proto, inputs, workers=workers)
        walls.append(time.perf_counter() - t0)
        bytes_up.append(agg.stats.bytes_up)
    return {"wall_seconds": walls, "median": statistics.median(walls), "bytes_up": bytes_up}


def run_flower(table, n: int, d: int, rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}

    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        t0 = time.perf_counter()
        nodes = fa.wait_for_nodes(grid, n)
        out["nodes_seconds"] = time.perf_counter() - t0
        r = 0
        t0 = time.perf_counter()  # warm-up: actors start and import numpy, tenseal, ...
        fa.run_round(grid, protocols.Plaintext(), nodes, d, round=r, name="plaintext")
        out["warmup_seconds"] = time.perf_counter() - t0
        floors = []
        for _ in range(rounds):
            msgs = [
                Message(RecordDict(), dst_node_id=node, message_type="query.echo") for node in nodes
            ]
            t0 = time.perf_counter()
            replies = list(grid.send_and_receive(msgs))
            floors.append(time.perf_counter() - t0)
            assert len(replies) == n and not any(m.has_error() for m in replies)
        out["floor"] = {"wall_seconds": floors, "median": statistics.median(floors)}
        for name, proto in table.items():
            walls, trips, bytes_up, client_cpu, server_cpu = [], [], [], [], []
            for _ in range(rounds):
                r += 1
                t0 = time.perf_counter()
                res = fa.run_round(grid, proto, nodes, d, round=r, name=name)
                walls.append(time.perf_counter() - t0)
                trips.append(res.round_trips)
                bytes_up.append(res.stats.bytes_up)
                client_cpu.append(res.stats.client_seconds)
                server_cpu.append(res.stats.server_seconds)
                assert res.survivors == list(range(n)), res.failures
            out[name] = {
                "wall_seconds": walls,
                "median": statistics.median(walls),
                "round_trips": trips,
                "bytes_up": bytes_up,
                "client_cpu_seconds": client_cpu,
                "server_cpu_seconds": server_cpu,
            }

    # Ray's workers import `protocols` too, wherever this is run from; they inherit
    # the environment of the Ray processes this one starts.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p
    )
    t0 = time.perf_counter()
    run_simulation(
        server,
        build_client_app(table, d),
        num_supernodes=n,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": 2, "include_dashboard": False},
        },
    )
    out["simulation_seconds"] = time.perf_counter() - t0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--d", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--protocols", default="plaintext,secagg+")
    parser.add_argument("--quick", action="store_true", help="d=1,000 and 2 rounds")
    parser.add_argument("--json", default=str(HERE / "results" / "flower_overhead.json"))
    args = parser.parse_args()
    if args.quick:
        args.d, args.rounds = 1_000, 2
    table = make_protocols(args.protocols.split(","))

    sim = {
        name: {w: time_simulate(p, args.n, args.d, args.rounds, w) for w in (1, 2)}
        for name, p in table.items()
    }
    fl = run_flower(table, args.n, args.d, args.rounds)

    floor = fl["floor"]["median"]
    rows = []
    header = (
        f"{'protocol':10} {'n':>3} {'d':>7} {'sim w=1 s':>10} {'sim w=2 s':>10} "
        f"{'flower s':>9} {'ratio':>7} {'trips':>5} {'floor share':>11} {'bytes up (sim/flower)':>23}"
    )
    print(header)
    print("-" * len(header))
    for name in table:
        s1, s2, f = sim[name][1]["median"], sim[name][2]["median"], fl[name]
        trips = statistics.median(f["round_trips"])
        row = {
            "protocol": name,
            "n": args.n,
            "d": args.d,
            "simulate_w1_seconds": s1,
            "simulate_w2_seconds": s2,
            "flower_seconds": f["median"],
            "ratio_flower_over_simulate_w1": f["median"] / s1,
            "round_trips": trips,
            "floor_share": trips * floor / f["median"],
            "bytes_up_simulate": sim[name][1]["bytes_up"][0],
            "bytes_up_flower": f["bytes_up"][0],
        }
        rows.append(row)
        print(
            f"{name:10} {args.n:>3} {args.d:>7} {s1:>10.3f} {s2:>10.3f} {f['median']:>9.3f} "
            f"{row['ratio_flower_over_simulate_w1']:>6.1f}x {trips:>5.0f} "
            f"{row['floor_share']:>10.0%} {row['bytes_up_simulate']:>11}/{row['bytes_up_flower']}"
        )
    print(
        f"\nFlower floor: {floor:.3f} s per empty round trip to {args.n} nodes; "
        f"warm-up round {fl['warmup_seconds']:.1f} s; whole simulation {fl['simulation_seconds']:.1f} s"
    )

    result = {
        "benchmark": "flower_overhead",
        "args": vars(args),
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "flwr": flwr.__version__,
            "numpy": np.__version__,
        },
        "rows": rows,
        "simulate": sim,
        "flower": fl,
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
