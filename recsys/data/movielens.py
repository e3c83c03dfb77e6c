"""Parsers for the MovieLens rating files.

* ML-100K ``u.data``: ``user<TAB>item<TAB>rating<TAB>timestamp``.
* ML-1M ``ratings.dat``: ``UserID::MovieID::Rating::Timestamp``.

Both are parsed strictly: a line with the wrong number of fields, a
non-integer id or timestamp, or a non-finite rating raises
:class:`RatingsFormatError` (a :class:`ValueError`) naming ``file:line``, so a
truncated download or a file of the wrong format fails loudly instead of
training on garbage. Blank lines (such as a trailing newline) are skipped.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from .ratings import Ratings

__all__ = [
    "RatingsFormatError",
    "load_ratings",
    "parse_ml1m",
    "parse_ml100k",
    "parse_ratings_file",
]

ML100K_SEPARATOR = "\t"
ML1M_SEPARATOR = "::"


class RatingsFormatError(ValueError):
    """A malformed line in a ratings file; ``str()`` starts with ``file:line:``."""

    def __init__(self, path: str | os.PathLike[str], lineno: int, message: str) -> None:
        self.path = str(path)
        self.lineno = lineno
        super().__init__(f"{self.path}:{lineno}: {message}")


def _parse_id(text: str) -> int:
    # MovieLens ids and timestamps are plain non-negative decimal integers;
    # anything else (a sign, a decimal point, a stray character) is malformed.
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"expected a non-negative integer, got {text!r}")
    return int(text)


def parse_ratings_file(path: str | os.PathLike[str], separator: str) -> Ratings:
    """Parse ``user SEP item SEP rating SEP timestamp`` lines into :class:`Ratings`.

    Raw ids are re-indexed to ``0..n-1`` (see :meth:`Ratings.from_raw`).

    Raises:
        RatingsFormatError: on a malformed line, or if the file holds no rating.
        OSError: if the file cannot be read.
    """
    users: list[int] = []
    items: list[int] = []
    values: list[float] = []
    stamps: list[int] = []
    # latin-1 never fails to decode, so a stray byte is reported as a
    # malformed field with its line number rather than as a UnicodeDecodeError.
    with open(path, encoding="latin-1", newline=None) as fh:
        for lineno, line in enumerate(fh, start=1):
            stripped = line.strip()
            if not stripped:
                continue
            fields = stripped.split(separator)
            if len(fields) != 4:
                raise RatingsFormatError(
                    path,
                    lineno,
                    f"expected 4 fields separated by {separator!r}, got {len(fields)}: "
                    f"{stripped[:80]!r}",
                )
            u_text, i_text, r_text, t_text = (f.strip() for f in fields)
            try:
                u = _parse_id(u_text)
                i = _parse_id(i_text)
                t = _parse_id(t_text)
                r = float(r_text)
            except ValueError as exc:
                raise RatingsFormatError(path, lineno, f"{exc}: {stripped[:80]!r}") from None
            if not math.isfinite(r):
                raise RatingsFormatError(path, lineno, f"rating must be finite, got {r_text!r}")
            users.append(u)
            items.append(i)
            values.append(r)
            stamps.append(t)
    if not users:
        raise RatingsFormatError(path, 0, "no ratings in file")
    return Ratings.from_raw(
        np.array(users, dtype=np.int64),
        np.array(items, dtype=np.int64),
        np.array(values, dtype=np.float64),
        np.array(stamps, dtype=np.int64),
    )


def parse_ml100k(path: str | os.PathLike[str]) -> Ratings:
    """Parse an ML-100K ``u.data`` file (tab-separated)."""
    return parse_ratings_file(path, ML100K_SEPARATOR)


def parse_ml1m(path: str | os.PathLike[str]) -> Ratings:
    """Parse an ML-1M ``ratings.dat`` file (``::``-separated)."""
    return parse_ratings_file(path, ML1M_SEPARATOR)


def _sniff_separator(path: Path) -> str | None:
    with open(path, encoding="latin-1") as fh:
        for line in fh:
            if line.strip():
                if ML1M_SEPARATOR in line:
                    return ML1M_SEPARATOR
                if ML100K_SEPARATOR in line:
                    return ML100K_SEPARATOR
                return None
    return None


def load_ratings(path: str | os.PathLike[str]) -> Ratings:
    """Load a MovieLens ratings file, picking the format from its content or name.

    ``path`` may be a ``u.data``/``ratings.dat`` file (any name: the first
    non-blank line decides, ``::`` meaning ML-1M and a tab ML-100K; when that
    line is neither, a ``.data`` suffix means ML-100K and ``.dat`` ML-1M) or an
    extracted ``ml-100k``/``ml-1m`` directory holding one of those files.

    Raises:
        FileNotFoundError: if ``path`` (or the file inside a directory) is missing.
        ValueError: if the format cannot be told, or a line is malformed.
    """
    p = Path(path)
    if p.is_dir():
        for name in ("u.data", "ratings.dat"):
            if (p / name).is_file():
                p = p / name
                break
        else:
            raise FileNotFoundError(f"{p}: no u.data or ratings.dat in this directory")
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such ratings file")
    separator = _sniff_separator(p)
    if separator is None:
        suffix = p.suffix.lower()
        if suffix == ".data":
            separator = ML100K_SEPARATOR
        elif suffix == ".dat":
            separator = ML1M_SEPARATOR
        else:
            raise ValueError(
                f"{p}: cannot tell the format (expected MovieLens u.data with tabs "
                "or ratings.dat with '::')"
            )
    return parse_ratings_file(p, separator)
