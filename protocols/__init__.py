"""Sans-I/O private aggregation protocols for federated learning.

>>> import numpy as np, protocols
>>> proto = protocols.SecAggPlus(threshold=0.5, bits=32, clip=1.0)
>>> agg = protocols.simulate(proto, {c: np.ones(4) * 0.1 for c in range(5)}, seed=0)
>>> np.round(agg.total, 6).tolist(), agg.survivors
([0.5, 0.5, 0.5, 0.5], [0, 1, 2, 3, 4])
"""

from .base import AggregationProtocol, ClientSession, ServerResult, ServerSession
from .ckks import CKKS
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
from .paillier import Paillier
from .plaintext import Plaintext
from .secagg.config import SecAgg, SecAggPlus
from .simulate import SimulationResult, Stats, simulate
from .weighting import weighted_input, weighted_mean

__all__ = [
    "CKKS",
    "AggregationProtocol",
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
    "ServerResult",
    "ServerSession",
    "SimulationResult",
    "SnapshotError",
    "Stats",
    "WireFormatError",
    "simulate",
    "weighted_input",
    "weighted_mean",
]
