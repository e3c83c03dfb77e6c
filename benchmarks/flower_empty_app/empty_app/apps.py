"""ServerApp: ``trips`` query round trips to every node, each timed; ClientApp: answers at once.

Replies are pulled every ``poll-interval`` seconds, as the secagg-fl adapter
does (0: Flower's own ``grid.send_and_receive``, which sleeps 3 s between
pulls). Writes ``trips.json`` (seconds per trip) to ``out-dir``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

server = ServerApp()
client = ClientApp()


@client.query()
def answer(message: Message, context: Context) -> Message:
    return Message(RecordDict(), reply_to=message)


def _trip(grid: Grid, nodes: list[int], poll: float) -> float:
    msgs = [Message(RecordDict(), dst_node_id=n, message_type="query") for n in nodes]
    t0 = time.perf_counter()
    if poll <= 0:
        replies = list(grid.send_and_receive(msgs))
        assert len(replies) == len(nodes)
        return time.perf_counter() - t0
    waiting = {mid for mid in grid.push_messages(msgs) if mid}
    while waiting:
        for reply in grid.pull_messages(list(waiting)):
            waiting.discard(reply.metadata.reply_to_message_id)
        if waiting:
            time.sleep(poll)
    return time.perf_counter() - t0


@server.main()
def main(grid: Grid, context: Context) -> None:
    rc = context.run_config
    n = int(rc["num-nodes"])
    while len(nodes := sorted(grid.get_node_ids())) < n:
        time.sleep(0.1)
    seconds = [_trip(grid, nodes, float(rc["poll-interval"])) for _ in range(int(rc["trips"]))]
    out = Path(str(rc["out-dir"]))
    out.mkdir(parents=True, exist_ok=True)
    (out / "trips.json").write_text(json.dumps({"seconds": seconds, "nodes": len(nodes)}))
