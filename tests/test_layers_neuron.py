"""Neuron layers: forward against plain NumPy, Caffe's special cases, errors, and in-place use in a Net."""

import numpy as np
import pytest

import caffelite
from caffelite.blob import Blob
from caffelite.errors import LayerError, ShapeError
from caffelite.testing import make_layer


def run(spec, x, phase=caffelite.TRAIN, top_diff=None):
    """Set up and run a one-bottom layer in float64; backward with ``top_diff`` when given."""
    layer = make_layer(spec, phase)
    bottom = [Blob(data=np.asarray(x, dtype=np.float64), dtype=np.float64)]
    top = [Blob(dtype=np.float64)]
    layer.run_setup(bottom, top)
    layer.run_forward(bottom, top)
    if top_diff is not None:
        top[0].diff[...] = top_diff
        layer.param_propagate_down = [True] * len(layer.blobs)
        layer.run_backward(top, [True], bottom)
    return layer, bottom[0], top[0]


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


X = np.random.default_rng(3).normal(size=(2, 3, 4))

FORWARD = [
    ('type: "ELU" elu_param { alpha: 0.75 }', lambda x: np.where(x > 0, x, 0.75 * (np.exp(x) - 1))),
    ('type: "AbsVal"', np.abs),
    ('type: "BNLL"', lambda x: np.log1p(np.exp(x))),
    ('type: "Power" power_param { power: 2 scale: 0.5 shift: 1 }', lambda x: (0.5 * x + 1) ** 2),
    ('type: "Exp"', np.exp),
    ('type: "Exp" exp_param { base: 2 scale: 0.5 shift: 1 }', lambda x: 2.0 ** (0.5 * x + 1)),
    ('type: "Log" log_param { base: 10 scale: 2 shift: 8 }', lambda x: np.log10(2 * x + 8)),
    ('type: "Threshold" threshold_param { threshold: 0.3 }', lambda x: (x > 0.3).astype(float)),
    ('type: "Clip" clip_param { min: -0.5 max: 0.75 }', lambda x: np.clip(x, -0.5, 0.75)),
    ('type: "Swish"', lambda x: x * sigmoid(x)),
    ('type: "Swish" swish_param { beta: 1.5 }', lambda x: x * sigmoid(1.5 * x)),
    ('type: "PReLU"', lambda x: np.where(x > 0, x, 0.25 * x)),
]


@pytest.mark.parametrize("spec,ref", FORWARD, ids=[s.split('"')[1] + str(i) for i, (s, _) in enumerate(FORWARD)])
def test_forward_matches_numpy(spec, ref):
    _, _, top = run(spec, X)
    np.testing.assert_allclose(top.data, ref(X), rtol=1e-12, atol=1e-12)


def test_prelu_per_channel_slopes_and_accumulating_param_diff():
    layer = make_layer('type: "PReLU" prelu_param { filler { type: "gaussian" } }')
    bottom, top = [Blob(data=X, dtype=np.float64)], [Blob(dtype=np.float64)]
    layer.run_setup(bottom, top)
    assert layer.blobs[0].shape == (3,)
    a = layer.blobs[0].data
    layer.run_forward(bottom, top)
    np.testing.assert_allclose(top[0].data, np.where(X > 0, X, a[None, :, None] * X))
    dy = np.random.default_rng(0).normal(size=X.shape)
    top[0].diff[...] = dy
    layer.param_propagate_down = [True]
    layer.run_backward(top, [True], bottom)
    layer.run_backward(top, [True], bottom)  # parameter diffs accumulate, as in Caffe
    expected = (dy * X * (X <= 0)).sum(axis=(0, 2))
    np.testing.assert_allclose(layer.blobs[0].diff, 2 * expected)
    np.testing.assert_allclose(bottom[0].diff, dy * np.where(X > 0, 1, a[None, :, None]))


def test_prelu_shared_slope_is_a_scalar_blob():
    layer, _, _ = run('type: "PReLU" prelu_param { channel_shared: true }', X)
    assert layer.blobs[0].shape == () and float(layer.blobs[0].data) == pytest.approx(0.25)


def test_prelu_needs_two_axes():
    with pytest.raises(ShapeError, match="Number of axes of bottom blob must be >=2"):
        run('type: "PReLU"', np.ones(4))


def test_elu_and_swish_and_clip_backward():
    dy = np.random.default_rng(1).normal(size=X.shape)
    _, b, t = run('type: "ELU" elu_param { alpha: 0.75 }', X, top_diff=dy)
    np.testing.assert_allclose(b.diff, dy * np.where(X > 0, 1, 0.75 * np.exp(X)))
    _, b, t = run('type: "Swish" swish_param { beta: 2 }', X, top_diff=dy)
    s = sigmoid(2 * X)
    np.testing.assert_allclose(b.diff, dy * (s + 2 * X * s * (1 - s)))
    x = np.array([[-1.0, -0.5, 0.0, 0.75, 1.0]])
    _, b, _ = run('type: "Clip" clip_param { min: -0.5 max: 0.75 }', x, top_diff=np.ones_like(x))
    np.testing.assert_array_equal(b.diff, [[0, 1, 1, 1, 0]])  # the gradient passes at both bounds


def test_power_special_cases():
    dy = np.ones_like(X)
    # power * scale == 0: constant output, zero gradient (not top_diff times the constant)
    _, b, t = run('type: "Power" power_param { power: 2 scale: 0 shift: 3 }', X, top_diff=dy)
    np.testing.assert_array_equal(t.data, 9.0)
    np.testing.assert_array_equal(b.diff, 0.0)
    _, b, t = run('type: "Power" power_param { power: 0 shift: 3 }', X, top_diff=dy)
    np.testing.assert_array_equal(t.data, 1.0)
    np.testing.assert_array_equal(b.diff, 0.0)
    _, b, t = run('type: "Power" power_param { power: 1 scale: -2 shift: 3 }', X, top_diff=dy)
    np.testing.assert_allclose(t.data, -2 * X + 3)
    np.testing.assert_array_equal(b.diff, -2.0)
    x = np.abs(X) + 0.5
    _, b, _ = run('type: "Power" power_param { power: 3 scale: 1.5 }', x, top_diff=dy)
    np.testing.assert_allclose(b.diff, 3 * 1.5 * (1.5 * x) ** 2)


@pytest.mark.parametrize("spec", ['type: "Exp" exp_param { base: -2 }', 'type: "Log" log_param { base: 0 }'])
def test_exp_log_refuse_non_positive_base(spec):
    with pytest.raises(LayerError, match="base must be strictly positive"):
        run(spec, X)


def test_absval_refuses_in_place():
    layer = make_layer('type: "AbsVal"')
    blob = Blob(data=X)
    with pytest.raises(LayerError, match="does not allow in-place computation"):
        layer.run_setup([blob], [blob])


def test_threshold_has_no_backward():
    layer, b, t = run('type: "Threshold"', X)
    assert not layer.has_backward and not layer.allow_force_backward(0)


def test_dropout_train_mask_scaling_and_seed():
    x = np.ones((50, 40))
    caffelite.set_random_seed(7)
    layer, _, t1 = run('type: "Dropout" dropout_param { dropout_ratio: 0.3 }', x)
    kept = t1.data != 0
    np.testing.assert_allclose(t1.data[kept], 1 / 0.7)
    assert 0.6 < kept.mean() < 0.8
    caffelite.set_random_seed(7)
    _, _, t2 = run('type: "Dropout" dropout_param { dropout_ratio: 0.3 }', x)
    np.testing.assert_array_equal(t1.data, t2.data)
    caffelite.set_random_seed(8)
    _, _, t3 = run('type: "Dropout" dropout_param { dropout_ratio: 0.3 }', x)
    assert not np.array_equal(t1.data, t3.data)
    dy = np.full(x.shape, 2.0)
    caffelite.set_random_seed(7)
    _, b, t = run('type: "Dropout" dropout_param { dropout_ratio: 0.3 }', x, top_diff=dy)
    np.testing.assert_allclose(b.diff, np.where(kept, 2 / 0.7, 0))


def test_dropout_test_phase_is_identity():
    dy = np.random.default_rng(2).normal(size=X.shape)
    _, b, t = run('type: "Dropout" dropout_param { dropout_ratio: 0.6 }', X, phase=caffelite.TEST, top_diff=dy)
    np.testing.assert_array_equal(t.data, X)
    np.testing.assert_array_equal(b.diff, dy)


def test_dropout_ratio_must_be_below_one():
    with pytest.raises(LayerError, match="dropout_ratio"):
        run('type: "Dropout" dropout_param { dropout_ratio: 1 }', X)


NET = """
name: "inplace"
force_backward: true
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 4 } } }
layer { name: "pre" type: "Power" bottom: "data" top: "pre" power_param { scale: 1 } }
layer { name: "act" type: "%s" bottom: "pre" top: "%s" %s }
layer { name: "loss" type: "EuclideanLoss" bottom: "%s" bottom: "data" top: "loss" }
"""


@pytest.mark.parametrize("kind,param", [
    ("PReLU", 'prelu_param { filler { type: "constant" value: 0.3 } }'),
    ("PReLU", 'prelu_param { channel_shared: true }'),
    ("ELU", ""), ("Swish", ""), ("Dropout", ""), ("ReLU", 'relu_param { negative_slope: 0.1 }'),
])
def test_in_place_in_a_net_matches_out_of_place(tmp_path, kind, param):
    results = []
    for top in ("pre", "act_out"):
        path = tmp_path / ("%s.prototxt" % top)
        path.write_text(NET % (kind, top, param, top))
        net = caffelite.Net(str(path), caffelite.TRAIN)
        net.blobs["data"].data[...] = X
        caffelite.set_random_seed(11)
        net.forward()
        net.backward()
        params = [p.diff.copy() for p in net.params["act"]] if "act" in net.params else []
        results.append((float(net.blobs["loss"].data), net.blobs["data"].diff.copy(), params))
    (loss_a, dx_a, p_a), (loss_b, dx_b, p_b) = results
    assert loss_a == pytest.approx(loss_b, rel=1e-6)
    np.testing.assert_allclose(dx_a, dx_b, rtol=1e-5, atol=1e-6)
    for a, b in zip(p_a, p_b):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
