"""PNG plots of federated runs from their ledgers (matplotlib, Agg canvas).

* :func:`plot_run` — one run, per round: test RMSE and MAE, HR@10 and
  NDCG@10 (leave-one-out), cumulative ε, and cost (bytes up and down, client and server CPU seconds).
* :func:`plot_comparison` — several runs against each other: RMSE against
  cumulative ε, against cumulative bytes and against cumulative CPU seconds.
* :func:`plot_simulated_time` — several runs against simulated time
  (``sim_seconds``, :mod:`protocols.clock`): RMSE, and for buffered runs the
  staleness of each buffer (synchronous against asynchronous training).

The figures are drawn on an Agg canvas directly (``matplotlib.figure.Figure``,
no ``pyplot``), so importing or calling this module never changes the
caller's matplotlib backend (a notebook keeps its inline backend) and works
on machines without a display.

A run without DP has ε = ∞ from its first release; its ε curve is not drawn
and the plot says so. In the comparison, such runs are drawn at the right
edge of the ε axis, labelled "∞".
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .ledger import Ledger, LedgerRow

__all__ = ["plot_comparison", "plot_run", "plot_simulated_time"]

Rows = Sequence[LedgerRow] | Ledger


def _rows(rows: Rows | Iterable[LedgerRow]) -> list[LedgerRow]:
    return list(rows.rows if isinstance(rows, Ledger) else rows)


def _finite(xs: Iterable[float]) -> list[float]:
    return [x if x is not None and math.isfinite(x) else math.nan for x in xs]


def _save(fig: Figure, path: str | os.PathLike[str]) -> None:
    FigureCanvasAgg(fig)
    fig.savefig(os.fspath(path), dpi=110)


def plot_run(rows: Rows, path: str | os.PathLike[str], *, title: str | None = None) -> None:
    """Write a 4-panel PNG of one run: rating error, ranking, cumulative ε and cost per round."""
    data = _rows(rows)
    if not data:
        raise ValueError("no ledger rows to plot")
    r = [row.round for row in data]
    fig = Figure(figsize=(16, 3.8))
    ax_acc, ax_rank, ax_eps, ax_cost = fig.subplots(1, 4)

    ax_acc.plot(r, _finite(row.rmse for row in data), "o-", ms=3, label="RMSE")
    ax_acc.plot(r, _finite(row.mae for row in data), "s--", ms=3, label="MAE")
    ax_acc.set(xlabel="round", ylabel="test error", title="accuracy")
    ax_acc.grid(alpha=0.3)
    ax_acc.legend()

    ax_rank.plot(r, _finite(row.hr10 for row in data), "o-", ms=3, label="HR@10")
    ax_rank.plot(r, _finite(row.ndcg10 for row in data), "s--", ms=3, label="NDCG@10")
    ax_rank.set(xlabel="round", ylabel="leave-one-out", title="ranking")
    ax_rank.grid(alpha=0.3)
    ax_rank.legend()

    eps = [row.epsilon for row in data]
    if any(math.isinf(e) for e in eps):
        finite_until = next(i for i, e in enumerate(eps) if math.isinf(e))
        if finite_until:
            ax_eps.plot(r[:finite_until], eps[:finite_until], "o-", ms=3)
        ax_eps.axvline(r[finite_until], color="tab:red", ls=":")
        ax_eps.text(
            0.5,
            0.5,
            f"ε = ∞ from round {r[finite_until]}\n(non-private release)",
            transform=ax_eps.transAxes,
            ha="center",
            va="center",
        )
    else:
        ax_eps.plot(r, eps, "o-", ms=3)
    ax_eps.set(xlabel="round", ylabel=f"cumulative ε (δ={data[-1].delta:g})", title="privacy")
    ax_eps.grid(alpha=0.3)

    mb = 1e-6
    ax_cost.plot(r, [row.bytes_up * mb for row in data], "o-", ms=3, label="MB up")
    ax_cost.plot(r, [row.bytes_down * mb for row in data], "s-", ms=3, label="MB down")
    ax_cost.set(xlabel="round", ylabel="MB per round (all clients)", title="cost")
    ax_cost.grid(alpha=0.3)
    ax_sec = ax_cost.twinx()
    ax_sec.plot(
        r,
        [row.client_seconds for row in data],
        "^--",
        ms=3,
        color="tab:green",
        label="client CPU s",
    )
    ax_sec.plot(
        r,
        [row.server_seconds for row in data],
        "v--",
        ms=3,
        color="tab:purple",
        label="server CPU s",
    )
    ax_sec.set_ylabel("CPU seconds per round")
    # Per-round costs are often flat: show them against zero, with headroom so a
    # flat line does not sit on the frame.
    for ax in (ax_cost, ax_sec):
        ax.set_ylim(0, ax.get_ylim()[1] * 1.1)
    lines = ax_cost.get_legend_handles_labels()
    lines2 = ax_sec.get_legend_handles_labels()
    ax_cost.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="lower left")

    for ax in (ax_acc, ax_eps, ax_cost):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    protocols = sorted({row.protocol for row in data})
    fig.suptitle(title or f"federated MF — {', '.join(protocols)}")
    fig.tight_layout()
    _save(fig, path)


def plot_comparison(
    runs: Mapping[str, Rows], path: str | os.PathLike[str], *, title: str | None = None
) -> None:
    """Write a PNG comparing runs: RMSE vs cumulative ε, vs cumulative MB, vs cumulative CPU s."""
    if not runs:
        raise ValueError("no runs to compare")
    # Per run, at each evaluated round: (ε, RMSE, cumulative MB, cumulative CPU s).
    # Costs accrue in every round, evaluated or not.
    points: dict[str, list[tuple[float, float, float, float]]] = {}
    for name, rows in runs.items():
        cum_mb = cum_s = 0.0
        pts = points.setdefault(name, [])
        for row in _rows(rows):
            cum_mb += (row.bytes_up + row.bytes_down) * 1e-6
            cum_s += row.client_seconds + row.server_seconds
            if math.isfinite(row.rmse):
                pts.append((row.epsilon, row.rmse, cum_mb, cum_s))
    finite_eps = [p[0] for pts in points.values() for p in pts if math.isfinite(p[0])]
    inf_x = max(finite_eps) * 1.3 if finite_eps else 1.0
    fig = Figure(figsize=(13, 4))
    ax_eps, ax_bytes, ax_sec = fig.subplots(1, 3)
    any_inf = False
    for name, pts in points.items():
        if not pts:
            continue
        eps = [e if math.isfinite(e) else inf_x for e, *_ in pts]
        any_inf |= any(not math.isfinite(e) for e, *_ in pts)
        rmse = [p[1] for p in pts]
        (line,) = ax_eps.plot(eps, rmse, "o-", ms=3, label=name)
        color = line.get_color()
        ax_bytes.plot([p[2] for p in pts], rmse, "o-", ms=3, color=color, label=name)
        ax_sec.plot([p[3] for p in pts], rmse, "o-", ms=3, color=color, label=name)
    if any_inf:
        ax_eps.axvline(inf_x, color="grey", ls=":")
        ax_eps.text(inf_x, ax_eps.get_ylim()[1], " ∞", va="top")
    ax_eps.set(xlabel="cumulative ε", ylabel="test RMSE", title="accuracy vs privacy")
    ax_bytes.set(xlabel="cumulative MB (up + down, all clients)", title="accuracy vs traffic")
    ax_sec.set(xlabel="cumulative CPU s (clients + server)", title="accuracy vs compute")
    ax_bytes.set_xscale("symlog")
    ax_sec.set_xscale("symlog")
    for ax in (ax_eps, ax_bytes, ax_sec):
        ax.grid(alpha=0.3)
    ax_eps.legend(fontsize=8)
    fig.suptitle(title or "federated MF runs compared")
    fig.tight_layout()
    _save(fig, path)


def plot_simulated_time(
    runs: Mapping[str, Rows],
    path: str | os.PathLike[str],
    *,
    target: float | None = None,
    title: str | None = None,
) -> None:
    """Write a PNG of runs against simulated seconds: test RMSE, and buffered runs' staleness.

    Rows without ``sim_seconds`` (a run without a virtual clock) are skipped;
    ``target`` draws a horizontal RMSE line.
    """
    if not runs:
        raise ValueError("no runs to plot")
    fig = Figure(figsize=(11, 4))
    ax_acc, ax_tau = fig.subplots(1, 2)
    for name, rows in runs.items():
        timed = [r for r in _rows(rows) if math.isfinite(r.sim_seconds)]
        scored = [r for r in timed if math.isfinite(r.rmse)]
        (line,) = ax_acc.plot(
            [r.sim_seconds for r in scored], [r.rmse for r in scored], "o-", ms=2, label=name
        )
        stale = [r for r in timed if r.staleness_mean is not None]
        if stale:
            ax_tau.plot(
                [r.sim_seconds for r in stale],
                [r.staleness_mean for r in stale],
                ".",
                ms=3,
                color=line.get_color(),
                label=f"{name} (mean per buffer)",
            )
    if target is not None:
        ax_acc.axhline(target, color="grey", ls=":", label=f"RMSE {target:g}")
    ax_acc.set(xlabel="simulated seconds", ylabel="test RMSE", title="accuracy vs simulated time")
    ax_tau.set(xlabel="simulated seconds", ylabel="staleness τ", title="staleness of applied updates")
    ax_acc.set_xscale("symlog")
    for ax in (ax_acc, ax_tau):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title or "synchronous vs buffered asynchronous training")
    fig.tight_layout()
    _save(fig, path)
