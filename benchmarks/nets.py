"""Forward + backward time per iteration of real Caffe nets, against PyTorch CPU on the same architecture.

Each net comes from the corpus (Caffe's own LeNet, CIFAR10-quick and AlexNet definitions), is built in
TRAIN phase with the batch size the issue names and a loss on its output (see :func:`build`), and runs
a training iteration: clear the parameter gradients, forward, backward.  PyTorch, when installed, runs
the same layers with the same weights in the same process; the ratio is caffelite's median time over
PyTorch's (< 1: caffelite is faster), from alternating blocks of iterations (see :func:`run`).  Also
reported: peak traced memory of one build + iteration, and the time to build ResNet-152 from its
prototxt.

Run: ``python -m benchmarks.nets`` (or ``make bench``); ``python -m benchmarks.nets --profile [NET...]``
prints caffelite's time per layer.  Both libraries use their default thread counts (caffelite runs
its convolutions' image chunks in threads over a one-thread BLAS: see caffelite/compute/parallel.py).
"""

from __future__ import annotations

import os
import statistics
import time
import tracemalloc

import numpy as np

import caffelite
from caffelite.upgrade import read_net_param

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS_DIRS = [os.path.join(HERE, "..", "tests", "corpus"), os.path.join(HERE, "..", "..", "shared", "corpus")]

# (name, corpus file, batch size, target ratio from the issue)
NETS = [
    ("LeNet", "BVLC__caffe/examples/mnist/lenet.prototxt", 64, 0.7),
    ("CIFAR10-quick", "BVLC__caffe/examples/cifar10/cifar10_quick.prototxt", 100, 1.5),
    ("AlexNet", "BVLC__caffe/models/bvlc_alexnet/deploy.prototxt", 10, 0.6),
]
RESNET152 = "KaimingHe__deep-residual-networks/prototxt/ResNet-152-deploy.prototxt"


def corpus_path(rel: str) -> str:
    for d in CORPUS_DIRS:
        p = os.path.join(d, rel)
        if os.path.exists(p):
            return os.path.normpath(p)
    raise FileNotFoundError("corpus file %s not found in %s" % (rel, CORPUS_DIRS))


def build(rel: str, batch: int) -> caffelite.Net:
    """The corpus net in TRAIN phase, Input batch set to ``batch``, and a loss on each output.

    The loss is :math:`\\tfrac12 \\sum y^2` (a Reduction SUMSQ layer with coefficient 0.5), so backward
    runs as in training: parameter gradients everywhere, no gradient for the input data.
    """
    param = read_net_param(corpus_path(rel))
    tops, bottoms = [], set()
    for layer in param.layer:
        if layer.type == "Input":
            for shape in layer.input_param.shape:
                shape.dim[0] = batch
        bottoms.update(layer.bottom)
        tops.extend(t for t in layer.top if t not in tops)
    for out in [t for t in tops if t not in bottoms]:
        loss = param.layer.add(name="bench_loss_" + out, type="Reduction", bottom=[out], top=["bench_loss_" + out])
        loss.reduction_param.operation = caffelite.proto.caffe_pb2.ReductionParameter.SUMSQ
        loss.reduction_param.coeff = 0.5
        loss.loss_weight.append(1.0)
    return caffelite.Net(param, caffelite.TRAIN)


def caffelite_step(net: caffelite.Net, rng: np.random.Generator):
    for name in net.inputs:
        net.blobs[name].data[...] = rng.standard_normal(net.blobs[name].shape)

    def step():
        net.clear_param_diffs()
        net.forward()
        net.backward()
    return step


def _torch_op(layer, w, F):
    """A PyTorch function computing ``layer`` with the parameter tensors ``w`` (None: not supported)."""
    t, lp = layer.layer_type(), layer.layer_param
    bias = w[1] if len(w) > 1 else None
    P = caffelite.proto.caffe_pb2.PoolingParameter
    if t == "Split":
        return lambda x: x
    if t == "Convolution":
        g = layer.geom
        return lambda x: F.conv2d(x, w[0], bias, g.stride, g.pad, g.dilation, layer.group)
    if t == "Pooling" and layer.pool.method in (P.MAX, P.AVE):
        p = layer.pool
        fn = F.max_pool2d if p.method == P.MAX else F.avg_pool2d
        return lambda x: fn(x, p.kernel, p.stride, p.pad, ceil_mode=p.ceil_mode)
    if t == "ReLU":
        return F.relu
    if t == "LRN" and layer.across:
        return lambda x: F.local_response_norm(x, layer.size, layer.alpha, layer.beta, layer.k)
    if t == "InnerProduct":
        return lambda x: F.linear(x.flatten(1), w[0], bias)
    if t == "Dropout":
        return lambda x: F.dropout(x, lp.dropout_param.dropout_ratio, training=True)
    if t == "Softmax":
        return lambda x: F.softmax(x, 1)
    if t == "Reduction":
        return lambda x: lp.reduction_param.coeff * (x * x).sum()
    return None


def torch_step(net: caffelite.Net, rng: np.random.Generator):
    """The same layers in PyTorch (functional, same weights); None when torch or a layer type is missing."""
    try:
        import torch
        import torch.nn.functional as F
        torch.set_flush_denormal(True)  # random weights leave denormals in its backward: 10-20x slower otherwise
    except ImportError:
        return None
    params = {name: [torch.tensor(b.data, requires_grad=True) for b in blobs] for name, blobs in net.params.items()}
    ops = []
    for name, layer in zip(net._layer_names, net.layers):
        if layer.layer_type() == "Input":
            continue
        op = _torch_op(layer, params.get(name, []), F)
        if op is None:
            return None
        ops.append((op, net.bottom_names[name], net.top_names[name]))
    inputs = {n: torch.tensor(net.blobs[n].data) for n in net.inputs}
    flat = [p for ps in params.values() for p in ps]

    def step():
        for p in flat:
            p.grad = None
        blobs = dict(inputs)
        for op, bottoms, tops in ops:
            if op is None:
                continue
            out = op(*[blobs[b] for b in bottoms])
            for top in tops:
                blobs[top] = out
        sum(blobs[n] for n in net.outputs).backward()

    with torch.no_grad():  # the architectures must agree
        blobs = dict(inputs)
        for op, bottoms, tops in ops:
            if op is not None:
                out = op(*[blobs[b] for b in bottoms])
                for top in tops:
                    blobs[top] = out
        for n in blobs:
            if tuple(blobs[n].shape) != net.blobs[n].shape:
                raise AssertionError("torch blob %s has shape %s, caffelite %s"
                                     % (n, tuple(blobs[n].shape), net.blobs[n].shape))
    return step


def profile(name: str, iters: int = 5) -> list[tuple[str, str, float, float]]:
    """Per layer of net ``name``: (layer, type, forward ms, backward ms), the minimum over ``iters`` runs."""
    _, rel, batch, _ = next(n for n in NETS if n[0] == name)
    net = build(rel, batch)
    caffelite_step(net, np.random.default_rng(0))()
    rows = []
    for lname, layer in zip(net._layer_names, net.layers):
        fwd, bwd = [], []
        for _ in range(iters):
            t0 = time.perf_counter()
            net.forward(start=lname, end=lname)
            t1 = time.perf_counter()
            net.backward(start=lname, end=lname)
            bwd.append(time.perf_counter() - t1)
            fwd.append(t1 - t0)
        rows.append((lname, layer.layer_type(), min(fwd) * 1e3, min(bwd) * 1e3))
    return rows


def peak_memory(rel: str, batch: int) -> float:
    """MiB: peak traced allocation of building the net and one iteration, in a fresh process (the
    layers keep scratch buffers between iterations, which an earlier run here would already hold)."""
    import subprocess
    import sys

    code = "from benchmarks.nets import _peak_memory_here; print(_peak_memory_here(%r, %d))" % (rel, batch)
    out = subprocess.run([sys.executable, "-c", code], cwd=os.path.join(HERE, ".."), capture_output=True,
                         text=True, check=True)
    return float(out.stdout.split()[-1])


def _peak_memory_here(rel: str, batch: int) -> float:
    tracemalloc.start()
    net = build(rel, batch)
    caffelite_step(net, np.random.default_rng(0))()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def resnet152_build_time(repeats: int = 3) -> float | None:
    try:
        path = corpus_path(RESNET152)
    except FileNotFoundError:
        return None
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        caffelite.Net(path, caffelite.TEST)
        times.append(time.perf_counter() - t0)
    return min(times)


def _timed(step) -> float:
    t0 = time.perf_counter()
    step()
    return time.perf_counter() - t0


def _block(step, n: int) -> list[float]:
    step()  # after the other library ran: its idle threads may still spin
    return [_timed(step) for _ in range(n)]


def run(iters: int = 10, rounds: int = 3) -> list[dict]:
    """Per net: median time of each library and their ratio.

    The libraries run in alternating blocks of iterations (``rounds`` blocks each, ``iters`` timed
    iterations in all), so a change of machine load affects both alike; the first iteration of each
    block is not timed (PyTorch's OpenMP threads keep spinning for a while after its calls).
    """
    rows = []
    per_block = max(1, iters // rounds)
    for name, rel, batch, target in NETS:
        rng = np.random.default_rng(1701)
        net = build(rel, batch)
        ours = caffelite_step(net, rng)
        theirs = torch_step(net, rng)
        ours_t, theirs_t = [], []
        for _ in range(rounds):
            ours_t += _block(ours, per_block)
            if theirs:
                theirs_t += _block(theirs, per_block)
        a = statistics.median(ours_t)
        b = statistics.median(theirs_t) if theirs else None
        rows.append({"net": name, "batch": batch, "caffelite_ms": a * 1e3, "torch_ms": b * 1e3 if b else None,
                     "ratio": a / b if b else None, "target": target, "peak_mib": peak_memory(rel, batch)})
    return rows


def main(argv: list[str] | None = None) -> None:
    import sys
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--profile":
        for name in argv[1:] or [n[0] for n in NETS]:
            print("%s (ms, min of 5)" % name)
            rows = profile(name)
            for lname, t, f, b in rows:
                print("  %-22s %-14s fwd %8.2f  bwd %8.2f" % (lname, t, f, b))
            print("  %-37s fwd %8.2f  bwd %8.2f" % ("total", sum(r[2] for r in rows), sum(r[3] for r in rows)))
        return
    rows = run()
    print("%-14s %5s %14s %10s %7s %7s %10s" % ("net", "batch", "caffelite ms", "torch ms", "ratio", "target",
                                                "peak MiB"))
    for r in rows:
        torch_ms = "%10.1f" % r["torch_ms"] if r["torch_ms"] else "%10s" % "-"
        ratio = "%7.2f" % r["ratio"] if r["ratio"] else "%7s" % "-"
        print("%-14s %5d %14.1f %s %s %7.2f %10.1f" % (r["net"], r["batch"], r["caffelite_ms"], torch_ms, ratio,
                                                    r["target"], r["peak_mib"]))
    try:
        t = resnet152_build_time()
        print("ResNet-152 build (TEST, from prototxt): %s" % ("%.3f s" % t if t is not None else "corpus file missing"))
    except Exception as e:  # noqa: BLE001 - report, do not abort the table
        print("ResNet-152 build: failed: %s: %s" % (type(e).__name__, e))


if __name__ == "__main__":
    main()
