"""The client side of the Flower adapter: :class:`ClientHandler` and :func:`make_client_app`.

A ClientApp function that keeps a node's protocol client sessions between
Flower messages, as snapshots in ``context.state`` (see the package docstring),
one per protocol name, so that a multi-round session (SecAgg/SecAgg+ with
``rounds=R``, :class:`~protocols.adapters.flower.FlowerSession` on the server)
waits in the node state between Flower rounds while other sessions (e.g. an
evaluation) run on the same node.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, RecordDict
from flwr.app import Message as FlowerMessage
from flwr.clientapp import ClientApp

from secagg.identity import IdentityKeyPair
from secagg.randomness import RandomSource

from ...base import AggregationProtocol
from ...errors import LocalProtocolError, ProtocolError
from ...messages import Abort, Message, RoundStart
from ...secagg.client import AwaitingNextRound
from .records import ACTION, LAST_ROUND_RECORD, RECORD, frame, state_record, unframe

__all__ = ["ClientHandler", "InputFromRecord", "make_client_app"]

InputFn = Callable[[FlowerMessage, Context], np.ndarray]
KeySource = bytes | Callable[[Context], bytes] | None
IdentitySource = IdentityKeyPair | Callable[[Context], IdentityKeyPair | None] | None


ProtocolSource = (
    AggregationProtocol
    | Mapping[str, AggregationProtocol]
    | Callable[[str], AggregationProtocol]
    | Callable[[str, Context], AggregationProtocol]
)


def _takes_context(factory: Callable[..., Any]) -> bool:
    """Whether a protocol factory takes ``(name, context)`` rather than ``(name)``."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: the one-argument form
        return False
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(positional) >= 2


def _protocol_table(protos: ProtocolSource) -> dict[str, AggregationProtocol] | None:
    """The fixed name -> config table, or None when ``protos`` is a factory."""
    if isinstance(protos, AggregationProtocol):
        return {protos.NAME: protos}
    if isinstance(protos, Mapping):
        table = dict(protos)
        if table and all(isinstance(v, AggregationProtocol) for v in table.values()):
            return table
    elif callable(protos):
        return None
    raise TypeError(
        "protocols must be a protocol config, a non-empty name -> config mapping, "
        "or a function name -> config"
    )


class InputFromRecord:
    """An ``input_fn`` that reads the client's vector from an ArrayRecord of the round's
    first message (``content[record][array]``), e.g. what the server sent it."""

    def __init__(self, record: str, array: str = "x") -> None:
        self.record, self.array = record, array

    def __call__(self, message: FlowerMessage, context: Context) -> np.ndarray:
        return message.content.array_records[self.record][self.array].numpy()


class ClientHandler:
    """The client side of :func:`run_round`: a ClientApp function ``(message, context) -> Message``.

    Args:
        protocols: the protocol configuration this client runs; or a mapping
            name -> configuration if the server may choose one per round (it
            names it, see ``run_round(name=...)``; a client never runs a
            configuration it was not given); or a function ``name -> config``
            for configurations made per round from public parameters the
            server puts in the name (e.g. a plan, the cohort size, the noise
            multiplier), or ``(name, context) -> config`` when it needs the
            node's own settings (e.g. its trusted roster, from the node
            config). The function is the client's policy: it should
            refuse (raise ValueError) what the client does not accept, e.g.
            no DP, or plaintext. Sessions still check the server's config
            digest against the configuration the client built.
        input_fn: ``input_fn(message, context) -> 1-D float vector``: the
            client's input (e.g. its model update), called once per round
            with the round's first message, which carries the server's
            ``content`` records (in a multi-round session: the RoundStart of
            its first round, then each NextRound).
        snapshot_key: encrypt the stored session snapshot with this 32-byte
            key, or with ``snapshot_key(context)``; see the module docstring.
        rng: randomness for the client sessions (default: the OS CSPRNG; a
            deterministic one is for tests only).
        identity: the node's long-term identity key, or ``identity(context)``:
            what a configuration with ``identity_required`` (the actively
            secure SecAgg/SecAgg+) signs with. The configuration's roster
            must map the node's client id to its public key; a node without
            one refuses such a round.

    A message the session refuses (a RemoteProtocolError: it fails closed),
    an unknown protocol name, or a step for which the node holds no session
    ends the node's session and is answered with an ``"error"`` entry, which
    the server treats as the node dropping out. Other exceptions (e.g. from
    ``input_fn``) propagate; Flower turns them into an error reply, with the
    same effect on the server.

    Multi-round sessions. A session that finished a round and awaits the next
    stays in the node state; its stored round is the session's own
    (``session.round``, which advances at the end of each round), so the next
    round's NextRound restores it, the handler calls ``input_fn`` for the new
    round and provides the input. A node that missed a round holds no session
    of the next one and refuses it (it never comes back with its old keys).
    Round numbers keep growing: a RoundStart must come after every round any
    session the node started before may use (its first round plus its
    ``rounds`` minus one), so no two sessions on a node share a round number.
    """

    def __init__(
        self,
        protocols: ProtocolSource,
        input_fn: InputFn,
        *,
        snapshot_key: KeySource = None,
        rng: RandomSource | None = None,
        identity: IdentitySource = None,
    ) -> None:
        self.protocols = _protocol_table(protocols)
        self.factory: Callable[..., AggregationProtocol] | None = (
            None if self.protocols is not None or not callable(protocols) else protocols
        )
        self._factory_context = self.factory is not None and _takes_context(self.factory)
        # The factory's configs, by name (and node, when the factory reads the node's settings).
        self._made: dict[tuple[str, int | None], AggregationProtocol] = {}
        self.input_fn = input_fn
        self.snapshot_key = snapshot_key
        self.rng = rng
        if identity is not None and not (isinstance(identity, IdentityKeyPair) or callable(identity)):
            raise TypeError("identity must be an IdentityKeyPair, a function of the context, or None")
        self.identity = identity

    def _identity(self, proto: AggregationProtocol, context: Context) -> dict[str, Any]:
        """The ``identity=`` keyword for ``proto``'s client sessions (empty if it needs none)."""
        if not proto.identity_required:
            return {}
        identity = self.identity(context) if callable(self.identity) else self.identity
        if not isinstance(identity, IdentityKeyPair):
            raise LocalProtocolError(
                f"protocol {proto.NAME!r} needs this node's identity key; the handler has none"
            )
        return {"identity": identity}

    def _resolve(self, name: object, context: Context) -> AggregationProtocol:
        if not isinstance(name, str):
            raise LocalProtocolError("the protocol name must be a string")
        if self.protocols is not None:
            proto = self.protocols.get(name)
            if proto is None:
                raise LocalProtocolError(f"this client does not run protocol {name!r}")
            return proto
        entry = (name, context.node_id if self._factory_context else None)
        if entry not in self._made:
            assert self.factory is not None  # set whenever protocols is None
            args: tuple[Any, ...] = (name, context) if self._factory_context else (name,)
            try:
                proto = self.factory(*args)
            except (ValueError, TypeError, KeyError) as exc:
                raise LocalProtocolError(f"this client refuses protocol {name!r}: {exc}") from exc
            if not isinstance(proto, AggregationProtocol):
                raise LocalProtocolError(f"no protocol configuration for {name!r}")
            if len(self._made) >= 64:  # one per round is typical: keep the cache small
                self._made.clear()
            self._made[entry] = proto
        return self._made[entry]

    def _key(self, context: Context) -> bytes | None:
        return self.snapshot_key(context) if callable(self.snapshot_key) else self.snapshot_key

    def __call__(self, message: FlowerMessage, context: Context) -> FlowerMessage:
        record = message.content.config_records.get(RECORD)
        if record is None:
            raise ValueError(f"message carries no {RECORD!r} record: not a protocol step")
        name, round_, dim = record["protocol"], record["round"], record["dim"]
        try:
            proto = self._resolve(name, context)
            incoming = [Message.from_bytes(p) for p in unframe(record["messages"])]
            cpu, input_cpu, stage, session, out = self._step(
                proto, name, round_, dim, incoming, message, context
            )
        except ProtocolError as exc:
            # Fail closed: the session is gone for good. Reply (rather than raise) so
            # that Flower keeps the updated node state; it drops the state of an app
            # that raised. The server treats the error as this node dropping out.
            self._forget(context, name)
            reply = ConfigRecord({"messages": b"", "stage": "aborted", "error": str(exc)})
            return FlowerMessage(RecordDict({RECORD: reply}), reply_to=message)
        except BaseException:
            self._forget(context, name)  # (lost if Flower discards the state; nothing was sent)
            raise
        if session is None or session.finished:
            self._forget(context, name)
        else:
            snapshot = session.snapshot(key=self._key(context))
            # The session's own round: it moves on when a multi-round session ends a round.
            context.state[state_record(str(name))] = ConfigRecord(  # a str: _resolve checked
                {"protocol": name, "round": session.round, "snapshot": snapshot}
            )
        reply = ConfigRecord(
            {
                "messages": frame(m.to_bytes() for m in out),
                "stage": "none" if session is None else session.stage,
                "cpu_seconds": cpu,
                "cpu_stage": stage,
                "input_seconds": input_cpu,
            }
        )
        return FlowerMessage(RecordDict({RECORD: reply}), reply_to=message)

    def _step(self, proto, name, round_, dim, incoming, message, context):
        """Feed one step's messages.

        Returns (protocol CPU seconds, input_fn CPU seconds, the stage the
        step started in, the session, the messages to send).
        """
        t0 = time.thread_time()
        input_cpu = 0.0
        out: list[Message] = []
        if (
            incoming
            and all(isinstance(m, Abort) for m in incoming)
            and not self._holds(name, round_, context)
        ):
            return 0.0, 0.0, "none", None, out  # the session already finished: nothing to abort
        if incoming and isinstance(incoming[0], RoundStart):
            # A new session replaces whatever session of this name the node held. Round
            # numbers must grow: a client never runs two sessions of one round (a server
            # could otherwise collect shares of a peer under two different claims), so a
            # session reserves every round it may run.
            last = context.state.config_records.get(LAST_ROUND_RECORD)
            if last is not None and round_ <= last["round"]:
                raise LocalProtocolError(
                    f"round {round_} does not follow round {last['round']} on this node"
                )
            rounds = proto.rounds_per_session
            context.state[LAST_ROUND_RECORD] = ConfigRecord({"round": round_ + rounds - 1})
            identity = self._identity(proto, context)
            session = proto.client(incoming[0].recipient, dim, rng=self.rng, round=round_, **identity)
            stage = session.stage
            out += session.start()
            out += session.receive(incoming[0])
            if not session.finished:
                x, input_cpu = self._input(message, context)
                t0 += input_cpu
                out += session.provide_input(x)
            for m in incoming[1:]:
                out += session.receive(m)
            return time.thread_time() - t0, input_cpu, stage, session, out
        if not self._holds(name, round_, context):
            raise LocalProtocolError(f"this node holds no {name!r} session of round {round_}")
        stored = context.state.config_records[state_record(name)]
        session = proto.restore_client(
            stored["snapshot"], rng=self.rng, key=self._key(context), **self._identity(proto, context)
        )
        stage = session.stage
        for m in incoming:
            out += session.receive(m)
        if stage == AwaitingNextRound.NAME and not session.finished:
            # The next round of a multi-round session: its input, once the server's
            # NextRound was accepted (a refused one costs no local training).
            x, input_cpu = self._input(message, context)
            t0 += input_cpu
            out += session.provide_input(x)
        return time.thread_time() - t0, input_cpu, stage, session, out

    def _input(self, message: FlowerMessage, context: Context) -> tuple[np.ndarray, float]:
        """The round's input and the CPU seconds ``input_fn`` took (not protocol time)."""
        t1 = time.thread_time()
        x = self.input_fn(message, context)
        return x, time.thread_time() - t1

    @staticmethod
    def _holds(name: str, round_: int, context: Context) -> bool:
        stored = context.state.config_records.get(state_record(name))
        return (
            stored is not None and stored.get("protocol") == name and stored.get("round") == round_
        )

    @staticmethod
    def _forget(context: Context, name: object) -> None:
        if not isinstance(name, str):
            return  # no session was stored under a name that is not a string
        if state_record(name) in context.state:
            del context.state[state_record(name)]


def make_client_app(
    protocols: ProtocolSource,
    input_fn: InputFn,
    *,
    snapshot_key: KeySource = None,
    rng: RandomSource | None = None,
    identity: IdentitySource = None,
) -> ClientApp:
    """A ClientApp whose ``train.secagg_fl`` action is a :class:`ClientHandler`."""
    app = ClientApp()
    handler = ClientHandler(protocols, input_fn, snapshot_key=snapshot_key, rng=rng, identity=identity)
    app.train(ACTION)(handler)
    return app
