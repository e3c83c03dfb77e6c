"""Buffered asynchronous aggregation (protocols.buffered): sums per buffer, fates, refusals.

The property test drives :class:`AsyncDriver` with random delays, arrival
orders, dropouts (while training and inside a buffer's session), buffer
sizes, slack, concurrency and staleness bounds, over real plaintext and SecAgg
sessions (through ``protocols.simulate``, every message as bytes). For every
applied buffer it checks, against a plain numpy sum of the updates the test
itself generated and weights it computes with ``math.sqrt``:

- plaintext: the total is the staleness-weighted sum of exactly the buffer's
  contributors (float tolerance);
- SecAgg: exact in the integer domain. The encoder's scale is made a power of
  two (clip = q_max / 2^16), so ``total * scale`` is the ring total as an
  integer; stochastic rounding sends each scaled value to its floor or its
  ceiling, so the integer total lies between the sums of floors and of
  ceilings (inputs are >= 2^10 grid steps apart from zero, so one missing or
  repeated update leaves that range);

and that every ticket ends in exactly one place: applied in one buffer,
discarded, lost, dropped, still training, or pending in an open buffer.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from protocols import LocalProtocolError, RemoteProtocolError, registry
from protocols.buffered import (
    AsyncDriver,
    BufferedServer,
    BufferRelease,
    StaleVersionError,
    Ticket,
    client_contribution,
    staleness_weight,
)
from protocols.clock import LognormalDelays

DIM = 4
SCALE = 2.0**16


def _secagg(n: int):
    # clip = q_max / 2^16 makes the encoder's scale exactly 2^16 for this cohort size.
    q_max = (2**31 - 1) // max(n, 1)
    return registry.create(
        "secagg", registry.ProtocolOptions(clip=q_max / SCALE, bits=32)
    )


def _plaintext(n: int):
    return registry.create("plaintext", registry.ProtocolOptions(clip=1e6))


def test_staleness_weight_is_fedbuffs_rule():
    for tau in range(50):
        assert staleness_weight(tau) == pytest.approx(1.0 / math.sqrt(1.0 + tau), rel=1e-15)
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError):
            staleness_weight(bad)  # type: ignore[arg-type]


def test_client_weights_only_the_selected_coordinates():
    x = np.array([3.0, -2.0, 1.0, 7.0])
    out = client_contribution(x, base_version=2, reported_version=5, max_staleness=4,
                              scaled=slice(0, 2))
    w = 1.0 / math.sqrt(4.0)
    np.testing.assert_array_equal(out, [3.0 * w, -2.0 * w, 1.0, 7.0])
    np.testing.assert_array_equal(x, [3.0, -2.0, 1.0, 7.0])  # the update itself is untouched


@pytest.mark.parametrize(
    ("base", "reported", "why"),
    [(5, 4, "older than"), (5, 0, "older than"), (0, 9, "exceeds"), (3, 3 + 100, "exceeds")],
)
def test_client_refuses_a_reported_version_it_cannot_accept(base, reported, why):
    # The server controls τ through the version it reports; a client refuses a
    # version older than its base (which would give a weight above 1 for a
    # negative τ) and one that would push its weight below w(max_staleness).
    with pytest.raises(StaleVersionError, match=why) as info:
        client_contribution(np.ones(3), base, reported, max_staleness=8)
    assert isinstance(info.value, RemoteProtocolError)


def test_extreme_weights_the_client_accepts():
    x = np.full(2, 8.0)
    np.testing.assert_array_equal(client_contribution(x, 4, 4, 8), x)  # τ = 0: weight 1
    np.testing.assert_allclose(client_contribution(x, 4, 12, 8), x / 3.0)  # τ = 8: 1/3


def _fates_partition(driver: AsyncDriver) -> None:
    server = driver.server
    releases = list(driver.releases) + list(driver._pending.values())
    applied = [t.id for r in releases for t in r.contributors]
    discarded = [t.id for r in releases for t in r.discarded]
    lost = [t.id for r in releases for t in r.lost]
    everywhere = applied + discarded + lost
    assert len(everywhere) == len(set(everywhere)), "an update sits in two releases"
    assert {t for t, f in server.fate.items() if f == "applied"} == set(applied)
    assert {t for t, f in server.fate.items() if f == "discarded"} == set(discarded)
    assert {t for t, f in server.fate.items() if f == "lost"} == set(lost)
    dropped = {t for t, f in server.fate.items() if f == "dropped"}
    pending = set(server.open_tickets())
    running = {
        t.id for t in server.tickets.values()
        if t.id not in server.fate and t.id not in pending
    }
    # Still training: exactly the clients the driver has running.
    assert {server.tickets[t].client for t in running} == driver._running
    parts = [set(applied), set(discarded), set(lost), dropped, pending, running]
    assert sum(len(p) for p in parts) == len(server.tickets)
    assert set().union(*parts) == set(server.tickets)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    secure=st.booleans(),
    n_clients=st.integers(4, 12),
    buffer_size=st.integers(2, 5),
    slack=st.integers(0, 3),
    extra=st.integers(0, 6),
    max_staleness=st.integers(0, 4),
    drop=st.sampled_from([0.0, 0.2, 0.4]),
    session_dropout=st.sampled_from([0.0, 0.25]),
    delay_seed=st.integers(0, 2**16),
    client_sigma=st.sampled_from([0.0, 1.0, 2.0]),
    buffers=st.integers(1, 6),
)
def test_each_buffer_is_the_weighted_sum_of_exactly_its_updates(
    secure, n_clients, buffer_size, slack, extra, max_staleness, drop, session_dropout,
    delay_seed, client_sigma, buffers,
):
    assume(n_clients >= buffer_size)  # fewer clients never fill a buffer (the driver refuses)
    concurrency = min(n_clients, buffer_size + extra)
    delays = LognormalDelays(client_sigma=client_sigma, drop_probability=drop, seed=delay_seed)
    gen = np.random.default_rng(delay_seed)
    made: dict[int, np.ndarray] = {}
    seen: list[BufferRelease] = []

    def train(tickets: list[Ticket]) -> dict[int, np.ndarray]:
        out = {}
        for t in tickets:
            assert t.id not in made, "trained twice"
            # At least 2^10 grid steps from zero, at most 100 in value.
            sign = gen.choice([-1.0, 1.0], size=DIM)
            made[t.id] = sign * gen.uniform(2**10 / SCALE, 100.0, size=DIM)
            out[t.id] = made[t.id]
        return out

    def apply(release: BufferRelease) -> None:
        assert release.version == len(seen), "buffers applied out of version order"
        seen.append(release)
        if release.result is None:
            assert not release.contributors
            return
        assert sorted(release.result.survivors) == sorted(t.client for t in release.contributors)
        for t, tau, w in zip(release.contributors, release.staleness, release.weights):
            assert tau == release.version - t.base_version and 0 <= tau <= max_staleness
            assert w == 1.0 / math.sqrt(1.0 + tau)
        weighted = np.array(
            [made[t.id] / math.sqrt(1.0 + tau)
             for t, tau in zip(release.contributors, release.staleness)]
        )
        expected = weighted.sum(axis=0)
        if not secure:
            np.testing.assert_allclose(release.total, expected, rtol=1e-12, atol=1e-9)
            return
        ring_total = release.total * SCALE
        assert np.array_equal(ring_total, np.round(ring_total)), "not an integer total"
        scaled = weighted * SCALE
        low, high = np.floor(scaled).sum(axis=0), np.ceil(scaled).sum(axis=0)
        assert np.all(low <= ring_total) and np.all(ring_total <= high), (low, ring_total, high)

    server = BufferedServer(buffer_size, slack=slack, max_staleness=max_staleness)
    driver = AsyncDriver(
        server,
        range(n_clients),
        delays,
        concurrency=concurrency,
        protocol=_secagg if secure else _plaintext,
        train=train,
        apply=apply,
        session_dropout=session_dropout,
        seed=delay_seed,
        protocol_seed=delay_seed,
    )
    got = driver.run(buffers)
    assert got == seen[-len(got):] if got else True
    assert len(got) <= buffers
    if drop == 0.0:
        assert len(got) == buffers  # nobody leaves: the run can always fill buffers
    _fates_partition(driver)
    # Each buffer held at most K updates, and no client twice.
    for buf in server.buffers:
        assert len(buf.submitted) <= buffer_size
        counts = Counter(t.client for t in buf.submitted)
        assert max(counts.values(), default=0) <= 1
    times = [r.applied_at for r in driver.releases]
    assert times == sorted(times) and all(r.applied_at >= r.closed_at for r in driver.releases)


def test_a_late_update_moves_to_the_next_buffer_with_its_staleness_recomputed():
    server = BufferedServer(2, slack=1, max_staleness=5)
    a, b, c = server.check_in(0), server.check_in(1), server.check_in(2)  # all members of buffer 0
    d = server.check_in(3)  # buffer 0 holds K + slack = 3 members: 3 goes to buffer 1
    assert [server.home[t.id] for t in (a, b, c, d)] == [0, 0, 0, 1]
    assert server.submit(a.id) is None
    full = server.submit(b.id)
    assert full is server.buffers[0]
    assert server.close(full) == 0
    server.settle(full, {a.id: "applied", b.id: "applied"})
    server.applied(full)
    # Client 2 was a member of buffer 0 but arrives after it closed: moved to buffer 1.
    assert server.submit(c.id) is None
    assert server.home[c.id] == 1 and c in server.buffers[1].submitted
    due = server.submit(d.id)
    assert due is server.buffers[1]
    version = server.close(due)
    assert version == 1
    # Its staleness is computed afresh against the version buffer 1 reports.
    w = client_contribution(np.ones(1), c.base_version, version, server.max_staleness)
    np.testing.assert_allclose(w, [1.0 / math.sqrt(2.0)])
    # Submitting again is refused, and changes nothing.
    before = (list(due.submitted), dict(server.home))
    with pytest.raises(LocalProtocolError):
        server.submit(c.id)
    assert (list(due.submitted), dict(server.home)) == before


def test_a_dropped_member_frees_its_slot_and_is_recorded():
    server = BufferedServer(2, slack=0)
    a, b = server.check_in(0), server.check_in(1)
    server.drop(b.id)
    assert server.fate[b.id] == "dropped"
    c = server.check_in(2)  # the freed slot of buffer 0
    assert server.home[c.id] == 0
    with pytest.raises(LocalProtocolError):
        server.drop(b.id)
    assert server.submit(a.id) is None
    assert server.submit(c.id) is server.buffers[0]


def test_too_stale_updates_are_discarded_not_lost_silently():
    # K = 1, four clients at once, max_staleness 0: every update trained on a
    # version older than its buffer's is refused by its client.
    delays = LognormalDelays(client_sigma=1.5, seed=3)
    made: dict[int, np.ndarray] = {}

    def train(tickets):
        for t in tickets:
            made[t.id] = np.full(DIM, float(t.id + 1))
        return {t.id: made[t.id] for t in tickets}

    applied: list[BufferRelease] = []
    server = BufferedServer(1, max_staleness=0)
    driver = AsyncDriver(server, range(4), delays, concurrency=4, protocol=_plaintext,
                         train=train, apply=applied.append, seed=0)
    driver.run(8)
    discarded = [t for r in applied for t in r.discarded]
    assert discarded, "the setting was chosen to make stale updates"
    for r in applied:
        assert all(tau == 0 for tau in r.staleness)
        for t in r.discarded:
            assert r.version - t.base_version > 0 and server.fate[t.id] == "discarded"
        if r.result is None:
            assert r.contributors == () and r.error is None
    _fates_partition(driver)


def test_a_client_waits_for_its_buffer_before_its_next_task():
    # Without this a fast client opens a buffer per task on one model version, and a
    # driver with slow peers runs for ever (found by the sums test above).
    server = BufferedServer(2, slack=0, max_staleness=4)
    first = server.check_in(0)
    server.check_in(1)
    assert server.submit(first.id) is None
    assert not server.available(0)
    with pytest.raises(LocalProtocolError, match="already holds a task"):
        server.check_in(0)
    due = server.submit(1)
    assert due is not None and not server.available(1)
    server.close(due)
    assert server.available(0) and server.available(1)
    assert server.check_in(0).base_version == server.applied_version


def test_the_driver_refuses_fewer_clients_than_a_buffer():
    with pytest.raises(ValueError, match="cannot fill a buffer of 5"):
        AsyncDriver(
            BufferedServer(5),
            range(4),
            LognormalDelays(seed=0),
            concurrency=4,
            protocol=_plaintext,
            train=lambda tickets: {},
            apply=lambda release: None,
        )


def test_sessions_take_no_randomness_from_the_schedule(monkeypatch):
    # The driver's numpy generator (seed=) only schedules; without protocol_seed every
    # buffer's session draws its keys and masks from the OS CSPRNG (simulate(seed=None)).
    import protocols.buffered as buffered

    seeds: list[object] = []
    real = buffered.simulate

    def spy(proto, inputs, **kw):
        seeds.append(kw.get("seed"))
        return real(proto, inputs, **kw)

    monkeypatch.setattr(buffered, "simulate", spy)
    for protocol_seed in (None, 7):
        seeds.clear()
        driver = AsyncDriver(
            BufferedServer(2, slack=0, max_staleness=8),
            range(4),
            LognormalDelays(seed=3),
            concurrency=4,
            protocol=_secagg,
            train=lambda tickets: {t.id: np.ones(DIM) for t in tickets},
            apply=lambda release: None,
            seed=11,
            protocol_seed=protocol_seed,
        )
        driver.run(2)
        assert seeds and (all(s is None for s in seeds) if protocol_seed is None else None not in seeds)
