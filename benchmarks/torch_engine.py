"""``--engine torch`` on the CPU: the bridge's overhead over a hand-written PyTorch model of the same net.

Two workloads, three ways each, in one process, alternating blocks of iterations (``measure`` from
benchmarks/training.py, so a change of machine load hits all alike):

- CIFAR10-quick, one training iteration at batch 100 (Caffe's cifar10_quick_train_test.prototxt from the
  corpus, its Data layers replaced by DummyData, its solver's SGD settings): the NumPy engine
  (``caffelite.SGDSolver.step(1)``), the torch engine (the same solver as ``caffelite train --engine
  torch`` runs it: ``caffelite.torch.train.create_solver(...).step(1)``) and a hand-written
  ``nn.Module`` with ``torch.optim.SGD`` (momentum, weight decay, a group per ``lr_mult``);
- ResNet-50 inference at batch 1 (KaimingHe's ResNet-50-deploy.prototxt): ``caffelite.Net.forward``,
  ``caffelite.torch.CaffeNet`` under ``torch.no_grad`` and a hand-written ResNet-50 (BatchNorm + Scale
  as one ``nn.BatchNorm2d`` in eval mode, Caffe's ceil-mode max pooling, stride on the 1×1 ``branch2a``).

Reported: median ms per iteration and ``bridge`` = torch engine / hand-written model (the issue's target:
at most 1.2).  Run: ``python -m benchmarks.torch_engine [iterations]`` (or ``make bench``); no timed
assertion anywhere.
"""

from __future__ import annotations

import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import caffelite  # noqa: E402
from benchmarks.nets import corpus_path  # noqa: E402
from benchmarks.training import cifar10_quick, dummy_data_net, make_solver, measure  # noqa: E402

BRIDGE_TARGET = 1.2
RESNET50 = "KaimingHe__deep-residual-networks/prototxt/ResNet-50-deploy.prototxt"


def _timed(fn):
    import time

    def one():
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0,)
    return one


# --- CIFAR10-quick training ------------------------------------------------------------------------
def cifar_quick_module(torch):
    """Caffe's CIFAR10-quick by hand: conv5-maxpool3/2-relu, conv5-relu-avepool3/2 (x2), ip64, ip10."""
    nn = torch.nn

    class CifarQuick(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2, self.conv3 = (nn.Conv2d(3, 32, 5, padding=2), nn.Conv2d(32, 32, 5, padding=2),
                                                  nn.Conv2d(32, 64, 5, padding=2))
            self.ip1, self.ip2 = nn.Linear(64 * 4 * 4, 64), nn.Linear(64, 10)

        def forward(self, x):
            F = torch.nn.functional
            x = F.relu(F.max_pool2d(self.conv1(x), 3, 2, ceil_mode=True))
            x = F.avg_pool2d(F.relu(self.conv2(x)), 3, 2, ceil_mode=True)
            x = F.avg_pool2d(F.relu(self.conv3(x)), 3, 2, ceil_mode=True)
            return self.ip2(self.ip1(x.flatten(1)))
    return CifarQuick()


def cifar_training(iters: int, budget: float) -> dict:
    import torch

    from caffelite.torch.train import create_solver

    net_param, solver_param, _ = cifar10_quick()
    dummy = dummy_data_net(net_param, (100, 3, 32, 32), {"type": "gaussian", "std": 1.0})
    numpy_solver = make_solver(dummy, solver_param)
    torch_solver = create_solver(numpy_solver.param, None, "cpu")
    model = cifar_quick_module(torch)
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    p = numpy_solver.param
    opt = torch.optim.SGD([{"params": weights}, {"params": biases, "lr": 2 * p.base_lr}], lr=p.base_lr,
                          momentum=p.momentum, weight_decay=p.weight_decay)

    def handwritten():
        x, y = torch.randn(100, 3, 32, 32), torch.randint(0, 10, (100,))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    fns = {"numpy": _timed(lambda: numpy_solver.step(1)), "torch engine": _timed(lambda: torch_solver.step(1)),
           "hand-written": _timed(handwritten)}
    return {k: statistics.median(r[0] for r in rows) for k, rows in measure(fns, iters, budget).items()}


# --- ResNet-50 inference -----------------------------------------------------------------------------
def resnet50_module(torch):
    """ResNet-50 as KaimingHe's Caffe model: bottlenecks (3, 4, 6, 3), stride on branch2a, no conv biases
    but conv1's, BatchNorm + Scale as an affine BatchNorm2d in eval mode."""
    nn = torch.nn

    class Bottleneck(nn.Module):
        def __init__(self, cin, mid, stride, project):
            super().__init__()
            self.a = nn.Sequential(nn.Conv2d(cin, mid, 1, stride, bias=False), nn.BatchNorm2d(mid), nn.ReLU())
            self.b = nn.Sequential(nn.Conv2d(mid, mid, 3, 1, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU())
            self.c = nn.Sequential(nn.Conv2d(mid, mid * 4, 1, bias=False), nn.BatchNorm2d(mid * 4))
            self.project = (nn.Sequential(nn.Conv2d(cin, mid * 4, 1, stride, bias=False), nn.BatchNorm2d(mid * 4))
                            if project else None)

        def forward(self, x):
            short = self.project(x) if self.project is not None else x
            return torch.relu(self.c(self.b(self.a(x))) + short)

    layers = [nn.Conv2d(3, 64, 7, 2, 3), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True)]
    cin = 64
    for i, (mid, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3))):
        for j in range(blocks):
            layers.append(Bottleneck(cin, mid, 2 if (j == 0 and i > 0) else 1, j == 0))
            cin = mid * 4
    layers += [nn.AvgPool2d(7, 1), nn.Flatten(), nn.Linear(2048, 1000), nn.Softmax(1)]
    return nn.Sequential(*layers).eval()


def resnet50_inference(iters: int, budget: float) -> dict:
    import torch

    from caffelite.torch import CaffeNet

    path = corpus_path(RESNET50)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    net = caffelite.Net(path, caffelite.TEST)
    module = CaffeNet(net)
    model = resnet50_module(torch)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        assert tuple(model(xt).shape) == tuple(module(data=xt)["prob"].shape) == (1, 1000)  # same architecture

    def numpy_forward():
        net.blobs["data"].data[...] = x
        net.forward()

    def engine():
        with torch.no_grad():
            module(data=xt)

    def handwritten():
        with torch.no_grad():
            model(xt)

    fns = {"numpy": _timed(numpy_forward), "torch engine": _timed(engine), "hand-written": _timed(handwritten)}
    return {k: statistics.median(r[0] for r in rows) for k, rows in measure(fns, iters, budget).items()}


def main(iters: int = 10, budget: float = 20.0) -> dict:
    try:
        import torch  # noqa: F401
    except ImportError:
        return {"rows": None}
    return {"rows": [("CIFAR10-quick training iteration, batch 100", cifar_training(iters, budget)),
                     ("ResNet-50 inference, batch 1", resnet50_inference(iters, budget))],
            "threads": __import__("torch").get_num_threads()}


def report(result: dict) -> None:
    if not result["rows"]:
        print("--engine torch: PyTorch not installed (pip install caffelite[torch]); skipped")
        return
    print("--engine torch on the CPU (%d torch threads), median ms" % result["threads"])
    print("%-46s %10s %13s %13s %8s %8s" % ("workload", "NumPy", "torch engine", "hand-written", "bridge",
                                            "NumPy/te"))
    for name, r in result["rows"]:
        bridge = r["torch engine"] / r["hand-written"]
        print("%-46s %10.1f %13.1f %13.1f %8.2f %8.2f" % (name, r["numpy"] * 1e3, r["torch engine"] * 1e3,
                                                          r["hand-written"] * 1e3, bridge,
                                                          r["numpy"] / r["torch engine"]))
    print("  bridge = torch engine / hand-written PyTorch model (target <= %.1f); NumPy/te = NumPy engine / "
          "torch engine" % BRIDGE_TARGET)


if __name__ == "__main__":
    report(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10))
