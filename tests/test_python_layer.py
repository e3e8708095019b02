"""The Python layer and the ``import caffe`` alias: a module written for pycaffe runs unmodified."""

import importlib
import os
import sys
import textwrap
import types

import numpy as np
import pytest

import caffelite
from caffelite import compat
from caffelite.errors import LayerError

PYLAYERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pylayers")


@pytest.fixture
def alias_state():
    """Restore ``caffe*`` entries of sys.modules and the meta path after the test."""
    saved = {n: m for n, m in sys.modules.items() if n == "caffe" or n.startswith("caffe.")}
    meta = list(sys.meta_path)
    yield
    for name in [n for n in sys.modules if n == "caffe" or n.startswith("caffe.")]:
        del sys.modules[name]
    sys.modules.update(saved)
    sys.meta_path[:] = meta


def write_net(tmp_path, module, layer, param_str="", extra=""):
    path = tmp_path / "net.prototxt"
    path.write_text(textwrap.dedent("""
        force_backward: true
        layer { name: "a" type: "Input" top: "a" input_param { shape { dim: 3 dim: 4 } } }
        layer { name: "b" type: "Input" top: "b" input_param { shape { dim: 3 dim: 4 } } }
        layer { name: "loss" type: "Python" bottom: "a" bottom: "b" top: "loss" loss_weight: 2
                python_param { module: "%s" layer: "%s" param_str: "%s" } }
        %s
    """) % (module, layer, param_str, extra))
    return str(path)


def test_pycaffe_layer_runs_forward_and_backward(tmp_path, monkeypatch, alias_state):
    monkeypatch.syspath_prepend(PYLAYERS)  # as Caffe users put the module's folder on PYTHONPATH
    net = caffelite.Net(write_net(tmp_path, "pyloss", "EuclideanLossLayer", "hello"), caffelite.TRAIN)
    a, b = np.random.default_rng(1).normal(size=(2, 3, 4)).astype(np.float32)
    net.blobs["a"].data[...] = a
    net.blobs["b"].data[...] = b
    loss = net.forward()["loss"]
    np.testing.assert_allclose(loss, np.sum((a - b) ** 2) / 3 / 2, rtol=1e-6)
    net.backward()
    np.testing.assert_allclose(net.blobs["a"].diff, 2 * (a - b) / 3, rtol=1e-6)
    np.testing.assert_allclose(net.blobs["b"].diff, -2 * (a - b) / 3, rtol=1e-6)
    layer = net.layer_dict["loss"]
    assert layer.param_str == layer.seen_param_str == "hello"
    assert layer.phase == layer.seen_phase == caffelite.TRAIN
    assert layer.layer_type() == "Python" and isinstance(layer, caffelite.Layer)


def test_import_caffe_gives_caffelites_pycaffe(alias_state):
    import caffelite.proto.caffe_pb2 as pb2
    import caffelite.pycaffe as pycaffe

    assert compat.install()
    import caffe
    import caffe.proto.caffe_pb2

    assert caffe is pycaffe and caffe.proto.caffe_pb2 is pb2
    for name in ["Net", "Blob", "Layer", "TRAIN", "TEST", "layer_type_list", "set_mode_cpu", "set_mode_gpu",
                 "set_device", "set_random_seed", "__version__"]:
        assert getattr(caffe, name) is getattr(caffelite, name)


def test_submodules_resolve_to_the_same_module_objects(alias_state):
    import caffelite.proto.caffe_pb2 as pb2

    compat.install()
    del sys.modules["caffe.proto"], sys.modules["caffe.proto.caffe_pb2"]  # found again by the alias finder
    module = importlib.import_module("caffe.proto.caffe_pb2")
    assert module is pb2 and pb2.__spec__.name == "caffelite.proto.caffe_pb2"
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("caffe.no_such_submodule")


def test_caffelite_alone_does_not_claim_the_caffe_name():
    code = "import sys, caffelite; caffelite.layer_type_list(); print('caffe' in sys.modules)"
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_real_pycaffe_is_left_alone(tmp_path, monkeypatch, alias_state):
    real = types.ModuleType("caffe")  # stands for BVLC's pycaffe, imported first

    class Layer:  # its boost-wrapped base class
        pass

    real.Layer = Layer
    monkeypatch.setitem(sys.modules, "caffe", real)
    assert compat.install() is False and sys.modules["caffe"] is real
    (tmp_path / "real_caffe_layer.py").write_text("import caffe\n\nclass L(caffe.Layer):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(LayerError, match="not a subclass of caffe.Layer.*a real pycaffe is imported"):
        caffelite.Net(write_net(tmp_path, "real_caffe_layer", "L"), caffelite.TEST)
    assert sys.modules["caffe"] is real
    compat.uninstall()
    assert sys.modules["caffe"] is real  # uninstall removes only our aliases


def test_uninstall_removes_the_alias(alias_state):
    compat.install()
    compat.uninstall()
    assert "caffe" not in sys.modules and not compat.is_installed()
    assert compat.install() and compat.is_installed()


@pytest.mark.parametrize("module,layer,message,cause", [
    ("no_such_module_xyz", "L", "cannot import module 'no_such_module_xyz'", ModuleNotFoundError),
    ("pyloss", "NoSuchClass", "module 'pyloss' .* has no class 'NoSuchClass'", None),
    ("pyloss", "NotALayer", "'NotALayer' is not a subclass of caffe.Layer", None),
])
def test_errors_name_the_layer_module_and_class(tmp_path, monkeypatch, alias_state, module, layer, message, cause):
    monkeypatch.syspath_prepend(PYLAYERS)
    with pytest.raises(LayerError, match=message) as err:
        caffelite.Net(write_net(tmp_path, module, layer), caffelite.TEST)
    text = str(err.value)
    assert "Python layer 'loss' (module '%s', layer '%s')" % (module, layer) in text
    assert err.value.layer == "loss"
    if cause is not None:
        assert isinstance(err.value.__cause__, cause)


def test_user_exception_in_setup_keeps_its_type_and_names_the_layer(tmp_path, monkeypatch, alias_state):
    """As in pycaffe, a RuntimeError raised by the user's setup reaches the caller as RuntimeError."""
    monkeypatch.syspath_prepend(PYLAYERS)
    with pytest.raises(RuntimeError, match="this layer refuses to set up") as err:
        caffelite.Net(write_net(tmp_path, "pyloss", "FailingSetup"), caffelite.TEST)
    assert any("Python layer 'loss' (module 'pyloss', layer 'FailingSetup')" in note
               for note in getattr(err.value, "__notes__", []))


def test_python_layer_with_learnable_blob(tmp_path, monkeypatch, alias_state):
    monkeypatch.syspath_prepend(PYLAYERS)
    path = tmp_path / "net.prototxt"
    path.write_text(textwrap.dedent("""
        force_backward: true
        layer { name: "a" type: "Input" top: "a" input_param { shape { dim: 2 dim: 3 } } }
        layer { name: "scale" type: "Python" bottom: "a" top: "s" python_param { module: "pyloss"
                layer: "ParamLayer" param_str: "3" } }
    """))
    net = caffelite.Net(str(path), caffelite.TEST)
    net.blobs["a"].data[...] = 2
    np.testing.assert_array_equal(net.forward()["s"], np.full((2, 3), 6.0))
    assert [b.shape for b in net.params["scale"]] == [(1,)]
    net.blobs["s"].diff[...] = 1
    net.backward()
    np.testing.assert_array_equal(net.params["scale"][0].diff, [12.0])
    np.testing.assert_array_equal(net.blobs["a"].diff, np.full((2, 3), 3.0))
