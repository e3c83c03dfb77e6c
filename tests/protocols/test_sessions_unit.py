"""Direct tests of SecAgg client and server sessions, driven through bytes.

Misbehaving peers are built by sending hand-made messages to real sessions,
or by intercepting the real server's messages and re-encoding modified ones.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from _protocols_kit import SERVER, Net, decode, exact_sum, on_grid_inputs

import protocols
from protocols import LocalProtocolError, ProtocolAborted, RemoteProtocolError, wire
from protocols.messages import Abort, RoundStart
from protocols.plaintext import PlainInput
from protocols.secagg import messages as sm

N, T, BITS, J, DIM = 5, 3, 16, 4, 6


def setup(proto_cls=protocols.SecAgg, n=N, threshold=T, seed=0, **kw):
    clip, q, x = on_grid_inputs(n, DIM, BITS, J, np.random.default_rng(seed))
    proto = proto_cls(semi_honest=True, threshold=threshold, bits=BITS, clip=clip, **kw)
    return proto, q, x


def assert_total(net: Net, q, survivors) -> None:
    res = net.server.result
    assert list(res.survivors) == sorted(survivors)
    assert [int(v) for v in res.integer_total] == exact_sum(q, survivors)
    assert res.total.tolist() == [s / 2.0**J for s in exact_sum(q, survivors)]


def state_fingerprint(server) -> bytes:
    """Everything the server holds (tests only; nothing here goes on a wire)."""
    return pickle.dumps((server.stage, server._state))


def reject(server, data: bytes) -> None:
    """The server must reject ``data`` and stay exactly as it was."""
    before = state_fingerprint(server)
    with pytest.raises(RemoteProtocolError):
        server.receive(data)
    assert state_fingerprint(server) == before
    assert not server.finished


# ---------------------------------------------------------------------------
# the baseline: an honest round


@pytest.mark.parametrize(
    "proto_cls, kw", [(protocols.SecAgg, {}), (protocols.SecAggPlus, {"k": 2})]
)
def test_honest_round_gives_the_exact_sum(proto_cls, kw):
    proto, q, x = setup(proto_cls, threshold=2 if kw else T, **kw)
    net = Net(proto, x).run()
    assert net.server.stage == "completed" and not net.client_errors
    assert all(c.stage == "completed" for c in net.clients.values())
    assert_total(net, q, range(N))


# ---------------------------------------------------------------------------
# the server rejects bad messages and stays usable


def fake_keys(sender: int, round: int = 0, recipient: int = SERVER) -> bytes:
    return sm.AdvertiseKeys(
        sender, recipient, round, bytes([sender + 1]) * 32, bytes([sender + 101]) * 32
    ).to_bytes()


@pytest.mark.parametrize(
    "make_bad",
    [
        pytest.param(lambda net: fake_keys(99), id="unknown-sender"),
        pytest.param(lambda net: fake_keys(0, round=1), id="wrong-round"),
        pytest.param(lambda net: fake_keys(0, recipient=3), id="wrong-recipient"),
        pytest.param(lambda net: net.to_server[0], id="duplicate"),
        pytest.param(
            lambda net: sm.MaskedInput(
                0, SERVER, 0, wire.RingVector(BITS, np.zeros(DIM, np.uint64))
            ).to_bytes(),
            id="other-stage",
        ),
        pytest.param(
            lambda net: sm.AdvertiseKeys(1, SERVER, 0, b"k" * 32, b"k" * 32).to_bytes(),
            id="same-key-twice",
        ),
        pytest.param(
            lambda net: PlainInput(0, SERVER, 0, np.zeros(DIM)).to_bytes(), id="other-protocol"
        ),
        pytest.param(lambda net: net.to_server[0][:-1], id="truncated"),
    ],
)
def test_server_rejects_bad_advertise_stage_messages_and_stays_usable(make_bad):
    proto, q, x = setup()
    net = Net(proto, x)
    net.start()
    while net.to_clients:  # RoundStart to everyone; their AdvertiseKeys stay queued
        net.deliver_to_client(*net.to_clients.popleft())
    assert net.server.stage == "advertise_keys" and len(net.to_server) == N
    first = net.to_server.popleft()
    net.deliver_to_server(first)  # client 0's keys are in
    net.to_server.appendleft(first)  # so that "duplicate" can find them
    bad = make_bad(net)
    net.to_server.popleft()
    reject(net.server, bad)
    net.run()
    assert_total(net, q, range(N))


def test_server_rejects_duplicates_and_late_messages_in_every_stage():
    proto, q, x = setup()
    net = Net(proto, x)
    net.start()
    seen: list[bytes] = []
    stages_checked = set()
    while not net.server.finished:
        if net.to_server:
            data = net.to_server.popleft()
            net.deliver_to_server(data)
            seen.append(data)
            if not net.server.finished:
                for old in seen:  # every earlier message again: duplicate or late
                    reject(net.server, old)
                stages_checked.add(net.server.stage)
        elif net.to_clients:
            net.deliver_to_client(*net.to_clients.popleft())
        else:
            net.server.close_stage()
    assert stages_checked >= {"advertise_keys", "share_keys", "masked_input", "unmasking"}
    assert_total(net, q, range(N))
    for old in seen:  # after completion: still an error, and the result stays
        with pytest.raises(RemoteProtocolError):
            net.server.receive(old)
    assert_total(net, q, range(N))


def test_server_rejects_share_keys_naming_the_wrong_recipients():
    proto, q, x = setup()
    net = Net(proto, x).run_until_server_stage("share_keys")
    while net.to_clients:
        net.deliver_to_client(*net.to_clients.popleft())
    share = decode(net.to_server.popleft())
    fewer = sm.ShareKeys(share.sender, SERVER, 0, share.envelopes[1:]).to_bytes()
    extra = sm.ShareKeys(share.sender, SERVER, 0, (*share.envelopes, (77, b"x"))).to_bytes()
    reject(net.server, fewer)
    reject(net.server, extra)
    net.deliver_to_server(share.to_bytes())
    net.run()
    assert_total(net, q, range(N))


def test_server_rejects_masked_input_of_the_wrong_shape():
    proto, q, x = setup()
    net = Net(proto, x).run_until_server_stage("masked_input")
    while net.to_clients:
        net.deliver_to_client(*net.to_clients.popleft())
    real = decode(net.to_server[0])
    for vec in (
        wire.RingVector(BITS, real.vector.values[:-1]),  # too short
        wire.RingVector(BITS + 8, real.vector.values),  # other modulus
    ):
        reject(net.server, sm.MaskedInput(real.sender, SERVER, 0, vec).to_bytes())
    net.run()
    assert_total(net, q, range(N))


def test_server_rejects_unmask_responses_that_answer_another_request():
    proto, q, x = setup()
    net = Net(proto, x).run_until_server_stage("unmasking")
    while net.to_clients:
        net.deliver_to_client(*net.to_clients.popleft())
    real = decode(net.to_server[0])
    swapped = sm.UnmaskResponse(
        real.sender, SERVER, 0, real.self_mask_shares[1:], real.mask_key_shares
    )
    short_share = sm.UnmaskResponse(
        real.sender,
        SERVER,
        0,
        tuple((c, s[:-1]) for c, s in real.self_mask_shares),
        real.mask_key_shares,
    )
    reject(net.server, swapped.to_bytes())
    reject(net.server, short_share.to_bytes())
    net.run()
    assert_total(net, q, range(N))


# ---------------------------------------------------------------------------
# the client refuses bad unmasking requests (and reveals nothing)


def rewrite_unmask_request(target: int, change):
    def tamper(msg):
        if isinstance(msg, sm.UnmaskRequest) and msg.recipient == target:
            survivors, dropped = change(set(msg.survivors), set(msg.dropped))
            return sm.UnmaskRequest(
                SERVER, target, msg.round, tuple(sorted(survivors)), tuple(sorted(dropped))
            ).to_bytes()
        return msg.to_bytes()

    return tamper


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda s, d: (s, d | {min(s)}), id="survivor-and-dropped"),
        pytest.param(lambda s, d: (s, d | {42}), id="names-a-stranger"),
        pytest.param(lambda s, d: (s - {max(s)}, d), id="omits-a-peer"),
        pytest.param(
            lambda s, d: (set(sorted(s)[: T - 1]), d | set(sorted(s)[T - 1 :])),
            id="fewer-than-threshold",
        ),
        pytest.param(lambda s, d: (set(), s | d), id="everyone-dropped"),
    ],
)
def test_client_aborts_on_an_inconsistent_unmask_request(change):
    proto, q, x = setup()
    target = 2
    net = Net(proto, x, tamper=rewrite_unmask_request(target, change)).run()
    client = net.clients[target]
    assert isinstance(net.client_errors.get(target), RemoteProtocolError)
    assert client.aborted and client.stage == "aborted"
    assert net.sent(target, sm.UnmaskResponse) == [], "the client revealed shares anyway"
    # The others answered; the server still has enough responses (4 >= 3).
    assert_total(net, q, range(N))


def test_client_reveals_one_share_per_peer():
    proto, q, x = setup()
    net = Net(proto, x, dropout={4: "masked_input"}).run()
    responses = net.all_sent(sm.UnmaskResponse)
    assert len(responses) == N - 1
    for r in responses:
        survivors = {c for c, _ in r.self_mask_shares}
        dropped = {c for c, _ in r.mask_key_shares}
        assert survivors == {0, 1, 2, 3} and dropped == {4}
    assert_total(net, q, [0, 1, 2, 3])


def test_config_digest_mismatch_aborts_the_client():
    proto, q, x = setup()
    other = protocols.SecAgg(
        semi_honest=True, threshold=proto.threshold, bits=proto.bits, clip=proto.clip * 2
    )
    net = Net(proto, x, client_protos={1: other}).run()
    assert net.clients[1].aborted
    assert "digest" in str(net.client_errors[1])
    assert net.sent_by[1] == [], "a client with another configuration sent something"
    assert_total(net, q, [0, 2, 3, 4])


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: sm.KeysAdvertised(SERVER, 0, 0, bytes(32), ()), id="other-stage"),
        pytest.param(
            lambda: RoundStart(SERVER, 0, 0, bytes(32), bytes(32), (0, 1)),
            id="duplicate-roundstart",
        ),
        pytest.param(
            lambda: RoundStart(1, 0, 0, bytes(32), bytes(32), (0, 1)), id="not-from-server"
        ),
    ],
)
def test_client_aborts_on_a_bad_server_message(make):
    proto, _q, x = setup()
    net = Net(proto, x)
    net.start()
    cid, data = net.to_clients.popleft()
    assert cid == 0
    net.deliver_to_client(0, data)
    assert net.clients[0].stage == "advertise_keys"
    with pytest.raises(RemoteProtocolError):
        net.clients[0].receive(make().to_bytes())
    assert net.clients[0].aborted


def test_client_stops_on_server_abort():
    proto, _q, _x = setup()
    client = proto.client(0, DIM)
    client.start()
    client.receive(Abort(SERVER, 0, 0, "bye").to_bytes())
    assert client.aborted and "bye" in client.abort_reason


def test_client_not_invited_aborts():
    proto, _q, _x = setup()
    client = proto.client(9, DIM)
    client.start()
    with pytest.raises(RemoteProtocolError):
        client.receive(
            RoundStart(SERVER, 9, 0, bytes(32), proto.config_digest(DIM), (0, 1, 2)).to_bytes()
        )
    assert client.aborted


# ---------------------------------------------------------------------------
# local misuse and argument validation


@pytest.mark.parametrize(
    "proto",
    [
        protocols.SecAgg(semi_honest=True),
        protocols.SecAggPlus(semi_honest=True, k=2),
        protocols.Plaintext(),
    ],
)
def test_provide_input_twice_is_a_local_error(proto):
    client = proto.client(0, 3)
    client.start()
    client.provide_input(np.zeros(3))
    with pytest.raises(LocalProtocolError):
        client.provide_input(np.zeros(3))


@pytest.mark.parametrize("proto", [protocols.SecAgg(semi_honest=True), protocols.Plaintext()])
@pytest.mark.parametrize(
    "bad",
    [
        np.zeros(2),
        np.zeros(4),
        np.zeros((3, 1)),
        np.array([0.0, np.nan, 0.0]),
        np.array([np.inf, 0, 0]),
        np.array([0, 0, -np.inf]),
    ],
    ids=["short", "long", "2d", "nan", "inf", "-inf"],
)
def test_bad_input_is_a_value_error(proto, bad):
    client = proto.client(0, 3)
    client.start()
    with pytest.raises(ValueError, match="input"):
        client.provide_input(bad)
    client.provide_input(np.zeros(3))  # a bad input did not count as the input


def test_start_twice_and_receive_before_start_are_local_errors():
    proto = protocols.SecAgg(semi_honest=True)
    client = proto.client(0, 3)
    with pytest.raises(LocalProtocolError):
        client.receive(Abort(SERVER, 0, 0, "x").to_bytes())
    client.start()
    with pytest.raises(LocalProtocolError):
        client.start()
    server = proto.server(range(3), 3)
    server.start()
    with pytest.raises(LocalProtocolError):
        server.start()


def test_server_result_before_completion_is_a_local_error():
    proto, q, x = setup()
    net = Net(proto, x)
    with pytest.raises(LocalProtocolError):
        _ = net.server.result
    net.start()
    for stage in ("advertise_keys", "share_keys", "masked_input", "unmasking"):
        net.run_until_server_stage(stage)
        with pytest.raises(LocalProtocolError):
            _ = net.server.result
    net.run()
    assert_total(net, q, range(N))
    with pytest.raises(LocalProtocolError):
        net.server.close_stage()  # nothing left to close


BAD_CONFIGS = [
    (dict(bits=1), "bits"),
    (dict(bits=65), "bits"),
    (dict(bits=0), "bits"),
    (dict(bits=True), "bits"),
    (dict(bits=32.0), "bits"),
    (dict(clip=0.0), "clip"),
    (dict(clip=-1.0), "clip"),
    (dict(clip=math.nan), "clip"),
    (dict(clip=math.inf), "clip"),
    (dict(threshold=0), "threshold"),
    (dict(threshold=1.5), "threshold"),
    (dict(threshold=-1), "threshold"),
    (dict(threshold=True), "threshold"),
    (dict(threshold=0.0), "threshold"),
    (dict(threshold=math.nan), "threshold"),
]


@pytest.mark.parametrize("cls", [protocols.SecAgg, protocols.SecAggPlus])
@pytest.mark.parametrize(
    "kwargs, name",
    BAD_CONFIGS,
    ids=[f"{k}={v!r}" for (kw, _) in BAD_CONFIGS for k, v in kw.items()],
)
def test_config_validation_names_the_argument(cls, kwargs, name):
    with pytest.raises(ValueError, match=name):
        cls(**kwargs)


@pytest.mark.parametrize("k", [1, 0, -2, True, 2.0, "4"])
def test_secagg_plus_k_must_be_an_int_of_at_least_2(k):
    # (Odd k >= 3 became valid with odd-degree Harary graphs, commit 2ccbb94.)
    with pytest.raises(ValueError, match="k"):
        protocols.SecAggPlus(semi_honest=True, k=k)


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_secagg_plus_accepts_k_of_at_least_2(k):
    proto = protocols.SecAggPlus(semi_honest=True, k=k)
    for n in range(2, 12):
        degree = proto.degree(n)
        assert degree <= n - 1
        assert degree == n - 1 or degree >= k


@pytest.mark.parametrize("dim", [0, -1, True, 2.5])
def test_sessions_reject_bad_dims(dim):
    proto = protocols.SecAgg(semi_honest=True)
    with pytest.raises(ValueError, match="dim"):
        proto.client(0, dim)
    with pytest.raises(ValueError, match="dim"):
        proto.server(range(3), dim)


def test_threshold_larger_than_the_group_is_rejected():
    proto, _q, x = setup(threshold=N + 1)
    with pytest.raises(ValueError, match="threshold"):
        Net(proto, x).run()


# ---------------------------------------------------------------------------
# too few survivors: abort before anything is revealed


@pytest.mark.parametrize(
    "dropout",
    [
        {0: "masked_input", 1: "masked_input", 2: "masked_input"},  # 2 < 3 masked inputs
        {0: "share_keys", 1: "masked_input", 3: "advertise_keys"},
        {0: "advertise_keys", 1: "advertise_keys", 2: "advertise_keys"},
    ],
)
def test_fewer_survivors_than_threshold_aborts_before_unmasking(dropout):
    proto, _q, x = setup()
    net = Net(proto, x, dropout=dropout).run()
    assert net.server.aborted
    with pytest.raises(ProtocolAborted):
        _ = net.server.result
    assert not any(isinstance(m, sm.UnmaskRequest) for m in net.server_sent)
    assert net.all_sent(sm.UnmaskResponse) == []
    # Every client still in the round was told.
    told = {m.recipient for m in net.server_sent if isinstance(m, Abort)}
    assert told >= {c for c in range(N) if c not in dropout}
    with pytest.raises(ProtocolAborted):
        protocols.simulate(proto, x, dropout=dropout, seed=0)


def test_too_few_unmasking_responses_aborts():
    proto, _q, x = setup()
    dropout = {0: "unmasking", 1: "unmasking", 2: "unmasking"}  # 2 < 3 responses
    net = Net(proto, x, dropout=dropout).run()
    assert net.server.aborted
    with pytest.raises(ProtocolAborted):
        _ = net.server.result
    # Nobody revealed both shares of anyone, even in a failed round.
    for r in net.all_sent(sm.UnmaskResponse):
        assert not {c for c, _ in r.self_mask_shares} & {c for c, _ in r.mask_key_shares}


def test_messages_from_another_round_are_rejected_by_both_sides():
    proto, _q, x = setup()
    net0 = Net(proto, x, seed="a", round=0)
    net1 = Net(proto, x, seed="b", round=1)
    net0.start()
    net1.start()
    cid, data = net1.to_clients.popleft()
    with pytest.raises(RemoteProtocolError, match="round"):
        net0.clients[cid].receive(data)
    assert net0.clients[cid].aborted
    reject(net0.server, fake_keys(0, round=1))
