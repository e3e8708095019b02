"""The other loss layers: forward against plain NumPy, normalization, ignored labels, inputs without a
gradient (labels, InfogainLoss's H, similarity labels), and Caffe's error messages."""

import os
import textwrap

import numpy as np
import pytest

import caffelite
from caffelite.blob import Blob
from caffelite.errors import BackwardError, LabelError, LayerError, ShapeError
from caffelite.testing import make_layer
from tests.golden_runner import GOLDEN

RNG = np.random.default_rng(11)
H_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "infogain_h5.binaryproto")


def run(spec, *arrays, num_top=1):
    layer = make_layer(spec)
    bottom = [Blob(data=np.asarray(a, dtype=np.float64), dtype=np.float64) for a in arrays]
    top = [Blob(dtype=np.float64) for _ in range(num_top)]
    layer.run_setup(bottom, top)
    layer.run_forward(bottom, top)
    return layer, bottom, top


def grad(layer, bottom, top, propagate=None):
    propagate = propagate or [layer.allow_force_backward(i) for i in range(len(bottom))]
    layer.run_backward(top, propagate, bottom)
    return [b.diff for b in bottom]


def loss(top):
    return float(top[0].data)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def softmax(x, axis=1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# --- SigmoidCrossEntropyLoss ------------------------------------------------------------------
@pytest.mark.parametrize("loss_param,divisor", [
    ("", "batch"),  # Caffe's default for this layer is BATCH_SIZE (SoftmaxWithLoss: VALID)
    ("loss_param { normalize: true }", "valid"),
    ("loss_param { normalize: false }", "batch"),
    ("loss_param { normalization: FULL normalize: true }", "full"),
    ("loss_param { normalization: NONE }", "none"),
    ("loss_param { normalization: VALID }", "valid"),
])
def test_sigmoid_ce_normalization_and_ignore_label(loss_param, divisor):
    x = RNG.normal(size=(4, 3))
    t = RNG.integers(0, 2, size=(4, 3)).astype(float)
    t[0, :2] = -1
    spec = 'type: "SigmoidCrossEntropyLoss" %s' % loss_param.replace("loss_param {", "loss_param { ignore_label: -1")
    if "loss_param" not in spec:
        spec += " loss_param { ignore_label: -1 }"
    layer, bottom, top = run(spec, x, t)
    valid = t != -1
    p = sigmoid(x)
    total = -np.sum((t * np.log(p) + (1 - t) * np.log(1 - p))[valid])
    n = {"batch": 4, "valid": valid.sum(), "full": 12, "none": 1}[divisor]
    assert loss(top) == pytest.approx(total / n, rel=1e-10)
    top[0].diff[...] = 2.0
    dx, dt = grad(layer, bottom, top)
    np.testing.assert_allclose(dx, 2.0 * (p - t) * valid / n, rtol=1e-10, atol=1e-15)
    assert not dt.any()


def test_sigmoid_ce_is_stable_for_large_inputs():
    x = np.array([[800.0, -800.0, 0.0]])
    t = np.array([[0.0, 1.0, 1.0]])
    _, _, top = run('type: "SigmoidCrossEntropyLoss"', x, t)
    assert loss(top) == pytest.approx(800 + 800 + np.log(2))


def test_sigmoid_ce_count_mismatch_has_caffes_message():
    with pytest.raises(ShapeError, match="SIGMOID_CROSS_ENTROPY_LOSS layer inputs must have the same count."):
        run('type: "SigmoidCrossEntropyLoss"', np.zeros((2, 3)), np.zeros((2, 4)))


# --- InfogainLoss -----------------------------------------------------------------------------
def infogain_ref(x, labels, h, axis=1, ignore=None, normalizer="valid"):
    p = np.moveaxis(softmax(x, axis), axis, -1).reshape(-1, x.shape[axis])
    lab = labels.reshape(-1).astype(int)
    valid = np.ones(lab.shape, bool) if ignore is None else lab != ignore
    safe = np.where(valid, lab, 0)
    total = -np.sum((h[safe] * np.log(p))[valid])
    n = {"valid": valid.sum(), "full": lab.size}[normalizer]
    return total / n


def test_infogain_forward_backward_against_numpy():
    x, labels, h = RNG.normal(size=(4, 5)), RNG.integers(0, 5, 4).astype(float), RNG.uniform(size=(5, 5))
    layer, bottom, top = run('type: "InfogainLoss"', x, labels, h)
    assert loss(top) == pytest.approx(infogain_ref(x, labels, h), rel=1e-10)
    top[0].diff[...] = 1.0
    dx, dl, dh = grad(layer, bottom, top)
    lab = labels.astype(int)
    np.testing.assert_allclose(dx, (softmax(x) * h[lab].sum(axis=1, keepdims=True) - h[lab]) / 4, rtol=1e-10)
    assert not dl.any() and not dh.any()


def test_infogain_axis_ignore_label_and_prob_top():
    x, labels, h = RNG.normal(size=(2, 3, 4)), RNG.integers(0, 3, (2, 4)).astype(float), RNG.uniform(size=(3, 3))
    spec = 'type: "InfogainLoss" loss_param { ignore_label: 1 normalization: FULL }'
    layer, bottom, top = run(spec, x, labels, h, num_top=2)
    assert loss(top) == pytest.approx(infogain_ref(x, labels, h, ignore=1, normalizer="full"), rel=1e-10)
    np.testing.assert_allclose(top[1].data, softmax(x), rtol=1e-12)
    assert layer.loss(1) == 0
    top[0].diff[...] = 1.0
    dx = grad(layer, bottom, top)[0]
    assert not dx.transpose(0, 2, 1)[labels == 1].any()


def test_infogain_matrix_from_source_equals_third_bottom():
    from caffelite.protoio import read_blob_proto

    h = read_blob_proto(H_SOURCE).reshape(5, 5).astype(np.float64)
    x, labels = RNG.normal(size=(3, 5)), np.array([0.0, 4.0, 2.0])
    _, _, top2 = run('type: "InfogainLoss" infogain_loss_param { source: "%s" }' % H_SOURCE, x, labels)
    _, _, top3 = run('type: "InfogainLoss"', x, labels, h)
    assert loss(top2) == pytest.approx(loss(top3), rel=1e-12)


def test_infogain_errors_have_caffes_text():
    x, labels = np.zeros((2, 3)), np.zeros(2)
    with pytest.raises(LayerError, match="Infogain matrix source must be specified."):
        run('type: "InfogainLoss"', x, labels)
    with pytest.raises(LayerError, match='normalize is deprecated. use "normalization"'):
        run('type: "InfogainLoss" loss_param { normalize: true }', x, labels, np.eye(3))
    with pytest.raises(ShapeError, match="H must be 3x3"):
        run('type: "InfogainLoss"', x, labels, np.eye(2))
    with pytest.raises(LabelError, match="Number of labels must match number of predictions"):
        run('type: "InfogainLoss"', np.zeros((2, 3, 2)), labels, np.eye(3))
    with pytest.raises(LabelError, match="label value 3 at position"):
        run('type: "InfogainLoss"', x, np.array([0.0, 3.0]), np.eye(3))


def test_infogain_refuses_a_gradient_for_h_or_label():
    layer, bottom, top = run('type: "InfogainLoss"', np.zeros((2, 3)), np.zeros(2), np.eye(3))
    assert [layer.allow_force_backward(i) for i in range(3)] == [True, False, False]
    with pytest.raises(BackwardError, match="InfogainLoss Layer cannot backpropagate to infogain inputs."):
        layer.run_backward(top, [True, False, True], bottom)
    with pytest.raises(BackwardError, match="InfogainLoss Layer cannot backpropagate to label inputs."):
        layer.run_backward(top, [True, True, False], bottom)


def test_infogain_force_backward_skips_label_and_h():
    """Caffe aborts on this net (golden case infogain_force_backward_aborts); caffelite skips H and
    the label and still gives x its gradient."""
    proto = os.path.join(GOLDEN, "layers", "infogain_force_backward_aborts", "net.prototxt")
    net = caffelite.Net(proto, caffelite.TEST)
    x = RNG.normal(size=(4, 5)).astype(np.float32)
    net.blobs["x"].data[...] = x
    net.blobs["label"].data[...] = [0, 1, 4, 2]
    net.blobs["H"].data[...] = np.eye(5) + 0.5
    net.forward()
    net.backward()
    need = net.blob_need_backward
    assert need["x"] and not need["label"] and not need["H"]
    assert np.abs(net.blobs["x"].diff).sum() > 0
    assert not net.blobs["label"].diff.any() and not net.blobs["H"].diff.any()


def test_explicit_propagate_down_on_h_is_a_clear_error(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(textwrap.dedent("""
        force_backward: true
        layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
        layer { name: "label" type: "Input" top: "label" input_param { shape { dim: 2 } } }
        layer { name: "H" type: "Input" top: "H" input_param { shape { dim: 3 dim: 3 } } }
        layer { name: "loss" type: "InfogainLoss" bottom: "x" bottom: "label" bottom: "H" top: "loss"
                propagate_down: true propagate_down: false propagate_down: true }
    """))
    with pytest.raises(BackwardError, match="cannot backpropagate to bottom 2 \\('H'\\)") as err:
        caffelite.Net(str(path), caffelite.TEST)
    assert err.value.layer == "loss" and err.value.field == "propagate_down"


# --- MultinomialLogisticLoss --------------------------------------------------------------------
def test_multinomial_logistic_against_numpy_and_its_floor():
    p = RNG.uniform(0.05, 1, size=(4, 5))
    labels = np.array([0.0, 3.0, 4.0, 1.0])
    p[2, 4] = 0.0  # clamped at 1e-20 (Caffe's kLOG_THRESHOLD), no log(0) warning
    layer, bottom, top = run('type: "MultinomialLogisticLoss"', p, labels)
    picked = np.maximum(p[np.arange(4), labels.astype(int)], 1e-20)
    assert loss(top) == pytest.approx(-np.log(picked).sum() / 4, rel=1e-12)
    top[0].diff[...] = 1.0
    dp, dl = grad(layer, bottom, top)
    ref = np.zeros_like(p)
    ref[np.arange(4), labels.astype(int)] = -1 / picked / 4
    np.testing.assert_allclose(dp, ref)
    assert not dl.any()


def test_multinomial_logistic_label_errors():
    with pytest.raises(ShapeError, match="one label per example"):
        run('type: "MultinomialLogisticLoss"', np.ones((2, 3)), np.zeros((2, 2)))
    with pytest.raises(LabelError, match="label value 5 at position \\(1,\\) is out of range"):
        run('type: "MultinomialLogisticLoss"', np.ones((2, 3)), np.array([0.0, 5.0]))
    layer, bottom, top = run('type: "MultinomialLogisticLoss"', np.ones((2, 3)), np.zeros(2))
    with pytest.raises(BackwardError, match="MultinomialLogisticLoss Layer cannot backpropagate to label inputs."):
        layer.run_backward(top, [True, True], bottom)


# --- HingeLoss ----------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_hinge_against_numpy(norm):
    x = RNG.normal(size=(4, 5))
    labels = np.array([1.0, 0.0, 4.0, 1.0])
    layer, bottom, top = run('type: "HingeLoss" hinge_loss_param { norm: %s }' % norm, x, labels)
    delta = -np.ones_like(x)
    delta[np.arange(4), labels.astype(int)] = 1
    m = np.maximum(0, 1 - delta * x)
    assert loss(top) == pytest.approx((m.sum() if norm == "L1" else (m ** 2).sum()) / 4, rel=1e-12)
    top[0].diff[...] = 3.0
    dx = grad(layer, bottom, top)[0]
    ref = -delta * (np.sign(m) if norm == "L1" else 2 * m) * 3.0 / 4
    np.testing.assert_allclose(dx, ref, rtol=1e-12)


def test_hinge_gradient_is_zero_at_the_kink():
    x = np.array([[1.0, -1.0, 0.5]])  # true class 0: margin 1 - 1 = 0; class 1: 1 + (-1) = 0
    layer, bottom, top = run('type: "HingeLoss"', x, np.array([0.0]))
    top[0].diff[...] = 1.0
    np.testing.assert_array_equal(grad(layer, bottom, top)[0], [[0.0, 0.0, 1.0]])


# --- ContrastiveLoss ----------------------------------------------------------------------------
@pytest.mark.parametrize("legacy", [False, True])
def test_contrastive_against_numpy(legacy):
    a, b = RNG.normal(size=(6, 3)), RNG.normal(size=(6, 3))
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    spec = 'type: "ContrastiveLoss" contrastive_loss_param { margin: 2.5 legacy_version: %s }' % str(legacy).lower()
    layer, bottom, top = run(spec, a, b, y)
    d2 = ((a - b) ** 2).sum(axis=1)
    dissimilar = np.maximum(2.5 - d2, 0) if legacy else np.maximum(2.5 - np.sqrt(d2), 0) ** 2
    assert loss(top) == pytest.approx(np.where(y == 1, d2, dissimilar).sum() / 12, rel=1e-12)
    top[0].diff[...] = 1.0
    da, db, dy = grad(layer, bottom, top)
    np.testing.assert_allclose(da, -db)
    np.testing.assert_allclose(da[y == 1], (a - b)[y == 1] / 6)
    assert not dy.any()


def test_contrastive_similarity_label_has_no_gradient():
    layer, bottom, top = run('type: "ContrastiveLoss"', np.ones((2, 3)), np.zeros((2, 3)), np.ones(2))
    assert [layer.allow_force_backward(i) for i in range(3)] == [True, True, False]
    with pytest.raises(BackwardError, match="cannot backpropagate to similarity label inputs"):
        layer.run_backward(top, [True, True, True], bottom)


def test_contrastive_shape_errors():
    with pytest.raises(ShapeError, match="equal C"):
        run('type: "ContrastiveLoss"', np.ones((2, 3)), np.zeros((2, 4)), np.ones(2))
    with pytest.raises(ShapeError, match="one similarity label per pair"):
        run('type: "ContrastiveLoss"', np.ones((2, 3)), np.zeros((2, 3)), np.ones((2, 2)))


# --- documented behaviour: Accuracy's tie rule, loss_weight in run_forward's value ---------------
def test_accuracy_ties_count_against_the_label():
    """Caffe counts the classes scoring >= the label's score, the label included: a tie is a miss at top_k 1."""
    scores = np.array([[0.5, 0.5, 0.1],   # label 0 tied with class 1: 2 classes >= it
                       [0.2, 0.7, 0.7],   # label 2 tied with class 1
                       [0.9, 0.3, 0.3]])  # label 0 alone at the top
    labels = np.array([0.0, 2.0, 0.0])
    _, _, top = run('type: "Accuracy"', scores, labels, num_top=2)
    assert float(top[0].data) == pytest.approx(1 / 3)
    np.testing.assert_allclose(top[1].data, [0.5, 0.0, 0.0])  # per class: class 0 one of two, class 2 none
    _, _, top = run('type: "Accuracy" accuracy_param { top_k: 2 }', scores, labels)
    assert float(top[0].data) == 1.0
    _, _, top = run('type: "Accuracy" accuracy_param { top_k: 2 }', [[0.4, 0.4, 0.4]], [2.0])
    assert float(top[0].data) == 0.0  # three-way tie: 3 classes >= the label's score, more than top_k


@pytest.mark.parametrize("spec, arrays", [
    ('type: "SoftmaxWithLoss"', ([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], [1.0, 2.0])),
    ('type: "EuclideanLoss"', ([[1.0, 2.0], [0.5, 0.0]], [[0.0, 1.0], [1.0, 1.0]])),
    ('type: "SigmoidCrossEntropyLoss"', ([[1.0, -2.0], [0.5, 0.0]], [[1.0, 0.0], [0.0, 1.0]])),
    ('type: "HingeLoss"', ([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], [1.0, 2.0])),
])
@pytest.mark.parametrize("weight", [1.0, 2.5, 0.0, -0.5])
def test_run_forward_returns_the_loss_times_loss_weight(spec, arrays, weight):
    """Caffe's Layer::Forward returns Σ top · loss_weight; the top itself keeps the unweighted loss."""
    layer = make_layer('%s loss_weight: %g' % (spec, weight))
    bottom = [Blob(data=np.asarray(a, dtype=np.float64), dtype=np.float64) for a in arrays]
    top = [Blob(dtype=np.float64)]
    layer.run_setup(bottom, top)
    value = layer.run_forward(bottom, top)
    unweighted = float(top[0].data)
    _, _, plain = run(spec, *arrays)
    assert unweighted == pytest.approx(float(plain[0].data)) and unweighted != 0
    assert value == pytest.approx(weight * unweighted)
