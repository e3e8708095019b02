"""Whole nets on caffelite.torch.CaffeNet against caffelite's own Net, random He-scaled weights.

- Forward: every corpus net BVLC Caffe could build (tests/corpus/caffe_shapes.json; all deploy nets
  with Input layers) at batch 1: every blob within 1e-4 of caffelite's.
- Backward: LeNet (TRAIN), CIFAR10-full with BatchNorm (TRAIN: batch statistics, moving averages),
  GoogLeNet (its three losses) and ResNet-50 at batch 2 or 1, data layers turned into inputs:
  every parameter's diff and every blob's diff within 1e-4 (GoogLeNet: see the near-ties note below),
  BatchNorm's updated statistics too.

On a GPU machine ``pytest -m cuda tests/test_torch_golden.py tests/test_torch_nets.py`` runs them on CUDA.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install caffelite[torch])")

import caffelite  # noqa: E402
from caffelite.torch import DATA_LAYER_TYPES, CaffeNet  # noqa: E402
from caffelite.torch._caffelite import caffe_pb2, read_net_param  # noqa: E402
from tests.torch_support import DEVICES, close, numpy_of, torch, use_device  # noqa: E402

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
with open(os.path.join(CORPUS, "caffe_shapes.json")) as f:
    SHAPES = json.load(f)
BUILT = sorted(k for k, v in SHAPES.items() if "caffe_error" not in v)


def he_weights(net, seed: int = 0) -> None:
    """Random weights: He-scaled normal weights, small biases, BatchNorm statistics of a plausible
    scale (mean ~ 0.1, variance in [0.5, 1.5], scale factor 1), Scale layers around 1."""
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        kind = layer.layer_param.type
        for i, blob in enumerate(layer.blobs):
            shape = blob.shape
            normal = rng.standard_normal(shape, dtype=np.float32)  # float32: VGG's 138M weights in a second
            if kind == "BatchNorm":
                values = [normal * 0.1, rng.uniform(0.5, 1.5, shape), np.ones(shape)][i]
            elif kind == "Scale" and i == 0:
                values = rng.uniform(0.5, 1.5, shape)
            elif len(shape) >= 2:
                values = normal * np.float32(np.sqrt(2.0 / np.prod(shape[1:])))
            else:
                values = normal * 0.1
            blob.data[...] = values


def data_as_inputs(path: str, shapes: dict[str, tuple]) -> caffe_pb2.NetParameter:
    """The net with every data layer (no bottoms) replaced by an Input layer of the given top shapes."""
    param = read_net_param(path)
    out = caffe_pb2.NetParameter()
    out.CopyFrom(param)
    del out.layer[:]
    for lp in param.layer:
        new = out.layer.add()
        new.CopyFrom(lp)
        if not lp.bottom and lp.type in DATA_LAYER_TYPES:
            new.Clear()
            new.name, new.type = lp.name, "Input"
            new.top.extend(lp.top)
            new.include.extend(lp.include)
            new.exclude.extend(lp.exclude)
            for top in lp.top:
                new.input_param.shape.add().dim.extend(shapes[top])
    return out


def random_inputs(net, rng, labels: int | None = None) -> dict:
    inputs = {}
    for name in net.inputs:
        shape = net.blobs[name].shape
        if name.startswith("label"):
            inputs[name] = rng.integers(0, labels, size=shape).astype(np.float32)
        else:
            inputs[name] = rng.normal(size=shape).astype(np.float32)
    return inputs


def compare_forward(net, module, inputs, device) -> list[str]:
    for name, value in inputs.items():
        net.blobs[name].reshape(*value.shape)
        net.blobs[name].data[...] = value
    net.reshape()
    net.forward()
    trace = module.trace(**{k: torch.tensor(v, device=device) for k, v in inputs.items()})
    bad = []
    for name, blob in net.blobs.items():
        err = close(blob.data.astype(np.float64), numpy_of(trace.data[name]), 1e-4)
        if err:
            bad.append("%s: %s" % (name, err))
    return bad


# The dilation nets' 900 x 900 and 1396 x 1396 inputs take minutes in NumPy, FCN-8s's 500 x 500 (padded by 100)
# tens of seconds: these fully convolutional nets build the same layers on smaller images.
SPATIAL = {"fyu__dilation/models/dilation8_pascal_voc_deploy.prototxt": 420,
           "shelhamer__fcn.berkeleyvision.org/voc-fcn8s/deploy.prototxt": 128,
           "fyu__dilation/models/dilation10_cityscapes_deploy.prototxt": 420}


def at_batch_one(path: str, spatial: int | None = None) -> caffe_pb2.NetParameter:
    """The net with its Input shapes at batch 1 (and ``spatial`` x ``spatial`` images when given)."""
    param = read_net_param(path)
    for lp in param.layer:
        if lp.type == "Input":
            for shape in lp.input_param.shape:
                shape.dim[0] = 1
                if spatial and len(shape.dim) == 4:
                    shape.dim[2] = shape.dim[3] = spatial
    return param


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("rel", BUILT)
def test_corpus_net_forward_equals_caffelite(rel, device):
    dev = use_device(device)
    net = caffelite.Net(at_batch_one(os.path.join(CORPUS, rel), SPATIAL.get(rel)), caffelite.TEST)
    he_weights(net)
    module = CaffeNet(net).to(dev)
    rng = np.random.default_rng(1)
    inputs = {n: rng.normal(size=net.blobs[n].shape).astype(np.float32) for n in net.inputs}
    with torch.no_grad():
        bad = compare_forward(net, module, inputs, dev)
    assert not bad, "; ".join(bad)


BACKWARD_NETS = {  # name: (corpus file, phase, data shapes, classes, near-tie allowance)
    "lenet": ("BVLC__caffe/examples/mnist/lenet_train_test.prototxt", caffelite.TRAIN,
              {"data": (2, 1, 28, 28), "label": (2,)}, 10, False),
    "cifar10_full_bn": ("BVLC__caffe/examples/cifar10/cifar10_full_sigmoid_train_test_bn.prototxt", caffelite.TRAIN,
                        {"data": (2, 3, 32, 32), "label": (2,)}, 10, False),
    "googlenet": ("BVLC__caffe/models/bvlc_googlenet/train_val.prototxt", caffelite.TEST,
                  {"data": (1, 3, 224, 224), "label": (1,)}, 1000, True),
    "resnet50": ("KaimingHe__deep-residual-networks/prototxt/ResNet-50-deploy.prototxt", caffelite.TEST, {}, None,
                 False),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(BACKWARD_NETS))
def test_net_backward_equals_caffelite(name, device):
    """Caffe's backward (loss weights; random top diffs on outputs without one) against autograd's."""
    dev = use_device(device)
    rel, phase, shapes, classes, near_ties = BACKWARD_NETS[name]
    param = data_as_inputs(os.path.join(CORPUS, rel), shapes)
    if not shapes:  # a deploy net: batch 1
        param = at_batch_one(os.path.join(CORPUS, rel))
    param.force_backward = True  # the input's diff is compared too
    param.state.phase = phase
    net = caffelite.Net(param, phase)
    he_weights(net)
    module = CaffeNet(net).to(dev)  # copies the weights and BatchNorm statistics before caffelite runs
    rng = np.random.default_rng(2)
    inputs = random_inputs(net, rng, classes)
    seeds = {n: rng.normal(size=net.blobs[n].shape).astype(np.float32)
             for n in net.outputs if not net.blob_loss_weights[n]}

    for k, v in inputs.items():
        net.blobs[k].data[...] = v
    net.forward()
    for k, v in seeds.items():
        net.blobs[k].diff[...] = v
    net.backward()

    trace = module.trace(**{k: torch.tensor(v, device=dev, requires_grad=bool(net.blob_need_backward[k]))
                            for k, v in inputs.items()})
    total = module.total_loss(trace.data)
    for k, v in seeds.items():
        total = total + (trace.data[k] * torch.tensor(v, device=dev)).sum()
    names = [n for n in net.blobs if trace.source[n].requires_grad]
    params = module.named_caffe_params()
    grads = torch.autograd.grad(total, [trace.source[n] for n in names] + [p for _, p, _ in params],
                                allow_unused=True)
    bad = []

    def check(what, ref, got, outliers=0, norm_rtol=0.0):
        ref = np.asarray(ref, np.float64)
        err = close(ref, got, 1e-4)
        if err and outliers:
            scale = max(1.0, float(np.abs(ref).max()))
            if np.count_nonzero(np.abs(got - ref) > 1e-4 * (np.abs(ref) + scale)) <= outliers:
                err = None
        if err and norm_rtol and np.linalg.norm(got - ref) <= norm_rtol * np.linalg.norm(ref):
            err = None
        if err:
            bad.append("%s: %s" % (what, err))

    # Near-ties: two values of a max-pooling window within float32 rounding of each other may order
    # differently in caffelite's and torch's forward (their convolutions round differently), and the gradient
    # goes to the other one.  GoogLeNet's random nets meet a few per blob (a wrong rule would move thousands):
    # there each blob diff may have 0.01% outliers, and each parameter diff, which sums those moved
    # gradients, must be within 5e-3 in norm (measured: conv1's 1.7e-3, the others below 5e-4; with other
    # random weights all within 1e-4 elementwise).  The other nets are compared elementwise within 1e-4.
    for n, g in zip(names, grads):
        outliers = max(8, net.blobs[n].count // 10000) if near_ties else 0
        check("diff " + n, net.blobs[n].diff, np.zeros(net.blobs[n].shape) if g is None else numpy_of(g), outliers)
    owners = module._owner_blob
    for (pname, p, _), blob, g in zip(params, owners, grads[len(names):]):
        check("param diff " + pname, blob.diff, np.zeros(blob.shape) if g is None else numpy_of(g),
              norm_rtol=5e-3 if near_ties else 0.0)
        check("param data " + pname, blob.data, numpy_of(p))  # BatchNorm's moving averages
    for n in net.blobs:
        check("data " + n, net.blobs[n].data, numpy_of(trace.data[n]))
    assert not bad, "; ".join(bad[:10])
