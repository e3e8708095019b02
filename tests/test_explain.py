"""``caffelite explain``: the seed article's example, other loss layers, Accuracy, Chinese output."""

import os
import re

import numpy as np
import pytest

import caffelite
import caffelite.upgrade
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
    with pytest.raises(ValueError, match="no values"):
        parse_values(["x=[]"])
    with pytest.raises(NetError, match="no values"):
        explain_file(seed_net, values={"fc1": np.zeros((0, 2)), "label": np.zeros(0)})
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


# --- issue 10: phases, repeated names, valid inputs, every loss traced, recomputation checked -----
def write(tmp_path, text, name="n.prototxt"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


TRAIN_VAL = ('layer { name: "in" type: "Input" top: "s" top: "y" input_param { shape { dim: 2 dim: 3 } '
             'shape { dim: 2 } } }\n'
             'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "s" bottom: "y" top: "loss" }\n'
             'layer { name: "acc" type: "Accuracy" bottom: "s" bottom: "y" top: "acc" include { phase: TEST } }\n')


def test_phase_selects_test_only_layers_and_internal_names_never_show(tmp_path, capsys):
    path = write(tmp_path, TRAIN_VAL)
    with pytest.raises(NetError, match="add --phase TEST") as err:
        explain_file(path, layers=["acc"])
    assert "explain_inputs" not in str(err.value)
    out = explain_file(path, layers=["acc"], phase=caffelite.TEST)
    assert "Layer 'acc' (Accuracy)" in out and "accuracy =" in out
    assert main(["explain", path, "--phase", "TEST"]) == 0
    out = capsys.readouterr().out
    assert "Layer 'acc'" in out and "Layer 'loss'" in out
    with pytest.raises(NetError) as err:
        explain_file(path, layers=["nope"])
    assert "explain_inputs" not in str(err.value) and "loss" in str(err.value)


def test_stage_and_level_select_layers_as_check_does(tmp_path):
    path = write(tmp_path, TRAIN_VAL.replace("include { phase: TEST }", "include { stage: \"deploy\" min_level: 2 }"))
    assert "Layer 'acc'" not in explain_file(path)
    with pytest.raises(NetError, match="stages/level"):
        explain_file(path, layers=["acc"], stages=["deploy"])
    assert "Layer 'acc'" in explain_file(path, stages=["deploy"], level=2)


def test_split_blobs_show_the_users_names(tmp_path):
    out = explain_file(write(tmp_path, TRAIN_VAL.replace(" include { phase: TEST }", "")))
    assert "split" not in out  # 's' and 'y' feed two layers: Caffe inserts Split layers with its own names
    assert out.count("inputs: s 2x3, y 2") == 2


def test_repeated_layer_names_are_shown_and_selected_by_position(tmp_path, capsys):
    path = write(tmp_path, 'layer { name: "loss" type: "EuclideanLoss" bottom: "a" bottom: "b" top: "l1" }\n'
                           'layer { name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "a" bottom: "t" top: "l2" '
                           'loss_weight: 0 }\n')
    shapes = {"a": (2, 3), "b": (2, 3), "t": (2, 3)}
    out = explain_file(path, shapes=shapes)
    assert out.count("Layer 'loss' (EuclideanLoss)") == 1 and out.count("Layer 'loss' (SigmoidCrossEntropyLoss)") == 1
    assert "layer 2 of the 2 named 'loss'" in out and "--layer loss#2" in out
    second = explain_file(path, shapes=shapes, layers=["loss#2"])
    assert "SigmoidCrossEntropyLoss" in second and "EuclideanLoss" not in second
    assert len(re.findall(r"Layer 'loss'", explain_file(path, shapes=shapes, layers=["loss"]))) == 2
    with pytest.raises(NetError, match="2 layer"):
        explain_file(path, shapes=shapes, layers=["loss#3"])


def test_step_numbers_restart_for_each_layer(tmp_path):
    out = explain_file(write(tmp_path, TRAIN_VAL.replace(" include { phase: TEST }", "")))
    blocks = out.split("\nLayer ")[1:]
    assert len(blocks) == 2 and all("Step 1." in b for b in blocks)


LOSSES = ('layer { name: "sce" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "t" top: "l1" }\n'
          'layer { name: "mll" type: "MultinomialLogisticLoss" bottom: "p" bottom: "y" top: "l2" }\n'
          'layer { name: "ig" type: "InfogainLoss" bottom: "s" bottom: "y" bottom: "H" top: "l3" }\n'
          'layer { name: "h" type: "HingeLoss" bottom: "s" bottom: "y" top: "l4" }\n'
          'layer { name: "c" type: "ContrastiveLoss" bottom: "a" bottom: "b" bottom: "sim" top: "l5" }\n')
LOSS_SHAPES = {"x": (3, 4), "t": (3, 4), "p": (3, 5), "y": (3,), "s": (3, 5), "H": (5, 5), "a": (3, 2), "b": (3, 2),
               "sim": (3,)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_inputs_are_valid_for_the_layers_reading_them(tmp_path, seed):
    from caffelite.explain.driver import _fill_inputs, _prepare, _View

    param = caffelite.upgrade.read_net_param(write(tmp_path, LOSSES))
    prepared = _prepare(param, {}, LOSS_SHAPES, False)
    net = caffelite.Net(prepared, phase=caffelite.TRAIN)
    _fill_inputs(net, _View(net, prepared), {}, seed)
    b = {n: net.blobs[n].data for n in LOSS_SHAPES}
    assert ((b["t"] >= 0) & (b["t"] <= 1)).all() and not ((b["t"] == 0) | (b["t"] == 1)).all()
    np.testing.assert_allclose(b["p"].sum(axis=1), 1, rtol=1e-5)
    assert (b["p"] >= 0).all() and (b["H"] >= 0).all()
    assert set(np.unique(b["y"])) <= set(range(5)) and set(np.unique(b["sim"])) <= {0, 1}
    out = explain_file(write(tmp_path, LOSSES), shapes=LOSS_SHAPES, seed=seed)
    assert "⚠" not in out


def test_invalid_given_values_are_flagged(tmp_path):
    out = explain_file(write(tmp_path, LOSSES), shapes=LOSS_SHAPES,
                       values={"t": np.full((3, 4), 1.5), "p": np.full((3, 5), 0.5), "H": -np.eye(5),
                               "sim": np.array([0.0, 2.0, 1.0])})
    assert "'t' holds targets outside [0, 1]: [1.5" in out
    assert "'p' does not hold probabilities" in out and "sums: [2.5" in out
    assert "'H' (the infogain matrix H) has negative entries" in out
    assert "'sim' holds similarity labels other than 0 / 1: [2]" in out
    with pytest.raises(caffelite.errors.CaffeliteError, match=r"'y' holds labels that are not class indices 0..4"):
        explain_file(write(tmp_path, LOSSES), shapes=LOSS_SHAPES, values={"y": np.array([0.0, 7.0, 1.0])})


def _reference_grads(out):
    """(explain's ∂E/∂ line, the layer's line) pairs of a trace."""
    lines = out.splitlines()
    return [(numbers(a), numbers(b)) for a, b in zip(lines, lines[1:]) if "∂E/∂" in a and "backward gave" in b]


@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_hinge_trace(tmp_path, norm):
    path = write(tmp_path, 'layer { name: "h" type: "HingeLoss" bottom: "s" bottom: "y" top: "l" loss_weight: 2 '
                           'hinge_loss_param { norm: %s } }\n' % norm)
    s, y = np.array([[0.5, -0.2, 1.3], [0.1, 2.0, -1.5]]), np.array([0.0, 2.0])
    out = explain_file(path, values={"s": s, "y": y})
    delta = -np.ones_like(s)
    delta[[0, 1], [0, 2]] = 1
    m = np.maximum(0, 1 - delta * s)
    loss = (m ** 2 if norm == "L2" else m).sum() / 2
    grad = -2 * delta * (2 * m if norm == "L2" else np.sign(m)) / 2
    assert numbers(line_with(out, "n=1, label 2"))[-3:] == [round(v, 4) for v in m[1]]
    assert ("Σ m² / N" if norm == "L2" else "Σ m / N") in out
    assert numbers(line_with(out, "loss = "))[-1] == round(loss, 4)
    [(ours, theirs)] = _reference_grads(out)
    assert ours == theirs == [round(v, 4) for v in grad.ravel()] and "⚠" not in out


@pytest.mark.parametrize("legacy", [False, True])
def test_contrastive_trace(tmp_path, legacy):
    path = write(tmp_path, 'layer { name: "c" type: "ContrastiveLoss" bottom: "a" bottom: "b" bottom: "y" top: "l" '
                           'contrastive_loss_param { margin: 2 legacy_version: %s } }\n' % str(legacy).lower())
    a, b, y = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 0.2]]), np.array([[0.0, 0.0], [0.0, 1.0], [3.0, 0.0]]), \
        np.array([1.0, 0.0, 0.0])
    out = explain_file(path, values={"a": a, "b": b, "y": y})
    d = np.linalg.norm(a - b, axis=1)
    dis = np.maximum(2 - d ** 2, 0) if legacy else np.maximum(2 - d, 0) ** 2
    per = np.where(y != 0, d ** 2, dis)
    assert numbers(line_with(out, "pair 1: y = 0"))[-1] == round(per[1], 4)
    assert numbers(line_with(out, "loss = "))[-1] == round(per.sum() / 6, 4)
    pairs = _reference_grads(out)
    assert len(pairs) == 2 and all(ours == theirs for ours, theirs in pairs) and "⚠" not in out
    assert pairs[1][0] == [-v for v in pairs[0][0]]  # ∂E/∂b = −∂E/∂a


def test_multinomial_logistic_and_infogain_traces(tmp_path):
    path = write(tmp_path, 'layer { name: "m" type: "MultinomialLogisticLoss" bottom: "p" bottom: "y" top: "l1" }\n'
                           'layer { name: "ig" type: "InfogainLoss" bottom: "s" bottom: "y" bottom: "H" top: "l2" }\n')
    p, y = np.array([[0.2, 0.7, 0.1], [0.5, 0.25, 0.25]]), np.array([1.0, 0.0])
    s, h = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]), np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0, 0, 2.0]])
    out = explain_file(path, values={"p": p, "y": y, "s": s, "H": h})
    mll = -(np.log(0.7) + np.log(0.5)) / 2
    block_m, block_ig = out.split("\nLayer 'ig'")
    assert numbers(line_with(block_m, "loss = "))[-1] == round(mll, 4)
    q = np.exp(s - s.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    ig = -(h[[1, 0]] * np.log(q)).sum() / 2
    assert numbers(line_with(block_ig, "loss = Σ"))[-1] == round(ig, 4)
    assert "VALID" in block_ig and "H (H): 3 × 3" in block_ig
    assert len(_reference_grads(out)) == 2 and all(a == b for a, b in _reference_grads(out)) and "⚠" not in out


def test_euclidean_gradient_of_both_bottoms(tmp_path):
    path = write(tmp_path, 'layer { name: "e" type: "EuclideanLoss" bottom: "a" bottom: "b" top: "l" '
                           'loss_weight: 3 }\n')
    a, b = np.array([[1.0, 2.0], [0.5, 0.0]]), np.array([[0.0, 1.0], [1.0, 1.0]])
    out = explain_file(path, values={"a": a, "b": b})
    pairs = _reference_grads(out)
    assert [p[0] for p in pairs] == [[round(v, 4) for v in (3 * (a - b) / 2).ravel()],
                                     [round(v, 4) for v in (-3 * (a - b) / 2).ravel()]]
    assert all(ours == theirs for ours, theirs in pairs) and "Gradient sent to 'b'" in out


def test_python_loss_layer_is_explained_as_value_and_gradient(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(os.path.abspath(__file__)), "pylayers"))
    path = write(tmp_path, 'layer { name: "py" type: "Python" bottom: "a" bottom: "b" top: "l" loss_weight: 2 '
                           'python_param { module: "pyloss" layer: "EuclideanLossLayer" } }\n')
    a, b = np.array([[1.0, 2.0]]), np.array([[0.0, 0.0]])
    out = explain_file(path, values={"a": a, "b": b}, allow_python_layers=True)
    assert "Layer 'py' (Python)" in out and "Step 1. Forward" in out and "Step 2. Backward" in out
    assert numbers(line_with(out, "loss (top 'l')"))[-1] == 2.5
    assert numbers(line_with(out, "gradient sent to 'a'")) == [2.0, 4.0]
    assert numbers(line_with(out, "gradient sent to 'b'")) == [-2.0, -4.0]


def test_missing_data_source_suggests_input(tmp_path, capsys):
    path = write(tmp_path, 'layer { name: "d" type: "Data" top: "data" top: "label"\n'
                           '  data_param { source: "no/such/lmdb" batch_size: 2 backend: LMDB } }\n'
                           'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "data" bottom: "label" top: "l" }\n')
    with pytest.raises(caffelite.errors.CaffeliteError, match=r"--input data=SHAPE --input label=SHAPE"):
        explain_file(path)
    assert main(["explain", path]) == 1
    assert "--input data=SHAPE" in capsys.readouterr().err


def test_a_layer_that_disagrees_with_the_recomputation_is_flagged(tmp_path, monkeypatch):
    from caffelite.layer_factory import layer_class

    cls = layer_class("EuclideanLoss")
    forward, backward = cls.forward, cls.backward

    def wrong_forward(self, bottom, top):
        forward(self, bottom, top)
        top[0].data[...] *= 2

    def wrong_backward(self, top, propagate_down, bottom):
        backward(self, top, propagate_down, bottom)
        bottom[1].diff[...] = 0

    path = write(tmp_path, 'layer { name: "e" type: "EuclideanLoss" bottom: "a" bottom: "b" top: "l" }\n')
    values = {"a": np.array([[1.0, 2.0]]), "b": np.array([[0.0, 0.0]])}
    assert "⚠" not in explain_file(path, values=values)
    monkeypatch.setattr(cls, "forward", wrong_forward)
    monkeypatch.setattr(cls, "backward", wrong_backward)
    out = explain_file(path, values=values)
    assert "⚠ explain's recomputation and the layer differ: the loss" in out
    assert "⚠ explain's recomputation and the layer differ: the gradient of 'b'" in out
    assert "2 difference(s)" in out
    zh = explain_file(path, values=values, lang="zh")
    assert "不一致" in zh and "2 处" in zh


def test_every_message_exists_in_both_languages():
    from caffelite.explain import MESSAGES

    assert set(MESSAGES["en"]) == set(MESSAGES["zh"])
    for key, text in MESSAGES["en"].items():
        assert set(re.findall(r"{(\w+)}", text)) == set(re.findall(r"{(\w+)}", MESSAGES["zh"][key])), key


def test_label_bottoms_come_from_the_layer_classes():
    from caffelite.explain.driver import CLASS_AXIS, VALUE_DOMAINS
    from caffelite.layer_factory import layer_class

    for type_name in set(CLASS_AXIS) | {t for t, d in VALUE_DOMAINS.items() if "label" in d}:
        assert layer_class(type_name).label_bottom is not None, type_name
    assert layer_class("ContrastiveLoss").label_bottom == 2  # the similarity label, after the pair
