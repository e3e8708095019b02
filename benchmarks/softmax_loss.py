"""SoftmaxWithLoss forward+backward in the FCN configuration, against PyTorch in the same process.

Scores 1×21×500×500, labels 1×1×500×500 with ignore_label 255 (about 10% of pixels) and
``normalize: false``.  Reports the median time, its ratio to PyTorch's
``F.cross_entropy(..., ignore_index=255, reduction="sum")`` forward+backward, and the peak memory
the net allocates beyond the score blob (prob, bottom diff, temporaries).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import tracemalloc

import numpy as np

import caffelite

NET = """
force_backward: true
layer { name: "score" type: "Input" top: "score" input_param { shape { dim: 1 dim: 21 dim: 500 dim: 500 } } }
layer { name: "label" type: "Input" top: "label" input_param { shape { dim: 1 dim: 1 dim: 500 dim: 500 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss"
        loss_param { ignore_label: 255 normalize: false } }
"""


def median_time(fn, repeat: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(repeat: int = 15) -> dict:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(1, 21, 500, 500)).astype(np.float32)
    labels = rng.integers(0, 21, size=(1, 1, 500, 500)).astype(np.float32)
    labels[rng.random(labels.shape) < 0.1] = 255
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
        f.write(NET)
    try:
        net = caffelite.Net(f.name, caffelite.TRAIN)
    finally:
        os.unlink(f.name)
    net.blobs["score"].data[...] = scores
    net.blobs["label"].data[...] = labels
    _ = net.blobs["score"].diff  # allocate the bottom diff up front: it is counted separately below

    def step():
        net.forward()
        net.backward()

    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    step()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    score_bytes = scores.nbytes
    # prob and the bottom diff live between steps; count them with the step's temporaries
    resident = net.blobs["score"].diff.nbytes + net.layers[-1].prob.data.nbytes
    result = {"caffelite_ms": median_time(step, repeat) * 1e3, "memory_x_score": (peak + resident) / score_bytes}
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        result["torch_ms"] = None
    else:
        torch.set_num_threads(os.cpu_count() or 1)
        x = torch.from_numpy(scores.copy()).requires_grad_(True)
        y = torch.from_numpy(labels[:, 0].astype(np.int64))

        def torch_step():
            x.grad = None
            F.cross_entropy(x, y, ignore_index=255, reduction="sum").backward()

        # alternate blocks of both, so a change of machine load hits both alike
        ours_times, torch_times = [], []
        for _ in range(3):
            ours_times.append(median_time(step, repeat))
            torch_times.append(median_time(torch_step, repeat))
        result["caffelite_ms"] = statistics.median(ours_times) * 1e3
        result["torch_ms"] = statistics.median(torch_times) * 1e3
        # same numbers, or the comparison is meaningless
        loss = F.cross_entropy(x, y, ignore_index=255, reduction="sum").item()
        np.testing.assert_allclose(float(net.blobs["loss"].data), loss, rtol=1e-4)
    return result


def report(result: dict) -> None:
    print("SoftmaxWithLoss 1x21x500x500, ignore_label 255, normalize false (forward+backward)")
    print("  caffelite   %8.1f ms" % result["caffelite_ms"])
    if result.get("torch_ms"):
        print("  PyTorch     %8.1f ms   ratio caffelite/PyTorch = %.2f (target <= 1.0)"
              % (result["torch_ms"], result["caffelite_ms"] / result["torch_ms"]))
    else:
        print("  PyTorch     not installed: no ratio")
    print("  memory beyond the score blob: %.2fx the score blob (target <= 3x)" % result["memory_x_score"])


if __name__ == "__main__":
    report(main(int(sys.argv[1]) if len(sys.argv) > 1 else 15))
