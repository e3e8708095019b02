"""One training iteration (forward + backward + update) of the digits LeNet and CIFAR10-quick.

Each net is the project's training net with its Data layers replaced by a DummyData layer (new random
images and labels 0..9 at every forward, the same batch shape), trained by ``caffelite.SGDSolver``
with its solver's ``base_lr`` / ``momentum`` / ``weight_decay``:

- digits LeNet: examples/digits/lenet_train_test.prototxt + lenet_solver.prototxt (batch 64, 1×8×8);
- CIFAR10-quick: Caffe's examples/cifar10/cifar10_quick_train_test.prototxt + cifar10_quick_solver.prototxt
  from the corpus (batch 100, 3×32×32).

An iteration is timed inside ``solver.step(1)`` through pycaffe's callbacks: ``on_start`` (after the
parameter diffs are zeroed) and ``on_gradients_ready`` (before ``apply_update``) split it into
zeroing, forward+backward and update.  PyTorch CPU, when installed, trains the same layers with the
same weights in the same process (``torch.optim.SGD`` with momentum, the same weight decay, and a
parameter group per ``lr_mult``); the ratio is caffelite's median iteration over PyTorch's (< 1:
caffelite is faster).  The target: the update adds at most 10% to forward+backward.

Run: ``python -m benchmarks.training [iterations]`` (or ``make bench``).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np

import caffelite
from caffelite.proto import caffe_pb2
from caffelite.upgrade import read_net_param, read_solver_param

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.nets import corpus_path  # noqa: E402  (one corpus lookup for every benchmark)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
UPDATE_TARGET = 0.10  # the update may add at most 10% to forward+backward

# The digits LeNet if examples/digits/ is missing: the same structure, for 8x8 inputs.
LENET_FALLBACK = """
name: "LeNet"
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 20 kernel_size: 3 stride: 1 weight_filler { type: "xavier" }
                      bias_filler { type: "constant" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 }
  }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2" param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 50 kernel_size: 2 stride: 1 weight_filler { type: "xavier" }
                      bias_filler { type: "constant" } } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2" pooling_param { pool: MAX kernel_size: 2 stride: 2 }
  }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1" param { lr_mult: 1 } param { lr_mult: 2 }
  inner_product_param { num_output: 500 weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2" param { lr_mult: 1 } param { lr_mult: 2 }
  inner_product_param { num_output: 10 weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""
LENET_SOLVER_FALLBACK = 'base_lr: 0.01 momentum: 0.9 weight_decay: 0.0005 lr_policy: "inv" gamma: 0.0001 power: 0.75'


def dummy_data_net(net_param: caffe_pb2.NetParameter, data_shape: tuple, data_filler: dict) -> caffe_pb2.NetParameter:
    """``net_param`` with its Data layers replaced by one DummyData layer (tops data, label) in front.

    The labels are uniform in [0, 9.99): SoftmaxWithLoss reads them as the integers 0..9."""
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net_param)
    del out.layer[:]
    dummy = out.layer.add(name="data", type="DummyData", top=["data", "label"])
    dummy.dummy_data_param.shape.add(dim=list(data_shape))
    dummy.dummy_data_param.shape.add(dim=[data_shape[0]])
    dummy.dummy_data_param.data_filler.add(**data_filler)
    dummy.dummy_data_param.data_filler.add(type="uniform", min=0.0, max=9.99)
    out.layer.extend(layer for layer in net_param.layer if layer.type not in ("Data", "Input", "DummyData"))
    return out


def make_solver(net_param: caffe_pb2.NetParameter, solver_param: caffe_pb2.SolverParameter) -> caffelite.SGDSolver:
    """An SGD solver on ``net_param`` (inline) with ``solver_param``'s rate, momentum and decay; no tests,
    no snapshots, no display."""
    p = caffe_pb2.SolverParameter(type="SGD", net_param=net_param, random_seed=1701)
    for field in ("base_lr", "momentum", "weight_decay", "lr_policy", "gamma", "power", "stepsize",
                  "regularization_type"):
        if solver_param.HasField(field):
            setattr(p, field, getattr(solver_param, field))
    p.stepvalue.extend(solver_param.stepvalue)
    return caffelite.SGDSolver(p)


def digits_lenet() -> tuple[caffe_pb2.NetParameter, caffe_pb2.SolverParameter, str]:
    folder = os.path.join(ROOT, "examples", "digits")
    net_file, solver_file = (os.path.join(folder, f) for f in ("lenet_train_test.prototxt", "lenet_solver.prototxt"))
    if os.path.exists(net_file) and os.path.exists(solver_file):
        return read_net_param(net_file), read_solver_param(solver_file), "examples/digits"
    from google.protobuf import text_format

    net = text_format.Parse(LENET_FALLBACK, caffe_pb2.NetParameter())
    return net, text_format.Parse(LENET_SOLVER_FALLBACK, caffe_pb2.SolverParameter()), "inline LeNet"


def cifar10_quick() -> tuple[caffe_pb2.NetParameter, caffe_pb2.SolverParameter, str]:
    folder = "BVLC__caffe/examples/cifar10/"
    net = read_net_param(corpus_path(folder + "cifar10_quick_train_test.prototxt"))
    solver = read_solver_param(corpus_path(folder + "cifar10_quick_solver.prototxt"))
    return net, solver, "corpus"


# (name, definition, data shape, data filler)
NETS = [
    ("digits LeNet", digits_lenet, (64, 1, 8, 8), {"type": "uniform", "min": 0.0, "max": 1.0}),
    ("CIFAR10-quick", cifar10_quick, (100, 3, 32, 32), {"type": "gaussian", "std": 1.0}),
]


# --- timing ----------------------------------------------------------------------------------
def caffelite_iteration(solver: caffelite.SGDSolver):
    """A function running ``solver.step(1)`` and returning seconds (total, zeroing the diffs, forward+backward,
    update), split by pycaffe's callbacks: on_start runs after the diffs are zeroed, on_gradients_ready just
    before ``apply_update``."""
    marks: dict[str, float] = {}
    solver.add_callback(lambda: marks.__setitem__("start", time.perf_counter()),
                        lambda: marks.__setitem__("ready", time.perf_counter()))

    def one() -> tuple[float, float, float, float]:
        t0 = time.perf_counter()
        solver.step(1)
        t1 = time.perf_counter()
        return t1 - t0, marks["start"] - t0, marks["ready"] - marks["start"], t1 - marks["ready"]
    return one


def measure(fns: dict, iters: int, budget: float, rounds: int = 3, warmup: int = 2, min_iters: int = 2) -> dict:
    """Rows of each ``fns[k]()`` over about ``iters`` calls, in ``rounds`` alternating blocks so that every
    function sees the same machine load; a block stops early (after ``min_iters``) once its share of
    ``budget`` seconds is spent: a loaded machine must not stretch ``make bench`` without bound."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    rows: dict = {k: [] for k in fns}
    per_block = max(1, -(-iters // rounds))
    for _ in range(rounds):
        for k, fn in fns.items():
            start, block = time.perf_counter(), []
            while len(block) < per_block and (len(block) < min_iters or time.perf_counter() - start < budget / rounds):
                block.append(fn())
            rows[k] += block
    return rows


def medians(rows: list, names: tuple) -> dict:
    out = {name: statistics.median(col) for name, col in zip(names, zip(*rows))}
    out["n"] = len(rows)
    return out


def layer_profile(net: caffelite.Net, iters: int = 5) -> dict[str, float]:
    """Median forward+backward seconds per layer type (``caffelite time``'s view, summed by type)."""
    per_type: dict[str, list[float]] = {}
    for _ in range(iters):
        sums: dict[str, float] = {}
        for i, layer in enumerate(net.layers):
            t = time.perf_counter()
            net.forward_from_to(i, i)
            sums[layer.type] = sums.get(layer.type, 0.0) + time.perf_counter() - t
        for i in reversed(range(len(net.layers))):
            t = time.perf_counter()
            net.backward_from_to(i, i)
            sums[net.layers[i].type] += time.perf_counter() - t
        for k, v in sums.items():
            per_type.setdefault(k, []).append(v)
    return {k: statistics.median(v) for k, v in per_type.items()}


# --- PyTorch -----------------------------------------------------------------------------------
def _torch_op(layer, w: list, F):
    """The PyTorch function of one caffelite layer with parameters ``w`` (torch tensors)."""
    t = layer.type
    if t == "Convolution":
        g = layer.geom
        return lambda x: F.conv2d(x, w[0], w[1] if len(w) > 1 else None, g.stride, g.pad, g.dilation, layer.group)
    if t == "Pooling":
        p = layer.pool
        fn = {caffe_pb2.PoolingParameter.MAX: F.max_pool2d, caffe_pb2.PoolingParameter.AVE: F.avg_pool2d}[p.method]
        return lambda x: fn(x, p.kernel, p.stride, p.pad, ceil_mode=p.ceil_mode)
    if t == "ReLU":
        return F.relu
    if t == "InnerProduct":
        return lambda x: F.linear(x.flatten(1), w[0], w[1] if len(w) > 1 else None)
    if t == "SoftmaxWithLoss":  # normalization VALID without ignore_label: the batch mean
        return lambda x, y: F.cross_entropy(x, y.long())
    if t == "Split":
        return lambda x: x
    raise NotImplementedError("no PyTorch counterpart for layer type %s" % t)


def torch_trainer(solver: caffelite.SGDSolver):
    """The solver's train net as PyTorch functions with a copy of its weights, and an SGD optimizer with
    the same hyperparameters; None when torch is missing."""
    try:
        import torch
        import torch.nn.functional as F
        torch.set_flush_denormal(True)  # random weights leave denormals in its backward: 10-20x slower otherwise
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    net, p = solver.net, solver.param
    params = {name: [torch.tensor(b.data, requires_grad=True) for b in blobs] for name, blobs in net.params.items()}
    ops = []
    for name, layer in zip(net._layer_names, net.layers):
        if layer.type == "DummyData":
            continue
        op = _torch_op(layer, params.get(name, []), F)
        ops.append((op, net.bottom_names[name], net.top_names[name]))

    # one group per (lr_mult, decay_mult), as Caffe scales rate and decay per parameter
    groups: dict[tuple[float, float], list] = {}
    flat = [tp for ps in params.values() for tp in ps]
    for tp, lr, decay in zip(flat, net.params_lr, net.params_weight_decay):
        groups.setdefault((lr, decay), []).append(tp)
    opt = torch.optim.SGD([{"params": ps, "lr": p.base_lr * lr, "weight_decay": p.weight_decay * decay}
                           for (lr, decay), ps in groups.items()], lr=p.base_lr, momentum=p.momentum)
    data, label = net.blobs["data"], net.blobs["label"]

    def forward(x, y):
        blobs = {"data": x, "label": y}
        for op, bottoms, tops in ops:
            out = op(*[blobs[b] for b in bottoms])
            for top in tops:
                blobs[top] = out
        return blobs["loss"]

    x = torch.empty(data.shape)
    y = torch.empty(label.shape)
    uniform = data.data.min() >= 0  # the digits' DummyData is uniform in [0, 1), CIFAR's Gaussian

    def step() -> tuple[float, float]:
        """One iteration; returns (zero + data + forward + backward, update) seconds."""
        t0 = time.perf_counter()
        opt.zero_grad()
        x.uniform_() if uniform else x.normal_()
        y.random_(0, 10)
        forward(x, y).backward()
        t1 = time.perf_counter()
        opt.step()
        return t1 - t0, time.perf_counter() - t1

    # the architectures must agree: same weights, same batch -> same loss
    ours = float(net.forward_from_to())
    with torch.no_grad():
        theirs = forward(torch.from_numpy(data.data.copy()), torch.from_numpy(label.data.copy())).item()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, err_msg="%s: PyTorch's net differs" % net.name)
    return step


# --- the benchmark -----------------------------------------------------------------------------
def run_net(name: str, definition, data_shape: tuple, filler: dict, iters: int, budget: float) -> dict:
    net_param, solver_param, source = definition()
    solver = make_solver(dummy_data_net(net_param, data_shape, filler), solver_param)
    row = {"net": name, "source": source, "batch": data_shape[0], "iters": iters}
    fns = {"caffelite": caffelite_iteration(solver)}
    step = torch_trainer(solver)
    if step is not None:
        fns["torch"] = step
    rows = measure(fns, iters, budget)
    row["caffelite"] = medians(rows["caffelite"], ("total", "zero", "fwd_bwd", "update"))
    row["torch"] = None
    if step is not None:
        row["torch"] = medians(rows["torch"], ("fwd_bwd", "update"))
        row["torch"]["total"] = statistics.median(a + b for a, b in rows["torch"])
    row["profile"] = layer_profile(solver.net, 3)
    return row


def main(iters: int = 30, budget: float = 15.0) -> dict:
    """About ``iters`` timed iterations per net and framework, cut short after ``budget`` seconds each."""
    rows = [run_net(name, definition, shape, filler, iters, budget) for name, definition, shape, filler in NETS]
    return {"rows": rows, "cpus": os.cpu_count(), "load": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def report(result: dict) -> None:
    load = result.get("load")
    print("Training iteration (SGD with momentum: forward + backward + update), median ms; %s CPUs%s"
          % (result.get("cpus"), "" if load is None else ", load average %.1f" % load))
    print("%-14s %5s %10s %10s %8s %8s %9s %9s %7s %9s" % ("net", "batch", "caffelite", "fwd+bwd", "update",
                                                             "zero", "update %", "PyTorch", "ratio", "PT upd."))
    for r in result["rows"]:
        c, t = r["caffelite"], r["torch"]
        frac = c["update"] / c["fwd_bwd"]
        torch_cols = ("%9.2f %7.2f %9.2f" % (t["total"] * 1e3, c["total"] / t["total"], t["update"] * 1e3)
                      if t else "%9s %7s %9s" % ("-", "-", "-"))
        print("%-14s %5d %10.2f %10.2f %8.3f %8.3f %8.1f%% %s" % (r["net"], r["batch"], c["total"] * 1e3,
                                                                  c["fwd_bwd"] * 1e3, c["update"] * 1e3,
                                                                  c["zero"] * 1e3, 100 * frac, torch_cols))
    print("  update %% = caffelite apply_update / forward+backward (target <= %d%%); zero = clearing the diffs;"
          % (100 * UPDATE_TARGET))
    print("  ratio = caffelite iteration / PyTorch iteration (< 1: caffelite faster); PT upd. = optimizer.step()")
    print("  iterations timed: %s" % ", ".join("%s %d%s" % (r["net"], r["caffelite"]["n"],
                                                          " / %d" % r["torch"]["n"] if r["torch"] else "")
                                             for r in result["rows"]))
    if load is not None and result.get("cpus") and load > result["cpus"]:
        print("  WARNING: the machine is loaded (load average %.1f > %d CPUs): times are inflated, multithreaded "
              "BLAS most" % (load, result["cpus"]))
    if any(r["torch"] is None for r in result["rows"]):
        print("  PyTorch not installed: no ratios")
    for r in result["rows"]:
        prof = r["profile"]
        total = sum(prof.values()) or 1.0
        top = sorted(prof.items(), key=lambda kv: -kv[1])[:4]
        print("  %s forward+backward by layer type: %s" % (r["net"], ", ".join(
            "%s %.1f ms (%d%%)" % (k, v * 1e3, round(100 * v / total)) for k, v in top)))
    over = [r["net"] for r in result["rows"] if r["caffelite"]["update"] > UPDATE_TARGET * r["caffelite"]["fwd_bwd"]]
    print("  update within %d%% of forward+backward: %s" % (100 * UPDATE_TARGET,
                                                            "yes" if not over else "NO (" + ", ".join(over) + ")"))


if __name__ == "__main__":
    report(main(int(sys.argv[1]) if len(sys.argv) > 1 else 30))
