"""A deviating server against the actively secure SecAgg/SecAgg+ (issue 13 items 1-3, 5).

Real sessions, every message through the wire format (the kit's Net); the
server's messages are rewritten by ``tamper`` as a malicious server would.
Each test checks the attack is refused AND that no share left the target's
honest peers (no UnmaskResponse carries anything), or that the exact honest
sum comes out.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from _protocols_kit import Net

import protocols
from protocols import LocalProtocolError
from protocols.secagg import messages as sm
from protocols.secagg.derivation import survivor_payload
from secagg import keys
from secagg.identity import CONSISTENCY_CONTEXT, Statement, enroll

N, DIM = 6, 3


def active(cls=protocols.SecAgg, n=N, **kw):
    roster, ids = enroll(range(n), rng=None)
    return cls(bits=32, clip=1.0, roster=roster, **kw), ids


def inputs(n=N):
    rng = np.random.default_rng(0)
    return {c: rng.uniform(-1, 1, DIM) for c in range(n)}


def shares_revealed(net: Net) -> int:
    return sum(
        len(m.self_mask_shares) + len(m.mask_key_shares) for m in net.all_sent(sm.UnmaskResponse)
    )


@pytest.mark.parametrize("cls", [protocols.SecAgg, protocols.SecAggPlus])
def test_honest_active_round_gives_the_exact_sum_with_dropouts(cls):
    proto, ids = active(cls, n=9, **({"k": 6} if cls is protocols.SecAggPlus else {}))
    x = inputs(9)
    for stage in ("share_keys", "masked_input", "consistency"):
        net = Net(proto, x, identities=ids, dropout={8: stage}).run()
        res = net.server.result
        assert not net.client_errors
        np.testing.assert_allclose(res.total, sum(x[c] for c in res.survivors), atol=1e-6)
        assert (8 in res.survivors) == (stage == "consistency")


def test_the_default_config_makes_no_sessions_and_a_roster_needs_identities():
    with pytest.raises(LocalProtocolError, match="semi_honest=True"):
        protocols.SecAgg().server([0, 1, 2], DIM)
    with pytest.raises(ValueError, match="roster"):
        protocols.SecAgg(roster=enroll(range(3))[0], semi_honest=True)
    proto, ids = active()
    with pytest.raises(LocalProtocolError, match="identity"):
        proto.client(0, DIM)
    with pytest.raises(LocalProtocolError, match="roster's key"):
        proto.client(0, DIM, identity=ids[1])
    with pytest.raises(ValueError, match="not in the roster"):
        proto.server([0, 1, 99], DIM)
    assert proto.config_digest(DIM) != protocols.SecAgg(semi_honest=True).config_digest(DIM)
    with pytest.raises(ValueError, match="2n/3"):
        protocols.SecAgg(threshold=0.5, roster=proto.roster).group_threshold(N, N)


def _inconsistent_view(target: int, victims: set[int]):
    """Tell ``victims`` the target dropped (unmask request for S - {target})."""

    def tamper(msg):
        if isinstance(msg, sm.CertifiedUnmaskRequest) and msg.recipient in victims:
            s = tuple(c for c in msg.survivors if c != target)
            return dataclasses.replace(msg, survivors=s).to_bytes()
        if isinstance(msg, sm.UnmaskRequest) and msg.recipient in victims:
            return dataclasses.replace(
                msg,
                survivors=tuple(c for c in msg.survivors if c != target),
                dropped=tuple(sorted({*msg.dropped, target})),
            ).to_bytes()
        return msg.to_bytes()

    return tamper


def test_inconsistent_dropout_views_leak_on_semi_honest_and_are_refused_when_active():
    x, target, victims = inputs(), 0, {1, 2, 3, 4}
    semi = protocols.SecAgg(semi_honest=True, threshold=0.5, bits=32, clip=1.0)
    net = Net(semi, x, tamper=_inconsistent_view(target, victims))
    # (This server's own bookkeeping refuses the answers to its lie; a malicious one would not.)
    with pytest.raises(protocols.RemoteProtocolError, match="different unmasking request"):
        net.run()
    # Semi-honest: the victims reveal the target's mask-key share, the others its self-mask share.
    key_holders = {
        m.sender for m in net.all_sent(sm.UnmaskResponse) if target in dict(m.mask_key_shares)
    }
    seed_holders = {
        m.sender for m in net.all_sent(sm.UnmaskResponse) if target in dict(m.self_mask_shares)
    }
    t = semi.group_threshold(N, N)
    # t victims give the whole mask key; the rest (and the target) give self-mask seed shares.
    assert key_holders == victims and len(key_holders) >= t and seed_holders == {0, 5}
    proto, ids = active()
    net = Net(proto, x, identities=ids, tamper=_inconsistent_view(target, victims))
    net.run()
    assert net.server.aborted
    assert set(net.client_errors) == victims
    assert not any(target in dict(m.mask_key_shares) for m in net.all_sent(sm.UnmaskResponse))


def test_semi_honest_client_refuses_to_be_told_it_dropped_itself():
    x = inputs()
    semi = protocols.SecAgg(semi_honest=True, bits=32, clip=1.0)
    net = Net(semi, x, tamper=_inconsistent_view(0, {0}))
    net.run()
    assert "itself" in str(net.client_errors[0])
    assert not net.sent(0, sm.UnmaskResponse)


@pytest.mark.parametrize("cls", [protocols.SecAgg, protocols.SecAggPlus])
def test_key_substitution_fails_the_signature_check_and_nothing_is_shared(cls):
    proto, ids = active(cls)
    x, target = inputs(), 0

    def tamper(msg):
        if isinstance(msg, sm.SignedKeysAdvertised) and msg.recipient == target:
            swapped = tuple(
                (
                    c,
                    keys.KeyPair.generate().public_bytes,
                    keys.KeyPair.generate().public_bytes,
                    com,
                    sig,
                )
                if c != target
                else (c, cp, mp, com, sig)
                for c, cp, mp, com, sig in msg.keys
            )
            return dataclasses.replace(msg, keys=swapped).to_bytes()
        return msg.to_bytes()

    net = Net(proto, x, identities=ids, tamper=tamper)
    net.run()  # the round goes on without the target
    assert "signature" in str(net.client_errors[target])
    assert not net.sent(target, sm.ShareKeys)


def test_forged_too_few_or_foreign_consistency_signatures_reveal_nothing():
    proto, ids = active()
    x = inputs()
    attacks = {
        "forged": lambda m: dataclasses.replace(
            m, signatures=tuple((c, bytes(64)) for c, _ in m.signatures)
        ),
        "too-few": lambda m: dataclasses.replace(m, signatures=m.signatures[:2]),
        "other-set": lambda m: dataclasses.replace(m, survivors=m.survivors[1:]),
    }
    for name, attack in attacks.items():

        def tamper(msg, attack=attack):
            if isinstance(msg, sm.CertifiedUnmaskRequest):
                return attack(msg).to_bytes()
            return msg.to_bytes()

        net = Net(proto, x, identities=ids, tamper=tamper)
        net.run()
        assert net.server.aborted
        assert len(net.client_errors) == N, name
        assert shares_revealed(net) == 0, name


def test_secagg_plus_missing_reveal_aborts_the_client():
    proto, ids = active(protocols.SecAggPlus, k=4)

    def tamper(msg):
        if isinstance(msg, sm.SignedKeysAdvertised) and msg.recipient == 0:
            return dataclasses.replace(msg, reveals=msg.reveals[1:]).to_bytes()
        return msg.to_bytes()

    net = Net(proto, inputs(), identities=ids, tamper=tamper)
    net.run()
    assert "reveal" in str(net.client_errors[0]) and not net.sent(0, sm.ShareKeys)


def test_round_start_with_only_the_target_is_refused():
    proto, ids = active()

    def tamper(msg):
        if isinstance(msg, protocols.messages.RoundStart):
            return dataclasses.replace(msg, client_ids=(msg.recipient,)).to_bytes()
        return msg.to_bytes()

    net = Net(proto, inputs(), identities=ids, tamper=tamper)
    net.start()
    net.flush()
    assert len(net.client_errors) == N and not net.all_sent(sm.SignedAdvertiseKeys)


# -- replays from another session, and signers the server controls -------------------------


def _certified_requests(net: Net) -> dict[int, sm.CertifiedUnmaskRequest]:
    return {m.recipient: m for m in net.server_sent if isinstance(m, sm.CertifiedUnmaskRequest)}


def test_consistency_signatures_replayed_from_another_session_reveal_nothing():
    # Session A runs honestly; its certificate (every client's valid signature on the
    # same survivor set, all of them) is replayed into session B of the same round number.
    proto, ids = active()
    x = inputs()
    old = _certified_requests(Net(proto, x, identities=ids, seed="A").run())
    assert len(old) == N

    def tamper(msg):
        if isinstance(msg, sm.CertifiedUnmaskRequest):
            replayed = old[msg.recipient]
            assert replayed.survivors == msg.survivors  # the same set: only the session differs
            return dataclasses.replace(msg, signatures=replayed.signatures).to_bytes()
        return msg.to_bytes()

    net = Net(proto, x, identities=ids, seed="B", tamper=tamper)
    net.run()
    assert net.server.aborted and set(net.client_errors) == set(range(N))
    assert all("consistency signature" in str(e) for e in net.client_errors.values())
    assert shares_revealed(net) == 0


@pytest.mark.parametrize("cls", [protocols.SecAgg, protocols.SecAggPlus])
def test_a_key_advert_replayed_from_another_session_is_refused(cls):
    # A peer's genuinely signed advert of session A, offered to the target in session B
    # (the server then knows the private keys it would be replaying: here, A's).
    proto, ids = active(cls)
    x, target, peer = inputs(), 0, 3
    net_a = Net(proto, x, identities=ids, seed="A")
    net_a.run()
    (old_advert,) = net_a.sent(peer, sm.SignedAdvertiseKeys)

    def tamper(msg):
        if isinstance(msg, sm.SignedKeysAdvertised) and msg.recipient == target:
            keys_ = tuple(
                (c, old_advert.channel_public_key, old_advert.mask_public_key, com, old_advert.signature)
                if c == peer
                else (c, cp, mp, com, sig)
                for c, cp, mp, com, sig in msg.keys
            )
            return dataclasses.replace(msg, keys=keys_).to_bytes()
        return msg.to_bytes()

    net = Net(proto, x, identities=ids, seed="B", tamper=tamper)
    net.run()
    assert f"client {peer}'s key advertisement" in str(net.client_errors[target])
    assert not net.sent(target, sm.ShareKeys)


def test_a_valid_signature_from_an_uninvited_roster_member_does_not_count():
    # The server controls roster member N (enrolled, but not invited to this round) and
    # signs the honest survivor set with its key, in place of one honest certifier.
    roster, ids = enroll(range(N + 1))
    proto = protocols.SecAgg(bits=32, clip=1.0, roster=roster)
    x = inputs()

    def tamper(msg):
        if isinstance(msg, sm.CertifiedUnmaskRequest):
            statement = Statement(
                CONSISTENCY_CONTEXT,
                msg.session_id,
                0,
                proto.config_digest(DIM),
                survivor_payload(msg.survivors),
            )
            sybil = (N, ids[N].sign_statement(statement))
            signatures = tuple(sorted((*msg.signatures[1:], sybil)))
            return dataclasses.replace(msg, signatures=signatures).to_bytes()
        return msg.to_bytes()

    invited = {c: ids[c] for c in range(N)}
    net = Net(proto, x, identities=invited, tamper=tamper)
    net.run()
    assert net.server.aborted and set(net.client_errors) == set(range(N))
    assert all("outside the committee" in str(e) for e in net.client_errors.values())
    assert shares_revealed(net) == 0
