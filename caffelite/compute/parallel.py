"""One threading policy for every layer: our worker threads over a one-thread BLAS, each split chosen by
its own timings.

NumPy releases the GIL inside its loops and BLAS calls, so parts of a piece of work handed to threads
use every core.  The policy (measurements: benchmarks/README.md):

- **Thread count**: :func:`set_num_threads` (``caffelite --threads N``), else ``OMP_NUM_THREADS`` /
  ``OPENBLAS_NUM_THREADS`` / ``MKL_NUM_THREADS``, else the cores this process may run on.
- **The BLAS runs one thread** while caffelite computes (:func:`single_threaded_blas`, switched once per
  net pass or layer call through threadpoolctl, never per product): a multi-threaded OpenBLAS spins its
  idle threads and, as soon as another process uses a core, its small batch-1 products run 2-20x slower.
- **Fixed parts**: a product is cut into tiles that depend on its shape only (:func:`tiles`), never on
  the thread count or the load, so the numbers are the same whether the parts run in threads or not.
- **Threads or not, from measurements**: a :class:`Tuner` per layer and role times its parts both ways,
  keeps the faster and re-checks now and then, so a busy machine (where handing parts to threads costs
  more than it gains) falls back to one thread and a quiet one uses every core.

Results are combined in part order.  A blob's ``diff`` is allocated on first use: read it before
handing parts to threads.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np  # loaded before _blas_threads looks for NumPy's BLAS

_ENV_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _env_threads() -> int | None:
    """The thread count the environment asks for (the first of _ENV_THREADS that is a positive number)."""
    for var in _ENV_THREADS:
        value = os.environ.get(var, "").split(",")[0].strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # taskset / container limits
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


WORKERS = _env_threads() or _cores()  # threads caffelite computes with (set_num_threads)
PARALLEL_MIN = 1 << 18  # below this many values a batch is not split (a thread hand-off costs ~50 us)
# The environment already pins the BLAS to one thread: without threadpoolctl, threads are still safe.
CHUNK_THREADS = any(os.environ.get(v) == "1" for v in _ENV_THREADS)
_executor: ThreadPoolExecutor | None = None
_worker = threading.local()  # .busy in our worker threads: parts there run serially (no nested hand-offs)


def set_num_threads(n: int) -> None:
    """Compute with ``n`` threads (``caffelite.set_num_threads``; 1: everything in the calling thread)."""
    global WORKERS, _executor
    n = int(n)
    if n < 1:
        raise ValueError("the number of threads must be >= 1 (got %d)" % n)
    if n != WORKERS and _executor is not None:
        _executor.shutdown(wait=True)
        _executor = None
    WORKERS = n


def get_num_threads() -> int:
    """The number of threads caffelite computes with."""
    return WORKERS


def _blas_threads():
    """(get, set) of the thread count of the BLAS that NumPy loaded (OpenBLAS, MKL, BLIS), through
    threadpoolctl (the optional extra ``caffelite[threads]``); None without threadpoolctl or without a
    BLAS it knows.  The controllers are found once; a switch is then one call into the library."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    libs = ThreadpoolController().select(user_api="blas").lib_controllers
    if not libs:
        return None

    def get() -> int:
        return max(lib.num_threads for lib in libs)

    def set_(n: int) -> None:
        for lib in libs:
            lib.set_num_threads(n)
    return get, set_


_BLAS = _blas_threads()
_scope = {"depth": 0, "saved": 0, "threads": False}
_scope_lock = threading.Lock()


@contextmanager
def single_threaded_blas() -> Iterator[bool]:
    """For the duration, the BLAS runs one thread per call; yields whether parts may go to our threads
    (False when the BLAS thread count could not be set and the environment does not pin it to one).

    Re-entrant: only the outermost scope switches (a net pass enters once; its layers' scopes are then
    free), and the BLAS gets its thread count back when it ends."""
    with _scope_lock:
        outer = _scope["depth"] == 0
        _scope["depth"] += 1
        if outer:
            _scope["saved"] = 0
            if _BLAS is not None:
                n = _BLAS[0]()
                if n > 1:
                    _BLAS[1](1)
                    _scope["saved"] = n
            _scope["threads"] = WORKERS >= 2 and (_BLAS is not None or CHUNK_THREADS)
        threads = _scope["threads"]
    try:
        yield threads
    finally:
        with _scope_lock:
            _scope["depth"] -= 1
            if _scope["depth"] == 0 and _scope["saved"]:
                _BLAS[1](_scope["saved"])


def _threads_allowed() -> bool:
    """Parts may go to threads: several threads, not already in one of ours, and a one-thread BLAS."""
    if WORKERS < 2 or getattr(_worker, "busy", False):
        return False
    if _scope["depth"]:
        return _scope["threads"]
    return CHUNK_THREADS or (_BLAS is not None and _BLAS[0]() == 1)


class Tuner:
    """Whether one repeated piece of work (a layer's product, its chunks) runs its parts in threads,
    decided from its own timings: both ways alternately at first, then the faster one, re-checking the
    other after 8, 16, ... 512 calls (back to 8 when the choice flips), so the choice follows the load.
    The first call (page faults, scratch allocation) is not timed."""

    TRIALS = 3  # timed calls of each kind before choosing
    LONGEST = 512

    def __init__(self):
        self.times = {False: deque(maxlen=self.TRIALS), True: deque(maxlen=self.TRIALS)}
        self.calls = 0
        self.choice: bool | None = None
        self.interval = 8
        self.next_check = 0

    def threaded(self) -> bool:
        """Run this call's parts in threads?"""
        self.calls += 1
        if self.calls == 1:
            return False
        if self.choice is None:
            return self.calls % 2 == 0
        if self.calls >= self.next_check:
            return not self.choice
        return self.choice

    def record(self, threaded: bool, seconds: float) -> None:
        if self.calls == 1:
            return
        self.times[threaded].append(seconds)
        if self.choice is None:
            if min(len(t) for t in self.times.values()) < self.TRIALS:
                return
        elif threaded == self.choice:
            return
        best = statistics.median(self.times[True]) < statistics.median(self.times[False])
        if self.choice is not None:
            self.interval = min(2 * self.interval, self.LONGEST) if best == self.choice else 8
        self.choice = best
        self.next_check = self.calls + self.interval


def _start_worker() -> None:
    _worker.busy = True


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="caffelite", initializer=_start_worker)
    return _executor


def batch_parts(num: int, count: int) -> list[slice]:
    """Slices of a batch of ``num`` items (``count`` values in all) to process in parallel: one when small."""
    parts = min(WORKERS, num) if count >= PARALLEL_MIN else 1
    bounds = [num * i // parts for i in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def _shared_parts(fn: Callable, parts: Sequence) -> list:
    """``[fn(part) for part in parts]`` with the calling thread and ``WORKERS - 1`` pool threads taking the
    parts in turn: the caller computes instead of sleeping, and one hand-off wakes one thread fewer (waking a
    sleeping thread costs ~50-100 us, a good part of a batch-1 layer's gain)."""
    results = [None] * len(parts)
    order = iter(range(len(parts)))
    lock = threading.Lock()

    def take() -> None:
        while True:
            with lock:
                i = next(order, None)
            if i is None:
                return
            results[i] = fn(parts[i])

    helpers = [_pool().submit(take) for _ in range(min(WORKERS, len(parts)) - 1)]
    busy = getattr(_worker, "busy", False)
    _worker.busy = True  # parts run serially inside (as in the pool's threads)
    try:
        take()
    finally:
        _worker.busy = busy
        for h in helpers:  # wait for every helper before anything propagates: they write into results
            h.exception()
    for h in helpers:
        h.result()  # a helper's exception
    return results


def map_parts(fn: Callable, parts: Sequence, tuner: Tuner | None = None) -> list:
    """``[fn(part) for part in parts]``, in worker threads when there are several (and, with a ``tuner``,
    when its timings say threads pay); exceptions propagate."""
    if len(parts) < 2 or not _threads_allowed():
        return [fn(part) for part in parts]
    if tuner is None:
        return _shared_parts(fn, parts)
    threaded = tuner.threaded()
    start = time.perf_counter()
    results = _shared_parts(fn, parts) if threaded else [fn(part) for part in parts]
    tuner.record(threaded, time.perf_counter() - start)
    return results


def start_parts(fn: Callable, parts: Sequence) -> Callable[[], list]:
    """Start ``fn`` on every part (in worker threads when there are several) and return a function
    that waits for them and gives their results in part order: the caller works meanwhile."""
    if len(parts) < 2 or not _threads_allowed():
        results = [fn(part) for part in parts]
        return lambda: results
    futures = [_pool().submit(fn, part) for part in parts]
    return lambda: [f.result() for f in futures]


# A product of at least 2 * TILE_MIN multiply-adds is cut into up to MAX_TILES tiles of at least TILE_MIN
# (a hand-off costs ~50 us; 1M multiply-adds take ~100 us on one core), along its longer side: columns
# (positions) of early convolution layers, rows (output channels) of late ones.
TILE_MIN = 1 << 20
MAX_TILES = 4
# The weight gradient is added in row blocks of about this many bytes: one reused, cache-sized product
# instead of a weight-sized temporary.
ADD_BLOCK_BYTES = 1 << 20
THREADED_MIN = 1 << 24  # weight-gradient products of at least this many multiply-adds go to threads


def even_parts(n: int, parts: int) -> list[slice]:
    """``parts`` consecutive slices of range(n) as even as can be (empty ones dropped)."""
    bounds = [n * i // parts for i in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def tiles(m: int, k: int, n: int) -> list[tuple[slice, slice]]:
    """(rows, columns) of the output tiles of an (m, k) @ (k, n) product: a function of the shape only."""
    count = min(MAX_TILES, m * k * n // TILE_MIN, max(m, n))
    if count < 2:
        return [(slice(None), slice(None))]
    if n >= m:
        return [(slice(None), s) for s in even_parts(n, count)]
    return [(s, slice(None)) for s in even_parts(m, count)]


ELEMENTWISE_MIN = 1 << 17  # values per part of an elementwise pass (~50-100 us of NumPy on one core)


def value_parts(rows: int, per_row: int) -> list[slice]:
    """Row ranges of an elementwise pass over ``rows`` rows of ``per_row`` values (channels, or single values):
    up to MAX_TILES, at least ELEMENTWISE_MIN values each; a function of the shape only."""
    return even_parts(rows, max(1, min(MAX_TILES, rows, rows * per_row // ELEMENTWISE_MIN)))


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray, tuner: Tuner | None = None) -> None:
    """``out = a @ b``, tile by tile (:func:`tiles`), the tiles in threads when ``tuner`` says so."""
    parts = tiles(a.shape[0], a.shape[1], b.shape[1])
    with single_threaded_blas():
        map_parts(lambda t: np.matmul(a[t[0]], b[:, t[1]], out=out[t]), parts, tuner)


def add_product(out: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """``out += a @ b`` in row blocks (threads for big products), without a temporary the size of ``out``."""
    rows = max(1, ADD_BLOCK_BYTES // max(out.shape[1] * out.itemsize, 1))

    def part(s: slice) -> None:
        if s.stop - s.start <= rows:
            out[s] += a[s] @ b
            return
        tmp = np.empty((rows, out.shape[1]), out.dtype)
        for r0 in range(s.start, s.stop, rows):
            r1 = min(r0 + rows, s.stop)
            out[r0:r1] += np.matmul(a[r0:r1], b, out=tmp[:r1 - r0])
    with single_threaded_blas():
        if a.shape[0] * a.shape[1] * b.shape[1] >= THREADED_MIN:
            map_parts(part, even_parts(out.shape[0], WORKERS))
        else:
            part(slice(0, out.shape[0]))
