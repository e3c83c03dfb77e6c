"""Federated matrix factorization over private aggregation protocols.

Each client is one user: its ratings, user vector and user bias never leave
it. Each round the server sends all item parameters to the sampled clients,
they train locally and upload a dense item update through the round's
aggregation protocol (:mod:`protocols`), and the server applies the
aggregate. A policy picks each round's :class:`~recsys.plan.Plan` and a
:class:`~recsys.ledger.Ledger` records accuracy, cumulative ε and cost.

>>> from recsys.data import synthetic, random_split
>>> from recsys.federated import FederatedTrainer
>>> from recsys.policy import Plan
>>> train, test = random_split(synthetic(60, 40, 15, seed=0), 0.2, seed=0)
>>> trainer = FederatedTrainer(train, test, Plan("plaintext"), rounds=3, n_factors=2)
>>> ledger = trainer.run()
>>> len(ledger), ledger.last.protocol
(3, 'plaintext')

Modules, apart as in Spotlight (model, loss, loop): the model and the loss
are :mod:`recsys.model` and :mod:`recsys.losses`; :mod:`.local` is what one
client computes, :mod:`.update` the upload's layout, :mod:`.population` the
clients, :mod:`.server` the server, :mod:`.aggregation` the protocol of a
plan, :mod:`.outcome` what a round's aggregation gave and the DP events it
composes, :mod:`.evaluation` the evaluation on the devices (sums through the
round's protocol: RMSE, MAE, HR@10, NDCG@10), :mod:`.trainer` the loop.
"""

from .aggregation import build_protocol, coordinate_bound
from .config import FederatedConfig
from .evaluation import client_vectors, evaluation_protocol, from_sums, from_totals
from .local import (
    LocalUpdate,
    evaluate_rows,
    heldout_ranks,
    item_step,
    local_update,
    solve_user_params,
)
from .outcome import RoundOutcome, round_events
from .population import ClientDirectory, ClientPopulation, EvalResult
from .server import ItemServer
from .trainer import FederatedTrainer, cohort_evaluation_sums, cohort_uploads
from .update import UpdateLayout

__all__ = [
    "ClientDirectory",
    "ClientPopulation",
    "EvalResult",
    "FederatedConfig",
    "FederatedTrainer",
    "ItemServer",
    "LocalUpdate",
    "RoundOutcome",
    "UpdateLayout",
    "build_protocol",
    "client_vectors",
    "cohort_evaluation_sums",
    "cohort_uploads",
    "coordinate_bound",
    "evaluate_rows",
    "evaluation_protocol",
    "from_sums",
    "from_totals",
    "heldout_ranks",
    "item_step",
    "local_update",
    "round_events",
    "solve_user_params",
]
