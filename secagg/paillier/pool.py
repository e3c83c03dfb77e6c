"""The worker processes that encrypt large batches.

gmpy2 multiplications are a few microseconds each, too short for releasing
the GIL to pay off (measured: two threads are no faster than one), so large
batches are split over a pool of worker *processes* (``workers``, default:
the CPUs this process may use, at most 8). Small batches never start a pool.
Workers are forked (POSIX ``fork`` start method, so scripts without an
``if __name__ == "__main__"`` guard still work, and workers inherit the
parent's fixed-base tables), kept for reuse, and shut down at exit or by
:func:`shutdown_workers`. A forked child forgets its parent's pool, and a
broken pool (a worker killed by OOM or a signal) is shut down and its batch
redone in the calling process.

Decryption needs no pool: it batches its exponentiations through
``gmpy2.powmod_base_list``, which releases the GIL, so it runs on threads
(:func:`~secagg.paillier.vector.decrypt_packed`) and ``p``, ``q`` never leave
the process.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

__all__ = [
    "default_workers",
    "pool_started",
    "resolve_workers",
    "run_parallel",
    "shutdown_workers",
    "split",
]

_MAX_DEFAULT_WORKERS = 8

_T = TypeVar("_T")

_POOL_LOCK = threading.Lock()
_POOL: ProcessPoolExecutor | None = None
_POOL_SIZE = 0


def default_workers() -> int:
    """CPUs this process may run on (``os.sched_getaffinity``), capped at 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, _MAX_DEFAULT_WORKERS))


def resolve_workers(workers: int | None) -> int:
    """``workers``, or :func:`default_workers` if None; ValueError unless a positive int."""
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int or None, got {workers!r}")
    return workers


def pool_started() -> bool:
    """Whether worker processes are running (work set up before this is inherited by them)."""
    return _POOL is not None


def _pool(size: int) -> ProcessPoolExecutor:
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE != size:
            if _POOL is not None:
                _POOL.shutdown(wait=True, cancel_futures=True)
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
            _POOL = ProcessPoolExecutor(max_workers=size, mp_context=ctx)
            _POOL_SIZE = size
        return _POOL


def shutdown_workers() -> None:
    """Stop the worker processes (they are restarted on demand)."""
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is not None:
            _POOL.shutdown(wait=True, cancel_futures=True)
        _POOL, _POOL_SIZE = None, 0


def _forget_pool_in_child() -> None:
    # A forked child must not reuse its parent's executor (its processes are not ours).
    global _POOL, _POOL_SIZE, _POOL_LOCK
    _POOL, _POOL_SIZE, _POOL_LOCK = None, 0, threading.Lock()


atexit.register(shutdown_workers)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def split(count: int, parts: int) -> list[tuple[int, int]]:
    """``[start, stop)`` bounds of up to ``parts`` near-equal, non-empty chunks of ``count``."""
    bounds = [count * i // parts for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(parts) if bounds[i + 1] > bounds[i]]


def run_parallel(fn: Callable[..., _T], jobs: Sequence[tuple[Any, ...]], workers: int) -> list[_T]:
    """Run ``fn(*job)`` for every job in the pool, in order; serial if the pool breaks.

    ``fn`` and the jobs must be picklable (a module-level function, plain data).
    """
    try:
        pool = _pool(workers)
        futures = [pool.submit(fn, *job) for job in jobs]
        return [f.result() for f in futures]
    except BrokenProcessPool:
        # A killed worker (OOM, signal) must not lose the batch: redo it here.
        shutdown_workers()
        return [fn(*job) for job in jobs]
