"""The Flower app on Flower's deployment engine: a real SuperLink and SuperNodes on loopback.

One recommender run on 3 SuperNodes (SecAgg+ training round, then the
evaluation round on the devices) during which one SuperNode is killed (SIGKILL) mid-round: both rounds
complete with the other nodes and the failure is charged to the dead node.
Then a short protocol round over TLS with SuperNode authentication. Every
process is started by the test on free loopback ports and stopped whatever
happens (:class:`secagg_fl_app.loopback.Deployment`); readiness and progress are
polled from the processes' logs and the app's output files.
"""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr.serverapp")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "flower_app"))

from secagg_fl_app import loopback  # noqa: E402
from secagg_fl_app.prepare import prepare  # noqa: E402
from secagg_fl_app.task import vector_of  # noqa: E402

from recsys.ledger import read_jsonl  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("flower-superlink", path=str(loopback.BIN)) is None,
        reason="flwr's deployment engine (flower-superlink) is not installed",
    ),
]

RUN_TIMEOUT = 600.0  # generous: a loaded 2-core machine starts a process per message


def test_recsys_run_survives_a_killed_supernode(tmp_path):
    parts = prepare(tmp_path / "data", users=3, items=30, ratings_per_user=12, seed=1)
    assert len(parts) == 3
    out = tmp_path / "out"
    with loopback.Deployment(tmp_path / "plain", parts) as dep:
        victim = dep.nodes[2]
        victim_id = dep.node_ids[2]
        sent = victim.text().count("Sending: train.secagg_fl")
        dep.run_app(out, task="mf", protocol="secagg+", rounds=1, factors=3, timeout=0.0)
        # Kill the victim once it has logged its third reply of the training round (active
        # SecAgg+: advert, reveal, shares). Its reveal has then surely reached the server
        # (the shares step follows every reveal; a reveal lost to a kill right after it was
        # sent aborts the round by design), and its masked input is still to come.
        loopback.wait_for(
            "the victim's third protocol reply",
            lambda: (
                victim.text().count("Sending: train.secagg_fl") >= sent + 3
                or loopback.run_finished(out)
            ),
            RUN_TIMEOUT,
        )
        assert not loopback.run_finished(out), "the run ended before the node was killed"
        victim.kill()
        rounds = loopback.wait_for(
            "the run to end", lambda: loopback.run_finished(out), RUN_TIMEOUT
        )
    train, evaluate = (next(r for r in rounds if r["kind"] == k) for k in ("train", "evaluate"))
    others = sorted(n for n in dep.node_ids if n != victim_id)
    for r in (train, evaluate):
        assert r["status"] == "ok", r
        assert sorted(r["survivors"]) == others
        assert set(r["failures"]) == {str(victim_id)}
    # With timeout=0 (wait for every reply) the only way a node drops is an error
    # reply: the SuperLink's, from node 0 ("Node Unavailable" once the heartbeat is
    # missed, or "Reply message objects are unavailable" if it died uploading). The
    # adapter charges it to the node whose message it answers.
    assert train["failures"][str(victim_id)].startswith("Flower error ")
    row = read_jsonl(out / "ledger.jsonl")[-1]
    assert row.status == "ok" and row.survivors == 2 and row.sampled == 3
    assert math.isfinite(row.rmse) and 0.0 <= row.hr10 <= 1.0 and row.eval_bytes > 0


def test_tls_and_supernode_authentication(tmp_path):
    parts = prepare(tmp_path / "data", users=3, items=20, ratings_per_user=8, seed=2)
    out = tmp_path / "out"
    dim = 8
    with loopback.Deployment(tmp_path / "tls", parts, tls=True, auth=True) as dep:
        assert "--insecure" not in " ".join(dep.superlink.popen.args)
        dep.run_app(out, task="vector", protocol="secagg", rounds=1, dim=dim)
        rounds = loopback.wait_for(
            "the run to end", lambda: loopback.run_finished(out), RUN_TIMEOUT
        )
    (r,) = [r for r in rounds if r["kind"] == "vector"]
    assert r["status"] == "ok" and not r["failures"]
    assert sorted(r["survivors"]) == sorted(dep.node_ids)
    expect = sum(vector_of(n, 1, dim) for n in dep.node_ids)
    np.testing.assert_allclose(r["total"], expect, atol=1e-6)


def test_multi_round_session_on_the_deployment_engine(tmp_path):
    """One actively secure SecAgg session of 3 rounds (one key setup) on 4 SuperNodes; a
    node is killed after the setup round: it is charged with the failure of the round it
    died in and never takes part again, the other rounds go on with one setup; every
    round's total is the exact sum of its survivors' public test vectors; after the setup
    a round costs 3 round trips (masked input, consistency check, unmasking)."""
    parts = prepare(tmp_path / "data", users=4, items=20, ratings_per_user=8, seed=3)
    out = tmp_path / "out"
    dim, rounds = 6, 3
    with loopback.Deployment(tmp_path / "multi", parts) as dep:
        victim, victim_id = dep.nodes[3], dep.node_ids[3]
        dep.run_app(
            out, task="vector", protocol="secagg", rounds=rounds, dim=dim, **{"session-rounds": 0}
        )
        loopback.wait_for(
            "the setup round",
            lambda: any(r["kind"] == "vector" for r in loopback.read_rounds(out)),
            RUN_TIMEOUT,
        )
        victim.kill()
        rows = loopback.wait_for("the run to end", lambda: loopback.run_finished(out), RUN_TIMEOUT)
    done = [r for r in rows if r["kind"] == "vector"]
    assert [r["status"] for r in done] == ["ok"] * rounds, done
    assert [r["session_round"] for r in done] == [0, 1, 2]  # one setup for the three rounds
    assert [r["round_trips"] for r in done] == [5, 3, 3]
    assert sorted(done[0]["survivors"]) == sorted(dep.node_ids)
    dead = [i for i, r in enumerate(done) if str(victim_id) in r["failures"]]
    assert len(dead) == 1 and dead[0] >= 1
    for r in done[dead[0] + 1 :]:  # out of the session for good: never asked again
        assert victim_id not in r["survivors"] and not r["failures"]
        assert sorted(map(int, r["clients"])) == sorted(dep.node_ids)  # (the session's cohort)
    for r in done:
        expect = sum(vector_of(n, r["round"], dim) for n in r["survivors"])
        np.testing.assert_allclose(r["total"], expect, atol=1e-6)
    assert done[0]["setup"]["bytes_up"] > 0 and done[1]["setup"]["bytes_up"] == 0
