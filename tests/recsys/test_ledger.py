"""Ledger: JSONL round trip, ε equals an independent accountant's, plots are written."""

from __future__ import annotations

import json
import math

import pytest

from recsys.data import random_split, synthetic
from recsys.federated import FederatedTrainer
from recsys.ledger import Ledger, LedgerRow, read_jsonl, write_jsonl
from recsys.plots import plot_comparison, plot_run
from recsys.policy import Plan
from secagg import privacy

PNG = b"\x89PNG\r\n\x1a\n"


def _row(**kw) -> LedgerRow:
    base = dict(
        round=1,
        protocol="secagg+",
        rmse=0.93,
        mae=0.73,
        epsilon=1.5,
        delta=1e-5,
        bytes_up=10,
        bytes_down=20,
        client_seconds=0.5,
        server_seconds=0.25,
        survivors=9,
    )
    return LedgerRow(**{**base, **kw})


def test_jsonl_round_trip(tmp_path):
    rows = [
        _row(),
        _row(round=2, epsilon=math.inf, rmse=math.nan, mae=math.nan, status="aborted"),
        _row(
            round=3,
            sigma=1.2,
            clip=0.5,
            dp_mode="central",
            events=['{"x": 1}'],
            plan=Plan("secagg+", clip=0.5, noise_multiplier=1.2).to_dict(),
        ),
    ]
    path = tmp_path / "ledger.jsonl"
    write_jsonl(rows, path)
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    for line in lines:
        json.loads(line)  # strict JSON: no Infinity / NaN literals
    assert "Infinity" not in path.read_text() and "NaN" not in path.read_text()
    back = read_jsonl(path)
    assert back[0] == rows[0] and back[2] == rows[2]
    assert back[1].epsilon == math.inf and math.isnan(back[1].rmse) and back[1].status == "aborted"
    assert Plan.from_dict(back[2].plan) == Plan("secagg+", clip=0.5, noise_multiplier=1.2)


def test_read_jsonl_names_the_bad_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(_row().to_dict()) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2"):
        read_jsonl(path)


def _dp_run(tmp_path, accountant, plan, rounds=4):
    train, test = random_split(synthetic(40, 30, 12, rank=3, seed=3), 0.2, seed=3)
    t = FederatedTrainer(
        train,
        test,
        plan,
        rounds=rounds,
        delta=1e-4,
        accountant=accountant,
        n_factors=2,
        ledger_path=str(tmp_path / "ledger.jsonl"),
    )
    t.run()
    return t, read_jsonl(tmp_path / "ledger.jsonl")


@pytest.mark.parametrize("accountant", ["pld", "rdp"])
@pytest.mark.parametrize(
    "plan",
    [
        Plan("secagg+", q=0.5, clip=1.0, noise_multiplier=1.1, count_weight=0.3),
        Plan(
            "secagg+",
            q=1.0,
            clip=1.0,
            noise_multiplier=1.1,
            dp_mode="distributed",
            dropout=0.25,
            count_weight=0.3,
        ),
    ],
    ids=["central-sampled", "distributed-dropouts"],
)
def test_ledger_epsilon_equals_an_independent_accountant(tmp_path, accountant, plan):
    t, rows = _dp_run(tmp_path, accountant, plan)
    # The file is the ledger (as dicts: non-finite floats such as an unclocked run's
    # sim_seconds are NaN, which never equals itself).
    assert [r.to_dict() for r in rows] == [r.to_dict() for r in t.ledger.rows]
    fresh = {"pld": privacy.PLDAccountant, "rdp": privacy.RDPAccountant}[accountant]
    # 1. From the events recorded in the file.
    acct = fresh()
    for row in rows:
        for e in row.events:
            acct.compose(privacy.event_from_json(e))
        assert row.epsilon == pytest.approx(acct.get_epsilon(1e-4), rel=1e-9)
    # 2. From first principles: what each round's mechanism is.
    acct = fresh()
    for row in rows:
        if plan.dp_mode == "central":
            event = privacy.PoissonSampledEvent(0.5, privacy.GaussianEvent(1.1))
        else:  # distributed: shortfall accounting, sigma * sqrt(survivors / expected shares)
            shares = row.sampled * (1 - plan.dropout)
            event = privacy.GaussianEvent(1.1 * math.sqrt(row.survivors / shares))
        acct.compose(event)
        assert row.epsilon == pytest.approx(acct.get_epsilon(1e-4), rel=1e-6)
    assert 0 < rows[0].epsilon < rows[-1].epsilon < math.inf


def test_ledger_epsilon_after_does_not_change_the_ledger():
    ledger = Ledger(1e-5)
    e = privacy.GaussianEvent(2.0)
    assert ledger.epsilon == 0.0 and ledger.epsilon_after(privacy.NoOpEvent()) == 0.0
    after = ledger.epsilon_after(e, count=3)
    assert ledger.epsilon == 0.0
    ledger.compose([e, e, e])
    assert ledger.epsilon == pytest.approx(after)
    ledger.compose([privacy.NonPrivateEvent()])
    assert ledger.epsilon == math.inf
    with pytest.raises(ValueError):
        Ledger(0.0)
    with pytest.raises(ValueError):
        Ledger(1e-5, accountant="moments")


def test_plots_are_written(tmp_path):
    train, test = random_split(synthetic(30, 20, 10, rank=2, seed=0), 0.2, seed=0)
    runs = {}
    for name, plan in {
        "plain": Plan("plaintext"),
        "dp": Plan("plaintext", clip=1.0, noise_multiplier=1.0, count_weight=0.3),
    }.items():
        t = FederatedTrainer(train, test, plan, rounds=3, n_factors=2, eval_every=2)
        runs[name] = t.run()
        plot_run(runs[name], tmp_path / f"{name}.png")
    plot_comparison(runs, tmp_path / "compare.png")
    for name in ("plain.png", "dp.png", "compare.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5_000
    with pytest.raises(ValueError):
        plot_run([], tmp_path / "empty.png")
