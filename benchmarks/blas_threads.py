"""The BLAS thread switch: caffelite's threaded paths with threadpoolctl against the fallback without it.

With threadpoolctl (``caffelite[threads]``) convolution's image chunks and big InnerProduct products
run in worker threads over a one-thread BLAS; without it nothing is switched and they run in one call
in the BLAS's own threads.  Reports both medians of a CIFAR10-quick-sized convolution + InnerProduct
forward+backward (same process, alternating), and the cost of one switch of the thread count.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

import caffelite.compute.parallel as parallel
from caffelite.blob import Blob
from caffelite.proto import caffe_pb2
from caffelite.testing import make_layer

SPECS = ['type: "Convolution" convolution_param { num_output: 32 kernel_size: 5 pad: 2 '
         'weight_filler { type: "gaussian" std: 0.01 } }',
         'type: "InnerProduct" inner_product_param { num_output: 512 weight_filler { type: "gaussian" std: 0.01 } }']


def _step_fn(spec: str, shape) -> callable:
    layer = make_layer(spec, caffe_pb2.TRAIN)
    bottom, top = [Blob(data=np.random.default_rng(0).normal(size=shape).astype(np.float32))], [Blob()]
    layer.run_setup(bottom, top)

    def step():
        layer.run_forward(bottom, top)
        top[0].diff[...] = 1.0
        layer.run_backward(top, [True], bottom)
    return step


def main(repeat: int = 7) -> dict:
    steps = [_step_fn(SPECS[0], (100, 32, 32, 32)), _step_fn(SPECS[1], (100, 64 * 16 * 16))]
    saved, times = parallel._BLAS, {"threadpoolctl": [], "fallback": []}
    try:
        for _ in range(repeat):
            for name, blas in (("threadpoolctl", saved), ("fallback", None)):
                parallel._BLAS = blas
                t = time.perf_counter()
                for step in steps:
                    step()
                times[name].append(time.perf_counter() - t)
    finally:
        parallel._BLAS = saved
    result = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
    result["switch_us"] = None
    if saved is not None:
        get, set_ = saved
        n = get()
        t = time.perf_counter()
        for _ in range(10000):
            set_(1)
            set_(n)
        result["switch_us"] = (time.perf_counter() - t) / 10000 * 1e6
    result["available"] = saved is not None
    return result


def report(result: dict) -> None:
    print("BLAS thread switch (convolution + InnerProduct forward+backward, CIFAR10-quick sizes)")
    if not result["available"]:
        print("  threadpoolctl not installed (or no BLAS it knows): both runs use the fallback")
    print("  with threadpoolctl  %8.1f ms" % result["threadpoolctl"])
    print("  fallback            %8.1f ms   ratio fallback/threadpoolctl = %.2f"
          % (result["fallback"], result["fallback"] / result["threadpoolctl"]))
    if result["switch_us"] is not None:
        print("  one switch to 1 thread and back: %.2f us" % result["switch_us"])


if __name__ == "__main__":
    report(main())
