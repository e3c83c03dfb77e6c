"""Import cost of the packages: what a user pays before the first round.

    python benchmarks/imports.py [--json PATH] [--quick] [--repo PATH]

Each case runs in a fresh interpreter (``sys.executable -c ...``, the
checkout first on ``PYTHONPATH``), so nothing is cached in-process; the figure
is the median wall time of the whole interpreter run over 5 runs (2 with
``--quick``), next to the time the statement itself took inside the child
(perf_counter around it, without interpreter start-up). Each case first has
one discarded warm-up run, then the cases take turns. Cases:

* baselines of the same run: ``pass`` (interpreter start-up) and
  ``import numpy`` (the floor for anything numeric);
* ``import secagg`` and ``import protocols``, against the targets of issue 12
  (0.2 s and 0.3 s wall, on this machine);
* ``import protocols`` plus a small SecAgg+ simulation (10 clients, 100
  values), which should need none of the heavy libraries either.

For each case the child also reports which heavy libraries (tenseal, phe,
gmpy2, scipy, torch, matplotlib) it ended up importing. ``--repo`` measures
another checkout (for a before/after figure) with this script.

Results are printed as a table and written as JSON (default
benchmarks/results/imports.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

HEAVY = ("tenseal", "phe", "gmpy2", "scipy", "torch", "matplotlib")
TARGETS_S = {"import secagg": 0.2, "import protocols": 0.3}
SIMULATION = (
    "import numpy as np, protocols; "
    "protocols.simulate(protocols.SecAggPlus(), "
    "{c: np.full(100, 0.1) for c in range(10)}, seed=0)"
)
CASES = {
    "pass": "pass",
    "import numpy": "import numpy",
    "import secagg": "import secagg",
    "import protocols": "import protocols",
    "protocols + SecAgg+ simulation": SIMULATION,
}
# What each child runs around the case's statement (the statement is exec'd so
# that the timer starts after the interpreter and this preamble are up).
_CHILD = """\
import json, sys, time
t0 = time.perf_counter()
exec(compile({stmt!r}, "<case>", "exec"))
t1 = time.perf_counter()
print(json.dumps({{"inner_s": t1 - t0, "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def _child_env(repo: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(repo), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _run_once(stmt: str, repo: Path, env: dict[str, str]) -> tuple[float, dict]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD.format(stmt=stmt, heavy=HEAVY)],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"case {stmt!r} failed:\n{proc.stderr[-2000:]}")
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


def run_cases(cases: dict[str, str], repo: Path, runs: int) -> dict[str, dict]:
    """Median wall and in-child seconds of each case over ``runs`` fresh interpreters.

    One discarded warm-up run per case first (bytecode and file caches), then
    the cases take turns, so a change in the machine's load hits all alike.
    """
    env = _child_env(repo)
    for stmt in cases.values():
        _run_once(stmt, repo, env)
    walls: dict[str, list[float]] = {name: [] for name in cases}
    inners: dict[str, list[float]] = {name: [] for name in cases}
    heavy: dict[str, set[str]] = {name: set() for name in cases}
    for _ in range(runs):
        for name, stmt in cases.items():
            wall, report = _run_once(stmt, repo, env)
            walls[name].append(wall)
            inners[name].append(report["inner_s"])
            heavy[name].update(report["heavy"])
    return {
        name: {
            "median_wall_s": statistics.median(walls[name]),
            "min_wall_s": min(walls[name]),
            "max_wall_s": max(walls[name]),
            "median_inner_s": statistics.median(inners[name]),
            "runs": runs,
            "heavy_modules": sorted(heavy[name]),
            "statement": stmt,
        }
        for name, stmt in cases.items()
    }


def _git_commit(repo: Path) -> str | None:
    try:
        return subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--json",
        type=Path,
        default=REPO / "benchmarks" / "results" / "imports.json",
        help="where to write the results (default: benchmarks/results/imports.json)",
    )
    parser.add_argument("--quick", action="store_true", help="2 runs per case (smoke run)")
    parser.add_argument(
        "--repo", type=Path, default=REPO, help="checkout to measure (default: this one)"
    )
    args = parser.parse_args(argv)
    repo = args.repo.resolve()
    runs = 2 if args.quick else 5

    results = run_cases(CASES, repo, runs)

    width = max(map(len, results))
    print(f"checkout: {repo} ({_git_commit(repo) or 'no git'}), {runs} fresh interpreters per case")
    print(
        f"{'case':<{width}}  {'wall (median)':>13}  {'in child':>9}  {'target':>7}  heavy modules"
    )
    print("-" * (width + 60))
    verdicts: dict[str, bool] = {}
    for name, r in results.items():
        target = TARGETS_S.get(name)
        if target is not None:
            verdicts[name] = r["median_wall_s"] <= target
        mark = "" if target is None else f"{target:.1f} s " + ("ok" if verdicts[name] else "MISS")
        heavy = ", ".join(r["heavy_modules"]) or "-"
        print(
            f"{name:<{width}}  {r['median_wall_s']:11.3f} s  {r['median_inner_s']:7.3f} s"
            f"  {mark:>9}  {heavy}"
        )
    start_up = results["pass"]["median_wall_s"]
    print(
        f"\nAbove interpreter start-up ({start_up:.3f} s): "
        + ", ".join(
            f"{name} +{r['median_wall_s'] - start_up:.3f} s"
            for name, r in results.items()
            if name != "pass"
        )
    )

    report = {
        "benchmark": "import cost",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_commit": _git_commit(repo),
        "checkout": str(repo),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
        },
        "versions": {"python": platform.python_version()},
        "targets_s": TARGETS_S,
        "results": results,
        "meets_targets": verdicts,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
