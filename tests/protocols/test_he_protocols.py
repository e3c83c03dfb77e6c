"""Paillier and CKKS behind the common protocol interface."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocols
from protocols import wire
from protocols.he import EncryptedAggregate, EncryptedInput, PublicKeyAdvert
from protocols.messages import Message

# Small keys keep property tests fast; one test below uses the default 2048 bits.
PAILLIER = protocols.Paillier(key_bits=1024, bits=20, clip=2.0)
CKKS = protocols.CKKS(clip=2.0)


@st.composite
def rounds(draw, max_clients=8):
    n = draw(st.integers(2, max_clients))
    d = draw(st.integers(1, 300))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    inputs = {c: rng.uniform(-3, 3, d) for c in range(n)}
    dropped = draw(st.sets(st.integers(1, n - 1), max_size=n - 2))  # client 0 decrypts
    return inputs, {c: "masked_input" for c in dropped}, seed


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds())
def test_paillier_sum_is_exact_in_the_integer_domain(case):
    inputs, dropout, seed = case
    agg = protocols.simulate(PAILLIER, inputs, dropout=dropout, seed=seed)
    assert agg.survivors == sorted(set(inputs) - set(dropout))
    enc = PAILLIER.encoder
    # Exactness: the decrypted integers are a sum of per-client quantizations, each
    # within one unit of x * scale (stochastic rounding), so the integer total is
    # within len(survivors) units of the scaled clipped sum -- and it is an integer
    # vector equal to total * scale.
    clipped = sum(np.clip(inputs[c], -enc.clip, enc.clip) for c in agg.survivors)
    ints = agg.result.integer_total
    assert ints.dtype == np.int64
    assert np.all(np.abs(ints - clipped * enc.scale) <= len(agg.survivors))
    assert np.array_equal(agg.total * enc.scale, ints.astype(np.float64))


def test_paillier_on_grid_inputs_equals_plain_integer_sum():
    enc = PAILLIER.encoder
    rng = np.random.default_rng(1)
    q = {c: rng.integers(-enc.q_max, enc.q_max + 1, 257) for c in range(5)}
    inputs = {c: v / enc.scale for c, v in q.items()}
    agg = protocols.simulate(PAILLIER, inputs, seed=0)
    assert np.array_equal(agg.result.integer_total, sum(q.values()))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds(max_clients=6))
def test_ckks_sum_within_stated_bound(case):
    inputs, dropout, seed = case
    agg = protocols.simulate(CKKS, inputs, dropout=dropout, seed=seed)
    exact = sum(np.clip(inputs[c], -CKKS.clip, CKKS.clip) for c in agg.survivors)
    assert np.max(np.abs(agg.total - exact)) <= CKKS.error_bound(len(agg.survivors))
    assert agg.result.integer_total is None


def test_paillier_default_key_size_round_trip():
    proto = protocols.Paillier()
    inputs = {c: np.linspace(-1, 1, 100) * (c + 1) / 4 for c in range(3)}
    agg = protocols.simulate(proto, inputs, seed=0)
    exact = sum(np.clip(v, -1, 1) for v in inputs.values())
    assert np.max(np.abs(agg.total - exact)) <= 3 / proto.encoder.scale


def _drive(proto, inputs, *, intercept=None):
    """Run a round by hand; return (server, every message as bytes)."""
    ids = sorted(inputs)
    dim = len(next(iter(inputs.values())))
    server = proto.server(ids, dim)
    clients = {c: proto.client(c, dim) for c in ids}
    for c, session in clients.items():
        session.start()
        session.provide_input(inputs[c])
    queue, seen, errors = list(server.start()), [], []
    while queue or not server.finished:
        if not queue:
            queue += server.close_stage()
            continue
        msg = queue.pop(0)
        data = msg.to_bytes()
        seen.append(data)
        if intercept:
            data = intercept(msg, data)
        target = server if msg.recipient == wire.SERVER else clients[msg.recipient]
        stage = target.stage
        try:
            queue += target.receive(data)
        except protocols.RemoteProtocolError as exc:
            assert target is server and server.stage == stage  # rejected, nothing changed
            errors.append(exc)
    return server, clients, seen, errors


@pytest.mark.parametrize("proto", [PAILLIER, CKKS], ids=["paillier", "ckks"])
def test_server_never_holds_the_secret_key_and_decryptor_sees_only_the_aggregate(proto):
    inputs = {c: np.full(10, 0.1 * c) for c in range(4)}
    server, _, seen, errors = _drive(proto, inputs)
    assert not errors
    assert server.result.survivors == (0, 1, 2, 3)
    messages = [Message.from_bytes(b) for b in seen]
    (advert,) = [m for m in messages if isinstance(m, PublicKeyAdvert)]
    public = proto.load_public(advert.public_key)  # what the server holds
    to_decryptor = [m for m in messages if m.recipient == 0 and m.sender == wire.SERVER]
    assert not any(isinstance(m, EncryptedInput) for m in to_decryptor)
    (aggregate,) = [m for m in to_decryptor if isinstance(m, EncryptedAggregate)]
    assert aggregate.survivors == (0, 1, 2, 3)
    if proto is CKKS:
        assert not public.is_private()
        from secagg import ckks

        with pytest.raises(ValueError):
            ckks.decrypt_vector(public, aggregate.ciphertexts, 10)
    else:
        assert not hasattr(public, "p") and not hasattr(public, "q")


@pytest.mark.parametrize("proto", [PAILLIER, CKKS], ids=["paillier", "ckks"])
def test_bad_ciphertexts_are_rejected_and_server_stays_usable(proto):
    inputs = {c: np.full(8, 0.2) for c in range(3)}

    def corrupt(msg, data):
        if isinstance(msg, EncryptedInput) and msg.sender == 2:
            halves = tuple(b[: len(b) // 2] for b in msg.ciphertexts)
            return EncryptedInput(msg.sender, msg.recipient, msg.round, halves).to_bytes()
        return data

    server, _, _, errors = _drive(proto, inputs, intercept=corrupt)
    assert len(errors) == 1 and "client 2" in str(errors[0])
    # The round went on without client 2 once the stage was closed.
    assert server.result.survivors == (0, 1)
    assert np.allclose(server.result.total, 0.4, atol=1e-3)


@pytest.mark.parametrize("proto", [PAILLIER, CKKS], ids=["paillier", "ckks"])
def test_decryptor_refuses_too_small_aggregates(proto):
    inputs = {c: np.full(4, 0.5) for c in range(3)}
    with pytest.raises(protocols.ProtocolAborted, match="min_clients"):
        protocols.simulate(proto, inputs, dropout={1: "masked_input", 2: "masked_input"}, seed=0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: protocols.Paillier(key_bits=100),
        lambda: protocols.Paillier(bits=60),
        lambda: protocols.Paillier(clip=-1.0),
        lambda: protocols.Paillier(min_clients=0),
        lambda: protocols.CKKS(poly_modulus_degree=1000),
        lambda: protocols.CKKS(
            coeff_mod_bit_sizes=(60, 60, 60, 60)
        ),  # insecure for N=8192? (240 > 218)
        lambda: protocols.CKKS(clip=float("inf")),
    ],
)
def test_config_validation(make):
    with pytest.raises(ValueError):
        make()


def test_explicit_decryptor_and_dropped_decryptor_key():
    proto = protocols.Paillier(key_bits=1024, decryptor=2)
    inputs = {c: np.ones(3) * 0.1 for c in range(4)}
    assert protocols.simulate(proto, inputs, seed=0).survivors == [0, 1, 2, 3]
    with pytest.raises(protocols.ProtocolAborted, match="did not publish a key"):
        protocols.simulate(proto, inputs, dropout={2: "advertise_keys"}, seed=0)
