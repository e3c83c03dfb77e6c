"""The run ledger: one row per federated round — accuracy, privacy, cost.

Each :class:`LedgerRow` records what a round did (protocol, plan, how many
clients were sampled and survived), what it cost (bytes up and down, client
and server CPU seconds, wall time) and where the run stands (test RMSE/MAE
after the round, HR@10/NDCG@10, cumulative ε at the run's δ). The :class:`Ledger` owns the
privacy accountant: every round's DP events (``SimulationResult.events``) are
composed into it and ε is read back, so ε is cumulative over the run. The
events themselves are stored in each row (as :func:`secagg.privacy.to_json`
strings), so anyone can recompute ε from ``ledger.jsonl`` alone.

File format (``ledger.jsonl``): one JSON object per line, one line per round,
written as the round ends (a crashed run keeps its finished rounds). Strict
JSON: a non-finite number is written as ``null`` — ``epsilon: null`` means ε is
infinite (a non-private release happened), ``rmse: null`` (``hr10: null``)
that there was no evaluation or no test rating to score (to rank).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from secagg import privacy

__all__ = ["Ledger", "LedgerRow", "RunInfo", "make_accountant", "read_jsonl", "write_jsonl"]

ACCOUNTANTS = ("pld", "rdp")


def make_accountant(kind: str) -> privacy.PrivacyAccountant:
    """A fresh accountant: ``"pld"`` (tight, the default) or ``"rdp"``."""
    if kind == "pld":
        return privacy.PLDAccountant()
    if kind == "rdp":
        return privacy.RDPAccountant()
    raise ValueError(f"accountant must be one of {ACCOUNTANTS}, got {kind!r}")


@dataclass(frozen=True)
class RunInfo:
    """Facts about a run that policies may use (the trainer fills them in).

    Attributes:
        rounds: planned number of rounds (what ``target_epsilon`` and
            :class:`~recsys.policies.BudgetPolicy` spread ε over; 0: unknown).
        n_clients: clients that may be sampled.
        n_users, n_items: sizes of the id spaces.
        item_dim: values per item in the upload.
        upload_dim: length of one client's upload vector.
        model_bytes: bytes of the item parameters one client downloads.
        config: the run's :class:`~recsys.federated.FederatedConfig` as a dict.
    """

    rounds: int = 0
    n_clients: int = 1
    n_users: int = 0
    n_items: int = 0
    item_dim: int = 0
    upload_dim: int = 1
    model_bytes: int = 0
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class LedgerRow:
    """One round of a federated run (see the module docstring for the file format).

    Cost fields are totals over the round's clients: ``bytes_up`` all bytes
    clients sent, ``bytes_down`` all bytes they received (the item parameters
    every sampled client downloads, ``bytes_down_model``, plus the protocol's
    server-to-client messages); ``client_seconds`` client CPU (local training,
    ``train_seconds``, plus protocol work), ``server_seconds`` server CPU
    (protocol plus applying the update); ``wall_seconds`` the round's wall time.
    Accuracy after the round, from the evaluation on the devices
    (:mod:`recsys.federated.evaluation`; NaN in rounds without one): ``rmse``,
    ``mae`` on the held-out ratings, ``hr10``, ``ndcg10`` under leave-one-out;
    ``eval_bytes`` the protocol bytes (up and down) of that evaluation round.
    Simulated time (:mod:`protocols.clock`; NaN without a delay model):
    ``sim_seconds`` when the round's update was applied. Buffered
    asynchronous runs (:mod:`recsys.federated.buffered`, one row per buffer):
    ``model_version`` the version the buffer produced, ``staleness_mean`` and
    ``staleness_max`` over its updates, ``discarded`` updates refused as too
    stale, ``lost`` updates dropped inside the buffer's session.
    Protocol sessions: ``session_round`` is the round's index in its protocol
    session (0: the round ran the session's key setup; a multi-round
    SecAgg/SecAgg+ session serves several rounds after one setup), and
    ``setup_bytes`` (up plus down), ``setup_client_seconds`` and
    ``setup_server_seconds`` the part of the round's cost that was that setup
    (the protocol's ``SETUP_STAGES``; included in the totals above).
    """

    round: int
    protocol: str
    rmse: float
    mae: float
    epsilon: float
    delta: float
    bytes_up: int
    bytes_down: int
    client_seconds: float
    server_seconds: float
    survivors: int
    sampled: int = 0
    q: float = 1.0
    sigma: float | None = None
    clip: float | None = None
    dp_mode: str | None = None
    local_epochs: int = 1
    bits: int | None = None
    wall_seconds: float = 0.0
    train_seconds: float = 0.0
    bytes_down_model: int = 0
    status: str = "ok"  # ok | empty (nobody sampled) | aborted | local
    events: list[str] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)
    hr10: float = math.nan
    ndcg10: float = math.nan
    eval_bytes: int = 0
    sim_seconds: float = math.nan
    model_version: int | None = None
    staleness_mean: float | None = None
    staleness_max: int | None = None
    discarded: int = 0
    lost: int = 0
    session_round: int = 0
    setup_bytes: int = 0
    setup_client_seconds: float = 0.0
    setup_server_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite floats become ``None``)."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, float) and not math.isfinite(value):
                out[key] = None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LedgerRow:
        """Inverse of :meth:`to_dict`; unknown keys are ignored (newer writers)."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("epsilon", 0.0) is None:
            values["epsilon"] = math.inf
        for key in ("rmse", "mae", "hr10", "ndcg10", "sim_seconds"):
            if values.get(key, 0.0) is None:
                values[key] = math.nan
        return cls(**values)


def write_jsonl(rows: Iterable[LedgerRow], path: str | os.PathLike[str]) -> None:
    """Write ``rows`` to ``path``, one JSON object per line."""
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row.to_dict(), allow_nan=False) + "\n")


def read_jsonl(path: str | os.PathLike[str]) -> list[LedgerRow]:
    """Read the rows of a ``ledger.jsonl`` (blank lines skipped)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(LedgerRow.from_dict(json.loads(line)))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: not a ledger row: {exc}") from exc
    return rows


class Ledger:
    """Rows of a run plus the privacy accountant that makes ε cumulative.

    Args:
        delta: the δ at which ε is reported.
        accountant: ``"pld"`` or ``"rdp"``.
        path: if given, every appended row is also written (and flushed) to
            this JSONL file, which is truncated first.
        info: facts about the run that policies may use (:class:`RunInfo`).
    """

    def __init__(
        self,
        delta: float = 1e-5,
        accountant: str = "pld",
        *,
        path: str | os.PathLike[str] | None = None,
        info: RunInfo | None = None,
    ) -> None:
        if not (isinstance(delta, (int, float)) and 0.0 < delta < 1.0):
            raise ValueError(f"delta must lie in (0, 1), got {delta!r}")
        self.delta = float(delta)
        self.accountant_kind = accountant
        self.accountant = make_accountant(accountant)
        self.rows: list[LedgerRow] = []
        if info is not None and not isinstance(info, RunInfo):
            raise TypeError(f"info must be a RunInfo, got {type(info).__name__}")
        self.info = info if info is not None else RunInfo()
        self.path = Path(path) if path is not None else None
        self._epsilon = 0.0
        self._released = False
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("", encoding="utf-8")

    # -- privacy ------------------------------------------------------------
    def _epsilon_of(self, accountant: privacy.PrivacyAccountant, released: bool) -> float:
        # An accountant that composed nothing answers ε = 0 only if nothing was
        # released; NoOp events alone leave ε at 0.
        return float(accountant.get_epsilon(self.delta)) if released else 0.0

    def compose(self, events: Sequence[privacy.Event]) -> float:
        """Compose a round's events; return the cumulative ε afterwards."""
        for event in events:
            self.accountant.compose(event)
            if not isinstance(event, privacy.NoOpEvent):
                self._released = True
        self._epsilon = self._epsilon_of(self.accountant, self._released)
        return self._epsilon

    def epsilon_after(self, event: privacy.Event, count: int = 1) -> float:
        """ε if ``event`` were composed ``count`` more times (the ledger is unchanged)."""
        trial = copy.deepcopy(self.accountant)
        trial.compose(event, count=count)
        released = self._released or (count > 0 and not isinstance(event, privacy.NoOpEvent))
        return self._epsilon_of(trial, released)

    @property
    def epsilon(self) -> float:
        """Cumulative ε at :attr:`delta` of everything composed so far."""
        return self._epsilon

    # -- rows ---------------------------------------------------------------
    def append(self, row: LedgerRow) -> None:
        self.rows.append(row)
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row.to_dict(), allow_nan=False) + "\n")

    def write_jsonl(self, path: str | os.PathLike[str]) -> None:
        write_jsonl(self.rows, path)

    @property
    def last(self) -> LedgerRow | None:
        return self.rows[-1] if self.rows else None

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[LedgerRow]:
        return iter(self.rows)

    def __getitem__(self, index: int) -> LedgerRow:
        return self.rows[index]

    def column(self, name: str) -> list[Any]:
        """One field over all rows (for plots and tables)."""
        return [getattr(r, name) for r in self.rows]
