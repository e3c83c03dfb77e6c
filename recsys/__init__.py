"""Federated recommendation over private aggregation: biased matrix factorization on users' devices.

Modules (imports only point downward: ``recsys`` -> ``protocols`` -> ``secagg``;
``torch`` is used only here):

* :mod:`recsys.data` — the :class:`~recsys.data.Ratings` container, MovieLens
  loaders, a synthetic generator, train/test splits.
* :mod:`recsys.model`, :mod:`recsys.losses`, :mod:`recsys.optim` — biased MF as
  a torch module, its regularized loss, small optimizers.
* :mod:`recsys.centralized`, :mod:`recsys.baselines`, :mod:`recsys.metrics` —
  the centralized baseline and reference predictors.
* :mod:`recsys.federated` — the federated trainer: one client per user, item
  updates through any :mod:`protocols` aggregation protocol.
* :mod:`recsys.plan` — the per-round :class:`~recsys.plan.Plan`, its planned
  DP event and the noise calibration; :mod:`recsys.policies` — the policies
  choosing plans (fixed, privacy budget, cost-aware); :mod:`recsys.policy`
  gathers both under one import.
* :mod:`recsys.ledger` — one row per round (accuracy, cumulative ε, bytes,
  seconds), ``ledger.jsonl``.
* :mod:`recsys.plots` — PNG plots of one run and of several runs compared.
* :mod:`recsys.cli` — ``python -m recsys train|compare|demo``.

Submodules are imported on use, so ``import recsys`` stays cheap.
"""

from importlib.util import find_spec as _find_spec

# torch, matplotlib and tqdm come with the ``recsys`` extra; say so at once
# rather than on the first submodule import. find_spec does not import them.
_missing = [m for m in ("torch", "matplotlib", "tqdm") if _find_spec(m) is None]
if _missing:
    raise ImportError(
        f"recsys needs {', '.join(_missing)}: pip install 'secagg-fl[recsys]'",
        name=_missing[0],
    )
