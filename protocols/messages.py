"""Typed, frozen messages and their registry.

Each message class declares a one-byte ``TYPE``, the protocol ``STAGE`` it
belongs to, and a ``SCHEMA``: the ordered payload fields with their wire kinds
(:mod:`protocols.wire`). :meth:`Message.to_bytes` and :meth:`Message.from_bytes`
are generic over the schema, so every message gets the same length checks.

Header fields every message carries: ``sender`` and ``recipient`` (client ids,
or :data:`~protocols.wire.SERVER`) and ``round``. The ``sender`` field is a
claim: a transport must check it against the authenticated channel the bytes
arrived on (the sessions rely on it to attribute messages).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar, TypeVar

from . import wire
from .errors import WireFormatError

__all__ = ["Abort", "Message", "RoundStart", "message_class", "message_types", "register"]

_REGISTRY: dict[int, type[Message]] = wire.TYPES  # the wire format owns the type codes
M = TypeVar("M", bound="Message")


def register(cls: type[M]) -> type[M]:
    """Class decorator: make a message type decodable by :meth:`Message.from_bytes`."""
    if cls.TYPE in _REGISTRY:
        raise RuntimeError(f"message type {cls.TYPE} registered twice")
    declared = [f.name for f in fields(cls)][3:]
    if declared != [name for name, _ in cls.SCHEMA]:
        raise RuntimeError(f"{cls.__name__}: SCHEMA does not match the dataclass fields")
    _REGISTRY[cls.TYPE] = cls
    return cls


def message_class(type_code: int) -> type[Message]:
    """The registered message class for a type code (KeyError if none)."""
    return _REGISTRY[type_code]


def message_types() -> dict[int, type[Message]]:
    """All registered message types by type code (for fuzzing and docs)."""
    return dict(_REGISTRY)


@dataclass(frozen=True, eq=False)
class Message:
    """Base class of every message. Equality is equality of the wire bytes."""

    sender: int
    recipient: int
    round: int

    TYPE: ClassVar[int] = 0
    STAGE: ClassVar[str] = ""
    SCHEMA: ClassVar[tuple[tuple[str, wire.FieldKind], ...]] = ()

    def to_bytes(self) -> bytes:
        out = bytearray(
            wire.HEADER.pack(
                wire.MAGIC, wire.VERSION, self.TYPE, self.sender, self.recipient, self.round
            )
        )
        for name, kind in self.SCHEMA:
            kind.write(out, getattr(self, name))
        return bytes(out)

    @classmethod
    def from_bytes(cls: type[M], data: bytes | bytearray | memoryview) -> M:
        """Decode one message; raise :class:`WireFormatError` on any malformed input.

        Called on :class:`Message` it returns whichever registered type the
        bytes hold; called on a subclass it also checks the type.
        """
        head = wire.read_header(data)
        target = head.message_class
        if cls is not Message and target is not cls:
            raise WireFormatError(f"expected {cls.__name__}, got {target.__name__}")
        reader = wire.Reader(data, wire.HEADER.size)
        values = [kind.read(reader) for _, kind in target.SCHEMA]
        reader.finish()
        return target(head.sender, head.recipient, head.round, *values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return type(self) is type(other) and self.to_bytes() == other.to_bytes()

    def __hash__(self) -> int:
        return hash(self.to_bytes())


@register
@dataclass(frozen=True, eq=False)
class RoundStart(Message):
    """Server → client: opens a round. Every protocol starts with it.

    ``config_digest`` lets the client check that it runs the same protocol
    configuration as the server; ``nonce`` is fresh per round and seeds public
    randomness (the SecAgg+ graph); ``client_ids`` are the invited clients.
    """

    nonce: bytes
    config_digest: bytes
    client_ids: tuple[int, ...]

    TYPE: ClassVar[int] = 1
    STAGE: ClassVar[str] = "start"
    SCHEMA: ClassVar = (
        ("nonce", wire.Fixed(32)),
        ("config_digest", wire.Fixed(32)),
        ("client_ids", wire.IDS),
    )


@register
@dataclass(frozen=True, eq=False)
class Abort(Message):
    """Server → client: the round is over without a result; the client must stop."""

    reason: str

    TYPE: ClassVar[int] = 2
    STAGE: ClassVar[str] = "abort"
    SCHEMA: ClassVar = (("reason", wire.STR),)
