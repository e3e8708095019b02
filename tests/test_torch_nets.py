"""Whole nets on caffelite.torch.CaffeNet against caffelite's own Net, random He-scaled weights.

- Forward: every corpus net BVLC Caffe could build (tests/corpus/caffe_shapes.json; all deploy nets
  with Input layers) at batch 1: every blob within 1e-4 of caffelite's.
- Backward: LeNet (TRAIN), CIFAR10-full with BatchNorm (TRAIN: batch statistics, moving averages),
  GoogLeNet (its three losses) and ResNet-50 at batch 2 or 1, data layers turned into inputs:
  every parameter's diff and every blob's diff within 1e-4, BatchNorm's updated statistics too
  (GoogLeNet layer by layer: see LAYERWISE).

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
from caffelite.torch._caffelite import caffe_pb2, layer_blobs, net_wiring, read_net_param  # noqa: E402
from tests.torch_support import DEVICES, close, numpy_of, torch, torch_one_thread, use_device  # noqa: E402, F401

pytestmark = pytest.mark.usefixtures("torch_one_thread")

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
# and the fully convolutional CaffeNet's 451 x 451 tens of seconds: these fully convolutional nets build the same
# layers on smaller images.
SPATIAL = {"fyu__dilation/models/dilation8_pascal_voc_deploy.prototxt": 420,
           "BVLC__caffe/examples/net_surgery/bvlc_caffenet_full_conv.prototxt": 259,
           "BVLC__caffe@rc/examples/imagenet/bvlc_caffenet_full_conv.prototxt": 259,
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


BACKWARD_NETS = {  # name: (corpus file, phase, data shapes, classes)
    "lenet": ("BVLC__caffe/examples/mnist/lenet_train_test.prototxt", caffelite.TRAIN,
              {"data": (2, 1, 28, 28), "label": (2,)}, 10),
    "cifar10_full_bn": ("BVLC__caffe/examples/cifar10/cifar10_full_sigmoid_train_test_bn.prototxt", caffelite.TRAIN,
                        {"data": (2, 3, 32, 32), "label": (2,)}, 10),
    "googlenet": ("BVLC__caffe/models/bvlc_googlenet/train_val.prototxt", caffelite.TEST,
                  {"data": (1, 3, 224, 224), "label": (1,)}, 1000),
    "resnet50": ("KaimingHe__deep-residual-networks/prototxt/ResNet-50-deploy.prototxt", caffelite.TEST, {}, None),
}
# GoogLeNet's max poolings meet near-ties: two values of a window within float32 rounding of each other
# order differently in caffelite's and torch's forward (their convolutions round differently), so a
# gradient goes to the other one (measured: 8 of its 1.5M pooling outputs with these weights), then
# spreads through the layers below.  Its backward is compared layer by layer instead, each torch layer
# fed caffelite's own bottoms and top diffs: the whole net's backward, every layer, without the flips.
LAYERWISE = {"googlenet"}


def backward_case(name, dev):
    """caffelite's Net (random weights, forced backward), the CaffeNet over it, inputs and output seeds."""
    rel, phase, shapes, classes = BACKWARD_NETS[name]
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
    return net, module, inputs, seeds


def _param_rtol(device):
    """Weight gradients are reductions over every output position: cuDNN picks its own algorithm and summation
    order for them (as it does under Caffe's GPU build), so CUDA gets a looser bound than CPU's BLAS."""
    return 3e-4 if str(device).startswith("cuda") else 1e-4


def _check(bad, what, ref, got, rtol=1e-4):
    err = close(np.asarray(ref, np.float64), got, rtol)
    if err:
        bad.append("%s: %s" % (what, err))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(set(BACKWARD_NETS) - LAYERWISE))
def test_net_backward_equals_caffelite(name, device):
    """Caffe's backward (loss weights; random top diffs on outputs without one) against autograd's."""
    dev = use_device(device)
    net, module, inputs, seeds = backward_case(name, dev)
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
    for n, g in zip(names, grads):
        _check(bad, "diff " + n, net.blobs[n].diff, np.zeros(net.blobs[n].shape) if g is None else numpy_of(g))
    for (pname, p, _), blob, g in zip(params, module._owner_blob, grads[len(names):]):
        _check(bad, "param diff " + pname, blob.diff, np.zeros(blob.shape) if g is None else numpy_of(g),
               _param_rtol(device))
        _check(bad, "param data " + pname, blob.data, numpy_of(p))  # BatchNorm's moving averages
    for n in net.blobs:
        _check(bad, "data " + n, net.blobs[n].data, numpy_of(trace.data[n]))
    assert not bad, "; ".join(bad[:10])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(LAYERWISE))
def test_net_backward_equals_caffelite_layer_by_layer(name, device):
    """Every layer's forward and backward in the whole net, fed caffelite's bottoms and top diffs."""
    dev = use_device(device)
    net, module, inputs, seeds = backward_case(name, dev)
    wiring, _ = net_wiring(net)
    n_layers = len(net.layers)
    bottoms, tops = [], []
    for i in range(n_layers):  # layer by layer: in-place layers overwrite their bottoms
        bottom, top = layer_blobs(net, i)
        bottoms.append([b.data.copy() for b in bottom])
        net.forward_from_to(i, i)
        tops.append([t.data.copy() for t in top])
    for k, v in seeds.items():
        net.blobs[k].diff[...] = v
    top_diffs, bottom_diffs, param_diffs = {}, {}, {}
    for i in reversed(range(n_layers)):
        if not net.layer_need_backward[i]:
            continue
        bottom, top = layer_blobs(net, i)
        top_diffs[i] = [t.diff.copy() for t in top]
        before = [b.diff.copy() for b in net.layers[i].blobs]
        net.backward_from_to(i, i)
        bottom_diffs[i] = [b.diff.copy() for b in bottom]
        param_diffs[i] = [b.diff - d for b, d in zip(net.layers[i].blobs, before)]
    bad = []
    for st in module._steps:
        i = st.index
        if st.kind != "op":
            continue
        need = wiring[i][2]
        xs = [torch.tensor(b, device=dev, requires_grad=nd) for b, nd in zip(bottoms[i], need)]
        params = [module._param(n, shape) for n, shape in st.params]
        out = st.fn([x.detach() if d else x for x, d in zip(xs, st.detach)], params)
        for j, (t, ref) in enumerate(zip(out, tops[i])):
            _check(bad, "%s top %d" % (st.name, j), ref, numpy_of(t))
        if i not in top_diffs:
            continue
        wrt = [x for x in xs if x.requires_grad] + [p for p in params if p.requires_grad]
        pairs = [(t, torch.tensor(d, device=dev)) for t, d in zip(out, top_diffs[i]) if t.requires_grad]
        if not wrt or not pairs:
            continue
        grads = torch.autograd.grad([t for t, _ in pairs], wrt, [d for _, d in pairs], allow_unused=True)
        grads = list(grads)
        for j, x in enumerate(xs):
            if x.requires_grad:
                g = grads.pop(0)
                _check(bad, "%s bottom %d diff" % (st.name, j), bottom_diffs[i][j],
                       np.zeros(x.shape) if g is None else numpy_of(g))
        for j, p in enumerate(params):
            if p.requires_grad:
                g = grads.pop(0)
                _check(bad, "%s param %d diff" % (st.name, j), param_diffs[i][j],
                       np.zeros(p.shape) if g is None else numpy_of(g), _param_rtol(device))
    assert not bad, "; ".join(bad[:10])
