"""Helpers for the multi-round session tests (issue 17): a byte-level driver over many
rounds and on-grid inputs per round.

:class:`MultiNet` extends the kit's :class:`~_protocols_kit.Net` (every message as
bytes, what each party sent recorded as decoded from those bytes) with the rounds
after the first: ``next_round`` starts the server's next round, hands the
participants their inputs and applies that round's dropouts. A client silenced in
one round stays silent (a dropped client is gone for the session).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from _protocols_kit import Net, grid, grid_q

from protocols import Message
from protocols.secagg import messages as sm


class MultiNet(Net):
    """A :class:`Net` that runs the later rounds of a multi-round session too."""

    def __init__(self, proto, inputs, **kw) -> None:
        super().__init__(proto, inputs, **kw)
        self.rounds_started = 1

    def next_round(
        self, inputs: Mapping[int, np.ndarray], dropout: Mapping[int, str] | None = None
    ) -> list[Message]:
        """Start the server's next round, give ``inputs`` to their clients, set the dropouts."""
        self.dropout = dict(dropout or {})
        out = self.server.start()
        self._from_server(out)
        self.rounds_started += 1
        for cid, x in inputs.items():
            self.inputs[cid] = np.asarray(x, dtype=np.float64)
            if not self.clients[cid].finished:
                self._from_client(cid, self.clients[cid].provide_input(self.inputs[cid]))
        return out

    def of_round(self, cid: int, kind: type[Message], round: int) -> list[Message]:
        """What client ``cid`` sent of ``kind`` with header round ``round``."""
        return [m for m in self.sent(cid, kind) if m.round == round]

    def masked_inputs(self, round: int) -> dict[int, sm.MaskedInput]:
        return {m.sender: m for m in self.all_sent(sm.MaskedInput) if m.round == round}

    def responses(self, round: int) -> dict[int, sm.UnmaskResponse]:
        return {m.sender: m for m in self.all_sent(sm.UnmaskResponse) if m.round == round}


def round_inputs(
    cohort_size: int, members, dim: int, bits: int, j: int, rng: np.random.Generator
) -> tuple[dict[int, list[int]], dict[int, np.ndarray]]:
    """On-grid inputs of one round (scale exactly ``2**j``, see :func:`_protocols_kit.grid`):
    the integers ``q`` and the floats ``x = q / 2**j`` that encode to exactly ``q``.

    The encoder of a session is fixed by its cohort size (every round shares it), so
    the grid is that of ``cohort_size`` whatever the round's participants.
    """
    _, cap = grid(cohort_size, bits, j)
    q = {
        int(c): [grid_q(cap, int(v)) for v in rng.integers(-cap, cap, size=dim, endpoint=True)]
        for c in members
    }
    x = {c: np.array([v / 2.0**j for v in q[c]], dtype=np.float64) for c in q}
    return q, x


def exact_total(q: Mapping[int, list[int]], members, dim: int) -> np.ndarray:
    """The exact integer sum of ``members``' inputs (plain numpy, int64 is ample here)."""
    total = np.zeros(dim, dtype=np.int64)
    for c in members:
        total += np.asarray(q[c], dtype=np.int64)
    return total
