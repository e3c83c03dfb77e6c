"""Run any aggregation protocol inside Flower, over its Message API (tested with flwr 1.41 and 1.42).

The adapter only moves bytes. Every protocol message is made and checked by
the same sessions as in :func:`protocols.simulate`; Flower carries them, and
this module maps client ids to Flower node ids and keeps each client session
between messages. Works for SecAgg, SecAggPlus, Paillier, CKKS, Plaintext and
``DifferentiallyPrivate(...)`` around any of them.

Server side, in a ``ServerApp``'s main function::

    from protocols.adapters import flower as fa

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        nodes = fa.wait_for_nodes(grid, 10)
        for r in range(rounds):
            out = fa.run_round(grid, proto, nodes, dim, round=r, timeout=60.0,
                               content=RecordDict({"model": ArrayRecord(...)}))
            out.result.total, out.survivor_nodes, out.stats.bytes_up

Client side, a ``ClientApp`` (or the handler inside your own ClientApp)::

    app = fa.make_client_app(proto, input_fn)          # input_fn(message, context) -> vector
    # or: app.train(fa.ACTION)(fa.ClientHandler(proto, input_fn))

Transport. One Flower ``Message`` per node per protocol step, of type
``"train.secagg_fl"`` (:data:`MESSAGE_TYPE`), ``group_id = str(round)``. Its
content holds a ConfigRecord :data:`RECORD` = ``{"protocol": name, "round":
r, "dim": d, "messages": framed}``, where ``framed`` is every protocol message
for that node, length-prefixed (:func:`secagg.framing.length_prefixed`), and,
in the round's first message to each node only, the caller's own records
(``content=``, e.g. the global model). The reply carries ``{"messages":
framed, "stage": ..., "cpu_seconds": ..., "input_seconds": ...}`` under the
same name, or ``{"error": why}`` if the client ended its session (it fails
closed).

Client state. Flower keeps a ClientApp's state only in ``context.state``, and
a ClientApp may run in a different process for each message, so after every
message the handler stores the session's snapshot (:mod:`protocols.snapshot`)
in ``context.state[state_record(name)]`` (one record per protocol name) and
restores it on the next one; a finished or failed session is deleted. Round
numbers must increase within a Flower run: a node refuses to open a session
at a round that is not later than every round an earlier session of its may
use, so it never runs two sessions of one round. **The snapshot holds the client's
secrets.** Flower keeps node state on the SuperNode, which never sends it to
the SuperLink; if your deployment persists or ships node state elsewhere,
pass ``snapshot_key=`` (32 bytes, or a function of the context returning
them) to encrypt it with AES-256-GCM. Never roll node state back to an
earlier snapshot (:mod:`protocols.snapshot` explains why).

Multi-round sessions. :class:`FlowerSession` keeps one server session across
Flower rounds: a SecAgg/SecAgg+ configuration with ``rounds=R`` runs its key
setup with the first round, and each later round begins with the server's
NextRound to the session's participants; the node restores the session it
kept, calls ``input_fn`` for the new round and sends its masked input. A round
after the setup costs 2 round trips (masked input, unmasking), 3 with the
consistency check of the actively secure variant. A node that dropped or
missed a round is out of the session for good (the server never lists it
again; the node, holding no session of that round, refuses it).

Dropouts and deadlines. ``run_round`` is :func:`protocols.driver.drive` (the
loop :func:`protocols.simulate` runs too) over :class:`GridTransport`, which
pushes each step's messages with ``grid.push_messages`` and pulls the replies
every ``poll_interval`` seconds until all are in or ``timeout`` passed; a reply
belongs to the node whose message it answers (``reply_to_message_id``), so the
SuperLink's error reply for a node that died (whose ``src_node_id`` is the
SuperLink's, 0) is charged to that node. A node
that replies with a Flower error (its ClientApp raised, e.g. because its
session refused the server's message) or does not reply before ``timeout``
is dropped for the rest of the round: the adapter never sends to it again.
When nothing is left in flight, the driver feeds the server
``DeadlinePassed(stage)``: the protocol goes on with whoever answered, or
aborts if too few did (docs/design.md, "Sessions and the driver": dropouts
are the driver's decision, never a timer inside a session).

Authentication. A protocol message's ``sender`` is a claim; the driver
accepts a message only if it arrived in the reply of the node mapped to that
client id, and drops the node otherwise. Flower authenticates nodes to the
SuperLink (SuperNode authentication) in a deployment; the simulation engine
does not need to.

Size. Protocol messages travel as ``bytes`` in a ConfigRecord, which Flower
does not split into chunks as it does arrays; that is fine for the vectors
of a few million coordinates Flower's 512 MB gRPC limit allows, with room
to spare for SecAgg's 4-byte ring elements.

Modules: :mod:`.server` (``run_round``, ``FlowerSession``, the driver's Grid transport),
:mod:`.client` (``ClientHandler``, ``make_client_app``), :mod:`.records`
(the record names, message type and framing both sides share).
"""

from __future__ import annotations

try:
    import flwr.app
    import flwr.clientapp
    import flwr.serverapp  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "protocols.adapters.flower needs Flower's Message API (flwr.app, flwr.serverapp, "
        "flwr.clientapp; tested with flwr 1.41 and 1.42): pip install 'secagg-fl[flower]'"
    ) from exc

from .client import ClientHandler, InputFromRecord, make_client_app
from .records import ACTION, LAST_ROUND_RECORD, MESSAGE_TYPE, RECORD, STATE_RECORD, state_record
from .server import FlowerRound, FlowerSession, GridTransport, run_round, wait_for_nodes

__all__ = [
    "ACTION",
    "LAST_ROUND_RECORD",
    "MESSAGE_TYPE",
    "RECORD",
    "STATE_RECORD",
    "ClientHandler",
    "FlowerRound",
    "FlowerSession",
    "GridTransport",
    "InputFromRecord",
    "make_client_app",
    "run_round",
    "state_record",
    "wait_for_nodes",
]
