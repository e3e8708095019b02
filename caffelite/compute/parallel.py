"""Parts of a batch in worker threads, for the layers whose time goes to NumPy passes.

NumPy releases the GIL inside its loops (and OpenBLAS calls), so a layer that splits its batch into
parts and hands them to threads uses every core for the elementwise work that one NumPy call does on
one core (measurements: benchmarks/README.md).
Results are combined in part order, so the numbers do not depend on the threads.  A blob's ``diff``
is allocated on first use: read it before handing parts to threads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np  # loaded before _blas_threads looks for NumPy's BLAS

WORKERS = min(4, os.cpu_count() or 1)
PARALLEL_MIN = 1 << 18  # below this many values a batch is not split (a thread hand-off costs ~50 us)
# Convolution's image chunks (im2col + matrix product + col2im) and big InnerProduct products go to
# threads with a one-thread BLAS: a multi-threaded BLAS called from several threads at once contends
# with them, while one-thread BLAS + chunk threads is the fastest setting (benchmarks/README.md).
# When the environment already asks for one BLAS thread (CHUNK_THREADS), nothing is switched; otherwise
# single_threaded_blas switches the BLAS to one thread for the duration.
CHUNK_THREADS = any(os.environ.get(v) == "1" for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"))
_executor: ThreadPoolExecutor | None = None


def _blas_threads():
    """(get, set) of the thread count of the BLAS that NumPy loaded (OpenBLAS, MKL, BLIS), through
    threadpoolctl (the optional extra ``caffelite[threads]``); None without threadpoolctl or without a
    BLAS it knows: then nothing is switched and convolution and InnerProduct run in the BLAS's own
    threads.  The controllers are found once; a switch is then one call into the library."""
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


@contextmanager
def single_threaded_blas() -> Iterator[bool]:
    """For the duration, the BLAS runs one thread per call, so that chunks of work in threads do not
    contend with its threads; yields whether
    parts may go to threads (False when the BLAS thread count could not be set).  Call it from one
    thread only, not while another thread is in a BLAS call."""
    if CHUNK_THREADS or WORKERS < 2:
        yield CHUNK_THREADS and WORKERS >= 2
        return
    if _BLAS is None:
        yield False
        return
    get, set_ = _BLAS
    n = get()
    if n > 1:
        set_(1)
    try:
        yield True
    finally:
        if n > 1:
            set_(n)


def batch_parts(num: int, count: int) -> list[slice]:
    """Slices of a batch of ``num`` items (``count`` values in all) to process in parallel: one when small."""
    parts = min(WORKERS, num) if count >= PARALLEL_MIN else 1
    bounds = [num * i // parts for i in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def map_parts(fn: Callable, parts: Sequence) -> list:
    """``[fn(part) for part in parts]``, in worker threads when there are several; exceptions propagate."""
    global _executor
    if len(parts) < 2 or WORKERS < 2:
        return [fn(part) for part in parts]
    if _executor is None:
        _executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="caffelite")
    return list(_executor.map(fn, parts))


def start_parts(fn: Callable, parts: Sequence) -> Callable[[], list]:
    """Start ``fn`` on every part (in worker threads when there are several) and return a function
    that waits for them and gives their results in part order: the caller works meanwhile."""
    global _executor
    if len(parts) < 2 or WORKERS < 2:
        results = [fn(part) for part in parts]
        return lambda: results
    if _executor is None:
        _executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="caffelite")
    futures = [_executor.submit(fn, part) for part in parts]
    return lambda: [f.result() for f in futures]


# Products run with a one-thread BLAS: OpenBLAS's idle threads spin for a while after each multi-threaded
# call and slow down the other layers' threads (benchmarks/README.md).  Those of at least THREADED_MIN
# multiply-adds are split over our threads by output columns (or rows) instead (below, the hand-off costs
# more: CIFAR10's ip1).  Every output value is the
# same dot product as in one call (OpenBLAS may pick another kernel for a part: float32 round-off).
THREADED_MIN = 1 << 24
# The weight gradient is added in row blocks of about this many bytes: one reused, cache-sized product
# instead of a weight-sized temporary.
ADD_BLOCK_BYTES = 1 << 20


def _split(n: int) -> list[slice]:
    bounds = [n * i // WORKERS for i in range(WORKERS + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out = a @ b``; big products in threads, by blocks of columns."""
    with single_threaded_blas() as threads:
        if threads and a.shape[0] * a.shape[1] * b.shape[1] >= THREADED_MIN:
            map_parts(lambda s: np.matmul(a, b[:, s], out=out[:, s]), _split(b.shape[1]))
        else:
            np.matmul(a, b, out=out)


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
    with single_threaded_blas() as threads:
        if threads and a.shape[0] * a.shape[1] * b.shape[1] >= THREADED_MIN:
            map_parts(part, _split(out.shape[0]))
        else:
            part(slice(0, out.shape[0]))
