"""Federated matrix factorization over Flower's simulation engine, with private aggregation.

The same training as ``python -m recsys train`` (the in-process trainer,
:class:`recsys.federated.FederatedTrainer`: its policy, sampling, server
update and ledger), except that each round's aggregation runs through
Flower: every user is a Flower SuperNode running a ``ClientApp``; each
round the ``ServerApp`` sends the sampled users the item tables, each user
trains locally *on its node* and submits its update through the round's
protocol (:mod:`protocols.adapters.flower`), and the server applies the
aggregate and writes the ledger row::

    .venv/bin/python examples/flower_recsys.py --protocol secagg+ --rounds 5
    .venv/bin/python examples/flower_recsys.py --protocol paillier --key-bits 1024 --users 40
    .venv/bin/python examples/flower_recsys.py --epsilon 8 --q 0.5 --rounds 10
    .venv/bin/python examples/flower_recsys.py --data PATH/u.data --q 0.1 --rounds 20
    .venv/bin/python examples/flower_recsys.py --task vector --protocol ckks   # protocols only

``--check`` also runs the in-process trainer with the same settings and
prints both ledgers' RMSE side by side (identical for the plaintext
protocol at q=1: same inputs, same summation order; close for the others,
whose stochastic rounding and noise are random).

What runs where:

- ClientApp (each SuperNode; Ray actors, ``client_resources`` 1 CPU, 2 in
  all): loads the data set and keeps only its own user's ratings (a
  simulation shortcut: in a deployment each device holds its own), and, for
  the round's first message, trains locally with the received item tables
  exactly as ``FederatedTrainer.client_uploads`` does for a cohort of one
  (:meth:`recsys.federated.ClientPopulation.train_cohort`,
  :meth:`recsys.federated.UpdateLayout.encode`). It builds the round's
  protocol from the public round parameters the server names (plan, cohort
  size, σ) with :func:`recsys.federated.build_protocol`; the sessions check
  that the server runs the same configuration.
- ServerApp: a :class:`FederatedTrainer` whose aggregation step is replaced
  by :func:`protocols.adapters.flower.run_round` (the rest of its round:
  policy, Poisson sampling, calibration, DP accounting, server update,
  ledger, is the trainer's own). Evaluation is the in-process trainer's
  (:meth:`FederatedTrainer.run_evaluation`: each user's sums through the
  round's protocol in :func:`protocols.simulate`), computed in the server
  process from the whole data set: a simulation shortcut. On Flower's
  deployment engine use the app in ``examples/flower_app``, whose nodes
  hold only their own ratings and evaluate on the device.

``--dropout`` (the in-process simulator's dropout knob) is not offered: on
Flower, dropouts are real node failures or timeouts (``--timeout``), which
``run_round`` handles by closing the stage.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")  # flwr reads it at import time
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import protocols  # noqa: E402

try:
    from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    from protocols.adapters import flower as fa
except ImportError as exc:  # pragma: no cover - environment
    sys.exit(f"this example needs Flower: pip install 'secagg-fl[flower]' ({exc})")

PARTITION_ACTION = "partition"  # query.partition: a node says which user it holds
# This simulation's nodes hold no enrolled identity key, so SecAgg/SecAgg+ run their
# semi-honest variant, explicitly; examples/flower_app enrols its nodes and runs them
# actively secure (see the README's threat model).
SEMI_HONEST = True


# -- data, the same on the server and on every node ----------------------------------------


class DataSpec:
    """How to load the ratings and split them: every process does it the same way."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.data = args.data
        self.users, self.items, self.per_user = args.users, args.items, args.ratings_per_user
        self.test_fraction, self.seed = args.test_fraction, args.seed
        self._cache: tuple | None = None

    def load(self):
        """(train, test) ratings, and the ids of users with training ratings (the clients)."""
        if self._cache is None:
            from recsys.data import load_ratings, random_split, synthetic

            if self.data == "synthetic":
                ratings = synthetic(self.users, self.items, self.per_user, seed=self.seed)
            else:
                ratings = load_ratings(Path(self.data).expanduser())
            train, test = random_split(ratings, self.test_fraction, seed=self.seed)
            clients = np.flatnonzero(np.bincount(train.user, minlength=train.n_users) > 0)
            self._cache = (train, test, clients)
        return self._cache

    def __getstate__(self) -> dict:  # ship the recipe to Ray actors, not the data
        return {**self.__dict__, "_cache": None}


# -- the client --------------------------------------------------------------------------------


def round_name(plan, n_invited: int, sigma: float | None) -> str:
    """The public parameters of a round, as the protocol name the server sends."""
    return json.dumps({"plan": plan.to_dict(), "n": n_invited, "sigma": sigma}, sort_keys=True)


def protocol_of_round(name: str) -> protocols.AggregationProtocol:
    """The client's protocol factory: the round's configuration from its public parameters.

    A real client would apply its own policy here (refuse plaintext, demand DP...).
    """
    from recsys.federated import build_protocol
    from recsys.policy import Plan

    params = json.loads(name)
    return build_protocol(
        Plan.from_dict(params["plan"]), n_invited=params["n"], noise_multiplier=params["sigma"]
    )


class LocalTraining:
    """input_fn: the node's user trains on its own ratings from the received item tables."""

    def __init__(self, spec: DataSpec, config) -> None:
        self.spec, self.config = spec, config

    def __call__(self, message: Message, context: Context) -> np.ndarray:
        import torch

        from recsys.federated import ClientPopulation, UpdateLayout, cohort_uploads
        from recsys.policy import Plan

        torch.set_num_threads(1)
        train, _, clients = self.spec.load()
        user = int(clients[int(context.node_config["partition-id"])])
        mine = train.subset(np.flatnonzero(train.user == user))  # only this user's ratings
        model = message.content.array_records["model"]
        factors = torch.as_tensor(model["factors"].numpy(), dtype=torch.float64)
        bias = torch.as_tensor(model["bias"].numpy(), dtype=torch.float64)
        plan = Plan.from_dict(json.loads(message.content.config_records["plan"]["plan"]))
        cfg = self.config
        population = ClientPopulation(mine, None, cfg.n_factors)
        layout = UpdateLayout(train.n_items, cfg.n_factors, weighted=cfg.aggregation == "item")
        return cohort_uploads(population, layout, cfg, factors, bias, np.array([user]), plan)[0]


class RandomVector:
    """input_fn of ``--task vector``: public test data drawn on the node."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def __call__(self, message: Message, context: Context) -> np.ndarray:
        r = int(message.content.config_records[fa.RECORD]["round"])
        rng = np.random.default_rng([int(context.node_config["partition-id"]), r])
        return rng.uniform(-1.0, 1.0, self.dim)


def build_client_app(protocol_source, input_fn) -> ClientApp:
    app = fa.make_client_app(protocol_source, input_fn)

    @app.query(PARTITION_ACTION)
    def partition(message: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        return Message(RecordDict({"node": ConfigRecord({"partition": pid})}), reply_to=message)

    return app


# -- the server --------------------------------------------------------------------------------


def partitions(grid: Grid, n: int) -> dict[int, int]:
    """partition id -> node id, asked of every node (Flower node ids are random)."""
    nodes = fa.wait_for_nodes(grid, n)
    msgs = [
        Message(RecordDict(), dst_node_id=node, message_type=f"query.{PARTITION_ACTION}")
        for node in nodes
    ]
    out = {}
    for reply in grid.send_and_receive(msgs, timeout=120.0):
        if reply.has_error():
            raise RuntimeError(f"node {reply.metadata.src_node_id}: {reply.error.reason}")
        out[int(reply.content["node"]["partition"])] = reply.metadata.src_node_id
    if len(out) != n:
        raise RuntimeError(f"{len(out)} of {n} nodes said which user they hold")
    return out


def make_flower_trainer(grid: Grid, nodes_of_user: dict[int, int], timeout: float | None, **kw):
    """A FederatedTrainer whose aggregation runs over Flower (see the module docstring)."""
    from recsys.federated import FederatedTrainer, RoundOutcome, build_protocol

    class FlowerTrainer(FederatedTrainer):
        def run_protocol(self, t, plan, sigma, cohort):
            # run_round in place of client_uploads + protocols.simulate: the
            # clients train on their own nodes, from the model sent with the round.
            if plan.dropout:
                raise ValueError("--dropout is a simulator knob; on Flower dropouts are real")
            proto = build_protocol(plan, n_invited=len(cohort), noise_multiplier=sigma)
            factors, bias = self.server.download()
            dtype = np.float32 if self.config.download_dtype == "float32" else np.float64
            content = RecordDict(
                {
                    "model": ArrayRecord(
                        {
                            "factors": Array(factors.numpy().astype(dtype)),
                            "bias": Array(bias.numpy().astype(dtype)),
                        }
                    ),
                    "plan": ConfigRecord({"plan": json.dumps(plan.to_dict())}),
                }
            )
            clients = {int(u): nodes_of_user[int(u)] for u in cohort}  # client id = user id
            try:
                out = fa.run_round(
                    grid,
                    proto,
                    clients,
                    self.layout.dim,
                    round=t,
                    timeout=timeout,
                    content=content,
                    name=round_name(plan, len(cohort), sigma),
                )
            except protocols.ProtocolAborted as exc:
                return RoundOutcome.aborted_with(str(exc))
            return RoundOutcome.of(out, train_seconds=out.input_seconds)

    return FlowerTrainer(**kw)


def make_policy(args: argparse.Namespace):
    """The round plan, as ``recsys train`` builds it (BudgetPolicy with --epsilon)."""
    from recsys.cli import DP_DEFAULTS
    from recsys.policy import BudgetPolicy, Plan

    common: dict[str, Any] = {
        "q": args.q,
        "local_epochs": args.local_epochs,
        "bits": args.bits,
        "key_bits": args.key_bits,
        # SEMI_HONEST: this simulation's nodes hold no enrolled identity key.
        "semi_honest": SEMI_HONEST,
        # One protocol session per round: this example's ClientApp starts a session
        # from every RoundStart (examples/flower_app runs multi-round sessions).
        "session_rounds": 1,
    }
    if args.epsilon is None or math.isinf(args.epsilon):
        return Plan(protocol=args.protocol, **common)
    plan = Plan(
        protocol=args.protocol,
        clip=DP_DEFAULTS["clip"],
        noise_multiplier=1.0,  # placeholder: BudgetPolicy calibrates σ
        dp_mode=args.dp_mode or DP_DEFAULTS["dp_mode"],
        count_weight=DP_DEFAULTS["count_weight"],
        **common,
    )
    return BudgetPolicy(args.epsilon, base=plan)


def format_row(row) -> str:
    eps = "inf" if math.isinf(row.epsilon) else f"{row.epsilon:.3f}"
    return (
        f"round {row.round:3d}  {row.protocol:9s} rmse {row.rmse:.4f}  eps {eps:>7s}  "
        f"up {row.bytes_up / 1e6:7.3f} MB  down {row.bytes_down / 1e6:7.3f} MB  "
        f"client {row.client_seconds:6.2f} s  server {row.server_seconds:5.2f} s  "
        f"wall {row.wall_seconds:5.2f} s  survivors {row.survivors}/{row.sampled}"
        + ("" if row.status == "ok" else f"  [{row.status}]")
    )


def run_mf(args: argparse.Namespace) -> int:
    import torch

    from recsys.federated import FederatedConfig, FederatedTrainer
    from recsys.plots import plot_run

    torch.set_num_threads(1)
    spec = DataSpec(args)
    train, test, clients = spec.load()
    overrides: dict[str, Any] = {"seed": args.seed}
    if args.factors is not None:
        overrides["n_factors"] = args.factors
    config = FederatedConfig(**overrides)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(clients)
    print(
        f"{len(train) + len(test)} ratings, {n} clients (Flower SuperNodes), "
        f"{train.n_items} items; protocol {args.protocol}; "
        + ("no DP" if args.epsilon is None else f"DP target eps={args.epsilon:g}")
    )
    ledger_box: dict[str, Any] = {}
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        by_partition = partitions(grid, n)
        nodes_of_user = {int(clients[p]): node for p, node in by_partition.items()}
        trainer = make_flower_trainer(
            grid,
            nodes_of_user,
            args.timeout,
            train=train,
            test=test,
            policy=make_policy(args),
            config=config,
            rounds=args.rounds,
            delta=args.delta,
            ledger_path=str(out_dir / "ledger.jsonl"),
        )
        ledger_box["ledger"] = trainer.run(callback=lambda row: print(format_row(row)))

    start = time.perf_counter()
    run_simulation(
        server,
        build_client_app(protocol_of_round, LocalTraining(spec, config)),
        num_supernodes=n,
        backend_config=backend_config(),
    )
    ledger = ledger_box.get("ledger")
    if ledger is None or not len(ledger):
        print("no round ran")
        return 1
    plot_run(ledger, out_dir / "ledger.png", title=f"federated MF on Flower — {args.protocol}")
    print(
        f"done in {time.perf_counter() - start:.1f} s (Ray start-up included); "
        f"ledger {out_dir / 'ledger.jsonl'}, plot {out_dir / 'ledger.png'}"
    )
    if args.check:
        local = FederatedTrainer(
            train, test, make_policy(args), config, rounds=args.rounds, delta=args.delta
        ).run()
        print("\nround  rmse (Flower)  rmse (in-process)  eps (Flower)  eps (in-process)")
        for a, b in zip(ledger, local):
            print(
                f"{a.round:5d}  {a.rmse:13.6f}  {b.rmse:17.6f}  {a.epsilon:12.4f}  {b.epsilon:16.4f}"
            )
    return 0


# -- protocols only -----------------------------------------------------------------------------


def run_vector(args: argparse.Namespace) -> int:
    from protocols import registry

    high = registry.config_class(args.protocol).QUANTIZATION_BITS
    options = registry.ProtocolOptions(
        clip=1.0,
        bits=min(args.bits, high[1]) if high else None,
        key_bits=args.key_bits,
        semi_honest=SEMI_HONEST,
    )
    proto = registry.create(args.protocol, options)
    if args.epsilon is not None:
        proto = protocols.DifferentiallyPrivate(
            proto, mode="central", clip=1.0, noise_multiplier=1.0
        )
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        nodes = fa.wait_for_nodes(grid, args.users)
        for r in range(1, args.rounds + 1):
            out = fa.run_round(grid, proto, nodes, args.dim, round=r, timeout=args.timeout)
            print(
                f"round {r}: {proto.NAME}, {len(out.survivors)}/{len(nodes)} clients, "
                f"|total|_inf {np.max(np.abs(out.total)):.3f}, up {out.stats.bytes_up / 1e6:.3f} MB, "
                f"{out.round_trips} round trips, {out.stats.wall_seconds:.2f} s"
            )

    run_simulation(
        server,
        build_client_app(proto, RandomVector(args.dim)),
        num_supernodes=args.users,
        backend_config=backend_config(),
    )
    return 0


def backend_config() -> dict[str, Any]:
    # Ray's workers import `protocols` and `recsys` too, wherever this is run from:
    # they inherit the environment of the Ray processes this one starts.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p
    )
    # Two actors of one CPU each: fits a 2-core machine.
    return {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": 2, "include_dashboard": False},
    }


def main() -> int:
    from protocols import registry
    from protocols.dp_modes import DP_MODES

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=("mf", "vector"), default="mf")
    p.add_argument("--protocol", default="secagg+", choices=registry.names())
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--data", default="synthetic", help="'synthetic', PATH/u.data or PATH/ratings.dat"
    )
    p.add_argument("--users", type=int, default=60, help="synthetic users (--task vector: clients)")
    p.add_argument("--items", type=int, default=120, help="synthetic items")
    p.add_argument("--ratings-per-user", type=int, default=20)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--factors", type=int, default=None)
    p.add_argument("--q", type=float, default=1.0, help="Poisson sampling rate of clients")
    p.add_argument("--local-epochs", type=int, default=2)
    p.add_argument("--bits", type=int, default=32)
    p.add_argument("--key-bits", type=int, default=2048)
    p.add_argument("--epsilon", type=float, default=None, help="DP target (central DP by default)")
    p.add_argument("--dp-mode", choices=DP_MODES)
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--dim", type=int, default=1000, help="--task vector: vector length")
    p.add_argument("--timeout", type=float, default=None, help="seconds per protocol step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/flower-mf")
    p.add_argument("--check", action="store_true", help="also run the in-process trainer")
    args = p.parse_args()
    return run_mf(args) if args.task == "mf" else run_vector(args)


if __name__ == "__main__":
    raise SystemExit(main())
