"""Sans-I/O private aggregation protocols for federated learning.

>>> import numpy as np, protocols
>>> proto = protocols.SecAggPlus(threshold=0.5, bits=32, clip=1.0)
>>> agg = protocols.simulate(proto, {c: np.ones(4) * 0.1 for c in range(5)}, seed=0)
>>> np.round(agg.total, 6).tolist(), agg.survivors
([0.5, 0.5, 0.5, 0.5], [0, 1, 2, 3, 4])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .base import (
    AggregationProtocol,
    ClientInterface,
    ClientSession,
    ServerInterface,
    ServerResult,
    ServerSession,
)
from .dp import DifferentiallyPrivate
from .errors import (
    LocalProtocolError,
    ProtocolAborted,
    ProtocolError,
    RemoteProtocolError,
    SnapshotError,
    WireFormatError,
)
from .events import DeadlinePassed
from .messages import Message
from .plaintext import Plaintext
from .secagg.config import SecAgg, SecAggPlus
from .simulate import SimulatedSession, SimulationResult, Stats, simulate
from .weighting import weighted_input, weighted_mean

if TYPE_CHECKING:
    from .ckks import CKKS
    from .paillier import Paillier
    from .threshold_paillier import ThresholdPaillier

# The homomorphic protocols load their libraries (tenseal; phe and gmpy2) with
# their modules, so ``import protocols`` stays light and they are imported on
# first use of the name (PEP 562): ``protocols.CKKS``, ``from protocols import CKKS``.
_LAZY = {"CKKS": ".ckks", "Paillier": ".paillier", "ThresholdPaillier": ".threshold_paillier"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "CKKS",
    "AggregationProtocol",
    "ClientInterface",
    "ClientSession",
    "DeadlinePassed",
    "DifferentiallyPrivate",
    "LocalProtocolError",
    "Message",
    "Paillier",
    "Plaintext",
    "ProtocolAborted",
    "ProtocolError",
    "RemoteProtocolError",
    "SecAgg",
    "SecAggPlus",
    "ServerInterface",
    "ServerResult",
    "ServerSession",
    "SimulatedSession",
    "SimulationResult",
    "SnapshotError",
    "Stats",
    "ThresholdPaillier",
    "WireFormatError",
    "simulate",
    "weighted_input",
    "weighted_mean",
]
