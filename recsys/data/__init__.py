"""Ratings data: the :class:`Ratings` container, MovieLens loaders and a
verified downloader, a synthetic generator, and train/test splits.

>>> from recsys.data import synthetic, random_split
>>> train, test = random_split(synthetic(n_users=50, n_items=80, ratings_per_user=10), 0.2, seed=0)
>>> len(train), len(test)
(400, 100)
"""

from __future__ import annotations

from .download import (
    MOVIELENS_ARCHIVES,
    ChecksumError,
    MovieLensArchive,
    default_cache_dir,
    download_file,
    download_movielens,
    file_digest,
)
from .movielens import (
    RatingsFormatError,
    load_ratings,
    parse_ml1m,
    parse_ml100k,
    parse_ratings_file,
)
from .ratings import Ratings
from .splits import per_user_split, random_split
from .synthetic import SyntheticTruth, synthetic, synthetic_with_truth

__all__ = [
    "MOVIELENS_ARCHIVES",
    "ChecksumError",
    "MovieLensArchive",
    "Ratings",
    "RatingsFormatError",
    "SyntheticTruth",
    "default_cache_dir",
    "download_file",
    "download_movielens",
    "file_digest",
    "load_ratings",
    "parse_ml1m",
    "parse_ml100k",
    "parse_ratings_file",
    "per_user_split",
    "random_split",
    "synthetic",
    "synthetic_with_truth",
]
