"""examples/flower_app on an in-process Grid: the deployed path agrees with the in-process trainer.

The app's ServerApp trainer (a ClientDirectory, no ratings) and ClientApp (one
partition file per node) run over ``LocalGrid`` (test_flower.py), and the
in-process :class:`recsys.federated.FederatedTrainer` runs on the same split:
training and the evaluation on the devices give the same ledger.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr.serverapp")

from flwr.app import Context, RecordDict
from test_flower import LocalGrid, task_identity  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "flower_app"))

from secagg_fl_app import server_app  # noqa: E402
from secagg_fl_app.client_app import app as client_app  # noqa: E402
from secagg_fl_app.prepare import prepare  # noqa: E402
from secagg_fl_app.task import (  # noqa: E402
    ROSTER_FILE,
    identity_path,
    load_roster,
    protocol_of_round,
    round_name,
)

from recsys.data import random_split, synthetic  # noqa: E402
from recsys.federated import FederatedConfig, FederatedTrainer, build_protocol  # noqa: E402
from recsys.policy import Plan  # noqa: E402

USERS, ITEMS, PER_USER, SEED = 6, 25, 10, 3


class PartitionGrid(LocalGrid):
    """LocalGrid whose node ``i`` holds partition file ``parts[i]`` and, if ``enrolled``,
    its identity key and the roster (what prepare wrote)."""

    def __init__(self, parts: list[Path], enrolled: bool = True) -> None:
        super().__init__(client_app, len(parts))
        for i, node in enumerate(sorted(self.contexts)):
            files = {"partition-file": str(parts[i])}
            if enrolled:
                files["identity-file"] = str(identity_path(parts[i]))
                files["roster-file"] = str(parts[i].parent / ROSTER_FILE)
            self.contexts[node] = Context(
                run_id=1, node_id=node, node_config=files, state=RecordDict(), run_config={}
            )


def run_config(tmp_path: Path, protocol: str) -> dict:
    rc = {
        "task": "mf",
        "protocol": protocol,
        "rounds": 2,
        "num-nodes": USERS,
        "q": 1.0,
        "local-epochs": 2,
        "factors": 3,
        "bits": 32,
        "key-bits": 1024,
        "epsilon": 0.0,
        "dp-mode": "central",
        "delta": 1e-5,
        "timeout": 0.0,
        "poll-interval": 0.0,
        "seed": SEED,
        "out-dir": str(tmp_path / "out"),
        "roster-file": str(tmp_path / "data" / ROSTER_FILE),
        "semi-honest": False,
    }
    return rc


@pytest.mark.parametrize("protocol", ["plaintext", "secagg+"])
@pytest.mark.usefixtures("task_identity")
def test_app_matches_the_in_process_trainer(tmp_path, protocol):
    parts = prepare(
        tmp_path / "data", users=USERS, items=ITEMS, ratings_per_user=PER_USER, seed=SEED
    )
    rc = run_config(tmp_path, protocol)
    grid = PartitionGrid(parts)
    ledger = server_app.make_trainer(grid, rc, server_app.RoundLog(rc["out-dir"])).run()
    train, test = random_split(synthetic(USERS, ITEMS, PER_USER, seed=SEED), 0.2, seed=SEED)
    plan = Plan(protocol, q=1.0, local_epochs=2, bits=32, key_bits=1024)
    local = FederatedTrainer(
        train, test, plan, FederatedConfig(n_factors=3, seed=SEED), rounds=2
    ).run()
    tol = 1e-9 if protocol == "plaintext" else 1e-5
    for a, b in zip(ledger, local, strict=True):
        assert a.survivors == b.survivors == USERS
        for field in ("rmse", "mae", "hr10", "ndcg10"):
            assert getattr(a, field) == pytest.approx(getattr(b, field), abs=tol), field
    logged = (tmp_path / "out" / "rounds.jsonl").read_text().splitlines()
    assert [line.count('"kind": "train"') for line in logged] == [1, 0, 1, 0]
    rows = [json.loads(line) for line in logged]
    if protocol == "secagg+":
        # One session for the two training rounds and one for the two evaluations (q = 1,
        # no DP): actively secure, the setup round costs keys, reveal, shares, input,
        # consistency, unmask; the next only input, consistency, unmask.
        assert [r["round_trips"] for r in rows] == [6, 6, 3, 3]
        assert [r["session_round"] for r in rows] == [0, 0, 1, 1]
        assert [r["round"] for r in rows] == [2, 4, 3, 5]  # each session reserved two numbers
        assert all(r["setup"]["bytes_up"] > 0 for r in rows[:2])
        assert all(r["setup"]["bytes_up"] == 0 for r in rows[2:])
    else:  # plaintext: a session per round
        assert [r["session_rounds"] for r in rows] == [1] * 4


@pytest.mark.usefixtures("task_identity")
def test_secagg_needs_a_roster_or_an_explicit_semi_honest_run(tmp_path):
    parts = prepare(tmp_path / "data", users=3, items=10, ratings_per_user=5, seed=0)
    rc = run_config(tmp_path, "secagg+") | {"num-nodes": 3, "roster-file": ""}
    with pytest.raises(ValueError, match="roster-file"):
        server_app.make_trainer(PartitionGrid(parts), rc, server_app.RoundLog(""))


@pytest.mark.usefixtures("task_identity")
def test_enrolled_nodes_refuse_a_semi_honest_round(tmp_path):
    # A server that downgrades to the semi-honest variant gets no node to take part.
    parts = prepare(tmp_path / "data", users=3, items=10, ratings_per_user=5, seed=0)
    rc = run_config(tmp_path, "secagg+") | {"num-nodes": 3, "roster-file": "", "semi-honest": True}
    trainer = server_app.make_trainer(PartitionGrid(parts), rc, server_app.RoundLog(rc["out-dir"]))
    row = trainer.step()
    assert row.survivors == 0 and row.status != "ok"
    logged = [json.loads(line) for line in (tmp_path / "out" / "rounds.jsonl").read_text().splitlines()]
    assert logged[0]["status"] == "aborted"
    assert "refuses the semi-honest variant" in logged[0]["error"]


@pytest.mark.usefixtures("task_identity")
def test_a_node_without_its_identity_key_drops_out_of_an_active_round(tmp_path):
    parts = prepare(tmp_path / "data", users=4, items=12, ratings_per_user=6, seed=0)
    grid = PartitionGrid(parts)
    lost = sorted(grid.contexts)[1]
    del grid.contexts[lost].node_config["identity-file"]
    rc = run_config(tmp_path, "secagg+") | {"num-nodes": 4}
    trainer = server_app.make_trainer(grid, rc, server_app.RoundLog(rc["out-dir"]))
    row = trainer.step()
    assert row.survivors == 3
    first = json.loads((tmp_path / "out" / "rounds.jsonl").read_text().splitlines()[0])
    assert list(first["failures"]) == [str(lost)]
    assert "identity key" in first["failures"][str(lost)]


@pytest.mark.usefixtures("task_identity")
def test_the_server_holds_no_ratings(tmp_path):
    """The ServerApp's trainer has a ClientDirectory, and its default hooks refuse to simulate."""
    parts = prepare(tmp_path / "data", users=3, items=10, ratings_per_user=5, seed=0)
    rc = run_config(tmp_path, "plaintext") | {"num-nodes": 3}
    trainer = server_app.make_trainer(PartitionGrid(parts), rc, server_app.RoundLog(""))
    assert not hasattr(trainer.population, "train_rating")
    assert list(trainer.population.client_ids) == [0, 1, 2]
    with pytest.raises(TypeError, match="holds no client data"):
        trainer.client_sums()


def test_round_names_rebuild_the_configuration(tmp_path):
    plan = Plan("secagg+", clip=1.0, noise_multiplier=1.0, dp_mode="distributed", semi_honest=True)
    proto = build_protocol(plan, n_invited=5, noise_multiplier=1.2)
    assert protocol_of_round(round_name("train", proto)) == proto
    with pytest.raises(ValueError, match="round kind"):
        protocol_of_round('{"kind": "other", "config": {}}')
    assert np.isfinite(proto.inner.clip)
    # An actively secure round names its roster by digest; each node binds its own copy.
    prepare(tmp_path / "a", users=3, items=10, ratings_per_user=5, seed=0)
    prepare(tmp_path / "b", users=3, items=10, ratings_per_user=5, seed=0)
    mine, other = load_roster(tmp_path / "a" / ROSTER_FILE), load_roster(tmp_path / "b" / ROSTER_FILE)
    active = build_protocol(Plan("secagg+"), n_invited=3, noise_multiplier=None).with_roster(mine)
    name = round_name("train", active)
    assert mine.digest.hex() in name and protocol_of_round(name, mine) == active
    with pytest.raises(ValueError, match="not this node's roster"):
        protocol_of_round(name, other)
    with pytest.raises(ValueError, match="has none"):
        protocol_of_round(name)
    with pytest.raises(ValueError, match="refuses the semi-honest"):
        protocol_of_round(round_name("train", proto), mine)


@pytest.mark.usefixtures("task_identity")
def test_vector_task_runs_sessions_and_a_new_setup_when_one_is_used_up(tmp_path):
    from secagg_fl_app.task import vector_of

    parts = prepare(tmp_path / "data", users=4, items=10, ratings_per_user=5, seed=0)
    grid = PartitionGrid(parts)
    rc = run_config(tmp_path, "secagg") | {
        "task": "vector",
        "rounds": 3,
        "num-nodes": 4,
        "dim": 5,
        "session-rounds": 2,
    }
    server_app.run_vector(grid, rc, server_app.RoundLog(rc["out-dir"]))
    rows = [
        json.loads(line) for line in (tmp_path / "out" / "rounds.jsonl").read_text().splitlines()
    ]
    assert [r["round"] for r in rows] == [1, 2, 3]
    assert [r["session_round"] for r in rows] == [0, 1, 0]  # two rounds per setup
    assert [r["round_trips"] for r in rows] == [5, 3, 5]  # active SecAgg: 3 after the setup
    for r in rows:
        expect = sum(vector_of(n, r["round"], 5) for n in sorted(grid.contexts))
        np.testing.assert_allclose(r["total"], expect, atol=1e-6)


def test_session_rounds_are_refused_where_they_are_not_secure():
    from secagg_fl_app.task import SESSION_ROUNDS, session_length

    import protocols

    secagg = protocols.SecAgg(semi_honest=True)
    assert session_length(0, secagg, 100, every_client=True) == SESSION_ROUNDS
    assert session_length(0, secagg, 3, every_client=True) == 3
    assert session_length(0, secagg, 100, every_client=False) == 1  # Poisson sampling
    dp = protocols.DifferentiallyPrivate(secagg, "central", clip=1.0, noise_multiplier=1.0)
    assert session_length(0, dp, 100, every_client=True) == 1
    for proto, every in ((dp, True), (secagg, False), (protocols.Plaintext(), True)):
        with pytest.raises(ValueError, match="session-rounds = 4"):
            session_length(4, proto, 100, every_client=every)
    assert session_length(1, secagg, 100, every_client=True) == 1
