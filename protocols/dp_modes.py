"""The DP modes of :class:`protocols.DifferentiallyPrivate` and what each one needs.

This is the one list of modes: the DP wrapper validates against it, and
callers (``recsys`` plans, its CLI and trainer, the Flower example) read their
choices and rules from it. It imports nothing heavy, so a command line can
list the modes without loading the privacy library.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DP_MODES", "DPMode", "dp_mode"]


@dataclass(frozen=True)
class DPMode:
    """One DP mode.

    Attributes:
        name: as given to ``DifferentiallyPrivate(mode=...)``.
        description: one line for tables and ``--help``.
        secure_sum: the guarantee relies on the server seeing only the sum
            (every mode but ``"central"``, where the server adds the noise), so
            the inner protocol must hide individual inputs.
        discrete: integer noise added in the ring Z_{2^bits} of the inner
            protocol (DDG, Skellam): the inner protocol must aggregate in an
            integer ring, and the event's guarantee is an RDP bound.
    """

    name: str
    description: str
    secure_sum: bool
    discrete: bool

    @property
    def accountant(self) -> str | None:
        """The accountant the mode's events need, or None if any will do.

        DDG and Skellam events are bounded in Rényi DP only (Kairouz, Liu,
        Steinke ICML 2021, Thm. 4; Agarwal, Kairouz, Liu NeurIPS 2021,
        Thm. 3.5), so they need ``"rdp"``; Gaussian events work with either.
        """
        return "rdp" if self.discrete else None


_MODES = (
    DPMode("central", "the server adds Gaussian noise to the decoded sum", False, False),
    DPMode("distributed", "each client adds a share of the Gaussian noise", True, False),
    DPMode("ddg", "distributed discrete Gaussian noise in the integer ring", True, True),
    DPMode("skellam", "distributed Skellam noise in the integer ring", True, True),
)
_BY_NAME = {m.name: m for m in _MODES}

#: Names of the DP modes, in the order they are documented.
DP_MODES: tuple[str, ...] = tuple(_BY_NAME)


def dp_mode(name: str) -> DPMode:
    """The mode called ``name`` (ValueError naming the valid ones otherwise)."""
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise ValueError(f"dp mode must be one of {DP_MODES}, got {name!r}") from None
