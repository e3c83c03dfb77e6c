"""The ServerApp: the federated recommender's server, holding no ratings.

It waits for ``num-nodes`` SuperNodes, asks each which client it is
(``query.partition``), and runs :class:`recsys.federated.FederatedTrainer`
over a :class:`~recsys.federated.ClientDirectory` (client ids and id-space sizes
only): its policy, Poisson sampling, DP calibration and accounting, server
update and ledger are the in-process trainer's; its two transport hooks run
on the nodes through :func:`protocols.adapters.flower.run_round`:

- training round ``t``: the sampled nodes get the item tables, train on
  their own ratings and send their updates through the round's protocol;
- evaluation after round ``t``: every node scores the served tables on its
  own held-out ratings and sends its sums through the same protocol without
  DP (:mod:`recsys.federated.evaluation`); the server sees only the totals
  (RMSE, MAE, HR@10, NDCG@10).

Multi-round sessions (run config ``session-rounds``; :func:`task.session_length`):
by default, where it is secure (SecAgg/SecAgg+ without DP, every client in
every round: ``q = 1``), training rounds run through one
:class:`~protocols.adapters.flower.FlowerSession` of up to
:data:`task.SESSION_ROUNDS` rounds (one key setup, then 2 round trips per
round, 3 when actively secure), and so do the evaluations, in a session of
their own; the cohort of a later round is the session's participants (a node
that dropped is out until the next setup), and a new session (a new setup
over every node) starts when one cannot go on. Protocol round numbers come
from :class:`task.RoundNumbers` (each session reserves one per round it may
run, so the two interleaved sessions never share a number on a node).

Task "vector" runs ``rounds`` protocol rounds on public test vectors instead
(a deployment check; what ``benchmarks/flower_deployment.py`` times), through
sessions as above.

With ``out-dir`` set, ``ledger.jsonl`` (the trainer's ledger) and
``rounds.jsonl`` (per protocol round: kind, round number, index in its
session and the session's length, survivors and failed nodes, round trips,
wall seconds, bytes, and the key setup's share of the cost apart, ``setup``;
for task "vector" also the total) are written there.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

import protocols
from protocols.adapters import flower as fa
from recsys.federated.trainer import SessionSlot

from .task import (
    MODEL_RECORD,
    PARTITION_ACTION,
    TASK_RECORD,
    RoundNumbers,
    bind_roster,
    load_roster,
    round_name,
    session_length,
    vector_protocol,
    with_session_rounds,
)

app = ServerApp()


class RoundLog:
    """``rounds.jsonl``: one line per protocol round (nothing is written without a path)."""

    def __init__(self, out_dir: str) -> None:
        self.path = Path(out_dir) / "rounds.jsonl" if out_dir else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("", encoding="utf-8")

    def write(self, **entry: Any) -> None:
        print("secagg-fl:", json.dumps(entry, sort_keys=True), flush=True)
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry, sort_keys=True) + "\n")


def _entry(
    kind: str, session: fa.FlowerSession, out: fa.FlowerRound | None, error: str = ""
) -> dict:
    round_ = session.next_round - 1  # the round just run
    where = {
        "kind": kind,
        "round": round_,
        "session_round": round_ - session.first_round,
        "session_rounds": session.rounds,
    }
    if out is None:
        return where | {"status": "aborted", "error": error}
    return where | {
        "status": "ok",
        "survivors": out.survivor_nodes,
        "clients": {str(n): c for c, n in out.nodes.items()},
        "failures": {str(n): why for n, why in out.failures.items()},
        "round_trips": out.round_trips,
        "wall_seconds": out.stats.wall_seconds,
        "bytes_up": out.stats.bytes_up,
        "bytes_down": out.stats.bytes_down,
        "client_seconds": out.stats.client_seconds,
        "server_seconds": out.stats.server_seconds,
        "setup": out.setup,
    }


class Sessions:
    """The open protocol session of one kind of round (training, evaluation, vector):
    kept while it serves the same configuration and can go on, else a new one."""

    def __init__(self, grid: Grid, rc: dict[str, Any], numbers: RoundNumbers, log: RoundLog):
        self.grid, self.numbers, self.log = grid, numbers, log
        self.asked = int(rc.get("session-rounds", 0))
        self.timeout = float(rc["timeout"]) or None
        self.poll = float(rc["poll-interval"])
        self.slot: SessionSlot[fa.FlowerSession] = SessionSlot()

    def participants(self, key: object) -> tuple[int, ...]:
        """The open session's next participants if it serves ``key`` (else empty)."""
        return self.slot.participants(key)

    def run(
        self,
        kind: str,
        key: object,
        proto: protocols.AggregationProtocol,
        nodes: dict[int, int],
        dim: int,
        remaining: int,
        content: RecordDict | None = None,
        *,
        every_client: bool = True,
        log_total: bool = False,
    ) -> tuple[fa.FlowerRound | None, str]:
        """One round of ``kind`` over ``nodes`` (client id -> node id), in the open session
        if it serves ``key`` with exactly these clients, else in a new one of
        :func:`task.session_length` rounds; logged, and (None, why) if it aborted."""

        def new_session() -> fa.FlowerSession:
            length = session_length(self.asked, proto, remaining, every_client=every_client)
            sized = with_session_rounds(proto, length)
            return fa.FlowerSession(
                self.grid,
                sized,
                nodes,
                dim,
                round=self.numbers.reserve(length),
                timeout=self.timeout,
                name=round_name(kind, sized),
                poll_interval=self.poll,
            )

        session = self.slot.get(key, sorted(nodes), new_session)
        try:
            out = session.run_round(content)
        except protocols.ProtocolAborted as exc:
            self.log.write(**_entry(kind, session, None, str(exc)))
            return None, str(exc)
        finally:
            self.slot.release(session)  # over: a new setup next time
        total = {"total": [float(v) for v in out.total]} if log_total else {}
        self.log.write(**_entry(kind, session, out), **total)
        return out, ""


def partitions(grid: Grid, n: int, timeout: float = 300.0) -> tuple[dict[int, int], int, int]:
    """client id -> node id and the id-space sizes, asked of every node."""
    nodes = fa.wait_for_nodes(grid, n, timeout=timeout)
    msgs = [
        Message(RecordDict(), dst_node_id=node, message_type=f"query.{PARTITION_ACTION}")
        for node in nodes
    ]
    asked = {id(m): node for m, node in zip(msgs, nodes, strict=True)}
    of_message = {}
    replies = list(grid.send_and_receive(msgs, timeout=timeout))
    for m in msgs:
        of_message[m.metadata.message_id] = asked[id(m)]
    out, sizes = {}, set()
    for reply in replies:
        node = of_message.get(reply.metadata.reply_to_message_id)
        if node is None:
            continue
        if reply.has_error():
            raise RuntimeError(f"node {node}: {reply.error.reason}")
        info = reply.content.config_records["node"]
        out[int(info["client"])] = node
        sizes.add((int(info["n_users"]), int(info["n_items"])))
    if len(out) != n or len(sizes) != 1:
        raise RuntimeError(f"{len(out)} of {n} nodes named distinct clients of one data set")
    (n_users, n_items) = sizes.pop()
    return out, n_users, n_items


def make_policy(rc: dict[str, Any]):
    """The round plan, as ``recsys train`` builds it (a BudgetPolicy with an ε target)."""
    from recsys.cli import DP_DEFAULTS
    from recsys.policy import BudgetPolicy, Plan

    common: dict[str, Any] = {
        "q": float(rc["q"]),
        "local_epochs": int(rc["local-epochs"]),
        "bits": int(rc["bits"]),
        "key_bits": int(rc["key-bits"]),
        "semi_honest": bool(rc["semi-honest"]),
    }
    epsilon = float(rc["epsilon"])
    if epsilon <= 0 or math.isinf(epsilon):
        return Plan(protocol=str(rc["protocol"]), **common)
    plan = Plan(
        protocol=str(rc["protocol"]),
        clip=DP_DEFAULTS["clip"],
        noise_multiplier=1.0,  # placeholder: BudgetPolicy calibrates σ
        dp_mode=str(rc["dp-mode"]),
        count_weight=DP_DEFAULTS["count_weight"],
        **common,
    )
    return BudgetPolicy(epsilon, base=plan)


def run_roster(rc: dict[str, Any]):
    """The run's roster (``roster-file``), or None; refuses SecAgg/SecAgg+ with neither a
    roster nor an explicit ``semi-honest = true`` (the weaker variant is never a default)."""
    from protocols import registry

    path = str(rc.get("roster-file", ""))
    if path:
        return load_roster(path)
    secagg_family = issubclass(registry.config_class(str(rc["protocol"])), protocols.SecAgg)
    if secagg_family and not bool(rc["semi-honest"]):
        raise ValueError(
            f"protocol {rc['protocol']!r} needs roster-file (the public roster prepare writes) "
            "for the actively secure variant, or semi-honest = true for the weaker one"
        )
    return None


def make_trainer(grid: Grid, rc: dict[str, Any], log: RoundLog):
    """A FederatedTrainer over a ClientDirectory whose hooks run on the nodes (module docstring)."""
    from recsys.federated import (
        ClientDirectory,
        FederatedConfig,
        FederatedTrainer,
        RoundOutcome,
        build_protocol,
        evaluation_protocol,
    )
    from recsys.federated.evaluation import FIELDS

    roster = run_roster(rc)
    nodes_of, n_users, n_items = partitions(grid, int(rc["num-nodes"]))
    numbers = RoundNumbers(2)  # (training rounds were Flower rounds 2 t before sessions)
    training, evaluations = Sessions(grid, rc, numbers, log), Sessions(grid, rc, numbers, log)

    class FlowerTrainer(FederatedTrainer):
        """The trainer's transport hooks on the nodes, and its cohort while a training
        session is open (the hook this app adds: :meth:`sample`)."""

        def _content(self, kind: str, plan) -> RecordDict:
            factors, bias = self.server.download() if kind == "train" else self.server.served()
            dtype = np.float32 if self.config.download_dtype == "float32" else np.float64
            arrays = {"factors": factors.numpy(), "bias": bias.numpy()}
            if kind == "train":
                arrays = {k: v.astype(dtype) for k, v in arrays.items()}
            return RecordDict(
                {
                    MODEL_RECORD: ArrayRecord({k: Array(v) for k, v in arrays.items()}),
                    TASK_RECORD: ConfigRecord(
                        {
                            "kind": kind,
                            "plan": json.dumps(plan.to_dict()),
                            "config": json.dumps(self.config.to_dict()),
                        }
                    ),
                }
            )

        def cohort_for(self, plan, sigma):
            """While a training session serves (plan, σ), its participants (everyone who has
            not dropped out of it: sessions run only at q = 1); else the trainer's rule."""
            participants = training.participants((plan, sigma))
            if participants:
                return np.asarray(participants, dtype=np.int64)
            return super().cohort_for(plan, sigma)

        def run_protocol(self, t, plan, sigma, cohort):
            if plan.dropout:
                raise ValueError("dropout is a simulator knob; on Flower dropouts are real")
            proto = bind_roster(
                build_protocol(plan, n_invited=len(cohort), noise_multiplier=sigma), roster
            )
            out, error = training.run(
                "train",
                (plan, sigma),
                proto,
                {int(c): nodes_of[int(c)] for c in cohort},
                self.layout.dim,
                self.rounds - t + 1,
                self._content("train", plan),
                every_client=plan.q >= 1.0,
            )
            if out is None:
                return RoundOutcome.aborted_with(error)
            return RoundOutcome.of(
                out,
                train_seconds=out.input_seconds,
                session_round=out.session_round,
                setup_stages=proto.SETUP_STAGES,
            )

        def run_evaluation(self, t, plan):
            # Every node with its held-out ratings, no DP: a session of their own.
            ids = evaluations.participants(plan) or tuple(int(c) for c in self.population.client_ids)
            proto = bind_roster(evaluation_protocol(plan), roster)
            every = self.config.eval_every
            out, error = evaluations.run(
                "evaluate",
                plan,
                proto,
                {c: nodes_of[c] for c in ids},
                len(FIELDS),
                (self.rounds - t) // every + 1,
                self._content("evaluate", plan),
            )
            if out is None:
                return RoundOutcome.aborted_with(error)
            return RoundOutcome.of(
                out,
                train_seconds=0.0,
                session_round=out.session_round,
                setup_stages=proto.SETUP_STAGES,
            )

    config = FederatedConfig(n_factors=int(rc["factors"]), seed=int(rc["seed"]))
    out_dir = str(rc["out-dir"])
    return FlowerTrainer(
        ClientDirectory(np.array(sorted(nodes_of)), n_users, n_items),
        None,
        make_policy(rc),
        config,
        rounds=int(rc["rounds"]),
        delta=float(rc["delta"]),
        ledger_path=str(Path(out_dir) / "ledger.jsonl") if out_dir else None,
    )


def run_vector(grid: Grid, rc: dict[str, Any], log: RoundLog) -> None:
    """Task "vector": ``rounds`` protocol rounds over public test vectors, through
    sessions of :func:`task.session_length` rounds (a new setup when one cannot go on)."""
    proto = vector_protocol(
        str(rc["protocol"]), int(rc["bits"]), int(rc["key-bits"]), run_roster(rc), bool(rc["semi-honest"])
    )
    nodes, _, _ = partitions(grid, int(rc["num-nodes"]))  # client ids: the roster's
    sessions = Sessions(grid, rc, RoundNumbers(1), log)
    rounds = int(rc["rounds"])
    for done in range(rounds):
        cohort = sessions.participants(proto) or tuple(nodes)
        sessions.run(
            "vector",
            proto,
            proto,
            {c: nodes[c] for c in cohort},
            int(rc["dim"]),
            rounds - done,
            log_total=True,
        )


@app.main()
def main(grid: Grid, context: Context) -> None:
    rc = dict(context.run_config)
    log = RoundLog(str(rc.get("out-dir", "")))
    start = time.perf_counter()
    if rc["task"] == "vector":
        run_vector(grid, rc, log)
    else:
        import torch

        torch.set_num_threads(1)
        trainer = make_trainer(grid, rc, log)
        trainer.run(
            callback=lambda row: print(
                f"round {row.round}: rmse {row.rmse:.4f} mae {row.mae:.4f} hr@10 {row.hr10:.4f} "
                f"ndcg@10 {row.ndcg10:.4f} eps {row.epsilon:.3f} "
                f"survivors {row.survivors}/{row.sampled} [{row.status}]",
                flush=True,
            )
        )
    log.write(kind="done", seconds=time.perf_counter() - start)
