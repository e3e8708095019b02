"""CaffeNet shows Caffe's blobs: anonymous ``(automatic)`` loss tops take part in ``forward`` and
``total_loss``, outputs are Caffe's own (by blob index), and view tops (Reshape, Flatten, one-bottom
Concat, one-top Slice) share data and diff with their bottom at any batch size."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install caffelite[torch])")

import caffelite  # noqa: E402
from caffelite.proto import caffe_pb2  # noqa: E402
from caffelite.protoio import parse_text  # noqa: E402
from caffelite.torch import CaffeNet  # noqa: E402
from caffelite.torch.train import TorchNet  # noqa: E402
from tests.torch_support import numpy_of, torch, torch_one_thread  # noqa: E402, F401

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TWO_LOSSES = """
layer { name: "d" type: "Input" top: "data" top: "label" input_param { shape { dim: 4 dim: 3 } shape { dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 5 weight_filler { type: "gaussian" } } }
layer { name: "loss1" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" }
layer { name: "loss2" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" loss_weight: 0.5 }
layer { name: "sig" type: "Sigmoid" bottom: "ip" top: "sig" }
layer { name: "th" type: "TanH" bottom: "ip" top: "th" }
layer { name: "sil" type: "Silence" bottom: "th" }
"""


def make_net(text, phase=caffelite.TRAIN):
    return caffelite.Net(parse_text(textwrap.dedent(text), caffe_pb2.NetParameter()), phase)


def test_anonymous_loss_tops_count_in_total_loss_and_gradients():
    caffelite.set_random_seed(1)
    net = make_net(TWO_LOSSES)
    module = CaffeNet(net)
    rng = np.random.default_rng(0)
    inputs = {"data": rng.standard_normal((4, 3)).astype(np.float32), "label": np.array([0, 1, 4, 2], np.float32)}
    out = module(**inputs)
    first = [n for n in module.loss_weights if n != "(automatic)"]
    assert len(first) == 1 and first[0].startswith("(automatic)#")  # the other anonymous blob, by its index
    assert list(out) == ["sig", first[0], "(automatic)"]  # Caffe's output, then the anonymous loss tops
    assert module.outputs == ["sig"] and net.outputs == ["th"]  # pycaffe's collapsed-key naming stays pycaffe's
    assert module.loss_weights == {first[0]: 1.0, "(automatic)": 0.5}
    for k, v in inputs.items():
        net.blobs[k].data[...] = v
    ref = net.forward_from_to()
    net.backward()
    np.testing.assert_allclose(out["(automatic)"].item(), float(net.blobs["(automatic)"].data), rtol=1e-6)
    loss = module.total_loss(out)
    np.testing.assert_allclose(loss.item(), ref, rtol=1e-5)
    loss.backward()
    for (name, p, _), blob in zip(module.named_caffe_params(), net.learnable_params):
        np.testing.assert_allclose(numpy_of(p.grad), blob.diff, rtol=1e-4, atol=1e-6, err_msg=name)


def test_torch_solver_net_reports_caffes_outputs_by_index():
    net = make_net(TWO_LOSSES)
    tnet = TorchNet(net, torch.device("cpu"))
    net.blobs["label"].data[...] = 1
    loss = tnet.forward_from_to()
    assert loss == pytest.approx(net.forward_from_to(), rel=1e-5)
    table = tnet.output_blob_table()
    assert [(name, w) for name, _, w in table] == [(name, w) for name, _, w in net.output_blob_table()] == [("sig", 0)]
    np.testing.assert_allclose(table[0][1].data, net.blobs["sig"].data, rtol=1e-6)


VIEWS = """
force_backward: true
layer { name: "d" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 2 } } }
layer { name: "up" type: "Power" bottom: "data" top: "up" power_param { scale: 2 } }
layer { name: "rs" type: "Reshape" bottom: "up" top: "rs" reshape_param { shape { dim: 0 dim: -1 } } }
layer { name: "affine" type: "Power" bottom: "rs" top: "rs" power_param { scale: 3 shift: 0.5 } }
layer { name: "cat" type: "Concat" bottom: "rs" top: "cat" }
layer { name: "s" type: "Sigmoid" bottom: "cat" top: "cat" }
layer { name: "ip" type: "InnerProduct" bottom: "cat" top: "ip"
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" } } }
"""


@pytest.mark.parametrize("batch", [2, 5])
def test_view_tops_share_data_and_diff_with_their_bottom_at_any_batch(batch):
    """Two in-place layers on one buffer under two of its three names (Power on the Reshape's top, Sigmoid on
    the Concat's): every name shows the last value, and every name's gradient is Caffe's shared diff."""
    caffelite.set_random_seed(2)
    net = make_net(VIEWS, caffelite.TEST)
    module = CaffeNet(net)
    x = np.random.default_rng(batch).standard_normal((batch, 3, 2)).astype(np.float32)
    g = np.random.default_rng(9).standard_normal((batch, 2)).astype(np.float32)
    net.blobs["data"].reshape(*x.shape)
    net.reshape()
    net.blobs["data"].data[...] = x
    net.forward()
    net.blobs["ip"].diff[...] = g
    net.backward()
    trace = module.trace(data=torch.tensor(x, requires_grad=True))
    names = ["data", "up", "rs", "cat", "ip"]
    total = (trace.data["ip"] * torch.tensor(g)).sum()
    grads = torch.autograd.grad(total, [trace.source[n] for n in names])
    for name, grad in zip(names, grads):
        blob = net.blobs[name]
        np.testing.assert_allclose(numpy_of(trace.data[name]), blob.data, rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(numpy_of(grad), blob.diff, rtol=1e-4, atol=1e-6, err_msg=name)
    s = 1 / (1 + np.exp(-(6 * x + 0.5)))
    np.testing.assert_allclose(numpy_of(trace.data["up"]), s, rtol=1e-5)  # the Sigmoid on 'cat' reached 'up'
