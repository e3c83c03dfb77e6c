"""Properties of secagg.ckks: secure parameters, public contexts, split vectors, stated bound."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
import tenseal as ts
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from secagg import ckks as C

SETTINGS = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# A low-precision parameter set (scale 2^25) where noise is a visible fraction of the bound.
COARSE = C.CKKSParams(poly_modulus_degree=4096, coeff_mod_bit_sizes=(45, 30), global_scale=2.0**25)


@pytest.fixture(scope="module")
def default_contexts():
    params = C.CKKSParams()
    secret = C.make_context(params)
    public = C.load_public_context(C.export_public_context(secret), params)
    return params, secret, public


@pytest.fixture(scope="module")
def coarse_contexts():
    secret = C.make_context(COARSE)
    public = C.load_public_context(C.export_public_context(secret), COARSE)
    return COARSE, secret, public


def _data(seed: int, clients: int, dim: int, clip: float) -> list[np.ndarray]:
    gen = np.random.default_rng(seed)
    xs = [gen.uniform(-clip, clip, dim) for _ in range(clients)]
    xs[0][: min(dim, 2)] = [clip, -clip][: min(dim, 2)]  # include the extremes
    return xs


# -------------------------------------------------------------------- parameters


def test_default_parameters_are_secure_and_compact():
    p = C.CKKSParams()
    assert p.is_secure
    assert sum(p.coeff_mod_bit_sizes) <= C.HE_STANDARD_MAX_LOG_Q[p.poly_modulus_degree]
    assert p.slots == p.poly_modulus_degree // 2
    assert p.bytes_per_value <= 40
    assert C.HE_STANDARD_MAX_LOG_Q[4096] == 109
    assert C.HE_STANDARD_MAX_LOG_Q[8192] == 218
    assert C.HE_STANDARD_MAX_LOG_Q[16384] == 438
    # TenSEAL's tutorial parameters are secure too, just larger.
    tutorial = C.CKKSParams(8192, (60, 40, 40, 60), 2.0**40)
    assert tutorial.is_secure and tutorial.bytes_per_value > 2 * p.bytes_per_value


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(poly_modulus_degree=4096, coeff_mod_bit_sizes=(60, 30, 20)),  # 110 > 109
        dict(poly_modulus_degree=8192, coeff_mod_bit_sizes=(60, 60, 60, 40)),  # 220 > 218
        dict(poly_modulus_degree=16384, coeff_mod_bit_sizes=(60,) * 8),  # 480 > 438
        dict(poly_modulus_degree=1024, coeff_mod_bit_sizes=(20, 17)),  # 37 > 27
    ],
)
def test_insecure_parameters_rejected(kwargs):
    with pytest.raises(ValueError, match="insecure"):
        C.CKKSParams(**kwargs, global_scale=2.0**15)
    p = C.CKKSParams(**kwargs, global_scale=2.0**15, allow_insecure=True)
    assert not p.is_secure


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(poly_modulus_degree=3000),
        dict(poly_modulus_degree=True),
        dict(poly_modulus_degree=65536),
        dict(coeff_mod_bit_sizes=(60,)),  # no special prime
        dict(coeff_mod_bit_sizes=(61, 40)),
        dict(coeff_mod_bit_sizes=(60, 10)),
        dict(coeff_mod_bit_sizes=(60.0, 40)),
        dict(global_scale=1.0),
        dict(global_scale=float("inf")),
        dict(global_scale=float("nan")),
        dict(global_scale=2.0**58),  # no room in a 60-bit data prime
        dict(allow_insecure=1),
    ],
)
def test_invalid_parameters_rejected(kwargs):
    with pytest.raises(ValueError):
        C.CKKSParams(**kwargs)


def test_error_bound_refuses_overflowing_sums():
    p = C.CKKSParams()
    assert p.max_abs_total == 2.0**17
    assert p.error_bound(10, 1.0) < 1e-6
    with pytest.raises(ValueError):
        p.error_bound(2**17 + 1, 1.0)


# ----------------------------------------------------------- public vs secret context


def test_public_context_cannot_decrypt_and_has_no_secret_key(default_contexts):
    params, secret, public = default_contexts
    wire = C.export_public_context(secret)
    assert not public.has_secret_key() and not public.is_private()
    assert not public.has_relin_keys() and not public.has_galois_keys()
    cts = C.encrypt_vector(public, np.ones(10))
    # TenSEAL itself refuses to decrypt with the server's context ...
    with pytest.raises(ValueError):
        ts.ckks_vector_from(public, cts[0]).decrypt()
    # ... and so does our API.
    with pytest.raises(ValueError):
        C.decrypt_vector(public, cts, 10)
    # The secret key's SEAL serialization is in the secret export and not in the public one.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sk")
        secret.secret_key().data.save(path)
        with open(path, "rb") as f:
            sk_bytes = f.read()
    secret_wire = C.export_secret_context(secret)
    assert sk_bytes in secret_wire  # the check below can see a secret key when there is one
    assert sk_bytes not in wire
    assert sk_bytes[32:96] not in wire
    assert len(wire) < len(secret_wire)
    # A context with the secret key is refused where a public one is expected.
    with pytest.raises(ValueError, match="secret key"):
        C.load_public_context(secret_wire)
    with pytest.raises(ValueError, match="no secret key"):
        C.load_secret_context(wire)
    with pytest.raises(ValueError):
        C.export_secret_context(public)
    # The key holder's stored context round-trips and decrypts.
    restored = C.load_secret_context(secret_wire, params)
    np.testing.assert_allclose(C.decrypt_vector(restored, cts, 10), np.ones(10), atol=1e-6)


def test_context_loader_checks_parameters(default_contexts, coarse_contexts):
    _params, secret, _ = default_contexts
    wire = C.export_public_context(secret)
    with pytest.raises(ValueError, match="expected"):
        C.load_public_context(wire, COARSE)
    with pytest.raises(ValueError, match="scale"):
        C.load_public_context(wire, C.CKKSParams(global_scale=2.0**30))
    # SEAL (tc128 by default) refuses to build a context above the bound even when
    # our check is overridden, so an insecure context cannot even be produced here.
    insecure = C.CKKSParams(1024, (20, 20), 2.0**10, allow_insecure=True)
    with pytest.raises(ValueError, match="TenSEAL rejected"):
        C.make_context(insecure)
    n, total_bits, data_bits, scale = C.context_params(C.load_public_context(wire))
    assert (n, total_bits, data_bits, scale) == (8192, 100, 60, 2.0**40)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=512))
@example(data=b"")
def test_context_loader_rejects_garbage(data):
    with pytest.raises(ValueError):
        C.load_public_context(data)


def test_context_loader_rejects_truncated(coarse_contexts):
    _, secret, _ = coarse_contexts
    wire = C.export_public_context(secret)
    for cut in (1, 10, len(wire) // 2, len(wire) - 1):
        with pytest.raises(ValueError):
            C.load_public_context(wire[:cut])
    with pytest.raises(TypeError):
        C.load_public_context("not bytes")  # type: ignore[arg-type]


# ------------------------------------------------------------- sums and precision


@SETTINGS
@given(
    clients=st.integers(1, 12),
    dim=st.integers(1, 9000),
    clip=st.floats(1e-3, 100.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_sum_within_stated_bound_default_params(default_contexts, clients, dim, clip, seed):
    params, secret, public = default_contexts
    xs = _data(seed, clients, dim, clip)
    encrypted = [C.encrypt_vector(public, x) for x in xs]
    assert all(len(c) == -(-dim // params.slots) for c in encrypted)
    total = C.decrypt_vector(secret, C.sum_encrypted(public, encrypted), dim)
    err = np.max(np.abs(total - np.sum(xs, axis=0)))
    assert err <= params.error_bound(clients, clip)


@SETTINGS
@given(
    clients=st.integers(1, 30),
    dim=st.integers(1, 5000),
    clip=st.floats(1e-2, 1000.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_sum_within_stated_bound_coarse_params(coarse_contexts, clients, dim, clip, seed):
    params, secret, public = coarse_contexts
    xs = _data(seed, clients, dim, clip)
    total = C.decrypt_vector(
        secret, C.sum_encrypted(public, [C.encrypt_vector(public, x) for x in xs]), dim
    )
    err = np.max(np.abs(total - np.sum(xs, axis=0)))
    assert err <= params.error_bound(clients, clip)


@pytest.mark.parametrize("offset", [-1, 0, 1, 2048, 4095])
def test_vectors_longer_than_slots_are_split(coarse_contexts, offset):
    params, secret, public = coarse_contexts
    dim = 2 * params.slots + offset  # around the boundaries of 2 and 3 ciphertexts
    xs = _data(offset + 10, 3, dim, 1.0)
    encrypted = [C.encrypt_vector(public, x) for x in xs]
    assert len(encrypted[0]) == -(-dim // params.slots)
    total = C.decrypt_vector(secret, C.sum_encrypted(public, encrypted), dim)
    assert total.shape == (dim,) and total.dtype == np.float64
    assert np.max(np.abs(total - np.sum(xs, axis=0))) <= params.error_bound(3, 1.0)


def test_single_vector_roundtrip_without_sum(default_contexts):
    params, secret, public = default_contexts
    x = np.linspace(-5, 5, params.slots + 7)
    out = C.decrypt_vector(secret, C.encrypt_vector(public, x), x.size)
    assert np.max(np.abs(out - x)) <= params.error_bound(1, 5.0)


# --------------------------------------------------------------------- rejection


def test_encrypt_rejects_bad_input(default_contexts):
    params, _, public = default_contexts
    for bad in (np.array([]), np.array([np.nan]), np.array([np.inf]), np.zeros((2, 2))):
        with pytest.raises(ValueError):
            C.encrypt_vector(public, bad)
    with pytest.raises(ValueError):
        C.encrypt_vector(public, np.array([params.max_abs_total * 1.01]))


def test_sum_and_decrypt_reject_inconsistent_vectors(coarse_contexts):
    params, secret, public = coarse_contexts
    a = C.encrypt_vector(public, np.ones(params.slots + 5))
    b = C.encrypt_vector(public, np.ones(params.slots + 6))
    c = C.encrypt_vector(public, np.ones(5))
    with pytest.raises(ValueError):
        C.sum_encrypted(public, [a, b])  # last chunks differ in size
    with pytest.raises(ValueError):
        C.sum_encrypted(public, [a, c])  # different number of ciphertexts
    with pytest.raises(ValueError):
        C.sum_encrypted(public, [[a[1], a[0]]])  # a partial chunk before the last
    with pytest.raises(ValueError):
        C.sum_encrypted(public, [])
    with pytest.raises(ValueError):
        C.sum_encrypted(public, [[]])
    with pytest.raises(ValueError):
        C.decrypt_vector(secret, a, params.slots + 6)  # wrong dim for the last chunk
    with pytest.raises(ValueError):
        C.decrypt_vector(secret, a, 3 * params.slots)  # wrong number of ciphertexts
    with pytest.raises(ValueError):
        C.decrypt_vector(secret, a, 0)
    with pytest.raises(TypeError):
        C.sum_encrypted(public, [["not bytes"]])  # type: ignore[list-item]


def test_ciphertext_from_other_parameters_rejected(default_contexts, coarse_contexts):
    _, secret, public = default_contexts
    _, _, coarse_public = coarse_contexts
    foreign = C.encrypt_vector(coarse_public, np.ones(10))
    with pytest.raises(ValueError):
        C.sum_encrypted(public, [foreign])
    with pytest.raises(ValueError):
        C.decrypt_vector(secret, foreign, 10)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=600))
@example(data=b"")
@example(data=b"\x00" * 64)
def test_ciphertext_decoder_rejects_garbage(coarse_contexts, data):
    _, secret, public = coarse_contexts
    with pytest.raises(ValueError):
        C.sum_encrypted(public, [[data]])
    with pytest.raises(ValueError):
        C.decrypt_vector(secret, [data], 1)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.integers(0, 10**6), flips=st.lists(st.integers(0, 10**7), max_size=4))
def test_ciphertext_decoder_truncation_and_bit_flips(coarse_contexts, cut, flips):
    _params, secret, public = coarse_contexts
    good = C.encrypt_vector(public, np.ones(7))[0]
    truncated = good[: cut % len(good)]
    with pytest.raises(ValueError):
        C.sum_encrypted(public, [[truncated]])
    data = bytearray(good)
    for bit in flips:
        bit %= 8 * len(data)
        data[bit // 8] ^= 1 << (bit % 8)
    # A flipped ciphertext is either rejected or still a well-formed one (CKKS is
    # malleable, not authenticated): never any exception other than ValueError.
    try:
        total = C.sum_encrypted(public, [[bytes(data)], [good]])
        C.decrypt_vector(secret, total, 7)
    except ValueError:
        pass


def test_load_encrypted_then_add_loaded_matches_sum_encrypted(coarse_contexts):
    params, secret, public = coarse_contexts
    dim = params.slots + 9
    xs = _data(3, 4, dim, 2.0)
    blobs = [C.encrypt_vector(public, x) for x in xs]
    loaded = [C.load_encrypted(public, b, dim) for b in blobs]
    total = C.add_loaded(loaded)
    got = C.decrypt_vector(secret, total, dim)
    assert np.max(np.abs(got - np.sum(xs, axis=0))) <= params.error_bound(4, 2.0)
    # The loaded inputs are left untouched and can be summed again.
    np.testing.assert_allclose(C.decrypt_vector(secret, C.add_loaded(loaded), dim), got, atol=1e-9)
    with pytest.raises(ValueError):
        C.load_encrypted(public, blobs[0], dim + 1)  # last chunk size differs
    with pytest.raises(ValueError):
        C.load_encrypted(public, blobs[0], params.slots)  # wrong count
    with pytest.raises(ValueError):
        C.load_encrypted(public, blobs[0], 0)
    with pytest.raises(ValueError):
        C.load_encrypted(public, [b"garbage", blobs[0][1]], dim)
    other = C.load_encrypted(public, C.encrypt_vector(public, np.ones(dim - 1)), dim - 1)
    with pytest.raises(ValueError):
        C.add_loaded([loaded[0], other])  # same count, different last size
    with pytest.raises(ValueError):
        C.add_loaded([loaded[0], loaded[1][:1]])
    with pytest.raises(ValueError):
        C.add_loaded([])
