"""Parts of a batch in worker threads, for the layers whose time goes to NumPy passes.

NumPy releases the GIL inside its loops (and OpenBLAS calls), so a layer that splits its batch into
parts and hands them to threads uses every core for the elementwise work that one NumPy call does on
one core (measured on 2 cores: LRN on AlexNet's norm1 12.1 -> 6.6 ms, CIFAR10's pool1 35 -> 18 ms).
Results are combined in part order, so the numbers do not depend on the threads.  A blob's ``diff``
is allocated on first use: read it before handing parts to threads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

WORKERS = min(4, os.cpu_count() or 1)
PARALLEL_MIN = 1 << 18  # below this many values a batch is not split (a thread hand-off costs ~50 us)
# Convolution's image chunks (im2col + matrix product + col2im) go to threads only when the BLAS was
# told to use one thread: a multi-threaded BLAS called from several threads at once contends with them
# (measured on 2 cores, AlexNet batch 10: 616 -> 724 ms), while one-thread BLAS + chunk threads is the
# fastest setting (CIFAR10-quick batch 100: 147 ms, against 179 ms with BLAS threads alone).
CHUNK_THREADS = any(os.environ.get(v) == "1" for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"))
_executor: ThreadPoolExecutor | None = None


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
