"""The attack suite: real SecAgg / SecAgg+ sessions driven through the wire format
with the messages an adversary would craft, one test per attack (issue 13).

Each test asserts the exact outcome: the attacked client refuses and aborts
having revealed nothing (the messages it sent are inspected), or the round
completes without the attacker, with the integer sum of the honest survivors
computed here with numpy from the inputs' integers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
from _protocols_kit import Net, decode, on_grid_inputs

import protocols
from protocols import Message, ProtocolAborted, RemoteProtocolError
from protocols.secagg import messages as sm

BITS, J, DIM = 32, 8, 6

Forge = Callable[[Message], Message]


class Adversary(Net):
    """:class:`Net` whose clients' outgoing messages may be rewritten before they are sent.

    ``forge[(client, message class)]`` maps the honest message to the one the
    malicious client sends instead. Messages the server refuses are recorded
    in ``refused`` (the server must stay usable, so the round goes on).
    """

    def __init__(self, *args, forge: dict[tuple[int, type], Forge] | None = None, **kw) -> None:
        super().__init__(*args, **kw)
        self.forge = dict(forge or {})
        self.refused: dict[int, RemoteProtocolError] = {}

    def _from_client(self, cid: int, messages: list[Message]) -> None:
        rewrite = [self.forge.get((cid, type(m)), lambda m: m)(m) for m in messages]
        super()._from_client(cid, rewrite)

    def deliver_to_server(self, data: bytes) -> list[Message]:
        stage = self.server.stage
        try:
            return super().deliver_to_server(data)
        except RemoteProtocolError as exc:
            assert self.server.stage == stage and not self.server.finished
            self.refused[decode(data).sender] = exc
            return []


def setup(n: int, proto_cls=protocols.SecAgg, seed: int = 0, **kw):
    rng = np.random.default_rng(seed)
    clip, q, x = on_grid_inputs(n, DIM, BITS, J, rng)
    return proto_cls(semi_honest=True, bits=BITS, clip=clip, **kw), q, x


def honest_sum(q, members) -> np.ndarray:
    return np.array([q[c] for c in sorted(members)], dtype=np.int64).sum(axis=0)


def assert_total(net: Net, q, members) -> None:
    result = net.server.result
    assert result.survivors == tuple(sorted(members))
    np.testing.assert_array_equal(result.integer_total, honest_sum(q, members))


SMALL_ORDER = (1).to_bytes(32, "little")  # u = 1: a point of order 4


# ---------------------------------------------------------------------------
# Item 7: one malicious client can only drop itself


@pytest.mark.parametrize(
    "field,bad",
    [("mask_public_key", SMALL_ORDER), ("channel_public_key", bytes(32))],
    ids=["small-order-mask-key", "all-zero-channel-key"],
)
@pytest.mark.parametrize("proto_cls", [protocols.SecAgg, protocols.SecAggPlus])
def test_a_client_advertising_an_invalid_key_is_left_out_and_never_reaches_its_peers(
    proto_cls, field, bad
):
    proto, q, x = setup(6, proto_cls)
    forge = {(2, sm.AdvertiseKeys): lambda m: dataclasses.replace(m, **{field: bad})}
    net = Adversary(proto, x, forge=forge).run()
    assert "invalid" in str(net.refused[2])
    assert_total(net, q, {0, 1, 3, 4, 5})
    forwarded = [k for m in net.server_sent if isinstance(m, sm.KeysAdvertised) for k in m.keys]
    assert forwarded and all(bad not in (c_pk, s_pk) for _, c_pk, s_pk in forwarded)
    assert not net.client_errors


@pytest.mark.parametrize("bad", [SMALL_ORDER, bytes(32)], ids=["small-order", "all-zero"])
def test_a_client_refuses_an_invalid_peer_key_from_a_deviating_server(bad):
    proto, _q, x = setup(5)

    def tamper(m: Message) -> bytes:
        if isinstance(m, sm.KeysAdvertised) and m.recipient == 0:
            swapped = tuple((c, a, bad if c == 3 else b) for c, a, b in m.keys)
            return dataclasses.replace(m, keys=swapped).to_bytes()
        return m.to_bytes()

    net = Net(proto, x, tamper=tamper).run_until_server_stage("masked_input")
    error = net.client_errors[0]
    assert type(error) is RemoteProtocolError and "invalid mask key of client 3" in str(error)
    assert net.clients[0].aborted
    assert [type(m) for m in net.sent_by[0]] == [sm.AdvertiseKeys]  # no share left it


@pytest.mark.parametrize("proto_cls", [protocols.SecAgg, protocols.SecAggPlus])
def test_garbage_envelopes_from_one_client_drop_only_that_client(proto_cls):
    proto, q, x = setup(7, proto_cls)

    def garble(m: sm.ShareKeys) -> sm.ShareKeys:
        return dataclasses.replace(m, envelopes=tuple((r, bytes(len(e))) for r, e in m.envelopes))

    net = Adversary(proto, x, forge={(3, sm.ShareKeys): garble}).run()
    assert_total(net, q, set(range(7)) - {3})
    assert not net.client_errors and not net.refused
    reporters = {m.sender for m in net.all_sent(sm.MaskedInput) if m.failed == (3,)}
    assert reporters == set(proto.neighbours(tuple(range(7)), net.server.nonce)[3])
    assert "did not open" in net.server.blame[3]
    # Nobody revealed anything of client 3: it is dropped for all, and nobody holds its shares.
    for m in net.all_sent(sm.UnmaskResponse):
        assert 3 not in {c for c, _ in (*m.self_mask_shares, *m.mask_key_shares)}


def test_garbage_to_some_peers_drops_the_sender_and_its_masks_are_removed():
    # Client 3 garbles the envelopes of 0 and 1 only; 2, 4, 5, 6 masked with it and
    # hold its shares, enough (t = 4) to rebuild its mask key and take its masks out.
    proto, q, x = setup(7)

    def garble(m: sm.ShareKeys) -> sm.ShareKeys:
        bad = {0, 1}
        return dataclasses.replace(
            m, envelopes=tuple((r, bytes(len(e)) if r in bad else e) for r, e in m.envelopes)
        )

    net = Adversary(proto, x, forge={(3, sm.ShareKeys): garble}).run()
    assert_total(net, q, {0, 1, 2, 4, 5, 6})
    revealed = {
        m.sender
        for m in net.all_sent(sm.UnmaskResponse)
        if (3,) == tuple(c for c, _ in m.mask_key_shares)
    }
    assert revealed == {2, 4, 5, 6}
    for m in net.all_sent(sm.UnmaskResponse):
        assert 3 not in {c for c, _ in m.self_mask_shares}


def test_garbage_to_too_many_peers_aborts_before_any_share_and_names_the_sender():
    # Only 2 and 4 can open client 3's envelopes: too few (t = 4) to remove its masks.
    proto, _q, x = setup(7)

    def garble(m: sm.ShareKeys) -> sm.ShareKeys:
        keep = {2, 4}
        return dataclasses.replace(
            m, envelopes=tuple((r, e if r in keep else bytes(len(e))) for r, e in m.envelopes)
        )

    net = Adversary(proto, x, forge={(3, sm.ShareKeys): garble}).run()
    assert net.server.aborted and "client 3 dropped" in net.server.abort_reason
    assert "did not open" in net.server.abort_reason
    assert not net.all_sent(sm.UnmaskResponse)  # nothing was revealed


def test_a_false_report_drops_only_the_reported_peer():
    # Client 1 claims client 4's envelope did not open (and, consistently, leaves
    # its mask with 4 out): 4 is dropped, nobody else.
    proto, q, x = setup(7)

    def tamper(m: Message) -> bytes:
        if isinstance(m, sm.SharesDelivered) and m.recipient == 1:
            env = tuple((s, bytes(len(e)) if s == 4 else e) for s, e in m.envelopes)
            return dataclasses.replace(m, envelopes=env).to_bytes()
        return m.to_bytes()

    net = Net(proto, x, tamper=tamper).run()
    assert_total(net, q, {0, 1, 2, 3, 5, 6})
    assert net.sent(1, sm.MaskedInput)[0].failed == (4,)


def test_a_report_naming_two_peers_is_refused_and_drops_only_the_reporter():
    proto, q, x = setup(7)
    forge = {(1, sm.MaskedInput): lambda m: dataclasses.replace(m, failed=(4, 5))}
    net = Adversary(proto, x, forge=forge).run()
    assert "at most 1" in str(net.refused[1])
    assert_total(net, q, {0, 2, 3, 4, 5, 6})


def test_a_client_with_two_bad_envelopes_aborts_without_masking():
    proto, _q, x = setup(5)

    def tamper(m: Message) -> bytes:
        if isinstance(m, sm.SharesDelivered) and m.recipient == 0:
            env = tuple((s, bytes(len(e)) if s in (1, 2) else e) for s, e in m.envelopes)
            return dataclasses.replace(m, envelopes=env).to_bytes()
        return m.to_bytes()

    net = Net(proto, x, tamper=tamper).run_until_server_stage("unmasking")
    assert isinstance(net.client_errors[0], RemoteProtocolError)
    assert net.clients[0].aborted
    assert not net.sent(0, sm.MaskedInput)


def _lie(owner: int, *, self_mask: bool = True) -> Forge:
    """An UnmaskResponse whose share of ``owner``'s secret is off by one."""

    def forge(m: sm.UnmaskResponse) -> sm.UnmaskResponse:
        name = "self_mask_shares" if self_mask else "mask_key_shares"
        shares = tuple(
            (c, (int.from_bytes(s, "big") + 1).to_bytes(len(s), "big") if c == owner else s)
            for c, s in getattr(m, name)
        )
        return dataclasses.replace(m, **{name: shares})

    return forge


def test_a_lying_share_is_corrected_and_the_liar_named():
    proto, q, x = setup(7)  # t = 4 of 7: every response in, one wrong share is corrected
    net = Adversary(proto, x, forge={(2, sm.UnmaskResponse): _lie(0)}).run()
    assert_total(net, q, range(7))
    assert set(net.server.blame) == {2}
    assert "wrong share of client 0's self-mask seed" in net.server.blame[2]


def test_a_lying_mask_key_share_of_a_dropped_client_is_corrected():
    proto, q, x = setup(7)
    forge = {(2, sm.UnmaskResponse): _lie(6, self_mask=False)}
    net = Adversary(proto, x, forge=forge, dropout={6: "masked_input"}).run()
    assert_total(net, q, range(6))
    assert set(net.server.blame) == {2} and "client 6's mask key" in net.server.blame[2]


def test_a_lie_among_t_plus_one_shares_aborts_and_blames_nobody_innocent():
    # share_margin=1, t = 3 of 5, and one client gone at unmasking: 4 = t + 1 shares,
    # the lie is detected but cannot be pinned on anyone; the round aborts.
    proto, _q, x = setup(5, share_margin=1)
    net = Adversary(
        proto, x, forge={(2, sm.UnmaskResponse): _lie(0)}, dropout={4: "unmasking"}
    ).run()
    assert net.server.aborted and "client 0's self-mask seed" in net.server.abort_reason
    assert "inconsistent" in net.server.abort_reason
    assert net.server.blame == {}
    with pytest.raises(ProtocolAborted):
        _ = net.server.result


def test_exactly_t_responses_with_a_margin_abort_instead_of_trusting_them():
    # share_margin=1 and only t = 3 of 5 unmasking responses: a lie could not be
    # seen, so the server does not reconstruct (with share_margin=0 it would, and
    # a lying client would then corrupt the total undetectably; see the README).
    proto, _q, x = setup(5, share_margin=1)
    net = Adversary(
        proto,
        x,
        forge={(2, sm.UnmaskResponse): _lie(0)},
        dropout={3: "unmasking", 4: "unmasking"},
    ).run()
    assert net.server.aborted and "only 3 unmasking responses" in net.server.abort_reason


def test_a_lie_with_margin_two_is_corrected_even_when_two_clients_are_gone():
    proto, q, x = setup(7, share_margin=2)  # t = 4, 6 responses: one lie corrected
    net = Adversary(
        proto, x, forge={(5, sm.UnmaskResponse): _lie(1)}, dropout={6: "unmasking"}
    ).run()
    assert_total(net, q, range(7))
    assert set(net.server.blame) == {5}


def test_a_share_outside_the_field_is_refused_and_the_round_completes():
    proto, q, x = setup(7)

    def forge(m: sm.UnmaskResponse) -> sm.UnmaskResponse:
        (c, s), *rest = m.self_mask_shares
        return dataclasses.replace(m, self_mask_shares=((c, b"\xff" * len(s)), *rest))

    net = Adversary(proto, x, forge={(2, sm.UnmaskResponse): forge}).run()
    assert "outside the field" in str(net.refused[2])
    assert_total(net, q, range(7))


# ---------------------------------------------------------------------------
# Item 6: the session id in every message


def _two_sessions(proto, x):
    """Two rounds with the same number (0) and clients, run up to the masked inputs."""
    first = Net(proto, x, seed="first").run()
    second = Net(proto, x, seed="second").run_until_server_stage("masked_input")
    return first, second


def test_a_masked_input_replayed_from_another_session_is_refused_and_the_real_one_accepted():
    proto, q, x = setup(5)
    first, second = _two_sessions(proto, x)
    old = first.sent(2, sm.MaskedInput)[0]
    with pytest.raises(RemoteProtocolError, match="another session"):
        second.server.receive(old.to_bytes())
    assert second.server.stage == "masked_input" and 2 in second.server.awaiting
    second.run()
    assert_total(second, q, range(5))


def test_a_client_refuses_a_message_from_another_session_and_reveals_nothing():
    proto, _q, x = setup(5)
    first, second = _two_sessions(proto, x)
    replay = next(
        m for m in first.server_sent if isinstance(m, sm.UnmaskRequest) and m.recipient == 1
    )
    second.run_until_server_stage("unmasking")  # its own requests are still queued
    client = second.clients[1]
    with pytest.raises(RemoteProtocolError, match="another session"):
        client.receive(replay.to_bytes())
    assert client.aborted
    assert not second.sent(1, sm.UnmaskResponse)


# ---------------------------------------------------------------------------
# Item 4: thresholds and cohorts checked by clients


def _round_start_for(proto, x, client_ids):
    """What a deviating server sends client 0: a RoundStart listing only ``client_ids``."""
    net = Net(proto, x)
    start = next(m for m in net.server.start() if m.recipient == 0)
    return net.clients[0], dataclasses.replace(start, client_ids=tuple(client_ids))


def test_a_round_start_listing_only_the_target_is_refused():
    proto, _q, x = setup(5)
    client, start = _round_start_for(proto, x, [0])
    client.start()
    with pytest.raises(RemoteProtocolError, match="at least 2"):
        client.receive(start.to_bytes())
    assert client.aborted


def test_a_round_start_below_the_configured_cohort_is_refused():
    proto, _q, x = setup(5, min_clients=4)
    client, start = _round_start_for(proto, x, [0, 1, 2])
    client.start()
    with pytest.raises(RemoteProtocolError, match="at least 4"):
        client.receive(start.to_bytes())
    assert client.aborted
    with pytest.raises(ValueError, match="at least 4"):
        proto.server([0, 1, 2], DIM)


@pytest.mark.parametrize("n", [4, 6, 10])
def test_threshold_one_half_at_even_n_is_a_strict_majority(n):
    proto, q, x = setup(n, threshold=0.5)
    assert proto.group_threshold(n, n) == n // 2 + 1
    # n/2 survivors (exactly half) are too few: the round aborts before any share.
    dropout = {c: "masked_input" for c in range(n // 2)}
    net = Net(proto, x, dropout=dropout).run()
    assert net.server.aborted and not net.all_sent(sm.UnmaskResponse)
    assert_total(Net(proto, x).run(), q, range(n))


def test_a_client_refuses_an_absolute_threshold_below_a_majority():
    proto, _q, x = setup(6, threshold=3)  # 3 of 6 is not a strict majority
    _client, start = _round_start_for(
        protocols.SecAgg(semi_honest=True, bits=BITS, clip=1.0), x, range(6)
    )
    weak = proto.client(0, DIM)
    weak.start()
    start = dataclasses.replace(start, config_digest=proto.config_digest(DIM))
    with pytest.raises(RemoteProtocolError, match="strict majority"):
        weak.receive(start.to_bytes())
    assert weak.aborted
