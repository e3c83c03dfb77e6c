"""What a protocol round trip costs on Flower's deployment engine, against Flower's own floor.

Run from the repository root (needs flwr 1.42's deployment engine)::

    .venv/bin/python benchmarks/flower_deployment.py            # 3 SuperNodes, d=1,000
    .venv/bin/python benchmarks/flower_deployment.py --quick    # 3 nodes, d=100, SecAgg+ only, R=2
    .venv/bin/python benchmarks/flower_deployment.py --json PATH

In one run, on one loopback deployment (a SuperLink and ``--nodes``
SuperNodes, started by :class:`secagg_fl_app.loopback.Deployment`, default
``--isolation subprocess``: every message starts a fresh ClientApp process):

- ``floor``: an empty app (``benchmarks/flower_empty_app``: the ClientApp
  answers a query at once and imports flwr only), seconds per round trip to
  every node, replies pulled every 0.2 s as the adapter does; and the same
  with Flower's own ``grid.send_and_receive`` (3 s between pulls);
- per protocol: the app's task "vector" (``examples/flower_app``) with a key
  setup every round (``session-rounds = 1``), seconds per round trip = the
  round's wall seconds / its round trips, and the ratio to the floor (goal:
  at most 1.15);
- per SecAgg/SecAgg+ protocol, ``multi_round``: the same task through one
  multi-round session of ``--session-rounds`` rounds (issue 17): round trips
  and wall seconds of the setup round and of each later round (goal: 2 round
  trips per training round after the setup, 3 with the consistency check of
  the actively secure variant the app runs with its roster), per training
  round over the session, and the ratios to the single-round rounds above;
- ``in_process``: :func:`protocols.simulate` of the same configuration,
  seconds per round trip.

Writes every raw number to JSON (default
``benchmarks/results/flower_deployment.json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "examples" / "flower_app")]


from secagg_fl_app import loopback  # noqa: E402
from secagg_fl_app.prepare import prepare  # noqa: E402
from secagg_fl_app.task import vector_of, vector_protocol  # noqa: E402

import protocols  # noqa: E402
from protocols import registry  # noqa: E402

EMPTY_APP = ROOT / "benchmarks" / "flower_empty_app"
TIMEOUT = 900.0


def in_process(name: str, n: int, dim: int, rounds: int, bits: int, key_bits: int) -> dict:
    # No roster: simulate() enrols its clients, so SecAgg/SecAgg+ run actively secure here
    # as on the deployment (which gets the roster prepare wrote).
    proto = vector_protocol(name, bits, key_bits, None, False)
    walls, trips = [], 0
    for r in range(1, rounds + 1):
        inputs = {c: vector_of(c, r, dim) for c in range(n)}
        t0 = time.perf_counter()
        protocols.simulate(proto, inputs, round=r)
        walls.append(time.perf_counter() - t0)
        trips = proto.round_trips
    return {"wall_seconds": walls, "stages": trips}


def _rounds(dep, work: Path, name: str, label: str, **config) -> list[dict]:
    """The app's "vector" rounds of one run (only those that completed)."""
    out = work / f"vector-{name}-{label}"
    dep.run_app(out, task="vector", protocol=name, **config)
    rows = loopback.wait_for(name, lambda: loopback.run_finished(out), TIMEOUT)
    return [r for r in rows if r["kind"] == "vector" and r["status"] == "ok"]


def _per_round(rows: list[dict]) -> dict:
    """Round trips and wall seconds per training round of ``rows`` (one run)."""
    mean = statistics.fmean
    return {
        "round_trips": [r["round_trips"] for r in rows],
        "wall_seconds": [r["wall_seconds"] for r in rows],
        "session_round": [r["session_round"] for r in rows],
        "setup": [r["setup"] for r in rows],
        "round_trips_per_round": mean(r["round_trips"] for r in rows) if rows else float("nan"),
        "wall_seconds_per_round": mean(r["wall_seconds"] for r in rows) if rows else float("nan"),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--dim", type=int, default=None)
    p.add_argument("--rounds", type=int, default=None, help="protocol rounds per protocol")
    p.add_argument("--trips", type=int, default=None, help="empty-app round trips")
    p.add_argument("--protocols", nargs="*", default=None)
    p.add_argument("--key-bits", type=int, default=2048)
    p.add_argument(
        "--session-rounds",
        type=int,
        default=None,
        help="rounds of the multi-round session per SecAgg/SecAgg+ protocol (0: skip it)",
    )
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/flower_deployment.json")
    a = p.parse_args()
    dim = a.dim or (100 if a.quick else 1000)
    rounds = a.rounds or (1 if a.quick else 2)
    trips = a.trips or (2 if a.quick else 5)
    names = a.protocols or (["secagg+"] if a.quick else ["plaintext", "secagg", "secagg+"])
    session_rounds = a.session_rounds if a.session_rounds is not None else (2 if a.quick else 5)
    result: dict = {
        "nodes": a.nodes,
        "dim": dim,
        "rounds": rounds,
        "session_rounds": session_rounds,
        "python": platform.python_version(),
        "flwr": __import__("flwr").__version__,
        "protocols": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        parts = prepare(work / "data", users=a.nodes, items=20, ratings_per_user=8)
        with loopback.Deployment(work / "dep", parts) as dep:
            floors = {}
            for label, poll in (("poll_0.2s", 0.2), ("send_and_receive", 0.0)):
                out = work / f"empty-{label}"
                dep.run_app(out, app=EMPTY_APP, trips=trips, **{"poll-interval": poll})
                path = out / "trips.json"
                loopback.wait_for(f"the empty app ({label})", path.exists, TIMEOUT)
                floors[label] = json.loads(path.read_text())["seconds"]
            result["floor"] = floors
            floor = statistics.median(floors["poll_0.2s"])
            print(
                f"empty app, {a.nodes} nodes: {floor:.2f} s per round trip (polling 0.2 s); "
                f"{statistics.median(floors['send_and_receive']):.2f} s with send_and_receive"
            )
            for name in names:
                common = {"dim": dim, "key-bits": a.key_bits}
                done = _rounds(dep, work, name, "single", rounds=rounds, **common, **{"session-rounds": 1})
                per_trip = [r["wall_seconds"] / r["round_trips"] for r in done]
                local = in_process(name, a.nodes, dim, rounds, 32, a.key_bits)
                median = statistics.median(per_trip) if per_trip else float("nan")
                single = _per_round(done)
                entry = {
                    "deployment_seconds_per_trip": per_trip,
                    "round_trips": [r["round_trips"] for r in done],
                    "ratio_to_floor": median / floor,
                    "single_round": single,
                    "in_process": local,
                    "in_process_seconds_per_trip": statistics.median(local["wall_seconds"])
                    / local["stages"],
                }
                result["protocols"][name] = entry
                print(
                    f"{name:10s} {median:6.2f} s per round trip on the deployment engine "
                    f"({median / floor:.2f}x the empty app); in process "
                    f"{entry['in_process_seconds_per_trip'] * 1e3:.1f} ms per stage"
                )
                print(
                    f"{'':10s} single-round sessions: {single['round_trips_per_round']:.1f} round "
                    f"trips and {single['wall_seconds_per_round']:.1f} s wall per training round"
                )
                multi_ok = issubclass(registry.config_class(name), protocols.SecAgg)
                if session_rounds < 2 or not multi_ok:
                    continue
                rows = _rounds(
                    dep,
                    work,
                    name,
                    "multi",
                    rounds=session_rounds,
                    **common,
                    **{"session-rounds": session_rounds},
                )
                multi = _per_round(rows)
                later = [r for r in rows if r["session_round"] > 0]
                multi["after_setup"] = _per_round(later)
                multi["ratio_wall_per_round"] = (
                    multi["wall_seconds_per_round"] / single["wall_seconds_per_round"]
                )
                multi["ratio_wall_after_setup"] = (
                    multi["after_setup"]["wall_seconds_per_round"] / single["wall_seconds_per_round"]
                )
                entry["multi_round"] = multi
                setup = rows[0] if rows and rows[0]["session_round"] == 0 else None
                print(
                    f"{'':10s} one session of {session_rounds} rounds: setup round "
                    + (f"{setup['round_trips']} round trips {setup['wall_seconds']:.1f} s; " if setup else "failed; ")
                    + f"after the setup {multi['after_setup']['round_trips_per_round']:.1f} round "
                    f"trips and {multi['after_setup']['wall_seconds_per_round']:.1f} s wall per "
                    f"training round ({multi['ratio_wall_after_setup']:.2f}x single-round); over "
                    f"the session {multi['round_trips_per_round']:.1f} round trips and "
                    f"{multi['wall_seconds_per_round']:.1f} s per round "
                    f"({multi['ratio_wall_per_round']:.2f}x)"
                )
    result["floor_seconds_per_trip"] = floor
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(result, indent=2, default=float))
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
