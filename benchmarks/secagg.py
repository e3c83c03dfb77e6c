"""SecAgg / SecAgg+ benchmarks: against plain numpy, against Flower's SecAgg+, and at scale.

Run from the repository root::

    .venv/bin/python benchmarks/secagg.py            # full sizes (several minutes)
    .venv/bin/python benchmarks/secagg.py --quick    # small sizes, < 1 minute
    .venv/bin/python benchmarks/secagg.py --json PATH

It prints a table (figure, target, PASS/MISS) and writes every raw number to
JSON (default ``benchmarks/results/secagg.json``). All ratios are measured in
the same run, on the same machine and inputs. CPU seconds are
``time.process_time`` of the process doing the work (the machine is shared, so
wall time is noisy); each figure is the median over ``--repeats`` runs unless
the table says otherwise. For every figure that misses its target, a cProfile
of the relevant role of OUR code is printed and stored in the JSON.

Sections:

1. numpy: plain numpy "clip, scale, round to int64, sum, divide" over the same
   float vectors vs our SecAgg+ server CPU seconds (``agg.stats.server_seconds``).
2. Flower: Flower's own SecAgg+ workflow and client mod driven in-process
   (``benchmarks/flower_secaggplus.py`` explains how and what is counted) vs
   ours, same n, d, degree (Flower ``num_shares`` = our k + 1: Flower counts the
   client itself) and Shamir threshold; then the complete graph (our
   ``protocols.SecAgg`` vs Flower with ``num_shares = n``).
3. scale: a whole SecAgg+ round with n=1000, 5% dropouts at ``masked_input``,
   clients in 2 worker processes, k chosen by ``choose_degree``.
4. active: the actively secure variant (a roster: signed advertisements, the
   consistency check round, and for SecAgg+ the graph seed by commit-then-reveal)
   against the semi-honest one, same inputs and threshold, same run: SecAgg at
   n=100 (client CPU, server CPU, bytes per client), and SecAgg+ at n=1000 with
   5% dropouts in one process (wall). Sections 1-3 run the semi-honest variant,
   as Flower's SecAgg+ is.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# This file is called secagg.py: keep its directory off sys.path so that
# `import secagg` (used by protocols) finds the package, not this script.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import protocols  # noqa: E402
from benchmarks import flower_secaggplus as flower  # noqa: E402

FULL = {
    "n": 100,
    "d": 100_000,
    "k": 14,
    "complete": True,
    "scale_n": 1000,
    "scale_d": 100_000,
    "scale_dropouts": 50,
    "repeats": 3,
    "flower_repeats": 3,
    "complete_repeats": 3,
    "flower_complete_repeats": 1,
    "scale_repeats": 1,
    "active_n": 100,
    "active_d": 100_000,
    "active_repeats": 3,
    "active_scale_n": 1000,
    "active_scale_d": 100_000,
    "active_scale_dropouts": 50,
}
QUICK = {
    "n": 20,
    "d": 10_000,
    "k": 14,
    "complete": False,
    "scale_n": 100,
    "scale_d": 10_000,
    "scale_dropouts": 5,
    "repeats": 3,
    "flower_repeats": 1,
    "complete_repeats": 1,
    "flower_complete_repeats": 0,
    "scale_repeats": 1,
    "active_n": 20,
    "active_d": 10_000,
    "active_repeats": 1,
    "active_scale_n": 60,
    "active_scale_d": 10_000,
    "active_scale_dropouts": 3,
}
CLIP = 1.0
BITS = 32
THRESHOLD = 0.5
# Reference figures for Flower measured earlier on this machine class (n=100, d=100K).
FLOWER_REFERENCE = {
    "secaggplus_server_seconds": 3.7,
    "secaggplus_client_seconds": 0.065,
    "secaggplus_upload_bytes_per_coordinate": 8.1,
    "complete_graph_seconds": 110.0,
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {msg}", flush=True)


def make_inputs(n: int, d: int, seed: int = 0) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {cid: rng.uniform(-CLIP, CLIP, d) for cid in range(n)}


def median(values: list[float]) -> float:
    return float(statistics.median(values))


# -- 1. plain numpy baseline ------------------------------------------------------


def numpy_encode_sum_decode(vectors: list[np.ndarray], clip: float, bits: int) -> np.ndarray:
    """The simplest honest numpy equivalent of fixed-point secure summation, minus security.

    Clip to [-clip, clip], scale so that n summands cannot overflow a signed
    ``bits``-bit sum, round to int64, sum, divide.
    """
    scale = (2 ** (bits - 1) - 1) / (clip * len(vectors))
    acc = np.zeros(vectors[0].shape, dtype=np.int64)
    for x in vectors:
        acc += np.rint(np.clip(x, -clip, clip) * scale).astype(np.int64)
    return acc / scale


def bench_numpy(inputs: dict[int, np.ndarray], repeats: int) -> dict[str, Any]:
    vectors = list(inputs.values())
    times = []
    for _ in range(max(repeats, 5)):
        t0 = time.process_time()
        total = numpy_encode_sum_decode(vectors, CLIP, BITS)
        times.append(time.process_time() - t0)
    expected = np.sum([np.clip(v, -CLIP, CLIP) for v in vectors], axis=0)
    return {
        "seconds": median(times),
        "seconds_all": times,
        "max_abs_error": float(np.max(np.abs(total - expected))),
    }


# -- ours --------------------------------------------------------------------------


def run_ours(
    proto,
    inputs: dict[int, np.ndarray],
    repeats: int,
    *,
    dropout: dict[int, str] | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    n = len(inputs)
    d = len(next(iter(inputs.values())))
    survivors_expected = sorted(set(inputs) - set(dropout or {}))
    expected = np.sum([np.clip(inputs[c], -CLIP, CLIP) for c in survivors_expected], axis=0)
    runs = []
    for _ in range(repeats):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        agg = protocols.simulate(proto, inputs, dropout=dropout, seed=0, workers=workers)
        wall, parent_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        s = agg.stats
        runs.append(
            {
                "server_seconds": s.server_seconds,
                "client_seconds_total": s.client_seconds,
                "client_seconds_per_client": s.client_seconds / n,
                "bytes_up": s.bytes_up,
                "bytes_down": s.bytes_down,
                "upload_bytes_per_coordinate": s.bytes_up / (n * d),
                "wall_seconds": wall,
                "simulate_wall_seconds": s.wall_seconds,
                # this process: the server, plus the simulator's transport when workers > 1
                # (with workers == 1 the clients run here too)
                "parent_cpu_seconds": parent_cpu,
                # what the wall time would be with the CPUs to ourselves: the simulator is
                # synchronous, so the parent's CPU plus the clients' CPU spread over the workers
                "uncontended_wall_estimate": (
                    parent_cpu + s.client_seconds / workers if workers > 1 else parent_cpu
                ),
                "loadavg": os.getloadavg()[0],
                "seconds_by_stage": {r: dict(v) for r, v in s.seconds_by_stage.items()},
                "messages": s.messages,
                "survivors": len(agg.survivors),
                "max_abs_error": float(np.max(np.abs(agg.total - expected))),
                "survivors_ok": agg.survivors == survivors_expected,
            }
        )
    out: dict[str, Any] = {"runs": runs}
    for key in (
        "server_seconds",
        "client_seconds_total",
        "client_seconds_per_client",
        "upload_bytes_per_coordinate",
        "wall_seconds",
        "simulate_wall_seconds",
        "parent_cpu_seconds",
        "uncontended_wall_estimate",
    ):
        out[key] = median([r[key] for r in runs])
    out["bytes_up"] = runs[0]["bytes_up"]
    out["bytes_down"] = runs[0]["bytes_down"]
    out["max_abs_error"] = max(r["max_abs_error"] for r in runs)
    out["survivors_ok"] = all(r["survivors_ok"] for r in runs)
    return out


def run_flower(inputs, num_shares: int, threshold: int, repeats: int) -> dict[str, Any]:
    runs = [
        flower.run_flower_secaggplus(
            inputs, num_shares=num_shares, reconstruction_threshold=threshold, clip=CLIP, seed=0
        )
        for _ in range(repeats)
    ]
    out: dict[str, Any] = {"runs": runs}
    for key in (
        "server_seconds",
        "client_seconds_per_client",
        "client_seconds_total",
        "upload_bytes_per_coordinate",
        "masked_vector_bytes_per_coordinate",
        "wall_seconds",
    ):
        out[key] = median([r[key] for r in runs])
    out["max_abs_error_of_mean"] = max(r["max_abs_error_of_mean"] for r in runs)
    return out


# -- profiles of our code -------------------------------------------------------------


class _ProfiledSession:
    """Delegates to a session; its entry points run under a cProfile.Profile.

    With ``dump_to``, the profile is written there once the session finishes
    (how client profiles get out of the simulator's forked worker processes).
    """

    def __init__(self, session, profiler: cProfile.Profile, dump_to: str | None = None) -> None:
        self._session = session
        self._profiler = profiler
        self._dump_to = dump_to

    def __getattr__(self, name: str):
        return getattr(self._session, name)

    def _run(self, fn: Callable, *args):
        self._profiler.enable()
        try:
            return fn(*args)
        finally:
            self._profiler.disable()
            if self._dump_to and self._session.finished:
                self._profiler.dump_stats(self._dump_to)

    def start(self):
        return self._run(self._session.start)

    def receive(self, message):
        return self._run(self._session.receive, message)

    def close_stage(self):
        return self._run(self._session.close_stage)

    def handle(self, event):  # what protocols.driver calls when a stage's deadline passes
        return self._run(self._session.handle, event)

    def provide_input(self, x):
        return self._run(self._session.provide_input, x)


class _ProfiledProtocol:
    """Wraps a protocol config so that some sessions run under cProfile.

    With ``server=True`` the server session (always in this process) feeds
    ``profiler``; each client in ``sample`` gets its own profiler, dumped to
    ``dump_dir`` when it finishes (so this works with worker processes too).
    """

    def __init__(self, proto, profiler: cProfile.Profile | None, sample=(), dump_dir=None):
        self._proto, self._profiler = proto, profiler
        self._sample, self._dump_dir = frozenset(sample), dump_dir

    def __getattr__(self, name: str):
        return getattr(self._proto, name)

    def server(self, *args, **kwargs):
        session = self._proto.server(*args, **kwargs)
        return session if self._profiler is None else _ProfiledSession(session, self._profiler)

    def client(self, client_id, *args, **kwargs):
        session = self._proto.client(client_id, *args, **kwargs)
        if client_id not in self._sample:
            return session
        dump_to = os.path.join(self._dump_dir, f"client-{client_id}.prof")
        return _ProfiledSession(session, cProfile.Profile(), dump_to)


def profile_ours(
    proto,
    inputs,
    roles: tuple[str, ...],
    *,
    dropout=None,
    workers: int = 1,
    sample_clients: int = 20,
    top: int = 25,
) -> dict[str, Any]:
    """cProfile of our code during one whole simulated round, per role.

    ``"server"``: the server session; ``"client"``: ``sample_clients`` surviving
    clients, merged (so the figures are for that many clients, not all of them).
    """
    import tempfile

    profiler = cProfile.Profile() if "server" in roles else None
    survivors = sorted(set(inputs) - set(dropout or {}))
    sample = survivors[:: max(1, len(survivors) // sample_clients)][:sample_clients]
    if "client" not in roles:
        sample = []
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        wrapped = _ProfiledProtocol(proto, profiler, sample, tmp)
        protocols.simulate(wrapped, inputs, dropout=dropout, seed=0, workers=workers)
        sources: dict[str, list] = {}
        if profiler is not None:
            sources["server"] = [profiler]
        if sample:
            sources["client"] = [str(f) for f in sorted(Path(tmp).glob("client-*.prof"))]
        for role, source in sources.items():
            text = {}
            for sort in ("tottime", "cumulative"):
                buf = io.StringIO()
                pstats.Stats(*source, stream=buf).strip_dirs().sort_stats(sort).print_stats(top)
                text[sort] = _trim_pstats(buf.getvalue())
            out[role] = {
                "role": role,
                "clients_profiled": len(source) if role == "client" else None,
                "n": len(inputs),
                "workers": workers,
                "top": top,
                "by_tottime": text["tottime"],
                "by_cumulative": text["cumulative"],
            }
    return out


def _trim_pstats(text: str) -> str:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("ncalls"):
            head = [ln for ln in lines[:i] if "function calls" in ln]
            return "\n".join(head + lines[i:]).rstrip()
    return text.rstrip()


# -- table ---------------------------------------------------------------------------------


class Table:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(
        self,
        key: str,
        label: str,
        value: float | None,
        fmt: str,
        target: float | None = None,
        *,
        lower_is_better: bool = True,
        target_text: str | None = None,
        note: str = "",
    ) -> dict[str, Any]:
        if value is None or target is None:
            status = "info" if value is not None else "n/a"
        else:
            ok = value <= target if lower_is_better else value >= target
            status = "PASS" if ok else "MISS"
        row = {
            "key": key,
            "figure": label,
            "value": value,
            "display": "-" if value is None else format(value, fmt),
            "target": target,
            "target_display": target_text
            or (
                ""
                if target is None
                else ("<= " if lower_is_better else ">= ") + format(target, fmt)
            ),
            "status": status,
            "note": note,
        }
        self.rows.append(row)
        return row

    def misses(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "MISS"]

    def render(self) -> str:
        w0 = max(len(r["figure"]) for r in self.rows)
        w1 = max(len(r["display"]) for r in self.rows)
        w2 = max(len(r["target_display"]) for r in self.rows)
        lines = [
            f"{'figure':<{w0}}  {'value':>{w1}}  {'target':<{w2}}  status",
            "-" * (w0 + w1 + w2 + 14),
        ]
        for r in self.rows:
            line = f"{r['figure']:<{w0}}  {r['display']:>{w1}}  {r['target_display']:<{w2}}  {r['status']}"
            if r["note"]:
                line += f"  ({r['note']})"
            lines.append(line)
        return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    env = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
    }
    if flower.available():
        env["flwr"] = flower.flower_version()
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, < 1 minute")
    parser.add_argument(
        "--json",
        type=Path,
        default=HERE / "results" / "secagg.json",
        help="where to write the raw numbers (default: benchmarks/results/secagg.json)",
    )
    parser.add_argument("--repeats", type=int, help="repeats of our runs (median reported)")
    parser.add_argument("--no-flower", action="store_true", help="skip the Flower comparison")
    parser.add_argument("--no-profile", action="store_true", help="no cProfile for misses")
    args = parser.parse_args(argv)

    cfg = dict(QUICK if args.quick else FULL)
    if args.repeats:
        cfg["repeats"] = cfg["complete_repeats"] = args.repeats
    n, d, k = cfg["n"], cfg["d"], cfg["k"]
    use_flower = not args.no_flower and flower.available()
    started = time.perf_counter()
    results: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "config": cfg,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "environment": environment(),
        "flower_reference": FLOWER_REFERENCE,
    }
    table = Table()
    profiles: dict[str, Any] = {}

    # ---- 1. numpy vs our SecAgg+ server --------------------------------------------------
    inputs = make_inputs(n, d)
    plus = protocols.SecAggPlus(k=k, threshold=THRESHOLD, bits=BITS, clip=CLIP, semi_honest=True)
    log(f"numpy baseline, n={n} d={d}")
    results["numpy"] = bench_numpy(inputs, cfg["repeats"])
    log(f"ours SecAgg+ k={k}, n={n} d={d}, {cfg['repeats']} repeats")
    ours = run_ours(plus, inputs, cfg["repeats"])
    ours["k"] = plus.degree(n)
    ours["threshold"] = plus.group_threshold(ours["k"] + 1, n)
    results["ours_secaggplus"] = ours
    ratio = ours["server_seconds"] / results["numpy"]["seconds"]
    results["numpy_ratio"] = ratio
    size = f"n={n} d={d // 1000}K"
    table.add(
        "numpy_seconds",
        f"numpy encode+sum+decode CPU s ({size})",
        results["numpy"]["seconds"],
        ".4f",
    )
    table.add(
        "ours_server_seconds",
        f"ours SecAgg+ k={ours['k']} server CPU s",
        ours["server_seconds"],
        ".4f",
    )
    table.add("numpy_ratio", "ours server / numpy", ratio, ".1f", 20.0, target_text="<= 20x")

    # ---- 2. Flower SecAgg+ ------------------------------------------------------------------
    t_plus = ours["threshold"]
    table.add(
        "ours_client_seconds",
        "ours SecAgg+ client CPU s (per client)",
        ours["client_seconds_per_client"],
        ".4f",
    )
    table.add(
        "ours_upload_bpc",
        "ours SecAgg+ upload bytes/coordinate",
        ours["upload_bytes_per_coordinate"],
        ".3f",
        4.1,
        note=f"masked payload {BITS / 8:g} + {ours['bytes_up'] / n / d - BITS / 8:.3f} overhead"
        + ("; target set for d=100K, per-client overhead is fixed" if args.quick else ""),
    )
    if use_flower:
        log(
            f"Flower SecAgg+ num_shares={k + 1} threshold={t_plus}, n={n} d={d}, "
            f"{cfg['flower_repeats']} repeats"
        )
        fl = run_flower(inputs, k + 1, t_plus, cfg["flower_repeats"])
        results["flower_secaggplus"] = fl
        ref = FLOWER_REFERENCE
        full = not args.quick
        table.add(
            "flower_server_seconds",
            "Flower SecAgg+ server CPU s",
            fl["server_seconds"],
            ".4f",
            note=f"reference {ref['secaggplus_server_seconds']}" if full else "",
        )
        table.add(
            "flower_client_seconds",
            "Flower SecAgg+ client CPU s (per client)",
            fl["client_seconds_per_client"],
            ".4f",
            note=f"reference {ref['secaggplus_client_seconds']}" if full else "",
        )
        table.add(
            "flower_upload_bpc",
            "Flower SecAgg+ upload bytes/coordinate",
            fl["upload_bytes_per_coordinate"],
            ".3f",
            note=f"reference {ref['secaggplus_upload_bytes_per_coordinate']}" if full else "",
        )
        r_server = ours["server_seconds"] / fl["server_seconds"]
        r_client = ours["client_seconds_per_client"] / fl["client_seconds_per_client"]
        results["flower_ratios"] = {"server": r_server, "client": r_client}
        table.add(
            "flower_server_ratio",
            "ours / Flower server CPU",
            r_server,
            ".3f",
            0.1,
            target_text="<= 0.100 (1/10)",
        )
        table.add(
            "flower_client_ratio",
            "ours / Flower client CPU",
            r_client,
            ".3f",
            0.5,
            target_text="<= 0.500 (1/2)",
        )
    else:
        results["flower_secaggplus"] = {
            "skipped": "flwr not importable" if not args.no_flower else "--no-flower"
        }

    # complete graph
    if cfg["complete"]:
        full_graph = protocols.SecAgg(threshold=THRESHOLD, bits=BITS, clip=CLIP, semi_honest=True)
        t_full = full_graph.group_threshold(n, n)
        log(f"ours SecAgg complete graph, n={n} d={d}, {cfg['complete_repeats']} repeats")
        oc = run_ours(full_graph, inputs, cfg["complete_repeats"])
        oc["threshold"] = t_full
        results["ours_secagg_complete"] = oc
        table.add(
            "ours_complete_server_seconds",
            "ours SecAgg (complete) server CPU s",
            oc["server_seconds"],
            ".4f",
        )
        table.add(
            "ours_complete_client_seconds",
            "ours SecAgg (complete) client CPU s (per client)",
            oc["client_seconds_per_client"],
            ".4f",
        )
        if use_flower and cfg["flower_complete_repeats"]:
            log(f"Flower complete graph num_shares={n} threshold={t_full} (once; slow)")
            fc = run_flower(inputs, n, t_full, cfg["flower_complete_repeats"])
            results["flower_complete"] = fc
            table.add(
                "flower_complete_server_seconds",
                "Flower complete server CPU s",
                fc["server_seconds"],
                ".3f",
                note="single run",
            )
            table.add(
                "flower_complete_client_seconds",
                "Flower complete client CPU s (per client)",
                fc["client_seconds_per_client"],
                ".4f",
                note="single run",
            )
            ours_total = oc["server_seconds"] + oc["client_seconds_total"]
            fl_total = fc["server_seconds"] + fc["client_seconds_total"]
            rc = {
                "server": oc["server_seconds"] / fc["server_seconds"],
                "client": oc["client_seconds_per_client"] / fc["client_seconds_per_client"],
                "total_cpu": ours_total / fl_total,
            }
            results["complete_ratios"] = rc
            table.add(
                "complete_server_ratio",
                "ours / Flower complete server CPU",
                rc["server"],
                ".4f",
                1 / 50,
                target_text="<= 0.0200 (1/50)",
            )
            table.add(
                "complete_client_ratio", "ours / Flower complete client CPU", rc["client"], ".4f"
            )
            table.add(
                "complete_total_ratio",
                "ours / Flower complete server+all clients CPU",
                rc["total_cpu"],
                ".4f",
            )

    # ---- 3. scale --------------------------------------------------------------------------
    sn, sd, sdrop = cfg["scale_n"], cfg["scale_d"], cfg["scale_dropouts"]
    del inputs
    scale_inputs = make_inputs(sn, sd, seed=1)
    rng = np.random.default_rng(2)
    dropout = {int(c): "masked_input" for c in rng.choice(sn, sdrop, replace=False)}
    scale_proto = protocols.SecAggPlus(threshold=THRESHOLD, bits=BITS, clip=CLIP, semi_honest=True)
    sk = scale_proto.degree(sn)
    log(f"scale: SecAgg+ n={sn} d={sd} k={sk}, {sdrop} dropouts at masked_input, workers=2")
    sc = run_ours(scale_proto, scale_inputs, cfg["scale_repeats"], dropout=dropout, workers=2)
    sc.update(k=sk, threshold=scale_proto.group_threshold(sk + 1, sn), dropouts=sdrop, workers=2)
    results["scale"] = sc
    ssize = f"n={sn} d={sd // 1000}K"
    table.add("scale_k", f"scale {ssize}: k (choose_degree)", float(sk), ".0f")
    table.add(
        "scale_wall_seconds",
        f"scale {ssize}: round wall s (workers=2)",
        sc["wall_seconds"],
        ".2f",
        60.0,
        note=f"load avg {os.getloadavg()[0]:.1f}",
    )
    table.add(
        "scale_wall_estimate",
        f"scale {ssize}: uncontended wall estimate s",
        sc["uncontended_wall_estimate"],
        ".2f",
        note="parent CPU + client CPU / 2; not a measurement",
    )
    table.add(
        "scale_server_seconds", f"scale {ssize}: server CPU s", sc["server_seconds"], ".3f", 10.0
    )
    table.add(
        "scale_client_seconds",
        f"scale {ssize}: client CPU s (per client)",
        sc["client_seconds_per_client"],
        ".4f",
    )
    table.add(
        "scale_upload_bpc",
        f"scale {ssize}: upload bytes/coordinate",
        sc["upload_bytes_per_coordinate"],
        ".3f",
    )

    # ---- 4. actively secure vs semi-honest ---------------------------------------------------
    an, ad = cfg["active_n"], cfg["active_d"]
    active_inputs = make_inputs(an, ad, seed=3)
    # One threshold for both variants: the smallest the active one admits (t > 2n/3),
    # so the ratio is the cost of the signatures and the extra round, nothing else.
    t_active = 2 * an // 3 + 1
    pair = {
        "semi-honest": protocols.SecAgg(threshold=t_active, bits=BITS, clip=CLIP, semi_honest=True),
        # No roster: simulate enrols the cohort (simulated device registration).
        "active": protocols.SecAgg(threshold=t_active, bits=BITS, clip=CLIP),
    }
    results["active"] = {"n": an, "d": ad, "threshold": t_active}
    for variant, proto in pair.items():
        log(f"{variant} SecAgg n={an} d={ad} t={t_active}, {cfg['active_repeats']} repeats")
        results["active"][variant] = run_ours(proto, active_inputs, cfg["active_repeats"])
    semi, act = results["active"]["semi-honest"], results["active"]["active"]
    asize = f"n={an} d={ad // 1000}K"
    ratios = {
        "client_cpu": act["client_seconds_per_client"] / semi["client_seconds_per_client"],
        "server_cpu": act["server_seconds"] / semi["server_seconds"],
        "bytes_per_client": (act["bytes_up"] + act["bytes_down"])
        / (semi["bytes_up"] + semi["bytes_down"]),
    }
    results["active"]["ratios"] = ratios
    table.add(
        "active_client_ratio",
        f"active / semi-honest SecAgg client CPU ({asize})",
        ratios["client_cpu"],
        ".3f",
        1.3,
        note=f"{act['client_seconds_per_client']:.4f} vs {semi['client_seconds_per_client']:.4f} s",
    )
    table.add(
        "active_server_ratio",
        f"active / semi-honest SecAgg server CPU ({asize})",
        ratios["server_cpu"],
        ".3f",
        1.3,
        note=f"{act['server_seconds']:.4f} vs {semi['server_seconds']:.4f} s",
    )
    table.add(
        "active_bytes_ratio",
        f"active / semi-honest SecAgg bytes per client, up + down ({asize})",
        ratios["bytes_per_client"],
        ".4f",
        1.05,
        note="Bonawitz et al. 2017 report 1.73x for their full protocol at 2^10 users",
    )
    asn, asd, asdrop = cfg["active_scale_n"], cfg["active_scale_d"], cfg["active_scale_dropouts"]
    del active_inputs
    active_scale_inputs = make_inputs(asn, asd, seed=4)
    drop_rng = np.random.default_rng(5)
    active_dropout = {
        int(c): "masked_input" for c in drop_rng.choice(asn, asdrop, replace=False)
    }
    active_plus = protocols.SecAggPlus(bits=BITS, clip=CLIP)
    log(f"active SecAgg+ n={asn} d={asd}, {asdrop} dropouts at masked_input, one process")
    ap = run_ours(active_plus, active_scale_inputs, 1, dropout=active_dropout, workers=1)
    ap.update(k=active_plus.degree(asn), dropouts=asdrop, workers=1)
    results["active"]["secaggplus_scale"] = ap
    table.add(
        "active_scale_wall_seconds",
        f"active SecAgg+ n={asn} d={asd // 1000}K, {asdrop} dropouts: round wall s (1 process)",
        ap["wall_seconds"],
        ".2f",
        60.0,
        note=f"k={ap['k']}; load avg {os.getloadavg()[0]:.1f}",
    )
    table.add(
        "active_scale_client_seconds",
        f"active SecAgg+ n={asn}: client CPU s (per client)",
        ap["client_seconds_per_client"],
        ".4f",
    )
    table.add(
        "active_scale_server_seconds",
        f"active SecAgg+ n={asn}: server CPU s",
        ap["server_seconds"],
        ".3f",
    )

    # ---- correctness guard ---------------------------------------------------------------
    checks = {
        "ours_secaggplus_error": ours["max_abs_error"],
        "scale_error": sc["max_abs_error"],
        "scale_survivors_ok": sc["survivors_ok"],
        "active_semi_honest_error": semi["max_abs_error"],
        "active_error": act["max_abs_error"],
        "active_scale_error": ap["max_abs_error"],
        "active_scale_survivors_ok": ap["survivors_ok"],
    }
    if "ours_secagg_complete" in results:
        checks["ours_complete_error"] = results["ours_secagg_complete"]["max_abs_error"]
    if use_flower:
        checks["flower_error_of_mean"] = results["flower_secaggplus"]["max_abs_error_of_mean"]
    results["checks"] = checks

    # ---- profiles of our code for the misses -----------------------------------------------
    if not args.no_profile:
        wanted: dict[str, list] = {}

        def want(name: str, proto, role: str, prof_inputs, drop=None, workers: int = 1) -> None:
            entry = wanted.setdefault(name, [proto, prof_inputs, set(), drop, workers])
            entry[2].add(role)

        for row in table.misses():
            key = row["key"]
            if key in ("numpy_ratio", "flower_server_ratio"):
                want("secaggplus", plus, "server", None)
            elif key == "flower_client_ratio":
                want("secaggplus", plus, "client", None)
            elif key == "complete_server_ratio":
                complete = protocols.SecAgg(threshold=THRESHOLD, bits=BITS, clip=CLIP, semi_honest=True)
                want("complete", complete, "server", None)
            elif key == "scale_server_seconds":
                want("scale", scale_proto, "server", scale_inputs, dropout, 2)
            elif key == "scale_wall_seconds":
                # wall = the server's CPU + the clients' CPU over 2 workers (+ transport)
                want("scale", scale_proto, "server", scale_inputs, dropout, 2)
                want("scale", scale_proto, "client", scale_inputs, dropout, 2)
        for name, (proto, prof_inputs, roles, drop, workers) in wanted.items():
            prof_inputs = make_inputs(n, d) if prof_inputs is None else prof_inputs
            log(f"profiling {name}: {sorted(roles)}")
            got = profile_ours(
                proto, prof_inputs, tuple(sorted(roles)), dropout=drop, workers=workers
            )
            for role, prof in got.items():
                profiles[f"{name}_{role}"] = prof
    results["profiles"] = profiles

    results["rows"] = table.rows
    results["environment"]["loadavg_end"] = os.getloadavg()
    results["elapsed_seconds"] = time.perf_counter() - started

    print()
    print(f"SecAgg benchmarks ({results['mode']}), CPU = time.process_time, medians")
    print(table.render())
    if use_flower:
        print(
            "\nFlower: its own SecAggPlusWorkflow stage methods and secaggplus_mod, driven "
            "in-process through Flower's wire form (benchmarks/flower_secaggplus.py); upload = "
            "message header protobuf + deflated objects of the client->server replies."
        )
    print("checks:", json.dumps(checks))
    for name, prof in profiles.items():
        who = prof["role"]
        if prof["clients_profiled"]:
            who = f"client code ({prof['clients_profiled']} of {prof['n']} clients)"
        else:
            who = f"{who} code"
        print(f"\n== cProfile of our {who}: {name} (by tottime) ==")
        print(prof["by_tottime"])
        print(f"\n== cProfile of our {who}: {name} (by cumulative) ==")
        print(prof["by_cumulative"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, default=_json_default) + "\n")
    print(f"\nwrote {args.json} ({results['elapsed_seconds']:.0f} s)")
    return 0


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)


if __name__ == "__main__":
    sys.exit(main())
