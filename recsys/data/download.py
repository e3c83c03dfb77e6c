"""Download the GroupLens MovieLens archives, verified, into a cache directory.

The archives are fetched with :mod:`urllib` (any scheme it supports, so tests
use ``file://`` URLs and never the network), hashed while they stream to a
temporary file, and moved into the cache only if the checksum matches. The
ratings file is then extracted by name to a path we choose (never a path
taken from the archive, so a hostile zip cannot write outside the cache).

The pinned checksums are the MD5 sums GroupLens publishes next to each
archive (``ml-100k.zip.md5``, ``ml-1m.zip.md5``). MD5 is no defence against a
forger; it guards against truncated or corrupted downloads, which is what a
checksum over plain HTTP can do. Pass ``sha256=`` to pin a stronger hash.

MovieLens' license forbids redistribution: the data lives in the user's cache,
never in this repository.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "MOVIELENS_ARCHIVES",
    "ChecksumError",
    "MovieLensArchive",
    "default_cache_dir",
    "download_file",
    "download_movielens",
    "file_digest",
]


@dataclass(frozen=True)
class MovieLensArchive:
    """Where one GroupLens archive lives and what it must hash to."""

    url: str
    md5: str | None
    sha256: str | None
    member: str  # the ratings file inside the zip


MOVIELENS_ARCHIVES: dict[str, MovieLensArchive] = {
    "ml-100k": MovieLensArchive(
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        md5="0e33842e24a9c977be4e0107933c0723",
        sha256=None,
        member="ml-100k/u.data",
    ),
    "ml-1m": MovieLensArchive(
        url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        md5="c4d9eecfca2ab87c1945afe126590906",
        sha256=None,
        member="ml-1m/ratings.dat",
    ),
}


class ChecksumError(ValueError):
    """A downloaded file does not hash to the expected digest."""


def default_cache_dir() -> Path:
    """``$RECSYS_DATA_DIR``, else ``$XDG_CACHE_HOME/secagg-fl/movielens``, else ``~/.cache/...``."""
    env = os.environ.get("RECSYS_DATA_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "secagg-fl" / "movielens"


def file_digest(path: str | os.PathLike[str], algorithm: str) -> str:
    """Hex digest of a file (``algorithm`` is ``"md5"`` or ``"sha256"``)."""
    h = _hasher(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _hasher(algorithm: str) -> Any:  # hashlib's hash type is private
    if algorithm == "md5":
        # Integrity check only, not security: allowed on FIPS builds this way.
        return hashlib.md5(usedforsecurity=False)
    if algorithm == "sha256":
        return hashlib.sha256()
    raise ValueError(f"unsupported checksum algorithm {algorithm!r}")


def _expected(sha256: str | None, md5: str | None) -> dict[str, str]:
    expected = {k: v.lower() for k, v in (("sha256", sha256), ("md5", md5)) if v}
    if not expected:
        raise ValueError("a checksum (sha256= or md5=) is required to download")
    return expected


def _matches(path: Path, expected: dict[str, str]) -> bool:
    return all(file_digest(path, alg) == want for alg, want in expected.items())


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    md5: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Fetch ``url`` to ``dest`` if the content matches the given checksum(s).

    The body streams into a temporary file beside ``dest`` while being hashed;
    only a verified file is renamed into place (atomically), so ``dest`` is
    never a partial or corrupt download.

    Raises:
        ValueError: if neither ``sha256`` nor ``md5`` is given.
        ChecksumError: if the content does not match; nothing is written.
        urllib.error.URLError, OSError: on fetch or write failure.
    """
    expected = _expected(sha256, md5)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    hashers = {alg: _hasher(alg) for alg in expected}
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                out.write(chunk)
                for h in hashers.values():
                    h.update(chunk)
        for alg, want in expected.items():
            got = hashers[alg].hexdigest()
            if got != want:
                raise ChecksumError(f"{url}: {alg} mismatch: expected {want}, got {got}")
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return dest


def download_movielens(
    name: str = "ml-100k",
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    url: str | None = None,
    sha256: str | None = None,
    md5: str | None = None,
    force: bool = False,
    timeout: float = 60.0,
) -> Path:
    """Download (or reuse) a MovieLens archive and return the path of its ratings file.

    Args:
        name: ``"ml-100k"`` (returns ``.../ml-100k/u.data``) or ``"ml-1m"``
            (returns ``.../ml-1m/ratings.dat``).
        cache_dir: where ``NAME.zip`` and the extracted file go; default
            :func:`default_cache_dir`.
        url: override the GroupLens URL (a mirror, or a ``file://`` URL).
        sha256, md5: override the pinned checksum; when neither is given the
            archive must match the pinned GroupLens MD5, whatever the URL.
        force: download again even if a verified archive is cached.
        timeout: socket timeout in seconds.

    A cached archive is re-verified before use and fetched again if it no
    longer matches. Load the result with :func:`recsys.data.load_ratings`.

    Raises:
        KeyError: unknown ``name``.
        ChecksumError: the download does not match (nothing is cached).
        ValueError: the archive lacks the ratings file.
    """
    try:
        spec = MOVIELENS_ARCHIVES[name]
    except KeyError:
        raise KeyError(
            f"unknown MovieLens archive {name!r}; known: {sorted(MOVIELENS_ARCHIVES)}"
        ) from None
    if sha256 is None and md5 is None:
        sha256, md5 = spec.sha256, spec.md5
    expected = _expected(sha256, md5)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    archive = root / f"{name}.zip"
    target = root / name / Path(spec.member).name

    fresh = force or not (archive.is_file() and _matches(archive, expected))
    if fresh:
        download_file(url or spec.url, archive, timeout=timeout, **expected)
    if fresh or not target.is_file():
        _extract_member(archive, spec.member, target)
    return target


def _extract_member(archive: Path, member: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zf:
        try:
            info = zf.getinfo(member)
        except KeyError:
            raise ValueError(f"{archive}: archive has no member {member!r}") from None
        fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out, zf.open(info) as src:
                shutil.copyfileobj(src, out)
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
