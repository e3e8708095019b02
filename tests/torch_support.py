"""Shared by the torch tests: skip without torch, the devices to run on, and the golden-case runner."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install caffelite[torch]); "
                                            "the PyTorch engine tests need it")

from caffelite.torch import CaffeNet  # noqa: E402
from tests.golden_runner import in_case_folder  # noqa: E402

CUDA = torch.cuda.is_available()
# CPU always; CUDA under the ``cuda`` marker (pytest -m cuda), skipped with the reason where there is no GPU.
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
    not CUDA, reason="no CUDA device: torch.cuda.is_available() is False")])]


@pytest.fixture(autouse=False)
def torch_one_thread():
    """One torch thread while a test runs: these tests check numbers, and torch's OpenMP threads spin-wait
    badly when the CPUs are shared (ResNet-50's forward: 0.3 s on one thread, 2.5 s on two under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def use_device(device: str) -> torch.device:
    """The device, with TF32 off: Caffe's float32 numbers, not TensorFloat-32 ones."""
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return torch.device(device)


def close(ref: np.ndarray, got, rtol: float) -> str | None:
    """|got - ref| <= rtol·|ref| + rtol·max(1, max|ref|), elementwise; a message when not."""
    got = np.asarray(got, dtype=np.float64)
    if got.shape != ref.shape and got.size == ref.size == 1:
        got = got.reshape(ref.shape)
    if got.shape != ref.shape:
        return "shape %s, expected %s" % (got.shape, ref.shape)
    scale = max(1.0, float(np.max(np.abs(ref))) if ref.size else 1.0)
    if not np.allclose(got, ref, rtol=rtol, atol=rtol * scale, equal_nan=True):
        return "max abs err %.3g (scale %.3g, rtol %g)" % (float(np.max(np.abs(got - ref))), scale, rtol)
    return None


def numpy_of(t) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def run_torch_case(folder: str, device: str = "cpu", fwd_rtol: float = 1e-5, bwd_rtol: float = 1e-4) -> list[str]:
    """Every mismatch between CaffeNet and Caffe's recorded numbers for one golden case."""
    dev = use_device(device)
    with open(os.path.join(folder, "case.json")) as f:
        meta = json.load(f)
    with np.load(os.path.join(folder, "arrays.npz")) as z:
        ref = dict(z)
    got = {}
    with in_case_folder(folder):
        weights = os.path.join(folder, "weights.caffemodel")
        phase = 0 if meta["phase"] == "TRAIN" else 1
        module = CaffeNet(os.path.join(folder, "net.prototxt"), weights if os.path.exists(weights) else None,
                          phase).to(dev)
        need = module.net.blob_need_backward
        inputs = {k[3:]: torch.tensor(v, device=dev, requires_grad=bool(need.get(k[3:])))
                  for k, v in ref.items() if k.startswith("in/")}
        names = [k[4:] for k in ref if k.startswith("fwd/")]
        for i in range(meta.get("forwards", 1) - 1):
            trace = module.trace(**inputs)
            got.update({"fwd%d/%s" % (i, n): numpy_of(trace.data[n]) for n in names if n in trace.data})
        trace = module.trace(**inputs)
        got.update({"fwd/" + n: numpy_of(trace.data[n]) for n in names if n in trace.data})
        if meta.get("backward", True):
            got.update(_backward(module, trace, ref, names, dev))
        for name, p, _ in module.named_caffe_params():
            got["param/%s/data" % name] = numpy_of(p)
        _alias_shared_params(module, got)
    bad = []
    for k, r in ref.items():
        if k.startswith(("in/", "topdiff/")):
            continue
        if k not in got:
            bad.append("%s: missing" % k)
            continue
        err = close(r, got[k], fwd_rtol if k.startswith("fwd") or k.endswith("/data") else bwd_rtol)
        if err:
            bad.append("%s: %s" % (k, err))
    return bad


def _backward(module, trace, ref, names, dev) -> dict:
    """Caffe's backward from the recorded top diffs (and the loss weights of the other loss tops)."""
    seeds = {k[8:]: torch.tensor(v, device=dev) for k, v in ref.items() if k.startswith("topdiff/")}
    total = None
    for name, t in trace.data.items():
        if name in seeds:
            term = (t * seeds[name]).sum()
        elif name in module.loss_weights:  # every loss top, outputs and anonymous (automatic) ones alike
            term = t.sum() * module.loss_weights[name]
        else:
            continue
        if t.requires_grad:
            total = term if total is None else total + term
    wrt = [(("bwd/" + n), trace.source[n]) for n in names if n in trace.source and trace.source[n].requires_grad]
    params = [(("param/%s/diff" % n), p) for n, p, _ in module.named_caffe_params() if p.requires_grad]
    got = {}
    grads = torch.autograd.grad(total, [t for _, t in wrt + params], allow_unused=True) if total is not None else []
    for (key, t), g in zip(wrt + params, grads):
        got[key] = np.zeros(tuple(t.shape)) if g is None else numpy_of(g)
    for n in names:  # blobs outside the graph keep the diff Caffe leaves: the seed, the loss weight, or 0
        if "bwd/" + n not in got and n in trace.data:
            seed = seeds.get(n)
            if seed is not None:
                got["bwd/" + n] = numpy_of(seed)
            else:
                got["bwd/" + n] = np.full(tuple(trace.data[n].shape), module.loss_weights.get(n, 0.0))
    for n, p, _ in module.named_caffe_params():
        got.setdefault("param/%s/diff" % n, np.zeros(tuple(p.shape)))
    return got


def _alias_shared_params(module, got: dict) -> None:
    """Caffe lists a shared parameter under every layer that uses it; the module registers it once."""
    from caffelite.torch import param_name
    from caffelite.torch._caffelite import layer_names, net_wiring

    _, learnable = net_wiring(module.net)
    names = layer_names(module.net)
    owners = [n for n, _, _ in module.named_caffe_params()]
    for (lid, pid), k in learnable.items():
        alias = param_name(names[lid], pid)
        for what in ("data", "diff"):
            src = "param/%s/%s" % (owners[k], what)
            if src in got:
                shape = module.net.layers[lid].blobs[pid].shape
                got.setdefault("param/%s/%s" % (alias, what), got[src].reshape(shape))
