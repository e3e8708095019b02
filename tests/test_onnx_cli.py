"""``caffelite export`` and the Python API: verification, the options, and a typed error with file:line for
every bad input (an unexportable layer, weights that do not fit, an --input that contradicts the net)."""

import os
import sys

import numpy as np
import pytest

import caffelite
from caffelite import cli
from caffelite.errors import MissingDependencyError, NetError, ShapeError, UnsupportedError, WeightsError
from tests.onnx_helpers import assert_close, conx, onnx, randomize, round_trip, run_caffelite, run_onnxruntime

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
LENET = os.path.join(CORPUS, "BVLC__caffe/examples/mnist/lenet.prototxt")
LENET_TRAIN = os.path.join(CORPUS, "BVLC__caffe/examples/mnist/lenet_train_test.prototxt")
CIFAR = os.path.join(CORPUS, "BVLC__caffe/examples/cifar10/cifar10_quick.prototxt")


@pytest.fixture
def lenet_weights(tmp_path):
    net = randomize(caffelite.Net(LENET, caffelite.TEST))
    path = str(tmp_path / "lenet.caffemodel")
    net.save(path)
    return path


def test_cli_export_and_verify(tmp_path, lenet_weights, capsys):
    out = str(tmp_path / "lenet.onnx")
    assert cli.main(["export", LENET_TRAIN, "--weights", lenet_weights, "--input", "data=2,1,28,28", "-o", out,
                     "--verify"]) == 0
    text = capsys.readouterr().out
    assert "input  data" in text and "output ip2" in text and "max rel" in text and "equal within 1e-4" in text
    model = onnx.load(out)
    assert [i.name for i in model.graph.input] == ["data"]  # the label is no input: only the loss read it
    assert [o.name for o in model.graph.output] == ["ip2"]  # the loss's score bottom
    assert {n.op_type for n in model.graph.node} >= {"Conv", "MaxPool", "Gemm", "Relu"}


def test_cli_verify_input_file_and_intermediate_output(tmp_path, lenet_weights, capsys):
    x = np.random.default_rng(0).normal(size=(64, 1, 28, 28)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = str(tmp_path / "lenet.onnx")
    assert cli.main(["export", LENET, "--weights", lenet_weights, "-o", out, "--output", "ip1", "--output", "prob",
                     "--verify", "--verify-input", "data=%s" % (tmp_path / "x.npy")]) == 0
    assert [o.name for o in onnx.load(out).graph.output] == ["ip1", "prob"]
    # ip1 is overwritten in place by relu1: the output is the final (ReLU'd) value, as caffelite's blob
    got = run_onnxruntime(out, {"data": x}, ["ip1"])["ip1"]
    assert got.min() >= 0


def test_cli_exit_status_1_when_outputs_differ(tmp_path, monkeypatch, capsys):
    import importlib

    verify_module = importlib.import_module("caffelite.onnx.verify")

    real = verify_module.run_onnxruntime
    monkeypatch.setattr(verify_module, "run_onnxruntime",
                        lambda *a, **k: {name: v + 1 for name, v in real(*a, **k).items()})
    assert cli.main(["export", LENET, "-o", str(tmp_path / "m.onnx"), "--verify"]) == 1
    assert "differs from caffelite" in capsys.readouterr().err


def test_unexportable_layer_names_layer_file_and_line(tmp_path, capsys):
    proto = tmp_path / "net.prototxt"
    proto.write_text('layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }\n'
                     'layer {\n  name: "py"\n  type: "Python"\n  bottom: "x"\n  top: "y"\n'
                     '  python_param { module: "nowhere" layer: "Nothing" }\n}\n')
    with pytest.raises(UnsupportedError) as err:
        conx.convert(str(proto))
    assert (err.value.file, err.value.line, err.value.layer) == (str(proto), 2, "py")
    assert cli.main(["export", str(proto), "-o", str(tmp_path / "m.onnx")]) == 1
    assert "net.prototxt:2: layer 'py' (Python): cannot export to ONNX" in capsys.readouterr().err


def test_weights_that_do_not_fit(tmp_path, capsys):
    with open(LENET) as f:  # conv1 of another shape
        text = f.read().replace("num_output: 20", "num_output: 7")
    (tmp_path / "other.prototxt").write_text(text)
    weights = str(tmp_path / "other.caffemodel")
    caffelite.Net(str(tmp_path / "other.prototxt"), caffelite.TEST).save(weights)
    with pytest.raises(WeightsError) as err:
        conx.convert(LENET, weights)
    assert (err.value.file, err.value.layer) == (LENET, "conv1") and err.value.line
    assert "does not fit" in str(err.value)
    assert cli.main(["export", LENET, "--weights", weights, "-o", str(tmp_path / "m.onnx")]) == 1
    assert "lenet.prototxt:%d: layer 'conv1'" % err.value.line in capsys.readouterr().err


def test_input_that_contradicts_the_net(capsys, tmp_path):
    with pytest.raises(ShapeError) as err:
        conx.convert(LENET, inputs={"data": (1, 3, 28, 28)})  # LeNet reads one channel
    assert err.value.file == LENET and err.value.line == 2 and "contradicts the net" in str(err.value)
    with pytest.raises(ShapeError):
        conx.convert(LENET, inputs={"data": (1, 28, 28)})
    with pytest.raises(NetError) as err:
        conx.convert(LENET, inputs={"pixels": (1, 1, 28, 28)})
    assert err.value.file == LENET and "pixels" in str(err.value)
    with pytest.raises(NetError) as err:  # the data shape of a Data layer comes from --input
        conx.convert(LENET_TRAIN)
    assert err.value.line and "--input data=" in str(err.value)
    with pytest.raises(NetError):
        conx.convert(LENET, outputs=["nope"])
    assert cli.main(["export", LENET, "--input", "data=1,3,28,28", "-o", str(tmp_path / "m.onnx")]) == 1
    assert "lenet.prototxt:2" in capsys.readouterr().err


def test_new_batch_and_image_size_for_a_declared_input():
    exported = conx.convert(CIFAR, inputs={"data": (3, 3, 32, 32)})
    assert exported.inputs == {"data": [3, 3, 32, 32]}
    assert_close(round_trip(exported)[0], 1e-5)


def test_dynamic_batch(tmp_path):
    net = randomize(caffelite.Net(CIFAR, caffelite.TEST))
    exported = conx.convert(net, dynamic_batch=True, outputs=["ip2", "prob"])
    assert exported.model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    for batch in (1, 3):
        x = np.random.default_rng(batch).normal(size=(batch, 3, 32, 32)).astype(np.float32)
        got = run_onnxruntime(exported.model, {"data": x}, exported.outputs)
        ref = run_caffelite(exported.net, {"data": x}, exported.outputs)
        for name in exported.outputs:
            assert got[name].shape == ref[name].shape == (batch, 10)
            np.testing.assert_allclose(got[name], ref[name], rtol=1e-4, atol=1e-5 * np.abs(ref[name]).max())


@pytest.mark.parametrize("opset", [13, 17, 18, conx.DEFAULT_OPSET])
def test_opsets(opset):
    exported = conx.convert(randomize(caffelite.Net(CIFAR, caffelite.TEST)), opset=opset)
    assert exported.model.opset_import[0].version == opset
    assert all(d.ok(1e-5) for d in conx.verify(exported))
    with pytest.raises(NetError):
        conx.convert(CIFAR, opset=11)
    with pytest.raises(NetError):
        conx.convert(CIFAR, opset=onnx.defs.onnx_opset_version() + 1)


def test_external_data(tmp_path, monkeypatch):
    from caffelite.onnx import exporter

    monkeypatch.setattr(exporter, "TWO_GB", 2 ** 26 + 1000)  # pretend the small model is beyond 2 GB
    exported = conx.convert(randomize(caffelite.Net(CIFAR, caffelite.TEST)))
    path = str(tmp_path / "m.onnx")
    conx.save(exported.model, path)
    assert os.path.exists(path + ".data") and os.path.getsize(path) < 100000
    assert all(d.ok(1e-5) for d in conx.verify(exported, model_path=path))


def test_export_writes_the_file_and_returns_the_model(tmp_path):
    model = conx.export(LENET, str(tmp_path / "m.onnx"))
    assert isinstance(model, onnx.ModelProto) and os.path.exists(tmp_path / "m.onnx")
    assert "InnerProduct" in conx.supported_types() and "Python" not in conx.supported_types()


def test_missing_onnx_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(MissingDependencyError, match=r"pip install caffelite\[onnx\]"):
        conx.convert(LENET)
