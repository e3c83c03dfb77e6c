"""The MovieLens downloader, exercised offline through file:// URLs."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from recsys.data import (
    MOVIELENS_ARCHIVES,
    ChecksumError,
    download_file,
    download_movielens,
    load_ratings,
    parse_ml100k,
)

FIXTURE = Path(__file__).parent / "fixtures" / "ml100k_sample.data"


def _archive(tmp_path: Path, member: str = "ml-100k/u.data") -> tuple[Path, str, str]:
    """A small ml-100k.zip lookalike holding the fixture; returns (path, sha256, md5)."""
    src = tmp_path / "src" / "ml-100k.zip"
    src.parent.mkdir()
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("ml-100k/README", "made-up test data\n")
        zf.write(FIXTURE, member)
    data = src.read_bytes()
    return src, hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest()


def _leftovers(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []


@pytest.mark.parametrize("which", ["sha256", "md5"])
def test_download_verifies_and_extracts(tmp_path, which):
    src, sha, md5 = _archive(tmp_path)
    cache = tmp_path / "cache"
    digest = {"sha256": sha, "md5": md5}[which]
    path = download_movielens("ml-100k", cache, url=src.as_uri(), **{which: digest})
    assert path == cache / "ml-100k" / "u.data"
    assert (cache / "ml-100k.zip").read_bytes() == src.read_bytes()
    got, want = load_ratings(path), parse_ml100k(FIXTURE)
    assert np.array_equal(got.rating, want.rating) and np.array_equal(got.user, want.user)

    # A verified cached archive is reused: the source can vanish.
    src.unlink()
    (cache / "ml-100k" / "u.data").unlink()  # re-extracted from the cached zip
    assert download_movielens("ml-100k", cache, url=src.as_uri(), sha256=sha) == path
    assert path.read_bytes() == FIXTURE.read_bytes()


def test_checksum_mismatch_raises_and_leaves_nothing(tmp_path):
    src, sha, _ = _archive(tmp_path)
    cache = tmp_path / "cache"
    wrong = ("0" if sha[0] != "0" else "1") + sha[1:]
    with pytest.raises(ChecksumError, match="sha256 mismatch") as info:
        download_movielens("ml-100k", cache, url=src.as_uri(), sha256=wrong)
    assert isinstance(info.value, ValueError)
    assert _leftovers(cache) == []  # no archive, no partial file, no extraction


def test_pinned_checksum_applies_to_any_url(tmp_path):
    # Without an explicit checksum the GroupLens MD5 is required, so a
    # lookalike archive (a bad mirror) is rejected.
    src, _, _ = _archive(tmp_path)
    with pytest.raises(ChecksumError, match=MOVIELENS_ARCHIVES["ml-100k"].md5):
        download_movielens("ml-100k", tmp_path / "cache", url=src.as_uri())


def test_corrupt_cache_is_fetched_again(tmp_path):
    src, sha, _ = _archive(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "ml-100k.zip").write_bytes(b"truncated")
    path = download_movielens("ml-100k", cache, url=src.as_uri(), sha256=sha)
    assert (cache / "ml-100k.zip").read_bytes() == src.read_bytes()
    assert path.read_bytes() == FIXTURE.read_bytes()


def test_archive_without_ratings_member(tmp_path):
    src, sha, _ = _archive(tmp_path, member="elsewhere/u.data")
    with pytest.raises(ValueError, match=r"no member 'ml-100k/u\.data'"):
        download_movielens("ml-100k", tmp_path / "cache", url=src.as_uri(), sha256=sha)


def test_download_file_requires_a_checksum_and_names(tmp_path):
    src, sha, _ = _archive(tmp_path)
    with pytest.raises(ValueError, match="checksum"):
        download_file(src.as_uri(), tmp_path / "x.zip")
    out = download_file(src.as_uri(), tmp_path / "deep" / "x.zip", sha256=sha.upper())
    assert out.read_bytes() == src.read_bytes()
    with pytest.raises(KeyError, match="ml-100k"):
        download_movielens("ml-7k", tmp_path)


def test_default_cache_dir_honours_environment(tmp_path, monkeypatch):
    from recsys.data import default_cache_dir

    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path / "here"))
    assert default_cache_dir() == tmp_path / "here"
    monkeypatch.delenv("RECSYS_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "secagg-fl" / "movielens"
