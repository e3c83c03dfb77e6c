"""The protocols that callers can name: name -> config factory and description.

``recsys`` plans, its CLI, ``recsys.federated.build_protocol``, the Flower
example and the README's protocol table all read this one table, so a new
protocol is its own module plus one :func:`register` call (for the protocols
shipped here: one line in ``_BUILTIN`` below).

Entries are lazy: a protocol's module is imported the first time its config
class is asked for (:func:`config_class`), so importing this module costs
nothing and listing the names (``--help``) loads no cryptography.

A config class makes its configuration from :class:`ProtocolOptions`, the
knobs a caller sets without knowing the protocol
(:meth:`protocols.AggregationProtocol.from_options`); the class itself states
the rest (``NAME``, ``DROPOUT_STAGES``, ``INPUT_STAGE``, ``QUANTIZATION_BITS``,
``INTEGER_RING``, ``SECURE_SUM``, ``cost()``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .base import AggregationProtocol

__all__ = [
    "ProtocolOptions",
    "ProtocolSpec",
    "config_class",
    "create",
    "describe",
    "get",
    "names",
    "register",
    "unregister",
]

#: A config class, or ``"module:attribute"`` naming one (imported on first use).
Target = str | type | Callable[[], type]


@dataclass(frozen=True)
class ProtocolOptions:
    """Settings a caller gives any protocol; each protocol takes the ones it has.

    ``None`` leaves the protocol its own default. A protocol without a
    setting (e.g. :class:`~protocols.Plaintext` has no ``bits``) ignores it.

    Attributes:
        clip: every coordinate is clipped to [-clip, clip].
        bits: quantization bits per value (see ``QUANTIZATION_BITS``).
        threshold: Shamir threshold (fraction or count) of threshold protocols.
        key_bits: modulus size of key-based homomorphic protocols.
        workers: processes a protocol may start for its own heavy work.
        semi_honest: True selects the semi-honest variant of a protocol that
            has one (SecAgg, SecAgg+), for deployments whose clients hold no
            enrolled identity key; None leaves the protocol's default.
        rounds: aggregation rounds per session of a protocol that can run
            several after one key setup (``MULTI_ROUND``: SecAgg, SecAgg+).
    """

    clip: float | None = None
    bits: int | None = None
    threshold: float | int | None = None
    key_bits: int | None = None
    workers: int | None = None
    semi_honest: bool | None = None
    rounds: int | None = None


@dataclass(frozen=True)
class ProtocolSpec:
    """One registered protocol: its name, a one-line description, its config class."""

    name: str
    description: str
    target: Target

    def load(self) -> type[AggregationProtocol]:
        """The config class (importing its module on first use)."""
        target = self.target
        if isinstance(target, str):
            module, _, attribute = target.partition(":")
            cls = getattr(importlib.import_module(module), attribute)
        elif isinstance(target, type):
            cls = target
        else:
            cls = target()
        if cls.NAME != self.name:
            raise TypeError(f"{cls.__name__}.NAME is {cls.NAME!r}, registered as {self.name!r}")
        return cls


_REGISTRY: dict[str, ProtocolSpec] = {}


def register(name: str, target: Target, description: str) -> ProtocolSpec:
    """Make ``name`` a protocol callers can choose.

    Args:
        name: the config class's ``NAME`` (what plans and ``--protocol`` say).
        target: the config class, a zero-argument function returning it, or
            ``"package.module:ClassName"`` (imported on first use).
        description: one line for the README table and ``--help``.

    Raises ValueError if ``name`` is taken (unregister it first).
    """
    if not isinstance(name, str) or not name or name in _REGISTRY:
        raise ValueError(f"protocol name {name!r} is empty or already registered")
    if not isinstance(description, str) or not description or "\n" in description:
        raise ValueError("description must be one non-empty line")
    spec = ProtocolSpec(name, description, target)
    _REGISTRY[name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove ``name`` (KeyError if it is not registered)."""
    del _REGISTRY[name]


def names() -> tuple[str, ...]:
    """Registered protocol names, in registration order."""
    return tuple(_REGISTRY)


def get(name: str) -> ProtocolSpec:
    """The entry of ``name`` (ValueError naming the valid ones otherwise)."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"protocol must be one of {names()}, got {name!r}") from None


def config_class(name: str) -> type[AggregationProtocol]:
    """The config class registered as ``name``."""
    return get(name).load()


def create(name: str, options: ProtocolOptions | None = None) -> AggregationProtocol:
    """The configuration of protocol ``name`` with ``options`` (its defaults for the rest)."""
    return config_class(name).from_options(options or ProtocolOptions())


def describe() -> list[tuple[str, str]]:
    """``(name, description)`` of every registered protocol (the README table's rows)."""
    return [(spec.name, spec.description) for spec in _REGISTRY.values()]


# The protocols shipped with this package: one line each.
_BUILTIN = (
    ("plaintext", "protocols.plaintext:Plaintext", "no protection: the server sees every input (baseline)"),
    ("secagg", "protocols.secagg.config:SecAgg", "secure aggregation on the complete graph (Bonawitz et al. 2017)"),
    ("secagg+", "protocols.secagg.config:SecAggPlus", "secure aggregation on a random k-regular graph (Bell et al. 2020)"),
    ("paillier", "protocols.paillier:Paillier", "packed Paillier: the server adds ciphertexts, one client decrypts the sum"),
    ("ckks", "protocols.ckks:CKKS", "CKKS via TenSEAL: approximate homomorphic sum, one client decrypts"),
)  # fmt: skip
for _name, _target, _description in _BUILTIN:
    register(_name, _target, _description)
