"""Property tests of SecAgg / SecAgg+ through the simulator (every message crosses as bytes).

Exactness: inputs are chosen on the quantization grid (``clip = q_max / 2**j``
so ``scale == 2**j`` exactly, inputs ``q / 2**j``), where stochastic rounding
has nothing to round. The protocol's integer total must then equal the plain
integer sum of the survivors' ``q`` with no tolerance at all.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _protocols_kit import STAGES, grid, grid_q, min_bits
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

import protocols

SETTINGS = dict(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


# ---------------------------------------------------------------------------
# strategies


@st.composite
def grid_case(draw, n: int, max_dim: int = 3):
    """bits, j, clip and per-client integer grid points q (float-exact), inputs x = q / 2**j."""
    bits = draw(st.integers(min_bits(n), 64))
    j = draw(st.integers(0, 16))
    clip, cap = grid(n, bits, j)
    dim = draw(st.integers(1, max_dim))
    raw = st.one_of(
        st.integers(-cap, cap),
        st.sampled_from([-cap, cap, 0, 1, -1]).filter(lambda v: abs(v) <= cap),
    )
    q = {c: [grid_q(cap, draw(raw)) for _ in range(dim)] for c in range(n)}
    x = {c: np.array([v / 2.0**j for v in q[c]], dtype=np.float64) for c in range(n)}
    for c in range(n):  # the inputs really are exact grid points
        assert all(float(xv) * 2.0**j == qv for xv, qv in zip(x[c], q[c]))
    return bits, j, clip, q, x


def dropouts(n: int):
    return st.dictionaries(st.integers(0, n - 1), st.sampled_from(STAGES), max_size=n)


def thresholds(max_int: int):
    return st.one_of(
        st.floats(min_value=0.01, max_value=1.0, allow_nan=False),
        st.sampled_from([0.5, 1.0, 2 / 3, 0.3]),
        # An int threshold must be a strict majority of the group (issue 13 item 4).
        st.integers(max_int // 2 + 1, max_int),
    )


def nested_sets(n: int, dropout: dict[int, str]) -> list[set[int]]:
    """U1 ⊇ U2 ⊇ U3 ⊇ U4: who is still sending at each of the four stages."""
    out, alive = [], set(range(n))
    for stage in STAGES:
        alive = alive - {c for c, s in dropout.items() if s == stage}
        out.append(set(alive))
    return out


def int_sum(q: dict[int, list[int]], members) -> list[int]:
    dim = len(next(iter(q.values())))
    return [sum(q[c][i] for c in members) for i in range(dim)]


def check_exact(agg, q, j: int) -> None:
    expected = int_sum(q, agg.survivors)
    got = agg.result.integer_total
    assert got is not None and got.shape == (len(expected),)
    assert [int(v) for v in got] == expected
    assert agg.total.dtype == np.float64
    assert agg.total.tolist() == [float(s) / 2.0**j for s in expected]
    assert agg.result.scale == 2.0**j


def sizes(lo: int, hi: int, small: int):
    """Client counts biased towards small ones (the cost of SecAgg grows like n^2)."""
    return st.one_of(st.integers(lo, small), st.integers(lo, hi))


# ---------------------------------------------------------------------------
# SecAgg (complete graph): exact sum and the exact survivor set


def check_secagg_round(n, j, clip, bits, q, x, threshold, dropout, seed):
    proto = protocols.SecAgg(semi_honest=True, threshold=threshold, bits=bits, clip=clip)
    t = proto.group_threshold(n, n)
    # The threshold resolves as documented: an int as is, a fraction f to ceil(f * n)
    # raised to a strict majority n // 2 + 1.
    if isinstance(threshold, int):
        assert t == threshold
    else:
        assert n // 2 + 1 <= t <= n and t >= threshold * n - 1e-9
        assert t == n // 2 + 1 or t - 1 < threshold * n + 1e-9
    _, _, u3, u4 = nested_sets(n, dropout)
    if len(u4) < t:
        with pytest.raises(protocols.ProtocolAborted):
            protocols.simulate(proto, x, dropout=dropout, seed=seed)
        return "aborts"
    agg = protocols.simulate(proto, x, dropout=dropout, seed=seed)
    assert agg.survivors == sorted(u3)
    check_exact(agg, q, j)
    return "completes"


@settings(max_examples=30, **SETTINGS)
@given(data=st.data(), n=sizes(2, 40, 10), seed=st.integers(0, 2**16))
def test_secagg_exact_total_and_survivors(data, n, seed):
    bits, j, clip, q, x = data.draw(grid_case(n))
    threshold = data.draw(thresholds(n))
    dropout = data.draw(dropouts(n))
    event("secagg: " + check_secagg_round(n, j, clip, bits, q, x, threshold, dropout, seed))


@pytest.mark.parametrize(
    "bits, j, dropout",
    [
        # 40 clients, a dropout at every stage: completes (35 >= 20 answer the unmasking)
        (
            40,
            5,
            {
                0: "advertise_keys",
                5: "share_keys",
                9: "masked_input",
                11: "masked_input",
                30: "unmasking",
            },
        ),
        # bits = 64: q_max is not a float; the grid points are still exact
        (64, 3, {3: "masked_input"}),
        # 21 of 40 gone by the unmasking: 19 < 20 answer, the round aborts
        (16, 0, {c: STAGES[c % 4] for c in range(21)}),
    ],
)
def test_secagg_forty_clients(bits, j, dropout):
    n = 40
    clip, cap = grid(n, bits, j)
    rng = np.random.default_rng(bits)
    q = {
        c: [grid_q(cap, int(v)) for v in rng.integers(-cap, cap, 2, endpoint=True)]
        for c in range(n)
    }
    q[1] = [grid_q(cap, cap), grid_q(cap, -cap)]  # the extremes of the grid
    x = {c: np.array([v / 2.0**j for v in q[c]], dtype=np.float64) for c in range(n)}
    outcome = check_secagg_round(n, j, clip, bits, q, x, 0.5, dropout, seed=bits)
    assert outcome == ("aborts" if len(dropout) > 20 else "completes")


# ---------------------------------------------------------------------------
# SecAgg+ (sparse graph)

KS = st.one_of(st.sampled_from([2, 3, 4, 5, 6]), st.none())


@st.composite
def plus_case(draw):
    k = draw(KS)
    n = draw(sizes(2, 24 if k is not None else 14, 8))
    # An int threshold must fit the sharing groups: k + 1 members for an explicit
    # k; with k=None the degree search picks groups large enough for any t <= n.
    group = protocols.SecAggPlus(semi_honest=True, k=k).degree(n) + 1 if k is not None else n
    threshold = draw(st.one_of(thresholds(group), st.none()))  # None: chosen with k
    return k, n, threshold


@settings(max_examples=40, **SETTINGS)
@given(data=st.data(), case=plus_case(), seed=st.integers(0, 2**16))
def test_secagg_plus_exact_total(data, case, seed):
    k, n, threshold = case
    bits, j, clip, q, x = data.draw(grid_case(n))
    dropout = data.draw(st.one_of(st.just({}), dropouts(n), dropouts(n)))
    proto = protocols.SecAggPlus(semi_honest=True, threshold=threshold, bits=bits, clip=clip, k=k)
    if not dropout:
        agg = protocols.simulate(proto, x, seed=seed)
        assert agg.survivors == list(range(n))
        check_exact(agg, q, j)
        return
    u3 = nested_sets(n, dropout)[2]
    try:
        agg = protocols.simulate(proto, x, dropout=dropout, seed=seed)
    except protocols.ProtocolAborted:
        event("secagg+ with dropouts: aborts")
        return
    event("secagg+ with dropouts: completes")
    event(f"secagg+ lost {len(u3) - len(agg.survivors)} of the masked inputs")
    assert set(agg.survivors) <= u3, "a survivor never sent its masked input"
    assert agg.survivors == sorted(set(agg.survivors))
    assert agg.survivors, "a completed round has at least one survivor"
    check_exact(agg, q, j)


@pytest.mark.parametrize("threshold", [7, 12])
def test_secagg_plus_int_threshold_with_derived_degree(threshold):
    """SecAggPlus(threshold=<int>, k=None) must pick a degree whose groups can hold t shares.

    Regression (fixed in 1ba55ad): choose_degree() resolved the int threshold
    against groups of size k + 1 starting at k = 2, raising "threshold=4 exceeds
    the sharing group size 3" instead of skipping degrees that are too small.
    """
    n = 12
    proto = protocols.SecAggPlus(semi_honest=True, threshold=threshold, bits=32, clip=1.0)
    k = proto.degree(n)
    assert k + 1 >= threshold
    x = {c: np.full(2, 0.25) for c in range(n)}
    agg = protocols.simulate(proto, x, seed=0)
    assert agg.survivors == list(range(n))
    np.testing.assert_allclose(agg.total, np.full(2, 0.25 * n), atol=n * 2 * clip_unit(proto, n))


def clip_unit(proto, n):
    return 1.0 / proto.encoder(n).scale


@settings(max_examples=60, **SETTINGS)
@given(
    n=st.integers(2, 60),
    k=st.one_of(st.integers(2, 12), st.none()),
    nonce=st.binary(min_size=32, max_size=32),
)
def test_secagg_plus_graph_is_regular_and_symmetric(n, k, nonce):
    proto = protocols.SecAggPlus(semi_honest=True, k=k)
    ids = sorted({(7 * c + 3) % 1000 for c in range(n)})  # ids need not be 0..n-1
    graph = proto.neighbours(ids, nonce)
    degree = proto.degree(n)
    assert set(graph) == set(ids)
    assert 1 <= degree <= n - 1
    if k is not None:
        assert degree == n - 1 or degree >= k
    for c, peers in graph.items():
        assert c not in peers and peers <= set(ids)
        assert len(peers) == degree, (c, sorted(peers))
        for p in peers:
            assert c in graph[p]
    # Public randomness: every party derives the same graph from the nonce.
    assert proto.neighbours(list(reversed(ids)), nonce) == graph


# ---------------------------------------------------------------------------
# Float inputs (off the grid, beyond the clip): within the encoder's stated bound


PROTOS = st.sampled_from(["secagg", "secagg+k", "secagg+auto"])


@settings(max_examples=25, **SETTINGS)
@given(data=st.data(), which=PROTOS, n=st.integers(2, 12), seed=st.integers(0, 2**16))
def test_float_total_within_error_bound(data, which, n, seed):
    bits = data.draw(st.integers(min_bits(n), 64))
    clip = data.draw(st.floats(min_value=1e-3, max_value=1e3, allow_nan=False))
    dim = data.draw(st.integers(1, 4))
    value = st.one_of(
        st.floats(min_value=-4 * clip, max_value=4 * clip, allow_nan=False),
        st.floats(allow_nan=False, allow_infinity=False),  # far beyond the clip
        st.sampled_from([clip, -clip, 0.0]),
    )
    x = {c: np.array([data.draw(value) for _ in range(dim)]) for c in range(n)}
    dropout = data.draw(st.one_of(st.just({}), dropouts(n)))
    if which == "secagg":
        proto = protocols.SecAgg(semi_honest=True, threshold=0.5, bits=bits, clip=clip)
    else:
        k = data.draw(st.sampled_from([2, 3, 4])) if which == "secagg+k" else None
        proto = protocols.SecAggPlus(semi_honest=True, threshold=0.5, bits=bits, clip=clip, k=k)
    try:
        agg = protocols.simulate(proto, x, dropout=dropout, seed=seed)
    except protocols.ProtocolAborted:
        assume(False)
        return
    m = len(agg.survivors)
    encoder = proto.encoder(n)
    for i in range(dim):
        clipped = [min(max(float(x[c][i]), -clip), clip) for c in agg.survivors]
        expected = math.fsum(clipped)
        slack = 8 * m * clip * 2.0**-52
        assert abs(agg.total[i] - expected) <= encoder.error_bound(m) + slack, (
            i,
            agg.total[i],
            expected,
        )
    # The decoded total is the integer total over the scale.
    assert np.array_equal(agg.total, agg.result.integer_total.astype(np.float64) / agg.result.scale)


# ---------------------------------------------------------------------------
# The parallel simulator is the same computation


@pytest.mark.parametrize(
    "proto, n, dropout",
    [
        (
            protocols.SecAgg(semi_honest=True, threshold=0.5, bits=24, clip=1.0),
            7,
            {2: "masked_input", 5: "unmasking"},
        ),
        (
            protocols.SecAggPlus(semi_honest=True, threshold=0.5, bits=32, clip=2.0, k=4),
            11,
            {0: "share_keys", 7: "masked_input"},
        ),
    ],
)
def test_parallel_simulator_matches_inline(proto, n, dropout):
    rng = np.random.default_rng(3)
    x = {c: rng.normal(size=5) for c in range(n)}
    one = protocols.simulate(proto, x, dropout=dropout, seed=11, workers=1)
    two = protocols.simulate(proto, x, dropout=dropout, seed=11, workers=2)
    assert one.survivors == two.survivors
    assert np.array_equal(one.result.integer_total, two.result.integer_total)
    assert np.array_equal(one.total, two.total)
    assert one.stats.bytes_up == two.stats.bytes_up and one.stats.bytes_down == two.stats.bytes_down


# ---------------------------------------------------------------------------
# Plaintext baseline


@settings(max_examples=30, **SETTINGS)
@given(
    data=st.data(),
    n=st.integers(1, 12),
    dim=st.integers(1, 5),
    seed=st.integers(0, 100),
)
def test_plaintext_total_is_sum_of_survivors(data, n, dim, seed):
    finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
    x = {c: np.array([data.draw(finite) for _ in range(dim)]) for c in range(n)}
    dropped = data.draw(st.sets(st.integers(0, n - 1), max_size=n))
    dropout = {c: "masked_input" for c in dropped}
    proto = protocols.Plaintext()
    survivors = sorted(set(range(n)) - dropped)
    if not survivors:
        with pytest.raises(protocols.ProtocolAborted):
            protocols.simulate(proto, x, dropout=dropout, seed=seed)
        return
    agg = protocols.simulate(proto, x, dropout=dropout, seed=seed)
    assert agg.survivors == survivors
    assert agg.result.integer_total is None
    for i in range(dim):
        column = [float(x[c][i]) for c in survivors]
        bound = len(column) * 2.0**-52 * math.fsum(abs(v) for v in column)
        assert abs(agg.total[i] - math.fsum(column)) <= bound
    assert np.array_equal(agg.total, np.sum([x[c] for c in survivors], axis=0))


@pytest.mark.parametrize("stage", ["advertise_keys", "share_keys", "unmasking", "bogus", ""])
def test_plaintext_rejects_stages_it_does_not_have(stage):
    x = {c: np.ones(2) for c in range(3)}
    with pytest.raises(ValueError, match="dropout stage"):
        protocols.simulate(protocols.Plaintext(), x, dropout={1: stage}, seed=0)


@pytest.mark.parametrize(
    "proto", [protocols.SecAgg(semi_honest=True), protocols.SecAggPlus(semi_honest=True, k=2)]
)
def test_secagg_rejects_unknown_dropout_stage(proto):
    x = {c: np.ones(2) * 0.1 for c in range(4)}
    with pytest.raises(ValueError, match="dropout stage"):
        protocols.simulate(proto, x, dropout={1: "masked-input"}, seed=0)
    with pytest.raises(ValueError):
        protocols.simulate(proto, x, dropout={9: "masked_input"}, seed=0)


# ---------------------------------------------------------------------------
# The automatic threshold of SecAgg+ (chosen with the degree)

TARGETS = st.fixed_dictionaries(
    {
        "corrupt_fraction": st.sampled_from([0.0, 0.01, 0.05, 0.1, 0.2]),
        "dropout_rate": st.sampled_from([0.0, 0.01, 0.05, 0.1, 0.3]),
        "security_bits": st.sampled_from([20, 40, 64]),
        "correctness_bits": st.sampled_from([10, 20, 40]),
    }
)


def _tails(n, k, t, targets):
    """The two union bounds of the graph module, recomputed here with scipy."""
    from scipy.stats import binom

    exposed = n * binom.sf(t - 1, k, targets["corrupt_fraction"])
    stuck = n * binom.cdf(t - 1, k + 1, 1.0 - targets["dropout_rate"])
    return exposed, stuck


@settings(max_examples=80, deadline=None)
@given(n=st.integers(3, 3000), targets=TARGETS)
def test_auto_threshold_meets_both_targets_with_a_majority_at_a_minimal_degree(n, targets):
    proto = protocols.SecAggPlus(semi_honest=True, threshold=None, **targets)
    k = proto.degree(n)
    t = proto.group_threshold(k + 1, n)
    assert t > (k + 1) / 2 and t <= k + 1  # a strict majority of the sharing group
    exposed, stuck = _tails(n, k, t, targets)
    if k < n - 1:  # a sparse graph is only chosen when it meets both targets
        assert exposed <= 2.0 ** -targets["security_bits"]
        assert stuck <= 2.0 ** -targets["correctness_bits"]
        # t is the largest threshold meeting the correctness target ...
        if t < k + 1:
            assert _tails(n, k, t + 1, targets)[1] > 2.0 ** -targets["correctness_bits"]
    # ... and no smaller even degree works with any majority threshold that
    # meets correctness (security only improves with t, so its largest such t).
    for smaller in range(2, min(k, n - 1), 2):
        group = smaller + 1
        ok = [
            tt
            for tt in range(group // 2 + 1, group + 1)
            if _tails(n, smaller, tt, targets)[1] <= 2.0 ** -targets["correctness_bits"]
        ]
        assert not ok or _tails(n, smaller, max(ok), targets)[0] > 2.0 ** -targets["security_bits"]


def test_auto_threshold_needs_fewer_neighbours_than_half_at_ml100k_scale():
    auto, half = (
        protocols.SecAggPlus(semi_honest=True),
        protocols.SecAggPlus(semi_honest=True, threshold=0.5),
    )
    assert (auto.degree(943), auto.group_threshold(auto.degree(943) + 1, 943)) == (28, 17)
    assert half.degree(943) == 36
    # The configuration digest tells an automatic threshold from every explicit one.
    assert auto.config_digest(10) != half.config_digest(10)
    assert auto.config_digest(10) != protocols.SecAggPlus(
        semi_honest=True, threshold=1.0
    ).config_digest(10)


def test_auto_threshold_rejects_a_group_larger_than_the_round():
    with pytest.raises(ValueError, match="sharing group"):
        protocols.SecAggPlus(semi_honest=True).group_threshold(6, 5)
    with pytest.raises(ValueError, match="sharing group"):
        protocols.SecAgg(semi_honest=True).group_threshold(6, 5)
