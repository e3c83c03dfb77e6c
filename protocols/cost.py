"""What one round of a protocol is expected to cost, before it runs.

Every protocol config answers ``proto.cost(n, d)``: a :class:`CostEstimate`
of one round with ``n`` clients aggregating ``d`` values each. The byte
counts follow the protocol's wire format; the CPU seconds are rough priors
(measured on a 2-core 2020s laptop-class machine, see
``benchmarks/recsys.py``) that only rank configurations before any round of
them ran. Callers that observe real rounds (``recsys``' ``CostAwarePolicy``)
replace the priors by what they measured.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CostEstimate"]


@dataclass(frozen=True)
class CostEstimate:
    """Expected cost of one round.

    Attributes:
        upload_bytes: bytes one client sends.
        download_bytes: bytes one client receives (protocol messages; a caller
            that also ships a model adds its size).
        client_seconds: CPU seconds of one client.
        server_seconds: CPU seconds of the server for the whole round.
        source: ``"prior"`` (this analytical model) or ``"observed"``
            (measured on past rounds by the caller).
    """

    upload_bytes: float
    download_bytes: float
    client_seconds: float
    server_seconds: float
    source: str = "prior"
