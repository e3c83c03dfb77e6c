"""Ratings container, MovieLens parsers, splits and the synthetic generator."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys.data import (
    Ratings,
    RatingsFormatError,
    load_ratings,
    parse_ml1m,
    parse_ml100k,
    per_user_split,
    random_split,
    synthetic,
    synthetic_with_truth,
)

FIXTURES = Path(__file__).parent / "fixtures"
ML100K = FIXTURES / "ml100k_sample.data"
ML1M = FIXTURES / "ml1m_sample.dat"

# No deadline: these are properties, not timings, and the machine is shared.
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _read_rows(path: Path, sep: str) -> list[tuple[int, int, float, int]]:
    """Independent reference reader: the file's rows as raw tuples."""
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            u, i, r, t = line.split(sep)
            rows.append((int(u), int(i), float(r), int(t)))
    return rows


def _raw_rows(r: Ratings) -> list[tuple[int, int, float, int]]:
    return list(
        zip(
            r.user_ids[r.user].tolist(),
            r.item_ids[r.item].tolist(),
            r.rating.tolist(),
            r.timestamp.tolist(),
            strict=True,
        )
    )


# ------------------------------------------------------------------ parsers


@pytest.mark.parametrize(
    ("path", "parser", "sep"), [(ML100K, parse_ml100k, "\t"), (ML1M, parse_ml1m, "::")]
)
def test_parsers_read_fixture_rows_in_order(path, parser, sep):
    expected = _read_rows(path, sep)
    r = parser(path)
    assert len(r) == len(expected) > 30
    assert _raw_rows(r) == expected
    assert r.n_users == len({row[0] for row in expected})
    assert r.n_items == len({row[1] for row in expected})
    assert r.user.dtype == np.int64 and r.rating.dtype == np.float64


def test_ml100k_fixture_reindexing():
    r = parse_ml100k(ML100K)
    assert r.user_ids.tolist() == [3, 7, 12, 15, 21, 40, 41, 99]
    assert set(r.user.tolist()) == set(range(8))
    assert np.all(np.diff(r.item_ids) > 0)


@pytest.mark.parametrize(
    ("path", "parser", "lineno"),
    [
        (FIXTURES / "ml100k_malformed.data", parse_ml100k, 13),
        (FIXTURES / "ml1m_malformed.dat", parse_ml1m, 21),
    ],
)
def test_malformed_fixture_names_file_and_line(path, parser, lineno):
    with pytest.raises(ValueError, match=rf"{path.name}:{lineno}: ") as info:
        parser(path)
    assert isinstance(info.value, RatingsFormatError)
    assert info.value.lineno == lineno
    assert info.value.path == str(path)
    # load_ratings reports the same line.
    with pytest.raises(ValueError, match=rf"{path.name}:{lineno}: "):
        load_ratings(path)


def test_wrong_parser_fails_on_first_line():
    with pytest.raises(ValueError, match=r"ml100k_sample\.data:1: expected 4 fields"):
        parse_ml1m(ML100K)
    with pytest.raises(ValueError, match=r"ml1m_sample\.dat:1: expected 4 fields"):
        parse_ml100k(ML1M)


def test_empty_file_is_an_error(tmp_path):
    p = tmp_path / "u.data"
    p.write_text("\n\n")
    with pytest.raises(ValueError, match="no ratings"):
        parse_ml100k(p)


def test_load_ratings_dispatch(tmp_path):
    ref100k, ref1m = parse_ml100k(ML100K), parse_ml1m(ML1M)
    assert _raw_rows(load_ratings(ML100K)) == _raw_rows(ref100k)
    assert _raw_rows(load_ratings(ML1M)) == _raw_rows(ref1m)
    # By content, whatever the name.
    odd = tmp_path / "ratings.txt"
    shutil.copy(ML1M, odd)
    assert _raw_rows(load_ratings(odd)) == _raw_rows(ref1m)
    # An extracted archive directory.
    d = tmp_path / "ml-100k"
    d.mkdir()
    shutil.copy(ML100K, d / "u.data")
    assert _raw_rows(load_ratings(d)) == _raw_rows(ref100k)
    # Neither content nor name tells.
    bad = tmp_path / "ratings.csv"
    bad.write_text("1,2,3,4\n")
    with pytest.raises(ValueError, match="cannot tell the format"):
        load_ratings(bad)
    with pytest.raises(FileNotFoundError):
        load_ratings(tmp_path / "missing.data")
    with pytest.raises(FileNotFoundError):
        load_ratings(tmp_path)  # a directory without a ratings file


row = st.tuples(
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(1, 5),
    st.integers(0, 2**31),
)
MALFORMED = [
    "1\t2\t3",  # too few fields
    "1\t2\t3\t4\t5",  # too many
    "1.5\t2\t3\t4",  # non-integer id
    "-1\t2\t3\t4",  # negative id
    "1\tabc\t3\t4",  # garbage id
    "1\t2\tnan\t4",  # non-finite rating
    "1\t2\tinf\t4",
    "1\t2\tfour\t4",
    "1\t2\t3\t",  # empty timestamp
    "1\t2\t3\t8.5e8",  # float timestamp
    "1::2::3::4",  # other format
]


@SETTINGS
@given(rows=st.lists(row, min_size=1, max_size=40), blank_every=st.integers(0, 5))
def test_ml100k_roundtrip_property(tmp_path, rows, blank_every):
    lines = []
    for k, (u, i, r, t) in enumerate(rows):
        lines.append(f"{u}\t{i}\t{r}\t{t}")
        if blank_every and k % blank_every == 0:
            lines.append("")  # blank lines are skipped, wherever they are
    p = tmp_path / "u.data"
    p.write_text("\n".join(lines) + "\n")
    parsed = parse_ml100k(p)
    assert _raw_rows(parsed) == [(u, i, float(r), t) for u, i, r, t in rows]


@SETTINGS
@given(
    rows=st.lists(row, min_size=0, max_size=30),
    where=st.integers(0, 30),
    bad=st.sampled_from(MALFORMED),
)
def test_ml100k_malformed_line_property(tmp_path, rows, where, bad):
    where = min(where, len(rows))
    lines = [f"{u}\t{i}\t{r}\t{t}" for u, i, r, t in rows]
    lines.insert(where, bad)
    p = tmp_path / "u.data"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(RatingsFormatError, match=rf"u\.data:{where + 1}: ") as info:
        parse_ml100k(p)
    assert info.value.lineno == where + 1


# ---------------------------------------------------------------- reindexing


@SETTINGS
@given(
    pairs=st.lists(
        st.tuples(st.integers(-(2**40), 2**40), st.integers(0, 50)), min_size=1, max_size=60
    )
)
def test_from_raw_reindexing_is_consistent(pairs):
    raw_u = np.array([p[0] for p in pairs])
    raw_i = np.array([p[1] for p in pairs])
    r = Ratings.from_raw(raw_u, raw_i, np.ones(len(pairs)))
    # Dense, order-preserving, and it maps back to the raw ids exactly.
    assert r.n_users == len(set(raw_u.tolist())) and r.n_items == len(set(raw_i.tolist()))
    assert np.array_equal(r.user_ids[r.user], raw_u)
    assert np.array_equal(r.item_ids[r.item], raw_i)
    assert np.all(np.diff(r.user_ids) > 0) and np.all(np.diff(r.item_ids) > 0)
    assert set(r.user.tolist()) == set(range(r.n_users))
    # Equal raw ids <=> equal dense ids.
    same_raw = raw_u[:, None] == raw_u[None, :]
    assert np.array_equal(same_raw, r.user[:, None] == r.user[None, :])


def test_ratings_validation_and_immutability():
    with pytest.raises(ValueError, match="same length"):
        Ratings(user=[0, 1], item=[0], rating=[1.0, 2.0], timestamp=[0, 0], n_users=2, n_items=1)
    with pytest.raises(ValueError, match="user indices"):
        Ratings(user=[2], item=[0], rating=[1.0], timestamp=[0], n_users=2, n_items=1)
    with pytest.raises(ValueError, match="finite"):
        Ratings(user=[0], item=[0], rating=[np.nan], timestamp=[0], n_users=1, n_items=1)
    r = Ratings(user=[0, 1], item=[0, 0], rating=[1.0, 2.0], timestamp=[0, 0], n_users=3, n_items=2)
    with pytest.raises(ValueError):
        r.rating[0] = 5.0  # read-only
    sub = r.subset([1])
    assert (sub.n_users, sub.n_items, len(sub)) == (3, 2, 1)
    assert [len(ix) for ix in r.by_user()] == [1, 1, 0]


# -------------------------------------------------------------------- splits


def _tagged(seed: int, n_users: int, n_ratings: int) -> Ratings:
    """Random ratings whose timestamp is the row number: a unique tag per rating."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, size=n_ratings)
    return Ratings(
        user=users,
        item=rng.integers(0, 7, size=n_ratings),
        rating=rng.integers(1, 6, size=n_ratings).astype(float),
        timestamp=np.arange(n_ratings),
        n_users=n_users,
        n_items=7,
    )


split_args = dict(
    data_seed=st.integers(0, 2**16),
    n_users=st.integers(1, 20),
    n_ratings=st.integers(1, 300),
    fraction=st.floats(0.01, 0.99),
    seed=st.integers(0, 2**32 - 1),
)


def _check_partition(full: Ratings, train: Ratings, test: Ratings) -> None:
    tags = np.concatenate([train.timestamp, test.timestamp])
    assert np.array_equal(np.sort(tags), np.arange(len(full)))  # exact partition
    for side in (train, test):
        assert (side.n_users, side.n_items) == (full.n_users, full.n_items)
        assert np.all(np.diff(side.timestamp) > 0)  # parent order kept
        # Each row is the parent's row with that tag.
        assert np.array_equal(side.user, full.user[side.timestamp])
        assert np.array_equal(side.rating, full.rating[side.timestamp])


@SETTINGS
@given(**split_args)
def test_random_split_partitions_reproducibly(data_seed, n_users, n_ratings, fraction, seed):
    full = _tagged(data_seed, n_users, n_ratings)
    train, test = random_split(full, fraction, seed)
    _check_partition(full, train, test)
    assert len(test) == int(np.floor(fraction * n_ratings + 0.5))
    again = random_split(full, fraction, seed)
    assert np.array_equal(again[1].timestamp, test.timestamp)


@SETTINGS
@given(**split_args)
def test_per_user_split_keeps_users_on_both_sides(data_seed, n_users, n_ratings, fraction, seed):
    full = _tagged(data_seed, n_users, n_ratings)
    train, test = per_user_split(full, fraction, seed)
    _check_partition(full, train, test)
    counts, n_test = full.user_counts(), test.user_counts()
    assert np.all(train.user_counts()[counts >= 1] >= 1)
    assert np.all(n_test[counts >= 2] >= 1)
    assert np.all(n_test[counts == 1] == 0)
    want = np.clip(np.floor(fraction * counts + 0.5), 1, np.maximum(counts - 1, 0))
    assert np.array_equal(n_test, want.astype(np.int64))
    again = per_user_split(full, fraction, seed)
    assert np.array_equal(again[1].timestamp, test.timestamp)


def test_split_seed_matters_and_fraction_is_checked():
    full = _tagged(0, 50, 2000)
    a = random_split(full, 0.2, 0)[1].timestamp
    b = random_split(full, 0.2, 1)[1].timestamp
    assert not np.array_equal(a, b)
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError):
            random_split(full, bad)
        with pytest.raises(ValueError):
            per_user_split(full, bad)


# ----------------------------------------------------------------- synthetic


@SETTINGS
@given(
    n_users=st.integers(1, 60),
    n_items=st.integers(1, 80),
    per_user=st.integers(1, 80),
    rank=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
    exponent=st.sampled_from([0.0, 0.5, 1.0, 2.0, 4.0]),
)
def test_synthetic_shape(n_users, n_items, per_user, rank, seed, exponent):
    per_user = min(per_user, n_items)
    r = synthetic(n_users, n_items, per_user, rank, seed, popularity_exponent=exponent)
    assert (r.n_users, r.n_items, len(r)) == (n_users, n_items, n_users * per_user)
    assert np.all(r.user_counts() == per_user)
    pairs = r.user * n_items + r.item
    assert np.unique(pairs).shape[0] == len(r)  # no user rates an item twice
    assert set(np.unique(r.rating).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    again = synthetic(n_users, n_items, per_user, rank, seed, popularity_exponent=exponent)
    assert np.array_equal(again.item, r.item) and np.array_equal(again.rating, r.rating)


def test_synthetic_popularity_is_power_law_like():
    n_items = 1000
    zipf, truth = synthetic_with_truth(2000, n_items, 40, 5, 0, popularity_exponent=1.0)
    uniform = synthetic(2000, n_items, 40, 5, 0, popularity_exponent=0.0)

    def top_decile_share(r: Ratings) -> float:
        counts = np.sort(r.item_counts())[::-1]
        return counts[: n_items // 10].sum() / counts.sum()

    assert top_decile_share(uniform) < 0.15  # about 0.10
    assert top_decile_share(zipf) > 0.4
    # Counts fall off with popularity rank along a power law: on the items not
    # saturated (rated by < half the users), log count vs log rank has a slope
    # near -exponent.
    counts = zipf.item_counts()[np.argsort(-truth.popularity)].astype(float)
    ranks = np.arange(1, n_items + 1)
    mid = (counts < 1000) & (counts > 5)
    slope = np.polyfit(np.log(ranks[mid]), np.log(counts[mid]), 1)[0]
    assert -1.3 < slope < -0.7
    # Popularity is not tied to the item id.
    assert abs(np.corrcoef(np.arange(n_items), zipf.item_counts())[0, 1]) < 0.2


def test_synthetic_follows_its_truth():
    r, truth = synthetic_with_truth(
        30, 40, 10, 3, 7, noise_std=0.0, round_ratings=False, rating_scale=(-1e9, 1e9)
    )
    np.testing.assert_allclose(r.rating, truth.predict(r.user, r.item))
    with pytest.raises(ValueError):
        synthetic(5, 10, 11)  # more ratings per user than items
