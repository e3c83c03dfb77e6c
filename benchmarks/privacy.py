"""Privacy accounting benchmark: our RDP and PLD accountants vs dp_accounting (and opacus).

Run from the repository root::

    .venv/bin/python benchmarks/privacy.py                 # full grid (a few minutes)
    .venv/bin/python benchmarks/privacy.py --quick         # 4 settings, < 1 minute
    .venv/bin/python benchmarks/privacy.py --json PATH     # default benchmarks/results/privacy.json

For every setting of the grid (Poisson sampling rate q, noise multiplier σ,
steps T, δ = 1e-5) it measures ε and the time of one query *including
composition* (a fresh accountant, ``compose``, ``get_epsilon``) for:

- ours: ``secagg.privacy.RDPAccountant`` and ``secagg.privacy.PLDAccountant``;
- dp_accounting: ``RdpAccountant`` and ``PLDAccountant`` (its default
  ``value_discretization_interval=1e-4``);
- opacus' RDP and PRV accountants, if opacus is importable (it is optional).

Then noise calibration (target ε = 3, δ = 1e-5, q = 0.01, T = 10,000): our
``calibrate_noise_multiplier`` (PLD and RDP) vs dp_accounting's
``mechanism_calibration.calibrate_dp_mechanism`` with its PLD and RDP
accountants.

Times are CPU seconds of this process (``time.process_time``; the machine may
be shared, so wall time is noisy) and wall seconds, median over ``--repeats``
runs (dp_accounting's PLD, which takes seconds, runs ``--slow-repeats`` times).
All figures come from one run on one machine. The reference setting
(q = 0.01, σ = 1.1, T = 10,000) has true ε = 5.1926 (dp_accounting's
fine-grid PLD and prv_accountant agree); with ``--reference`` dp_accounting's
PLD at Δ = 2e-5 is also computed for every setting (slow).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))

from secagg import privacy  # noqa: E402

GRID = {"q": [0.001, 0.01, 0.1], "sigma": [0.8, 1.1, 2.0], "steps": [1000, 10_000]}
QUICK = [(0.01, 1.1, 10_000), (0.001, 2.0, 1000), (0.1, 0.8, 1000), (0.01, 0.8, 10_000)]
DELTA = 1e-5
REFERENCE_SETTING = (0.01, 1.1, 10_000)
TRUE_EPSILON_REFERENCE = 5.1926


def _timed(fn: Callable[[], float], repeats: int) -> dict[str, Any]:
    """Median CPU and wall seconds of ``fn`` over ``repeats`` runs, and its value."""
    cpu, wall, value = [], [], None
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        value = fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return {"value": value, "cpu_s": statistics.median(cpu), "wall_s": statistics.median(wall)}


def _clear_caches() -> None:
    # RDP curves are memoised per (q, σ, orders); clear so every timed run
    # computes from scratch, like dp_accounting does.
    from secagg.privacy import rdp_formulas

    rdp_formulas._rdp_sampled_gaussian_cached.cache_clear()


def _ours(cls: type, q: float, sigma: float, steps: int) -> Callable[[], float]:
    def run() -> float:
        _clear_caches()
        acct = cls()
        acct.compose(privacy.PoissonSampledEvent(q, privacy.GaussianEvent(sigma)), count=steps)
        return acct.get_epsilon(delta=DELTA)

    return run


def _dpa(
    kind: str, q: float, sigma: float, steps: int, interval: float = 1e-4
) -> Callable[[], float]:
    import dp_accounting as dpa
    from dp_accounting.pld import pld_privacy_accountant
    from dp_accounting.rdp import rdp_privacy_accountant

    def run() -> float:
        if kind == "rdp":
            acct = rdp_privacy_accountant.RdpAccountant()
        else:
            acct = pld_privacy_accountant.PLDAccountant(value_discretization_interval=interval)
        acct.compose(
            dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma)), steps)
        )
        return float(acct.get_epsilon(DELTA))

    return run


def _opacus(kind: str, q: float, sigma: float, steps: int) -> Callable[[], float] | None:
    try:
        from opacus.accountants import PRVAccountant, RDPAccountant
    except ImportError:
        return None

    def run() -> float:
        acct = RDPAccountant() if kind == "rdp" else PRVAccountant()
        acct.history = [(sigma, q, steps)]
        return float(acct.get_epsilon(delta=DELTA))

    return run


def bench_grid(
    settings: list[tuple[float, float, int]], args: argparse.Namespace
) -> list[dict[str, Any]]:
    rows = []
    for q, sigma, steps in settings:
        row: dict[str, Any] = {"q": q, "sigma": sigma, "steps": steps, "delta": DELTA}
        row["ours_rdp"] = _timed(_ours(privacy.RDPAccountant, q, sigma, steps), args.repeats)
        row["ours_pld"] = _timed(_ours(privacy.PLDAccountant, q, sigma, steps), args.repeats)
        row["dpa_rdp"] = _timed(_dpa("rdp", q, sigma, steps), args.repeats)
        row["dpa_pld"] = _timed(_dpa("pld", q, sigma, steps), args.slow_repeats)
        for kind in ("rdp", "prv"):
            fn = _opacus(kind, q, sigma, steps)
            if fn is not None:
                row[f"opacus_{kind}"] = _timed(fn, args.slow_repeats)
        if args.reference:
            row["dpa_pld_fine"] = _timed(_dpa("pld", q, sigma, steps, interval=2e-5), 1)
        if (q, sigma, steps) == REFERENCE_SETTING:
            row["true_epsilon"] = TRUE_EPSILON_REFERENCE
        rows.append(row)
        _print_row(row)
    return rows


def _print_header() -> None:
    print(
        f"{'q':>6} {'sigma':>5} {'steps':>6} | {'eps ours_pld':>12} {'eps dpa_pld':>11} "
        f"{'diff':>9} | {'eps ours_rdp':>12} {'eps dpa_rdp':>11} | "
        f"{'t ours_pld':>10} {'t dpa_pld':>9} {'ratio':>6} | {'t ours_rdp':>10} {'t dpa_rdp':>9}"
    )


def _print_row(r: dict[str, Any]) -> None:
    op, dp_, orr, dr = r["ours_pld"], r["dpa_pld"], r["ours_rdp"], r["dpa_rdp"]
    print(
        f"{r['q']:>6} {r['sigma']:>5} {r['steps']:>6} | {op['value']:>12.5f} {dp_['value']:>11.5f} "
        f"{op['value'] - dp_['value']:>+9.1e} | {orr['value']:>12.5f} {dr['value']:>11.5f} | "
        f"{op['cpu_s']:>10.3f} {dp_['cpu_s']:>9.3f} {dp_['cpu_s'] / max(op['cpu_s'], 1e-9):>5.1f}x | "
        f"{orr['cpu_s']:>10.3f} {dr['cpu_s']:>9.3f}",
        flush=True,
    )
    extra = []
    for k in ("opacus_rdp", "opacus_prv", "dpa_pld_fine"):
        if k in r:
            extra.append(f"{k}: eps={r[k]['value']:.5f} t={r[k]['cpu_s']:.3f}s")
    if "true_epsilon" in r:
        extra.append(
            f"true eps {r['true_epsilon']}: ours_pld {r['ours_pld']['value'] - r['true_epsilon']:+.1e}"
        )
    if extra:
        print("        " + "; ".join(extra))


def bench_calibration(args: argparse.Namespace) -> dict[str, Any]:
    import dp_accounting as dpa
    from dp_accounting import mechanism_calibration
    from dp_accounting.pld import pld_privacy_accountant
    from dp_accounting.rdp import rdp_privacy_accountant

    target, q, steps = 3.0, 0.01, 10_000
    out: dict[str, Any] = {"target_epsilon": target, "delta": DELTA, "q": q, "steps": steps}

    for kind in ("pld", "rdp"):
        out[f"ours_{kind}"] = _timed(
            lambda kind=kind: (
                _clear_caches()
                or privacy.calibrate_noise_multiplier(
                    target_epsilon=target,
                    delta=DELTA,
                    sampling_probability=q,
                    steps=steps,
                    accountant=kind,
                )
            ),
            args.repeats,
        )

    def dpa_cal(factory: Callable[[], Any]) -> float:
        def event(sigma: float) -> Any:
            return dpa.SelfComposedDpEvent(
                dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma)), steps
            )

        return float(mechanism_calibration.calibrate_dp_mechanism(factory, event, target, DELTA))

    out["dpa_pld"] = _timed(
        lambda: dpa_cal(pld_privacy_accountant.PLDAccountant), args.slow_repeats
    )
    out["dpa_rdp"] = _timed(
        lambda: dpa_cal(rdp_privacy_accountant.RdpAccountant), args.slow_repeats
    )
    for who in ("ours_pld", "ours_rdp", "dpa_pld", "dpa_rdp"):
        r = out[who]
        print(
            f"calibration {who:>8}: sigma={r['value']:.5f}  cpu={r['cpu_s']:.3f}s  wall={r['wall_s']:.3f}s"
        )
    print(
        f"calibration speed-up (PLD): {out['dpa_pld']['cpu_s'] / out['ours_pld']['cpu_s']:.1f}x; "
        f"(RDP): {out['dpa_rdp']['cpu_s'] / out['ours_rdp']['cpu_s']:.1f}x"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=HERE / "results" / "privacy.json")
    ap.add_argument("--quick", action="store_true", help="4 settings instead of the 18 of the grid")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--slow-repeats", type=int, default=1, help="repeats of dp_accounting's PLD")
    ap.add_argument(
        "--reference", action="store_true", help="also dp_accounting PLD at Δ=2e-5 (slow)"
    )
    args = ap.parse_args(argv)

    if args.quick:
        settings = QUICK
    else:
        settings = [(q, s, t) for q in GRID["q"] for s in GRID["sigma"] for t in GRID["steps"]]
    try:
        import opacus  # noqa: F401

        have_opacus = True
    except ImportError:
        have_opacus = False
        print("opacus is not installed: its accountants are skipped")

    _print_header()
    rows = bench_grid(settings, args)
    pld_ratio = [r["dpa_pld"]["cpu_s"] / r["ours_pld"]["cpu_s"] for r in rows]
    worst_gap = max(r["ours_pld"]["value"] - r["dpa_pld"]["value"] for r in rows)
    print(
        f"PLD: ours faster than dp_accounting by {statistics.median(pld_ratio):.1f}x (median), "
        f"{min(pld_ratio):.1f}x (worst); largest eps gap ours - dp_accounting: {worst_gap:+.1e}"
    )
    print(
        f"PLD query time (ours, incl. composition): max {max(r['ours_pld']['cpu_s'] for r in rows):.3f}s CPU"
    )
    calibration = bench_calibration(args)

    result = {
        "benchmark": "privacy",
        "command": " ".join(
            [Path(sys.executable).name, "benchmarks/privacy.py", *(argv or sys.argv[1:])]
        ),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "processor": platform.processor(),
        },
        "versions": _versions(),
        "opacus": have_opacus,
        "grid": rows,
        "calibration": calibration,
        "summary": {
            "pld_speedup_median": statistics.median(pld_ratio),
            "pld_speedup_min": min(pld_ratio),
            "pld_eps_gap_max_vs_dp_accounting": worst_gap,
        },
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.json}")
    return 0


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for pkg in ("numpy", "scipy", "dp-accounting", "opacus"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


if __name__ == "__main__":
    raise SystemExit(main())
