"""Buffered asynchronous training (recsys.federated.buffered) and synchronous rounds in
simulated time (recsys.federated.timed), on small synthetic data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from protocols.clock import LognormalDelays
from recsys.cli import main
from recsys.data import random_split, synthetic
from recsys.federated import cohort_uploads
from recsys.federated.buffered import BufferedTrainer
from recsys.federated.timed import TimedTrainer
from recsys.plan import Plan


@pytest.fixture(scope="module")
def data():
    return random_split(synthetic(80, 40, 12, rank=2, seed=3), 0.2, seed=3)


def _buffered(data, plan=None, **kw):
    train, test = data
    args = dict(delays=LognormalDelays(seed=2), buffer_size=6, concurrency=20, slack=2,
                max_staleness=6, buffers=6, n_factors=2, protocol_seed=0, eval_every=3)
    args.update(kw)
    return BufferedTrainer(train, test, plan or Plan("plaintext"), **args)


def test_one_ledger_row_per_buffer_with_versions_staleness_and_time(data):
    trainer = _buffered(data, Plan("secagg"))
    ledger = trainer.run()
    rows = ledger.rows
    assert [r.round for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r.model_version for r in rows] == [1, 2, 3, 4, 5, 6]
    times = [r.sim_seconds for r in rows]
    assert times == sorted(times) and times[0] > 0 and times[-1] == trainer.now
    for r, rel in zip(rows, trainer.driver.releases):
        assert r.survivors == len(rel.contributors) and r.sampled <= 6
        assert r.staleness_max == max(rel.staleness)
        assert r.staleness_mean == pytest.approx(np.mean(rel.staleness))
        assert r.discarded == len(rel.discarded) and r.lost == len(rel.lost)
        assert r.bytes_up > 0 and math.isinf(r.epsilon)
    assert [math.isnan(r.rmse) for r in rows] == [True, True, False, True, True, False]
    assert any(r.staleness_max > 0 for r in rows), "concurrency > K should make stale updates"


def test_same_seed_same_run(data):
    a, b = _buffered(data).run(), _buffered(data).run()
    assert [repr((r.sim_seconds, r.rmse, r.staleness_mean)) for r in a] == [
        repr((r.sim_seconds, r.rmse, r.staleness_mean)) for r in b
    ]


def test_the_server_applies_the_staleness_weighted_buffer(data):
    # Replaying the first buffers by hand on a fresh copy of the run: each
    # contributor's upload from the initial model (cohort_uploads, per-device
    # math, so the cohort it is computed in does not matter), its item deltas
    # weighted by 1/sqrt(1+τ) and its counts not, summed with numpy.
    trainer = _buffered(data, buffers=2)
    fresh = _buffered(data, buffers=2)
    factors, bias = fresh.server.download()
    trainer.run()
    d = trainer.layout.item_dim
    checked = 0
    for rel in trainer.driver.releases:
        initial = [t for t in rel.contributors if t.base_version == 0]
        if len(initial) != len(rel.contributors):
            continue
        cohort = np.array([t.client for t in rel.contributors])
        uploads = cohort_uploads(
            fresh.population, fresh.layout, fresh.config, factors, bias, cohort, fresh.plan
        )
        weights = np.array([1.0 / math.sqrt(1.0 + tau) for tau in rel.staleness])
        expected = uploads.sum(axis=0)
        expected[:d] = (uploads[:, :d] * weights[:, None]).sum(axis=0)
        np.testing.assert_allclose(rel.total, expected, rtol=1e-9, atol=1e-12)
        checked += 1
    assert checked and any(tau > 0 for r in trainer.driver.releases for tau in r.staleness)


def test_dp_buffered_run_spends_its_target_over_the_cap(data):
    plan = Plan("plaintext", clip=1.0, target_epsilon=4.0, local_epochs=1)
    trainer = _buffered(data, plan, max_contributions=2, buffers=8)
    ledger = trainer.run()
    assert max(trainer.driver.tasks.values()) <= 2
    eps = [r.epsilon for r in ledger]
    assert eps == sorted(eps) and 0 < eps[-1] <= 4.0 + 1e-6
    assert all(r.sigma == trainer.sigma for r in ledger)


@pytest.mark.parametrize(
    ("plan", "kw", "match"),
    [
        (Plan("plaintext", q=0.5), {}, "q=1"),
        (Plan("plaintext", clip=1.0, noise_multiplier=1.0), {}, "max_contributions"),
        (Plan("local"), {}, "aggregation protocol"),
    ],
)
def test_refused_settings(data, plan, kw, match):
    with pytest.raises(ValueError, match=match):
        _buffered(data, plan, **kw)


def test_sync_round_time_is_the_slowest_client_plus_the_session(data):
    train, test = data
    delays = LognormalDelays(seed=4)
    trainer = TimedTrainer(train, test, Plan("secagg", q=0.3), delays=delays, rounds=3,
                           n_factors=2)
    now, tasks = 0.0, {}
    for _ in range(3):
        row = trainer.step()
        cohort = trainer.last["cohort"]
        slowest = max(delays.task(int(c), tasks.get(int(c), 0)).total for c in cohort)
        for c in cohort:
            tasks[int(c)] = tasks.get(int(c), 0) + 1
        session = sum(  # active SecAgg: rounds 0-3 and the consistency check
            max(delays.round_trip(int(c), row.round, s) for c in cohort) for s in range(5)
        )
        now += slowest + session
        assert row.sim_seconds == pytest.approx(now, rel=1e-12)


def test_cli_async_writes_buffer_rows_and_a_time_plot(tmp_path):
    out = tmp_path / "run"
    rc = main([
        "train", "--data", "synthetic", "--synthetic-users", "60", "--synthetic-items", "30",
        "--synthetic-ratings", "10", "--protocol", "plaintext", "--async", "--rounds", "3",
        "--buffer-size", "5", "--concurrency", "12", "--factors", "2", "--out", str(out),
        "--no-progress",
    ])
    assert rc == 0
    rows = [json.loads(line) for line in (out / "ledger.jsonl").read_text().splitlines()]
    assert [r["model_version"] for r in rows] == [1, 2, 3]
    assert all(r["sim_seconds"] > 0 and r["staleness_max"] is not None for r in rows)
    assert (out / "time.png").stat().st_size > 0


def test_cli_async_refuses_sampling(tmp_path):
    with pytest.raises(SystemExit, match="q"):
        main(["train", "--data", "synthetic", "--synthetic-users", "30", "--async",
              "--q", "0.5", "--out", str(tmp_path / "x"), "--no-progress"])
