"""``caffelite explain``: the seed article's example, other loss layers, Accuracy, Chinese output."""

import re

import numpy as np
import pytest

from caffelite.cli import main
from caffelite.errors import NetError
from caffelite.explain import explain_file, parse_values

SEED = ('layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc1" bottom: "label" top: "loss" top: "prob"\n'
        '  loss_param { ignore_label: 0 normalize: 1 normalization: FULL } }\n')


def numbers(line):
    return [float(x) for x in re.findall(r"-?\d+\.\d+", line)]


def line_with(text, *needles):
    for line in text.splitlines():
        if all(n in line for n in needles):
            return line
    raise AssertionError("no line with %s in:\n%s" % (needles, text))


@pytest.fixture
def seed_net(tmp_path):
    path = tmp_path / "seed.prototxt"
    path.write_text(SEED)
    return str(path)


def test_seed_example_reproduces_the_article(seed_net, capsys):
    assert main(["explain", seed_net, "--set", "fc1=[[1.2,0.8]]", "--set", "label=[1]"]) == 0
    out = capsys.readouterr().out
    assert numbers(line_with(out, "x − max ="))[-2:] == [0.0, -0.4]
    assert numbers(line_with(out, "p = ["))[-2:] == [0.5987, 0.4013]
    assert numbers(line_with(out, "−log p ="))[-1] == 0.9130
    loss = numbers(line_with(out, "loss = Σ"))[-1]
    assert loss == 0.9130
    assert numbers(line_with(out, "the layer computed"))[0] == 0.9130
    assert numbers(line_with(out, "× 1.0000 / 1.0000"))[-2:] == [0.5987, -0.5987]  # w·(p − onehot)/1
    assert numbers(line_with(out, "backward gave")) == [0.5987, -0.5987]
    assert "FULL" in out and "normalize is ignored" in out


def test_seed_numbers_match_plain_numpy(seed_net):
    out = explain_file(seed_net, values=parse_values(["fc1=[[1.2,0.8]]", "label=[1]"]))
    x = np.array([1.2, 0.8])
    p = np.exp(x - x.max()) / np.exp(x - x.max()).sum()
    assert numbers(line_with(out, "p = ["))[-2:] == [round(v, 4) for v in p]
    assert numbers(line_with(out, "−log p ="))[-1] == round(-np.log(p[1]), 4)


def test_ignored_positions_and_valid_normalizer(tmp_path):
    path = tmp_path / "n.prototxt"
    path.write_text('layer { name: "l" type: "SoftmaxWithLoss" bottom: "s" bottom: "y" top: "l"\n'
                    '  loss_param { ignore_label: 255 } }\n')
    out = explain_file(str(path), values=parse_values(["s=[[1,2,3],[0,0,0],[3,1,0]]", "y=[2,255,0]"]))
    assert "ignore_label" in line_with(out, "label 255")
    s = np.array([[1, 2, 3], [3, 1, 0]], float)
    p = np.exp(s - s.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    expected = -(np.log(p[0, 2]) + np.log(p[1, 0])) / 2
    assert "VALID (the default)" in out
    assert numbers(line_with(out, "normalizer ="))[-1] == 2.0
    assert numbers(line_with(out, "loss = Σ"))[-1] == round(expected, 4)
    assert numbers(line_with(out, "the layer computed"))[0] == round(expected, 4)


def test_chinese_trace(seed_net, capsys):
    assert main(["explain", seed_net, "--set", "fc1=[[1.2,0.8]]", "--set", "label=[1]", "--lang", "zh"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"[\u4e00-\u9fff]", out)
    assert "归一化" in out and "损失" in out and "梯度" in out
    assert numbers(line_with(out, "−log p ="))[-1] == 0.9130


def test_euclidean_sigmoid_and_accuracy_traces(tmp_path):
    path = tmp_path / "n.prototxt"
    path.write_text(
        'layer { name: "e" type: "EuclideanLoss" bottom: "a" bottom: "b" top: "le" }\n'
        'layer { name: "s" type: "SigmoidCrossEntropyLoss" bottom: "a" bottom: "t" top: "ls" }\n'
        'layer { name: "acc" type: "Accuracy" bottom: "a" bottom: "y" top: "acc" }\n')
    a, b, t = np.array([[1.0, -2.0], [0.5, 0.0]]), np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[1, 0], [0, 1]])
    out = explain_file(str(path), values={"a": a, "b": b, "t": t.astype(float), "y": np.array([0.0, 0.0])})
    n = a.shape[0]
    assert numbers(line_with(out, "Σ d² ="))[-1] == round(((a - b) ** 2).sum() / n / 2, 4)
    sce = (np.maximum(a, 0) - a * t + np.log1p(np.exp(-np.abs(a)))).sum() / n  # BATCH_SIZE default
    assert "BATCH_SIZE (the default of SigmoidCrossEntropyLoss)" in out
    assert numbers(line_with(out, "loss = Σ loss"))[-1] == round(sce, 4)
    assert numbers(line_with(out, "accuracy ="))[-1] == 1.0


def test_random_inputs_and_layer_choice(tmp_path):
    path = tmp_path / "n.prototxt"
    path.write_text('layer { name: "in" type: "Input" top: "x" top: "y" input_param { shape { dim: 3 dim: 4 }\n'
                    '  shape { dim: 3 } } }\n'
                    'layer { name: "l" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" top: "l" }\n'
                    'layer { name: "acc" type: "Accuracy" bottom: "x" bottom: "y" top: "acc" }\n')
    out = explain_file(str(path), layers=["acc"], seed=3)
    assert "random" in out and "Layer 'acc'" in out and "Layer 'l'" not in out
    full = explain_file(str(path))
    assert "Layer 'l'" in full and "Layer 'acc'" in full


def test_missing_values_and_python_layers_are_errors(tmp_path, seed_net):
    with pytest.raises(NetError, match="--set fc1"):
        explain_file(seed_net)
    path = tmp_path / "p.prototxt"
    path.write_text('layer { name: "d" type: "Python" top: "x" python_param { module: "nope" layer: "L" } }\n')
    with pytest.raises(NetError, match="Python layer"):
        explain_file(str(path))
    with pytest.raises(ValueError, match="JSON"):
        parse_values(["x=[1,"])
    assert main(["explain", seed_net, "--set", "fc1"]) == 2


def test_other_loss_layers_get_a_generic_trace(tmp_path):
    path = tmp_path / "h.prototxt"
    path.write_text('layer { name: "h" type: "HingeLoss" bottom: "s" bottom: "y" top: "l" }\n')
    out = explain_file(str(path), values=parse_values(["s=[[0.5,-0.2,0.1]]", "y=[0]"]))
    s = np.array([0.5, -0.2, 0.1])
    sign = np.where(np.arange(3) == 0, -1.0, 1.0)
    loss = np.maximum(0, 1 + sign * s).sum()  # L1 hinge, divided by N = 1
    assert "Layer 'h' (HingeLoss)" in out
    assert numbers(line_with(out, "loss ="))[0] == round(loss, 4)


def test_setting_a_computed_blob_is_an_error(tmp_path):
    path = tmp_path / "n.prototxt"
    path.write_text('layer { name: "r" type: "ReLU" bottom: "x" top: "y" }\n'
                    'layer { name: "l" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "l" }\n')
    with pytest.raises(NetError, match="--set y: not an input"):
        explain_file(str(path), values=parse_values(["x=[[1]]", "t=[[0]]", "y=[[2]]"]))


def test_data_layer_replaced_by_random_inputs_of_given_shape(tmp_path, capsys):
    path = tmp_path / "n.prototxt"
    path.write_text('layer { name: "d" type: "Data" top: "data" top: "label"\n'
                    '  data_param { source: "no/such/lmdb" batch_size: 2 backend: LMDB } }\n'
                    'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"\n'
                    '  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }\n'
                    'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }\n')
    assert main(["explain", str(path), "--input", "data=2,4", "--input", "label=2"]) == 0
    out = capsys.readouterr().out
    assert "drawn at random" in out and "inputs: ip 2x3, label 2" in out
    labels = [int(x) for x in re.findall(r"label (\d+): p\[", out)]
    assert len(labels) == 2 and all(0 <= v < 3 for v in labels)
