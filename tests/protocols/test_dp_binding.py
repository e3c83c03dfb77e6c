"""The DP configuration is bound between server and clients (issue 13, item 8).

Driven as a deviating server would: real sessions, every message through its
bytes. A server that runs any other DP configuration, or none, is refused by
the client before the client sends anything (its session aborted); a server
that lists more or fewer clients than it really has does not change the
client's noise, and a cohort too small to carry the configured noise is
refused. The honest path still yields the exact event.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocols
from protocols import Message, RemoteProtocolError
from protocols.dp_modes import DP_MODES
from protocols.messages import RoundStart
from protocols.secagg import messages as _sm  # noqa: F401  (registers the SecAgg wire types)
from secagg import privacy
from secagg.randomness import DeterministicRandom

E = 6  # expected_clients of the honest configuration
TARGET = 3  # the client under attack (not the smallest id: Paillier's key holder)
DIM = 8


def _inner(name: str) -> protocols.AggregationProtocol:
    if name == "secagg":
        return protocols.SecAgg(semi_honest=True, clip=8.0, bits=32)
    if name == "secagg+":
        return protocols.SecAggPlus(semi_honest=True, clip=8.0, bits=32, k=4)
    if name == "paillier":
        return protocols.Paillier(key_bits=1024, clip=8.0)
    return protocols.Plaintext()


# (inner, mode) pairs where the mode applies: DDG/Skellam need an integer ring.
CASES = [
    (inner, mode)
    for inner in ("secagg", "secagg+", "paillier", "plaintext")
    for mode in DP_MODES
    if mode in ("central", "distributed") or inner in ("secagg", "secagg+")
]


def _honest(inner: str, mode: str, **changes) -> protocols.DifferentiallyPrivate:
    fields = dict(mode=mode, clip=1.0, noise_multiplier=1.0, expected_clients=E, dropout_rate=0.0)
    return protocols.DifferentiallyPrivate(_inner(inner), **{**fields, **changes})


def _round_starts(server_proto, ids=None, dim=DIM) -> dict[int, bytes]:
    """The RoundStart bytes a server of ``server_proto`` sends (to its own cohort by default)."""
    if ids is None:
        ids = list(range(getattr(server_proto, "expected_clients", None) or E))
    server = server_proto.server(ids, dim, rng=DeterministicRandom(1))
    return {m.recipient: m.to_bytes() for m in server.start() if isinstance(m, RoundStart)}


def _refused(client_proto, round_start: bytes, dim: int = DIM) -> list[Message]:
    """Feed a client its input and the server's RoundStart; return what it sent.

    Asserts the client refused: RemoteProtocolError, session aborted.
    """
    client = client_proto.client(TARGET, dim, rng=DeterministicRandom(2))
    sent = list(client.start())
    sent += client.provide_input(np.full(dim, 0.1))
    with pytest.raises(RemoteProtocolError):
        sent += client.receive(round_start)
    assert client.aborted and client.finished
    return sent


def _variations(mode: str) -> dict[str, dict]:
    other_mode = "distributed" if mode == "central" else "central"
    out = {
        "sigma": {"noise_multiplier": 0.01},
        "clip": {"clip": 2.0},
        "expected_clients": {"expected_clients": E + 1},
        "dropout_rate": {"dropout_rate": 0.2},
        "sampling_probability": {"sampling_probability": 0.5},
        "mode": {"mode": other_mode},
    }
    if mode in ("ddg", "skellam"):
        out["max_clients"] = {"max_clients": 2 * E}
        out["mode"] = {"mode": "skellam" if mode == "ddg" else "ddg"}
    return out


@pytest.mark.parametrize(("inner", "mode"), CASES)
def test_a_server_with_another_dp_configuration_is_refused(inner, mode):
    client_proto = _honest(inner, mode)
    for name, change in _variations(mode).items():
        server_proto = dataclasses.replace(client_proto, **change)
        assert server_proto.config_digest(DIM) != client_proto.config_digest(DIM), name
        sent = _refused(client_proto, _round_starts(server_proto)[TARGET])
        assert sent == [], (name, sent)


@pytest.mark.parametrize(("inner", "mode"), CASES)
def test_dp_and_non_dp_parties_refuse_each_other(inner, mode):
    dp, plain = _honest(inner, mode), _inner(inner)
    # A DP client, and a server without DP (its inner protocol alone).
    assert _refused(dp, _round_starts(plain)[TARGET]) == []
    # A client without DP, and a DP server.
    assert _refused(plain, _round_starts(dp)[TARGET]) == []


_FIELD_VALUES = {
    "clip": st.floats(0.01, 100.0),
    "noise_multiplier": st.floats(0.01, 10.0),
    "expected_clients": st.integers(TARGET + 1, 3 * E),  # a cohort that lists TARGET
    "dropout_rate": st.floats(0.0, 0.9),
    "sampling_probability": st.one_of(st.none(), st.floats(0.001, 1.0)),
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=st.sampled_from(DP_MODES),
    field=st.sampled_from(sorted(_FIELD_VALUES)),
    data=st.data(),
)
def test_any_other_value_of_any_field_is_refused(mode, field, data):
    client_proto = _honest("secagg", mode)
    value = data.draw(_FIELD_VALUES[field], label=field)
    server_proto = dataclasses.replace(client_proto, **{field: value})
    if server_proto == client_proto:
        return  # the same configuration: nothing to refuse
    assert _refused(client_proto, _round_starts(server_proto)[TARGET]) == []


def test_the_digest_is_canonical():
    # Equal behaviour, equal digest; -0.0 is 0.0; max_clients enters resolved.
    a = _honest("secagg", "ddg")
    assert a.config_digest(DIM) == _honest("secagg", "ddg", max_clients=E).config_digest(DIM)
    assert a.config_digest(DIM) == _honest("secagg", "ddg", dropout_rate=-0.0).config_digest(DIM)
    # Distinct settings never collide (a sample of them, across fields).
    protos = {
        _honest("secagg", m, **c)
        for m in ("central", "distributed")
        for c in (
            {},
            {"expected_clients": E + 1},
            {"sampling_probability": 1.0},
            {"dropout_rate": 0.5},
            {"clip": 2.0},
            {"noise_multiplier": 2.0},
        )
    }
    assert len({p.config_digest(DIM) for p in protos}) == len(protos)


# -- the cohort: a client's noise is its own ---------------------------------------


def _crafted(round_start: bytes, ids: list[int]) -> bytes:
    """The server's RoundStart to TARGET, listing ``ids`` instead."""
    msg = Message.from_bytes(round_start)
    assert isinstance(msg, RoundStart)
    return dataclasses.replace(msg, client_ids=tuple(ids)).to_bytes()


def _cohort(n: int) -> list[int]:
    """``n`` client ids, TARGET among them."""
    others = [c for c in range(n + 1) if c != TARGET]
    return sorted([*others[: n - 1], TARGET])


def _handed_to_inner(proto, round_start: bytes, x: np.ndarray, seed: int) -> np.ndarray:
    """What the DP client hands its inner session (its noised or encoded input)."""
    client = proto.client(TARGET, len(x), rng=DeterministicRandom(seed))
    handed: list[np.ndarray] = []
    for name in ("provide_input", "provide_encoded_input"):
        method = getattr(client.inner, name, None)
        if method is not None:
            setattr(client.inner, name, lambda v, m=method: handed.append(v) or m(v))
    client.start()
    client.provide_input(x)
    client.receive(round_start)
    assert not client.aborted
    (value,) = handed
    return value


@pytest.mark.parametrize("inner", ["secagg", "secagg+", "plaintext"])
@pytest.mark.parametrize("dropout", [0.0, 0.25])
def test_distributed_noise_does_not_follow_the_server_s_client_list(inner, dropout):
    dim, sigma, clip, e = 20_000, 1.0, 1.0, 30
    proto = _honest(inner, "distributed", expected_clients=e, dropout_rate=dropout)
    honest = _round_starts(proto, list(range(e)), dim)[TARGET]
    x = np.zeros(dim)
    x[0] = 0.5  # inside the clip: the clipped input is x itself
    noises = {}
    for n in [1, e - 1, e, 1000]:
        start = _crafted(honest, _cohort(n))
        if n < e:
            assert _refused(proto, start, dim) == []
            continue
        noises[n] = _handed_to_inner(proto, start, x, seed=7) - x
    # The formula, independently: each share has std σ·c / sqrt(e·(1 - dropout)).
    expected = sigma * clip / math.sqrt(e * (1.0 - dropout))
    assert np.array_equal(noises[e], noises[1000])  # same seed, same noise
    assert 0.97 * expected < noises[e].std() < 1.03 * expected


@pytest.mark.parametrize("mode", ["ddg", "skellam"])
def test_integer_noise_does_not_follow_the_server_s_client_list(mode):
    dim, sigma, clip, e, headroom = 4096, 1.0, 1.0, 30, 1000
    proto = _honest("secagg", mode, expected_clients=e, max_clients=headroom)
    honest = _round_starts(proto, list(range(e)), dim)[TARGET]
    nonce = Message.from_bytes(honest).nonce
    x = np.zeros(dim)
    x[:4] = 0.2
    encoded = {}
    for n in [1, e, headroom, headroom + 1]:
        start = _crafted(honest, _cohort(n))
        if not e <= n <= headroom:
            assert _refused(proto, start, dim) == []
            continue
        encoded[n] = _handed_to_inner(proto, start, x, seed=11)
    assert np.array_equal(encoded[e], encoded[headroom])
    # Decode the one encoding with the mechanism of the client's own parameters
    # (built here from the paper's parameters, not through the DP wrapper).
    cls = privacy.DistributedDiscreteGaussian if mode == "ddg" else privacy.DistributedSkellam
    seed = hashlib.sha256(b"secagg-fl/dp-rotation\x00" + nonce).digest()
    mech = cls(dim, clip, 32, e, sigma, rotation_seed=seed, max_clients=headroom)
    noise = mech.server_decode(encoded[e], 1) - x
    # Real-unit std of one share: σ·c/sqrt(e), plus rounding (< γ/2 per coordinate).
    expected = sigma * clip / math.sqrt(e)
    assert mech.gamma < expected / 100
    assert 0.95 * expected < noise.std() < 1.05 * expected


def test_an_honest_server_cannot_invite_a_cohort_its_clients_refuse():
    with pytest.raises(ValueError, match="expected_clients"):
        _honest("secagg", "distributed").server(range(E - 1), DIM)
    with pytest.raises(ValueError, match="planned for"):
        _honest("secagg", "ddg").server(range(E + 1), DIM)
    # Central mode has no cohort rule: the server adds the noise.
    _honest("secagg", "central").server(range(2), DIM)


def test_distributed_modes_need_expected_clients():
    for mode in ("distributed", "ddg", "skellam"):
        with pytest.raises(ValueError, match="expected_clients"):
            protocols.DifferentiallyPrivate(protocols.SecAgg(semi_honest=True), mode=mode)
    with pytest.raises(ValueError, match="max_clients"):
        _honest("secagg", "distributed", max_clients=E)
    with pytest.raises(ValueError, match="max_clients"):
        _honest("secagg", "ddg", max_clients=E - 1)


# -- the honest path ----------------------------------------------------------------


@pytest.mark.parametrize(("inner", "mode"), CASES)
def test_honest_rounds_carry_the_exact_event(inner, mode):
    n, sigma, dropout = 8, 0.8, 0.25
    proto = _honest(inner, mode, noise_multiplier=sigma, expected_clients=n, dropout_rate=dropout)
    rng = np.random.default_rng(0)
    inputs = {c: rng.normal(0, 0.3, DIM) for c in range(n)}
    agg = protocols.simulate(
        proto, inputs, dropout={1: proto.INPUT_STAGE, 5: proto.INPUT_STAGE}, seed=4
    )
    k = len(agg.survivors)
    assert k == n - 2
    (event,) = agg.events
    if mode == "central":
        assert event == privacy.GaussianEvent(sigma)
    elif mode == "distributed":
        assert event == privacy.GaussianEvent(sigma * math.sqrt(k / (n * (1 - dropout))))
    else:
        cls = privacy.DistributedDiscreteGaussian if mode == "ddg" else privacy.DistributedSkellam
        seed = bytes(32)  # the event does not depend on the rotation
        mech = cls(DIM, 1.0, 32, n, sigma, rotation_seed=seed, dropout_rate=dropout)
        assert event == mech.event(k)
    assert event == proto.event_for(DIM, k)
