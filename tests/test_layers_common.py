"""Shape, normalization and indexing layers: forward against plain NumPy, Caffe's rules and messages."""

import numpy as np
import pytest

import caffelite
from caffelite.blob import Blob
from caffelite.errors import BackwardError, LabelError, LayerError, ShapeError
from caffelite.testing import make_layer

RNG = np.random.default_rng(5)


def setup(spec, *arrays, num_top=1, phase=caffelite.TRAIN):
    layer = make_layer(spec, phase)
    bottom = [Blob(data=np.asarray(a, dtype=np.float64), dtype=np.float64) for a in arrays]
    top = [Blob(dtype=np.float64) for _ in range(num_top)]
    layer.run_setup(bottom, top)
    return layer, bottom, top


def run(spec, *arrays, num_top=1, phase=caffelite.TRAIN):
    layer, bottom, top = setup(spec, *arrays, num_top=num_top, phase=phase)
    layer.run_forward(bottom, top)
    return layer, bottom, top


def backward(layer, bottom, top, diffs, propagate=None):
    for t, d in zip(top, diffs):
        t.diff[...] = d
    layer.param_propagate_down = [True] * len(layer.blobs)
    layer.run_backward(top, propagate or [True] * len(bottom), bottom)


# --- shape ----------------------------------------------------------------------------------------
def test_concat_and_its_legacy_dim():
    a, b = RNG.normal(size=(2, 3, 4)), RNG.normal(size=(2, 1, 4))
    _, _, top = run('type: "Concat"', a, b)
    np.testing.assert_array_equal(top[0].data, np.concatenate([a, b], axis=1))
    c = RNG.normal(size=(2, 3, 2))
    layer, bottom, top = run('type: "Concat" concat_param { concat_dim: 2 }', a, c)
    np.testing.assert_array_equal(top[0].data, np.concatenate([a, c], axis=2))
    dy = RNG.normal(size=top[0].shape)
    backward(layer, bottom, top, [dy])
    np.testing.assert_array_equal(bottom[1].diff, dy[:, :, 4:])


def test_concat_errors():
    with pytest.raises(LayerError, match="Either axis or concat_dim should be specified; not both."):
        run('type: "Concat" concat_param { axis: 1 concat_dim: 1 }', np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(ShapeError, match="All inputs must have the same shape, except at concat_axis."):
        run('type: "Concat"', np.ones((2, 2)), np.ones((3, 2)))
    with pytest.raises(ShapeError, match="All inputs must have the same #axes."):
        run('type: "Concat"', np.ones((2, 2)), np.ones((2, 2, 1)))


def test_slice_even_and_at_points():
    x = RNG.normal(size=(2, 6, 3))
    _, _, top = run('type: "Slice"', x, num_top=3)
    for t, ref in zip(top, np.split(x, 3, axis=1)):
        np.testing.assert_array_equal(t.data, ref)
    layer, bottom, top = run('type: "Slice" slice_param { axis: -1 slice_point: 1 }', x, num_top=2)
    np.testing.assert_array_equal(top[1].data, x[:, :, 1:])
    backward(layer, bottom, top, [np.ones(top[0].shape), np.full(top[1].shape, 2.0)])
    np.testing.assert_array_equal(bottom[0].diff, np.concatenate([np.ones((2, 6, 1)), np.full((2, 6, 2), 2.0)], 2))
    with pytest.raises(ShapeError, match=r"Number of top blobs \(4\) should evenly divide input slice axis \(6\)"):
        run('type: "Slice"', x, num_top=4)


def test_flatten_and_reshape_share_the_bottom_data():
    x = RNG.normal(size=(2, 3, 4, 5))
    layer, bottom, top = run('type: "Flatten" flatten_param { axis: 2 }', x)
    assert top[0].shape == (2, 3, 20)
    bottom[0].data[0, 0, 0, 0] = 42.0
    assert top[0].data[0, 0, 0] == 42.0
    _, _, top = run('type: "Flatten"', x)
    assert top[0].shape == (2, 60)
    _, _, top = run('type: "Reshape" reshape_param { shape { dim: 0 dim: -1 dim: 10 } }', x)
    assert top[0].shape == (2, 6, 10)
    np.testing.assert_array_equal(top[0].data, x.reshape(2, 6, 10))
    _, _, top = run('type: "Reshape" reshape_param { shape { dim: 2 dim: 2 } axis: 2 num_axes: 1 }', x)
    assert top[0].shape == (2, 3, 2, 2, 5)
    _, _, top = run('type: "Reshape" reshape_param { shape { dim: 1 } axis: -1 num_axes: 0 }', x)
    assert top[0].shape == (2, 3, 4, 5, 1)


def test_reshape_errors():
    x = np.ones((2, 3, 4))
    with pytest.raises(LayerError, match="new shape contains multiple -1 dims"):
        run('type: "Reshape" reshape_param { shape { dim: -1 dim: -1 } }', x)
    with pytest.raises(ShapeError, match=r"bottom count \(24\) must be divisible by the product of the specified "
                                         r"dimensions \(5\)"):
        run('type: "Reshape" reshape_param { shape { dim: 5 dim: -1 } }', x)
    with pytest.raises(ShapeError, match="output count must match input count"):
        run('type: "Reshape" reshape_param { shape { dim: 5 dim: 5 } }', x)
    with pytest.raises(ShapeError, match="new shape contains a 0, but there was no corresponding bottom axis"):
        run('type: "Reshape" reshape_param { shape { dim: 0 dim: 0 dim: 0 dim: 0 } }', np.ones(24))
    layer = make_layer('type: "Reshape" reshape_param { shape { dim: -1 } }')
    blob = Blob(data=x)
    with pytest.raises(LayerError, match="Reshape layer does not allow in-place computation."):
        layer.run_setup([blob], [blob])


def test_tile_matches_numpy():
    x = RNG.normal(size=(2, 3, 2))
    layer, bottom, top = run('type: "Tile" tile_param { axis: 1 tiles: 3 }', x)
    np.testing.assert_array_equal(top[0].data, np.tile(x, (1, 3, 1)))
    dy = RNG.normal(size=top[0].shape)
    backward(layer, bottom, top, [dy])
    np.testing.assert_allclose(bottom[0].diff, dy.reshape(2, 3, 3, 2).sum(axis=1))
    with pytest.raises(LayerError, match="Number of tiles must be specified"):
        run('type: "Tile"', x)


# --- normalization --------------------------------------------------------------------------------
def test_batchnorm_train_statistics_and_moving_sums():
    x = RNG.normal(size=(4, 3, 2, 2))
    layer, _, top = run('type: "BatchNorm" batch_norm_param { eps: 0.001 moving_average_fraction: 0.5 }', x)
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    ref = (x - mean[None, :, None, None]) / np.sqrt(var + 0.001)[None, :, None, None]
    np.testing.assert_allclose(top[0].data, ref, rtol=1e-6, atol=1e-6)
    m = x.size // 3
    np.testing.assert_allclose(layer.blobs[0].data, mean)
    np.testing.assert_allclose(layer.blobs[1].data, var * m / (m - 1))
    assert float(layer.blobs[2].data[0]) == 1.0
    layer.run_forward(*([Blob(data=x, dtype=np.float64)], top))  # a second batch: s = 0.5 s + 1
    assert float(layer.blobs[2].data[0]) == 1.5
    np.testing.assert_allclose(layer.blobs[0].data, 1.5 * mean)


def test_batchnorm_global_stats_divide_by_the_scale_factor():
    x = RNG.normal(size=(2, 3, 4))
    layer, bottom, top = setup('type: "BatchNorm"', x, phase=caffelite.TEST)
    layer.blobs[0].data[...] = [0.2, -0.4, 1.0]
    layer.blobs[1].data[...] = [1.0, 3.0, 0.5]
    layer.blobs[2].data[...] = 2.0
    layer.run_forward(bottom, top)
    mean, var = np.array([0.1, -0.2, 0.5]), np.array([0.5, 1.5, 0.25])
    ref = (x - mean[None, :, None]) / np.sqrt(var + 1e-5)[None, :, None]
    np.testing.assert_allclose(top[0].data, ref, rtol=1e-6)
    layer.blobs[2].data[...] = 0.0  # a zero scale factor means zero statistics
    layer.run_forward(bottom, top)
    np.testing.assert_allclose(top[0].data, x / np.sqrt(1e-5), rtol=1e-6)


@pytest.mark.parametrize("across", [False, True])
@pytest.mark.parametrize("variance", [False, True])
def test_mvn_adds_eps_to_the_standard_deviation(across, variance):
    x = RNG.normal(size=(2, 3, 2, 3))
    spec = 'type: "MVN" mvn_param { eps: 0.5 normalize_variance: %s across_channels: %s }' % (
        str(variance).lower(), str(across).lower())
    _, _, top = run(spec, x)
    axes = (1, 2, 3) if across else (2, 3)
    ref = x - x.mean(axis=axes, keepdims=True)
    if variance:
        ref = ref / (x.std(axis=axes, keepdims=True) + 0.5)
    np.testing.assert_allclose(top[0].data, ref, rtol=1e-6, atol=1e-12)


def test_scale_and_bias_broadcast_like_numpy():
    x = RNG.normal(size=(2, 3, 4))
    s, b = RNG.normal(size=(3, 4)), RNG.normal(size=(3, 4))
    _, _, top = run('type: "Scale"', x, s)
    np.testing.assert_allclose(top[0].data, x * s)
    _, _, top = run('type: "Bias"', x, b)
    np.testing.assert_allclose(top[0].data, x + b)
    layer, bottom, top = run('type: "Scale" scale_param { bias_term: true bias_filler { type: "constant" '
                             'value: 0.5 } }', x)
    assert [p.shape for p in layer.blobs] == [(3,), (3,)]
    np.testing.assert_allclose(top[0].data, x + 0.5)  # the scale starts at 1
    dy = RNG.normal(size=x.shape)
    backward(layer, bottom, top, [dy])
    np.testing.assert_allclose(layer.blobs[0].diff, (dy * x).sum(axis=(0, 2)))
    np.testing.assert_allclose(layer.blobs[1].diff, dy.sum(axis=(0, 2)))
    layer, _, top = run('type: "Scale" scale_param { axis: 0 bias_term: true }', x, np.full((2, 3), 2.0))
    assert len(layer.blobs) == 1  # two bottoms: the only parameter is the bias
    np.testing.assert_allclose(top[0].data, 2 * x)


def test_scale_shape_mismatch_message():
    with pytest.raises(ShapeError, match=r"dimension mismatch between bottom\[0\]->shape\(1\) and scale->shape\(0\)"):
        run('type: "Scale"', np.ones((2, 3)), np.ones(4))
    with pytest.raises(ShapeError, match="bias blob's shape extends past bottom"):
        run('type: "Bias" bias_param { axis: 1 num_axes: 3 }', np.ones((2, 3)))


# --- indexing -------------------------------------------------------------------------------------
@pytest.mark.parametrize("op,ref", [
    ("SUM", lambda v: v.sum(-1)), ("ASUM", lambda v: np.abs(v).sum(-1)),
    ("SUMSQ", lambda v: (v * v).sum(-1)), ("MEAN", lambda v: v.mean(-1)),
])
def test_reduction_ops(op, ref):
    x = RNG.normal(size=(2, 3, 4))
    _, _, top = run('type: "Reduction" reduction_param { operation: %s axis: 1 coeff: 0.5 }' % op, x)
    assert top[0].shape == (2,)
    np.testing.assert_allclose(top[0].data, 0.5 * ref(x.reshape(2, -1)))
    _, _, top = run('type: "Reduction" reduction_param { operation: %s }' % op, x)
    assert top[0].shape == ()
    np.testing.assert_allclose(top[0].data, ref(x.reshape(-1)))


def test_argmax_orders_ties_by_larger_index():
    x = np.array([[1.0, 3.0, 3.0, 0.0, 3.0], [2.0, 1.0, 2.0, 5.0, 0.0]])
    _, _, top = run('type: "ArgMax" argmax_param { top_k: 3 out_max_val: true }', x)
    assert top[0].shape == (2, 2, 3)
    np.testing.assert_array_equal(top[0].data[:, 0], [[4, 2, 1], [3, 2, 0]])
    np.testing.assert_array_equal(top[0].data[:, 1], [[3, 3, 3], [5, 2, 2]])
    y = RNG.normal(size=(2, 4, 3))
    _, _, top = run('type: "ArgMax" argmax_param { axis: 1 }', y)
    np.testing.assert_array_equal(top[0].data, y.argmax(axis=1)[:, None, :])
    _, _, top = run('type: "ArgMax" argmax_param { axis: -1 out_max_val: true top_k: 2 }', y)
    np.testing.assert_array_equal(top[0].data, -np.sort(-y, axis=-1)[..., :2])
    with pytest.raises(ShapeError, match="top_k must be less than or equal to the dimension of the axis."):
        run('type: "ArgMax" argmax_param { axis: 1 top_k: 5 }', y)


def test_embed_lookup_and_errors():
    idx = np.array([[0, 4, 2], [2, 2, 1]], dtype=float)
    layer, bottom, top = run('type: "Embed" embed_param { input_dim: 5 num_output: 3 '
                             'weight_filler { type: "gaussian" } bias_filler { type: "gaussian" } }', idx)
    w, b = layer.blobs[0].data, layer.blobs[1].data
    np.testing.assert_allclose(top[0].data, w[idx.astype(int)] + b)
    dy = RNG.normal(size=top[0].shape)
    backward(layer, bottom, top, [dy], propagate=[False])
    expected = np.zeros_like(w)
    np.add.at(expected, idx.astype(int).ravel(), dy.reshape(-1, 3))
    np.testing.assert_allclose(layer.blobs[0].diff, expected)
    assert not layer.allow_force_backward(0)
    with pytest.raises(BackwardError, match="cannot backpropagate to index inputs"):
        backward(layer, bottom, top, [dy], propagate=[True])
    with pytest.raises(LabelError, match=r"index 5.0 at position 1 is not an integer in the valid range \[0, 5\)"):
        run('type: "Embed" embed_param { input_dim: 5 num_output: 3 }', [1.0, 5.0])
    with pytest.raises(LabelError, match="index 1.5"):
        run('type: "Embed" embed_param { input_dim: 5 num_output: 3 }', [1.5])


def test_filter_selects_items_and_handles_none_selected():
    x = RNG.normal(size=(5, 3))
    sel = np.array([1, 0, 1, 1, 0], dtype=float)
    layer, bottom, top = run('type: "Filter"', x, sel)
    np.testing.assert_array_equal(top[0].data, x[[0, 2, 3]])
    dy = RNG.normal(size=(3, 3))
    backward(layer, bottom, top, [dy], propagate=[True, False])
    ref = np.zeros_like(x)
    ref[[0, 2, 3]] = dy
    np.testing.assert_array_equal(bottom[0].diff, ref)
    assert not layer.allow_force_backward(1) and layer.allow_force_backward(0)
    with pytest.raises(BackwardError):
        backward(layer, bottom, top, [dy], propagate=[True, True])
    bottom[1].data[...] = 0
    layer.run_forward(bottom, top)
    assert top[0].shape == (0, 3)
    with pytest.raises(ShapeError, match="Selector blob dimensions must be singletons"):
        run('type: "Filter"', x, np.ones((5, 2)))


def test_batch_reindex_gathers_and_accumulates():
    x = RNG.normal(size=(4, 3))
    perm = np.array([3, 0, 3, 1, 1, 2], dtype=float)
    layer, bottom, top = run('type: "BatchReindex"', x, perm)
    np.testing.assert_array_equal(top[0].data, x[perm.astype(int)])
    dy = RNG.normal(size=(6, 3))
    backward(layer, bottom, top, [dy], propagate=[True, False])
    ref = np.zeros_like(x)
    np.add.at(ref, perm.astype(int), dy)
    np.testing.assert_allclose(bottom[0].diff, ref)
    with pytest.raises(LabelError, match="Index specified for reindex layer was negative."):
        run('type: "BatchReindex"', x, [0.0, -1.0])
    with pytest.raises(LabelError, match=r"valid range \[0, 4\)"):
        run('type: "BatchReindex"', x, [4.0])


def test_parameter_layer_outputs_its_blob():
    layer, _, top = setup('type: "Parameter" parameter_param { shape { dim: 2 dim: 3 } }')
    layer.blobs[0].data[...] = np.arange(6).reshape(2, 3)
    layer.run_forward([], top)
    np.testing.assert_array_equal(top[0].data, np.arange(6).reshape(2, 3))
    backward(layer, [], top, [np.ones((2, 3))])
    backward(layer, [], top, [np.ones((2, 3))])
    np.testing.assert_array_equal(layer.blobs[0].diff, 2.0)


def test_index_inputs_are_skipped_by_force_backward(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text("""
force_backward: true
layer { name: "idx" type: "Input" top: "idx" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "emb" type: "Embed" bottom: "idx" top: "emb" embed_param { input_dim: 5 num_output: 4 } }
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 2 } } }
layer { name: "perm" type: "Input" top: "perm" input_param { shape { dim: 3 } } }
layer { name: "br" type: "BatchReindex" bottom: "data" bottom: "perm" top: "br" }
""")
    net = caffelite.Net(str(path), caffelite.TRAIN)
    net.blobs["idx"].data[...] = [[0, 1, 4], [3, 3, 2]]
    net.blobs["perm"].data[...] = [1, 0, 1]
    net.forward()
    net.backward()
    np.testing.assert_array_equal(net.blobs["perm"].diff, 0)
    assert net.blobs["data"].diff.shape == (4, 2)


BN_SCALE = """
force_backward: true
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 3 dim: 2 } } }
layer { name: "pre" type: "Power" bottom: "data" top: "pre" power_param { scale: 2 } }
layer { name: "bn" type: "BatchNorm" bottom: "pre" top: "%s" }
layer { name: "sc" type: "Scale" bottom: "%s" top: "%s"
        scale_param { bias_term: true filler { type: "constant" value: 1.5 }
                      bias_filler { type: "constant" value: -0.25 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "%s" bottom: "data" top: "loss" }
"""


def test_batchnorm_and_scale_in_place_match_out_of_place(tmp_path):
    x = RNG.normal(size=(4, 3, 2))
    results = []
    for names in (("pre", "pre", "pre", "pre"), ("bn", "bn", "sc", "sc")):
        path = tmp_path / ("%s.prototxt" % names[-1])
        path.write_text(BN_SCALE % names)
        net = caffelite.Net(str(path), caffelite.TRAIN)
        net.blobs["data"].data[...] = x
        net.forward()
        net.backward()
        results.append((float(net.blobs["loss"].data), net.blobs["data"].diff.copy(),
                        [p.diff.copy() for p in net.params["sc"]], [p.data.copy() for p in net.params["bn"]]))
    (la, da, pa, sa), (lb, db, pb, sb) = results
    assert la == pytest.approx(lb, rel=1e-6)
    np.testing.assert_allclose(da, db, rtol=1e-5, atol=1e-6)
    for a, b in zip(pa + sa, pb + sb):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert np.abs(da).max() > 0 and np.abs(pa[0]).max() > 0
