"""What the server sees of each client is uniform noise, whatever the inputs.

Two input sets A and B with the same sum are run through SecAgg (n=3,
d=4096, bits=16) with fixed seeds. The masked vectors the server receives
(decoded from the wire bytes) must look uniform on Z_{2^16} (chi-square over
64 bins) and A's must be indistinguishable from B's (two-sample KS), while the
same tests on the *unmasked* encodings reject, so they have the power to see
a difference when there is one.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from _protocols_kit import Net, grid, grid_q
from scipy import stats

import protocols
from protocols.secagg import messages as sm
from secagg.randomness import DeterministicRandom

N, DIM, BITS, J, BINS = 3, 4096, 16, 8, 64
ALPHA = 1e-4


def input_sets():
    """A: skewed, small inputs; B: different inputs, same per-coordinate integer sum."""
    clip, cap = grid(N, BITS, J)  # scale = 2**J exactly: integer sums are exact
    rng = np.random.default_rng(2024)
    qa = {
        c: np.clip(np.round(rng.normal(0.0, cap / 20, DIM)), -cap, cap).astype(np.int64)
        for c in range(N)
    }
    shift = rng.integers(cap // 4, cap // 2, DIM)
    qb = {0: qa[0] + shift, 1: qa[1] - shift, 2: qa[2]}
    for q in (qa, qb):
        for c in range(N):
            assert np.all(np.abs(q[c]) <= cap) and all(grid_q(cap, int(v)) == v for v in q[c][:8])
    assert np.array_equal(sum(qa.values()), sum(qb.values()))
    to_x = lambda q: {c: q[c].astype(np.float64) / 2.0**J for c in range(N)}  # noqa: E731
    return clip, qa, qb, to_x(qa), to_x(qb)


def run(proto, x, seed):
    net = Net(proto, x, seed=seed).run()
    masked = {m.sender: m.vector for m in net.all_sent(sm.MaskedInput)}
    assert sorted(masked) == list(range(N))
    assert all(v.bits == BITS and v.values.shape == (DIM,) for v in masked.values())
    return net, {c: v.values.astype(np.int64) for c, v in masked.items()}


def chi2_uniform_p(words: np.ndarray) -> float:
    counts = np.bincount(words >> (BITS - 6), minlength=BINS)  # 64 equal bins of 2^10 words
    assert counts.sum() == words.size
    return stats.chisquare(counts).pvalue


@pytest.fixture(scope="module")
def rounds():
    clip, qa, qb, xa, xb = input_sets()
    proto = protocols.SecAgg(semi_honest=True, threshold=2, bits=BITS, clip=clip)
    net_a, masked_a = run(proto, xa, seed="uniform-A")
    net_b, masked_b = run(proto, xb, seed="uniform-B")
    return SimpleNamespace(
        proto=proto,
        qa=qa,
        qb=qb,
        xa=xa,
        xb=xb,
        net_a=net_a,
        net_b=net_b,
        masked_a=masked_a,
        masked_b=masked_b,
    )


def test_both_rounds_give_the_same_exact_sum(rounds):
    total = sum(rounds.qa.values())
    for net in (rounds.net_a, rounds.net_b):
        assert list(net.server.result.survivors) == list(range(N))
        assert np.array_equal(net.server.result.integer_total, total)


def test_each_masked_vector_is_uniform(rounds):
    for label, masked in (("A", rounds.masked_a), ("B", rounds.masked_b)):
        for c, words in masked.items():
            p = chi2_uniform_p(words)
            assert p > ALPHA, f"set {label}, client {c}: masked words are not uniform (p={p:.2e})"


def test_masked_vectors_of_a_and_b_are_indistinguishable(rounds):
    masked_a, masked_b = rounds.masked_a, rounds.masked_b
    for c in range(N):  # client by client: c's view under A vs under B
        p = stats.ks_2samp(masked_a[c], masked_b[c]).pvalue
        assert p > ALPHA, f"client {c}: A and B masked inputs differ (p={p:.2e})"
    pooled = stats.ks_2samp(
        np.concatenate(list(masked_a.values())), np.concatenate(list(masked_b.values()))
    )
    assert pooled.pvalue > ALPHA


def test_the_tests_have_power_on_unmasked_encodings(rounds):
    qa, xa, xb = rounds.qa, rounds.xa, rounds.xb
    encoder = rounds.proto.encoder(N)
    rng = DeterministicRandom("uniform/power")
    enc_a = {c: encoder.encode(xa[c], rng).astype(np.int64) for c in range(N)}
    enc_b = {c: encoder.encode(xb[c], rng).astype(np.int64) for c in range(N)}
    # The encodings are exactly the inputs' integers (on the grid), mod 2^16.
    assert all(np.array_equal(enc_a[c], qa[c] % (1 << BITS)) for c in range(N))
    for enc in (enc_a, enc_b):
        for c in range(N):
            assert chi2_uniform_p(enc[c]) < ALPHA  # unmasked: far from uniform
    assert stats.ks_2samp(enc_a[0], enc_b[0]).pvalue < ALPHA  # and A != B is visible


def test_masks_differ_between_rounds_with_the_same_inputs(rounds):
    """Fresh keys per round: the same inputs give unrelated masked vectors."""
    _, again = run(rounds.proto, rounds.xa, seed="uniform-A-again")
    for c in range(N):
        assert np.mean(again[c] == rounds.masked_a[c]) < 0.01
        diff = (again[c] - rounds.masked_a[c]) % (1 << BITS)
        assert chi2_uniform_p(diff) > ALPHA
