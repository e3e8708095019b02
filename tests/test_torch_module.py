"""caffelite.torch.CaffeNet's interface: parameter names and specs, loss weights, propagate_down,
inputs and data layers, weights in Caffe's format, layer coverage, and the missing-torch error."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install caffelite[torch])")

import caffelite  # noqa: E402
from caffelite.torch import CaffeNet, param_name  # noqa: E402
from caffelite.torch.module import NUMPY_LAYER_TYPES  # noqa: E402
from caffelite.torch.ops import OPS  # noqa: E402
from caffelite.torch.ops.numpy_layer import NumpyLayerRunner  # noqa: E402
from tests.torch_support import numpy_of, torch, torch_one_thread  # noqa: E402, F401

pytestmark = pytest.mark.usefixtures("torch_one_thread")

NET = """
name: "tiny"
force_backward: false
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 4 dim: 3 dim: 6 dim: 6 } shape { dim: 4 } } }
layer { name: "conv.1" type: "Convolution" bottom: "data" top: "conv"
        param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        convolution_param { num_output: 5 kernel_size: 3 weight_filler { type: "gaussian" std: 0.3 }
                            bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "ip_a" type: "InnerProduct" bottom: "pool" top: "a"
        param { name: "shared_w" lr_mult: 1 } param { lr_mult: 0 }
        inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "ip_b" type: "InnerProduct" bottom: "pool" top: "b"
        param { name: "shared_w" } param { lr_mult: 1 }
        inner_product_param { num_output: 3 weight_filler { type: "xavier" }
                              bias_filler { type: "constant" value: 0.5 } } }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "score" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" loss_weight: 0.5 }
layer { name: "aux" type: "EuclideanLoss" bottom: "a" bottom: "b" top: "aux" loss_weight: 2
        propagate_down: true propagate_down: false }
layer { name: "acc" type: "Accuracy" bottom: "score" bottom: "label" top: "acc" }
"""


@pytest.fixture
def proto(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(NET)
    return str(path)


def _inputs(batch=4, seed=0):
    rng = np.random.default_rng(seed)
    return {"data": rng.normal(size=(batch, 3, 6, 6)).astype(np.float32),
            "label": rng.integers(0, 3, size=batch).astype(np.float32)}


def test_parameters_are_named_by_layer_in_caffes_order_shared_once(proto):
    caffelite.set_random_seed(3)
    module = CaffeNet(proto, phase=caffelite.TRAIN)
    names = [n for n, _ in module.named_parameters()]
    assert names == ["conv%2E1/0", "conv%2E1/1", "ip_a/0", "ip_a/1", "ip_b/1"]
    assert param_name("conv.1", 0) == "conv%2E1/0" and param_name("a%b", 2) == "a%25b/2"
    assert module.param_specs["conv%2E1/1"] == (2.0, 0.0)
    assert module.param_specs["ip_a/0"] == (1.0, 1.0)
    assert not module.get_parameter("ip_a/1").requires_grad  # lr_mult 0: Caffe computes no diff
    assert module.get_parameter("ip_b/1").requires_grad
    net = module.net
    for (_, p, spec), blob, lr, decay in zip(module.named_caffe_params(), net.learnable_params, net.params_lr,
                                                 net.params_weight_decay):
        np.testing.assert_array_equal(numpy_of(p), blob.data)
        assert spec == (lr, decay)


def test_total_loss_and_gradients_equal_caffelite(proto):
    caffelite.set_random_seed(3)
    net = caffelite.Net(proto, caffelite.TRAIN)
    module = CaffeNet(net)
    inputs = _inputs()
    out = module(**inputs)
    assert list(out) == net.outputs == ["acc", "aux", "loss"]
    loss = module.total_loss(out)
    for k, v in inputs.items():
        net.blobs[k].data[...] = v
    ref = net.forward_from_to()
    net.backward()
    np.testing.assert_allclose(loss.item(), ref, rtol=1e-5)
    np.testing.assert_allclose(loss.item(), 0.5 * out["loss"].item() + 2 * out["aux"].item(), rtol=1e-6)
    loss.backward()
    for (name, p, _), blob in zip(module.named_caffe_params(), net.learnable_params):
        ref_diff = blob.diff if p.requires_grad else np.zeros(blob.shape)
        got = np.zeros(blob.shape) if p.grad is None else numpy_of(p.grad)
        np.testing.assert_allclose(got, ref_diff, rtol=1e-4, atol=1e-6, err_msg=name)


def test_propagate_down_false_detaches_that_bottom(proto):
    module = CaffeNet(proto, phase=caffelite.TRAIN)
    trace = module.trace(**_inputs())
    (g,) = torch.autograd.grad(trace.data["aux"], [module.get_parameter("ip_b/1")], allow_unused=True)
    assert g is None  # b reaches aux only through propagate_down: false
    (g,) = torch.autograd.grad(trace.data["aux"], [module.get_parameter("ip_a/0")])
    assert torch.count_nonzero(g) > 0


def test_any_batch_size_and_requested_blobs(proto):
    module = CaffeNet(proto)
    out = module(blobs=["pool", "conv"], **_inputs(batch=7))
    assert list(out) == ["acc", "aux", "loss", "pool", "conv"]
    assert tuple(out["pool"].shape) == (7, 5, 2, 2)
    assert out["conv"].min().item() >= 0  # the in-place ReLU's output


def test_input_errors_are_typed(proto):
    module = CaffeNet(proto)
    with pytest.raises(caffelite.NetError, match="Unknown input blob"):
        module(data=np.zeros((1, 3, 6, 6)), label=np.zeros(1), extra=np.zeros(1))
    with pytest.raises(caffelite.NetError, match="Missing input blob"):
        module(data=np.zeros((1, 3, 6, 6)))
    with pytest.raises(caffelite.LabelError, match="label value 9"):
        module(data=np.zeros((2, 3, 6, 6)), label=np.array([0, 9]))


def test_caffemodel_round_trip(proto, tmp_path):
    module = CaffeNet(proto)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(1.0)
    path = str(tmp_path / "w.caffemodel")
    module.save_caffemodel(path)
    net = caffelite.Net(proto, path, caffelite.TEST)  # caffelite reads Caffe's binary format
    for (name, p, _), blob in zip(module.named_caffe_params(), net.learnable_params):
        np.testing.assert_array_equal(numpy_of(p), blob.data, err_msg=name)
    other = CaffeNet(proto)
    other.load_caffemodel(path)
    for (_, p, _), (_, q, _) in zip(module.named_caffe_params(), other.named_caffe_params()):
        assert torch.equal(p, q)
    again = CaffeNet(proto, weights=path)
    assert torch.equal(again.get_parameter("ip_b/1"), module.get_parameter("ip_b/1"))


def test_data_layer_runs_caffelites_layer_unless_its_tops_are_given(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text("""
        layer { name: "d" type: "DummyData" top: "x"
                dummy_data_param { shape { dim: 2 dim: 3 } data_filler { type: "constant" value: 1.5 } } }
        layer { name: "s" type: "Power" bottom: "x" top: "y" power_param { scale: 2 } }""")
    module = CaffeNet(str(path))
    assert module.inputs == ["x"]
    np.testing.assert_array_equal(numpy_of(module()["y"]), np.full((2, 3), 3.0))
    np.testing.assert_array_equal(numpy_of(module(x=np.ones((5, 3)))["y"]), np.full((5, 3), 2.0))


def test_every_stock_layer_has_a_torch_op():
    """Only data layers, Python and HDF5Output (files or user code, not maths) run caffelite's NumPy layer."""
    from caffelite.layer_factory import layer_type_list
    from caffelite.torch import DATA_LAYER_TYPES

    missing = set(layer_type_list()) - set(OPS) - set(DATA_LAYER_TYPES) - {"Input"}
    assert missing == set(NUMPY_LAYER_TYPES)


def test_golden_nets_use_torch_ops_except_python_layers():
    from tests.golden_runner import GOLDEN, case_names, in_case_folder

    for name in case_names("layers"):
        folder = os.path.join(GOLDEN, "layers", name)
        with in_case_folder(folder):
            module = CaffeNet(os.path.join(folder, "net.prototxt"))
        bridged = [st.type for st in module._steps if isinstance(st.fn, NumpyLayerRunner)]
        assert set(bridged) <= {"Python"}, name


def test_train_phase_randomness_keeps_caffes_law(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text("""
        layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
        layer { name: "drop" type: "Dropout" bottom: "x" top: "d" dropout_param { dropout_ratio: 0.25 } }
        layer { name: "pool" type: "Pooling" bottom: "x" top: "p"
                pooling_param { pool: STOCHASTIC kernel_size: 3 stride: 2 } }""")
    module = CaffeNet(str(path), phase=caffelite.TRAIN)
    x = torch.rand(2, 3, 8, 8) + 0.1
    out = module(x=x)
    d = out["d"]
    assert torch.all((d == 0) | torch.isclose(d, x / 0.75))
    p = out["p"]
    windows = torch.nn.functional.unfold(torch.nn.functional.pad(x, (0, 1, 0, 1)), 3, stride=2).reshape(2, 3, 9, 4, 4)
    assert torch.all((windows == p[:, :, None]).any(dim=2))  # every output is one of its window's values


def test_missing_torch_names_the_extra():
    code = ("import sys; sys.modules['torch'] = None\n"
            "try:\n    import caffelite.torch\nexcept ImportError as e:\n    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("MissingDependencyError") and "caffelite[torch]" in out


def test_a_torch_shape_error_names_the_layer_and_its_bottoms(proto):
    module = CaffeNet(proto)
    with pytest.raises(caffelite.LayerError) as err:
        module(data=np.zeros((2, 4, 6, 6)), label=np.zeros(2))  # 4 channels, the weights expect 3
    assert err.value.layer == "conv.1" and "data [2, 4, 6, 6]" in str(err.value)


def test_sink_layers_run_caffelites_layer(tmp_path):
    pytest.importorskip("h5py")
    import h5py

    path = tmp_path / "net.prototxt"
    out = tmp_path / "out.h5"
    path.write_text("""
        layer { name: "x" type: "Input" top: "x" top: "y" input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } } }
        layer { name: "w" type: "HDF5Output" bottom: "x" bottom: "y" hdf5_output_param { file_name: "%s" } }
        """ % out)
    module = CaffeNet(str(path))
    assert module(x=np.ones((2, 3)), y=np.arange(2.0)) == {}
    del module
    import gc

    gc.collect()
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["data"][...].reshape(2, 3), np.ones((2, 3)))  # Caffe writes 4-D


def test_recurrent_layers_equal_caffelite_with_static_input_exposed_and_carried_state(tmp_path):
    """LSTM with a static input and exposed hidden state, RNN carrying its state across passes."""
    path = tmp_path / "net.prototxt"
    path.write_text("""
        force_backward: true
        layer { name: "in" type: "Input" top: "x" top: "cont" top: "xs" top: "h0" top: "c0"
                input_param { shape { dim: 3 dim: 2 dim: 4 } shape { dim: 3 dim: 2 } shape { dim: 2 dim: 5 }
                              shape { dim: 1 dim: 2 dim: 6 } shape { dim: 1 dim: 2 dim: 6 } } }
        layer { name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" bottom: "xs" bottom: "h0" bottom: "c0"
                top: "h" top: "hT" top: "cT"
                recurrent_param { num_output: 6 expose_hidden: true weight_filler { type: "uniform" min: -0.5 max: 0.5 }
                                  bias_filler { type: "constant" value: 0.1 } } }
        layer { name: "rnn" type: "RNN" bottom: "h" bottom: "cont" top: "o"
                recurrent_param { num_output: 3 weight_filler { type: "uniform" min: -0.5 max: 0.5 } } }
        """)
    caffelite.set_random_seed(5)
    net = caffelite.Net(str(path), caffelite.TRAIN)
    module = CaffeNet(net)
    rng = np.random.default_rng(0)
    for cont in (np.array([[0, 0], [1, 1], [1, 0]]), np.array([[1, 0], [1, 1], [0, 1]])):
        inputs = {"x": rng.normal(size=(3, 2, 4)), "cont": cont, "xs": rng.normal(size=(2, 5)),
                  "h0": rng.normal(size=(1, 2, 6)), "c0": rng.normal(size=(1, 2, 6))}
        for k, v in inputs.items():
            net.blobs[k].data[...] = v
        net.forward()
        out = module(**{k: torch.tensor(v, dtype=torch.float32, requires_grad=k != "cont") for k, v in inputs.items()})
        for name in ("o", "hT", "cT"):
            np.testing.assert_allclose(numpy_of(out[name]), net.blobs[name].data, rtol=1e-5, atol=1e-6, err_msg=name)
    seeds = {n: rng.normal(size=net.blobs[n].shape) for n in ("o", "hT", "cT")}
    net.clear_param_diffs()
    for k, v in seeds.items():
        net.blobs[k].diff[...] = v
    net.backward()
    total = sum((out[k] * torch.tensor(v, dtype=torch.float32)).sum() for k, v in seeds.items())
    total.backward()
    for (name, p, _), blob in zip(module.named_caffe_params(), net.learnable_params):
        np.testing.assert_allclose(numpy_of(p.grad), blob.diff, rtol=1e-4, atol=1e-5, err_msg=name)


def test_phase_stages_and_level_select_layers_as_caffe(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text("""
        layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 } } }
        layer { name: "a" type: "Power" bottom: "x" top: "y" power_param { shift: 1 } include { stage: "deploy" } }
        layer { name: "b" type: "Power" bottom: "x" top: "y" power_param { shift: 2 } exclude { stage: "deploy" } }
        layer { name: "c" type: "Power" bottom: "y" top: "y" power_param { scale: 10 } include { min_level: 1 } }
        layer { name: "t" type: "Power" bottom: "y" top: "y" power_param { shift: 100 } include { phase: TRAIN } }
        """)
    x = np.zeros((1, 2))
    assert CaffeNet(str(path))(x=x)["y"][0, 0].item() == 2
    assert CaffeNet(str(path), stages=["deploy"])(x=x)["y"][0, 0].item() == 1
    assert CaffeNet(str(path), stages=["deploy"], level=1)(x=x)["y"][0, 0].item() == 10
    assert CaffeNet(str(path), phase=caffelite.TRAIN)(x=x)["y"][0, 0].item() == 102


@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_torchs_pooling_has_caffes_geometry_where_it_accepts_the_padding(method):
    """Where torch accepts the padding, its pooling gives what the explicitly padded Caffe pooling gives."""
    import itertools

    from caffelite.torch._caffelite import caffe_pb2
    from caffelite.torch.ops.vision import pool2d, pool2d_padded

    m = getattr(caffe_pb2.PoolingParameter, method)
    x = torch.randn(2, 3, 9, 10)
    x[0, 0, :3, :3] = 1.0  # ties: the first maximum wins
    for k, s, p, ceil in itertools.product([1, 2, 3, 4, 5], [1, 2, 3], [0, 1, 2], [True, False]):
        if 2 * p > k:
            continue
        y, mask = pool2d(x, m, (k, k + 1 if k < 5 else k), (s, s), (p, p), ceil, want_mask=m == 0)
        y2, mask2 = pool2d_padded(x, m, (k, k + 1 if k < 5 else k), (s, s), (p, p), ceil, want_mask=m == 0)
        assert y.shape == y2.shape and torch.allclose(y, y2, rtol=1e-6, atol=1e-6, equal_nan=True), (k, s, p, ceil)
        if mask is not None:
            assert torch.equal(mask, mask2), (k, s, p, ceil)


def test_python_layer_with_a_parameter_runs_through_autograd(tmp_path, monkeypatch):
    (tmp_path / "scalelayer_t13.py").write_text('''
import numpy as np
import caffelite as caffe


class Scale(caffe.Layer):
    """y = x * w (w: one learnable value per column)."""

    def setup(self, bottom, top):
        if not self.blobs:
            self.blobs.add_blob(bottom[0].shape[1])
            self.blobs[0].data[...] = np.arange(1, bottom[0].shape[1] + 1)

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data * self.blobs[0].data

    def backward(self, top, propagate_down, bottom):
        self.blobs[0].diff[...] += (top[0].diff * bottom[0].data).sum(axis=0)
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff * self.blobs[0].data
''')
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "net.prototxt"
    path.write_text("""
        layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
        layer { name: "s" type: "Python" bottom: "x" top: "y" python_param { module: "scalelayer_t13" layer: "Scale" } }
        """)
    module = CaffeNet(str(path))
    assert [n for n, _ in module.named_parameters()] == ["s/0"]
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    y = module(x=x)["y"]
    np.testing.assert_array_equal(numpy_of(y), [[1, 4, 9], [4, 10, 18]])
    (y * torch.tensor([[1.0, 0, 2], [0, 1, 1]])).sum().backward()
    np.testing.assert_array_equal(numpy_of(x.grad), [[1, 0, 6], [0, 2, 3]])
    np.testing.assert_array_equal(numpy_of(module.get_parameter("s/0").grad), [1, 5, 12])
