"""Vision layers against direct loop references on tiny inputs, the size formulas, and error messages."""

import itertools

import numpy as np
import pytest

import caffelite.layers.vision as vision
from caffelite.blob import Blob
from caffelite.compute.im2col import conv_out_size, deconv_out_size
from caffelite.errors import LayerError, ShapeError
from caffelite.layers import pooling
from caffelite.layers.pooling import pooled_size
from caffelite.proto import caffe_pb2
from caffelite.testing import make_layer

GAUSS = 'weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" }'


def run(spec, *bottoms, num_top=1, phase=caffe_pb2.TRAIN):
    layer = make_layer(spec, phase)
    bottom = [Blob(data=np.asarray(b, dtype=np.float64), dtype=np.float64) for b in bottoms]
    top = [Blob(dtype=np.float64) for _ in range(num_top)]
    layer.run_setup(bottom, top)
    for b in layer.blobs:
        b.astype(np.float64)
        b.data[...] = np.random.default_rng(3).normal(size=b.shape)
    layer.run_forward(bottom, top)
    return layer, bottom, top


# --- references (loops are fine here) ------------------------------------------------------------
def ref_conv(x, w, b, stride, pad, dil, group):
    """Direct N-D convolution: y[n,o,p] = b[o] + sum_{c in group(o), k} w[o,c,k] x[n,c,p*s - pad + k*d]."""
    n, c = x.shape[:2]
    o = w.shape[0]
    kernel = w.shape[2:]
    out = [(i + 2 * p - (d * (k - 1) + 1)) // s + 1 for i, k, s, p, d in zip(x.shape[2:], kernel, stride, pad, dil)]
    y = np.zeros((n, o) + tuple(out))
    cg, og = c // group, o // group
    for oc in range(o):
        g = oc // og
        for pos in itertools.product(*[range(d) for d in out]):
            for ci in range(cg):
                for tap in itertools.product(*[range(k) for k in kernel]):
                    src = [p_ * s - pd + t * d for p_, s, pd, t, d in zip(pos, stride, pad, tap, dil)]
                    if all(0 <= q < size for q, size in zip(src, x.shape[2:])):
                        y[(slice(None), oc) + pos] += w[(oc, ci) + tap] * x[(slice(None), g * cg + ci) + tuple(src)]
        y[:, oc] += 0 if b is None else b[oc]
    return y


def ref_deconv(x, w, b, stride, pad, dil, group):
    """Transposed convolution as a scatter: y[n,o,i*s - pad + k*d] += w[c,o,k] x[n,c,i]."""
    n, c = x.shape[:2]
    og = w.shape[1]
    o = og * group
    kernel = w.shape[2:]
    out = [s * (i - 1) + d * (k - 1) + 1 - 2 * p for i, k, s, p, d in zip(x.shape[2:], kernel, stride, pad, dil)]
    y = np.zeros((n, o) + tuple(out))
    cg = c // group
    for ci in range(c):
        g = ci // cg
        for pos in itertools.product(*[range(d) for d in x.shape[2:]]):
            for oc in range(og):
                for tap in itertools.product(*[range(k) for k in kernel]):
                    dst = [p_ * s - pd + t * d for p_, s, pd, t, d in zip(pos, stride, pad, tap, dil)]
                    if all(0 <= q < size for q, size in zip(dst, out)):
                        y[(slice(None), g * og + oc) + tuple(dst)] += w[(ci, oc) + tap] * x[(slice(None), ci) + pos]
    if b is not None:
        y += b.reshape((1, -1) + (1,) * len(out))
    return y


def ref_pool(x, method, k, s, p, ceil=True):
    """Caffe's CPU pooling loops; MAX returns (values, mask)."""
    n, c, h, w = x.shape
    oh, ow = (pooled_size(h, k[0], s[0], p[0], ceil), pooled_size(w, k[1], s[1], p[1], ceil))
    y = np.zeros((n, c, oh, ow))
    mask = np.full((n, c, oh, ow), -1.0)
    for a, b_, i, j in itertools.product(range(n), range(c), range(oh), range(ow)):
        hs, ws = i * s[0] - p[0], j * s[1] - p[1]
        he, we = min(hs + k[0], h + p[0]), min(ws + k[1], w + p[1])
        size = (he - hs) * (we - ws)
        hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
        if method == "MAX":
            best = -np.finfo(np.float32).max
            for r in range(hs, he):
                for q in range(ws, we):
                    if x[a, b_, r, q] > best:
                        best, mask[a, b_, i, j] = x[a, b_, r, q], r * w + q
            y[a, b_, i, j] = best
        else:
            y[a, b_, i, j] = x[a, b_, hs:he, ws:we].sum() / size
    return y, mask


# --- Convolution -------------------------------------------------------------------------------------
CONV_CASES = [
    ("num_output: 3 kernel_size: 3", (2, 2, 5, 6)),
    ("num_output: 2 kernel_size: 3 stride: 2 pad: 1", (2, 3, 6, 5)),
    ("num_output: 4 kernel_size: 3 group: 2 dilation: 2 pad: 2", (1, 4, 7, 7)),
    ("num_output: 2 kernel_h: 2 kernel_w: 3 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 2", (2, 2, 5, 4)),
    ("num_output: 3 kernel_size: 1 bias_term: false", (2, 4, 3, 3)),
    ("num_output: 4 kernel_size: 1 group: 2", (2, 4, 3, 2)),
    ("num_output: 2 kernel_size: 1 stride: 2", (1, 2, 5, 5)),
    ("num_output: 2 kernel_size: 2 pad: 1", (2, 2, 3, 4, 3)),
    ("num_output: 2 kernel_size: 3 kernel_size: 2 kernel_size: 1 stride: 2 stride: 1 stride: 1 dilation: 1 "
     "dilation: 2 dilation: 1", (1, 2, 5, 5, 3)),
    ("num_output: 2 kernel_size: 3 force_nd_im2col: true pad: 1", (2, 2, 4, 4)),
    ("num_output: 6 kernel_size: 3 pad: 1 group: 3", (2, 6, 4, 5)),
    ("num_output: 2 kernel_size: 3 pad: 1", (2, 3, 7)),
    ("num_output: 2 kernel_size: 2 stride: 2 dilation: 2", (2, 3, 9)),
    ("num_output: 2 kernel_size: 3 pad: 1", (2, 3, 3, 4, 3)),
]


@pytest.mark.parametrize("params,shape", CONV_CASES)
@pytest.mark.parametrize("wide", [True, False])
def test_convolution_matches_direct_loops(params, shape, wide, monkeypatch):
    monkeypatch.setattr(vision, "WIDE", wide)
    monkeypatch.setattr(vision, "WIDE_FORWARD_MAX", 1e9)  # wide: the forward too
    monkeypatch.setattr(vision, "CHUNK_BYTES", 1)  # one image per chunk: the chunk loop is exercised too
    x = np.random.default_rng(0).normal(size=shape)
    layer, _, top = run('type: "Convolution" convolution_param { %s %s }' % (params, GAUSS), x)
    g = layer.geom
    b = layer.blobs[1].data if layer.bias_term else None
    want = ref_conv(x, layer.blobs[0].data, b, g.stride, g.pad, g.dilation, layer.group)
    np.testing.assert_allclose(top[0].data, want, rtol=1e-10, atol=1e-10)


def test_input_gradient_paths_agree():
    """The flipped-kernel convolution, col2im on wide columns, and exact col2im give the same input gradient."""
    x = np.random.default_rng(1).normal(size=(2, 4, 5, 6))
    spec = 'type: "Convolution" convolution_param { num_output: 4 group: 2 kernel_size: 3 pad: 1 %s }' % GAUSS
    grads = []
    for wide, back in [(True, True), (True, False), (False, False)]:
        layer, bottom, top = run(spec, x)
        if not wide:
            layer.wide = None
        if not back:
            layer.back = None
        assert (layer.back is not None) == back
        top[0].diff[...] = np.random.default_rng(2).normal(size=top[0].shape)
        layer.run_backward(top, [True], bottom)
        grads.append((bottom[0].diff.copy(), layer.blobs[0].diff.copy()))
    for dx, dw in grads[1:]:
        np.testing.assert_allclose(dx, grads[0][0], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(dw, grads[0][1], rtol=1e-10, atol=1e-12)


def test_convolution_axis_treats_leading_axes_as_batch():
    x = np.random.default_rng(1).normal(size=(2, 3, 2, 4, 4))
    layer, _, top = run('type: "Convolution" convolution_param { num_output: 2 kernel_size: 3 axis: 2 %s }' % GAUSS, x)
    assert top[0].shape == (2, 3, 2, 2, 2)
    want = ref_conv(x.reshape(6, 2, 4, 4), layer.blobs[0].data, layer.blobs[1].data, (1, 1), (0, 0), (1, 1), 1)
    np.testing.assert_allclose(top[0].data.reshape(6, 2, 2, 2), want, rtol=1e-10, atol=1e-10)


def test_convolution_weight_shapes_and_output_size_formula():
    layer, _, top = run('type: "Convolution" convolution_param { num_output: 6 group: 3 kernel_h: 3 kernel_w: 2 '
                        'stride: 2 pad: 1 dilation: 2 }', np.zeros((1, 9, 11, 8)))
    assert layer.blobs[0].shape == (6, 3, 3, 2) and layer.blobs[1].shape == (6,)
    # (i + 2p - (d(k-1)+1)) // s + 1
    assert top[0].shape == (1, 6, (11 + 2 - 5) // 2 + 1, (8 + 2 - 3) // 2 + 1)
    assert conv_out_size(227, 11, 4, 0) == 55
    assert deconv_out_size(55, 11, 4, 0) == 227


def test_convolution_two_bottoms_share_weights():
    rng = np.random.default_rng(2)
    x1, x2 = rng.normal(size=(1, 2, 4, 4)), rng.normal(size=(1, 2, 4, 4))
    layer, _, top = run('type: "Convolution" convolution_param { num_output: 2 kernel_size: 3 %s }' % GAUSS,
                        x1, x2, num_top=2)
    w, b = layer.blobs[0].data, layer.blobs[1].data
    np.testing.assert_allclose(top[0].data, ref_conv(x1, w, b, (1, 1), (0, 0), (1, 1), 1), atol=1e-10)
    np.testing.assert_allclose(top[1].data, ref_conv(x2, w, b, (1, 1), (0, 0), (1, 1), 1), atol=1e-10)


def test_convolution_runs_in_float32():
    x = np.random.default_rng(0).normal(size=(2, 3, 6, 6)).astype(np.float32)
    layer = make_layer('type: "Convolution" convolution_param { num_output: 4 kernel_size: 3 pad: 1 %s }' % GAUSS)
    bottom, top = [Blob(data=x)], [Blob()]
    layer.run_setup(bottom, top)
    layer.run_forward(bottom, top)
    top[0].diff[...] = 1
    layer.run_backward(top, [True], bottom)
    assert top[0].data.dtype == bottom[0].diff.dtype == layer.blobs[0].diff.dtype == np.float32
    want = ref_conv(x.astype(np.float64), layer.blobs[0].data.astype(np.float64), layer.blobs[1].data, (1, 1),
                    (1, 1), (1, 1), 1)
    np.testing.assert_allclose(top[0].data, want, rtol=1e-4, atol=1e-4)


def test_convolution_parameter_diffs_accumulate():
    x = np.random.default_rng(0).normal(size=(2, 2, 4, 4))
    layer, bottom, top = run('type: "Convolution" convolution_param { num_output: 2 kernel_size: 3 %s }' % GAUSS, x)
    top[0].diff[...] = 1
    layer.run_backward(top, [True], bottom)
    once = layer.blobs[0].diff.copy(), layer.blobs[1].diff.copy()
    layer.run_backward(top, [True], bottom)
    np.testing.assert_allclose(layer.blobs[0].diff, 2 * once[0])
    np.testing.assert_allclose(layer.blobs[1].diff, 2 * once[1])


# --- Deconvolution -----------------------------------------------------------------------------------
@pytest.mark.parametrize("params,shape", [
    ("num_output: 3 kernel_size: 3 stride: 2 pad: 1", (2, 2, 3, 3)),
    ("num_output: 4 kernel_h: 2 kernel_w: 3 stride: 2 group: 2", (1, 4, 2, 3)),
    ("num_output: 2 kernel_size: 2 dilation: 2", (1, 2, 2, 3, 2)),
    ("num_output: 2 kernel_size: 1 bias_term: false", (2, 3, 2, 2)),
])
@pytest.mark.parametrize("chunk_bytes", [1, 1 << 30])
def test_deconvolution_matches_scatter_reference(params, shape, chunk_bytes, monkeypatch):
    monkeypatch.setattr(vision, "CHUNK_BYTES", chunk_bytes)
    x = np.random.default_rng(4).normal(size=shape)
    layer, _, top = run('type: "Deconvolution" convolution_param { %s %s }' % (params, GAUSS), x)
    g = layer.geom
    assert layer.blobs[0].shape[:2] == (shape[1], layer.num_output // layer.group)
    b = layer.blobs[1].data if layer.bias_term else None
    want = ref_deconv(x, layer.blobs[0].data, b, g.stride, g.pad, g.dilation, layer.group)
    np.testing.assert_allclose(top[0].data, want, rtol=1e-10, atol=1e-10)


def test_deconvolution_bilinear_filler_upsamples():
    x = np.random.default_rng(5).normal(size=(1, 2, 3, 3))
    layer = make_layer('type: "Deconvolution" convolution_param { num_output: 2 group: 2 kernel_size: 4 stride: 2 '
                       'pad: 1 bias_term: false weight_filler { type: "bilinear" } }')
    bottom, top = [Blob(data=x, dtype=np.float64)], [Blob(dtype=np.float64)]
    layer.run_setup(bottom, top)
    layer.blobs[0].astype(np.float64)
    layer.run_forward(bottom, top)
    assert top[0].shape == (1, 2, 6, 6)
    want = ref_deconv(x, layer.blobs[0].data, None, (2, 2), (1, 1), (1, 1), 2)
    np.testing.assert_allclose(top[0].data, want, atol=1e-12)


# --- Im2col --------------------------------------------------------------------------------------------
def test_im2col_layer_matches_direct_unrolling():
    x = np.random.default_rng(6).normal(size=(2, 2, 5, 4))
    _, _, top = run('type: "Im2col" convolution_param { kernel_h: 3 kernel_w: 2 stride: 2 pad: 1 dilation: 1 }', x)
    oh, ow = (5 + 2 - 3) // 2 + 1, (4 + 2 - 2) // 2 + 1
    assert top[0].shape == (2, 2 * 3 * 2, oh, ow)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    for c, i, j in itertools.product(range(2), range(3), range(2)):
        row = (c * 3 + i) * 2 + j
        np.testing.assert_array_equal(top[0].data[:, row], xp[:, c, i:i + 2 * oh - 1:2, j:j + 2 * ow - 1:2])


# --- Pooling ---------------------------------------------------------------------------------------------
POOL_CASES = [
    ("MAX", "kernel_size: 3 stride: 2", (3, 3), (2, 2), (0, 0), True, (1, 2, 7, 7)),
    ("MAX", "kernel_size: 3 stride: 2 pad: 1", (3, 3), (2, 2), (1, 1), True, (2, 2, 6, 5)),
    ("MAX", "kernel_size: 2 stride: 2 round_mode: FLOOR", (2, 2), (2, 2), (0, 0), False, (1, 2, 5, 5)),
    ("MAX", "kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 pad_h: 2 pad_w: 1", (3, 2), (2, 3), (2, 1), True,
     (1, 1, 7, 8)),
    ("AVE", "kernel_size: 3 stride: 2 pad: 1", (3, 3), (2, 2), (1, 1), True, (2, 2, 6, 5)),
    ("AVE", "kernel_size: 3 stride: 3 pad: 2", (3, 3), (3, 3), (2, 2), True, (1, 2, 7, 8)),
    ("AVE", "kernel_h: 2 kernel_w: 4 stride: 2 round_mode: FLOOR", (2, 4), (2, 2), (0, 0), False, (1, 2, 5, 9)),
]


@pytest.mark.parametrize("method,params,k,s,p,ceil,shape", POOL_CASES)
def test_pooling_matches_caffe_loops(method, params, k, s, p, ceil, shape):
    # small integers: plenty of ties, so the first-maximum rule is exercised
    x = np.random.default_rng(7).integers(-3, 4, size=shape).astype(float)
    num_top = 2 if method == "MAX" else 1
    _, _, top = run('type: "Pooling" pooling_param { pool: %s %s }' % (method, params), x, num_top=num_top)
    want, mask = ref_pool(x, method, k, s, p, ceil)
    np.testing.assert_allclose(top[0].data, want, rtol=1e-12)
    if method == "MAX":
        np.testing.assert_array_equal(top[1].data, mask)


@pytest.mark.parametrize("params, k, s, p, shape", [
    ("kernel_size: 3 stride: 2", (3, 3), (2, 2), (0, 0), (5, 3, 9, 8)),
    ("kernel_size: 2 stride: 2 pad: 1", (2, 2), (2, 2), (1, 1), (4, 2, 6, 7)),
    ("kernel_h: 3 kernel_w: 2 stride_h: 1 stride_w: 2", (3, 2), (1, 2), (0, 0), (3, 2, 5, 6))])
def test_max_pooling_in_image_blocks_gives_the_same_numbers(params, k, s, p, shape, monkeypatch):
    """MAX pooling with argmax runs in blocks of images (cache-sized): one image a block gives exactly the
    numbers of the whole batch at once, and Caffe's loops."""
    x = np.random.default_rng(8).integers(-3, 4, size=shape).astype(float)  # ties: the first maximum wins
    got = []
    for block_bytes in (1 << 40, 1):
        monkeypatch.setattr(pooling, "MAX_BLOCK_BYTES", block_bytes)
        spec = 'type: "Pooling" pooling_param { pool: MAX %s }' % params
        _, _, with_mask = run(spec, x, num_top=2)
        layer, bottom, top = run(spec, x)  # no mask top: the gradient goes by the taps kept in forward
        top[0].diff[...] = np.random.default_rng(9).normal(size=top[0].shape)
        layer.run_backward(top, [True], bottom)
        got.append([top[0].data.copy(), with_mask[1].data.copy(), bottom[0].diff.copy()])
    assert len(layer.pool._blocks(shape[0], shape[1], 8)) == shape[0]
    for whole, blocks in zip(*got):
        np.testing.assert_array_equal(blocks, whole)
    want, mask = ref_pool(x, "MAX", k, s, p)
    np.testing.assert_array_equal(got[1][0], want)
    np.testing.assert_array_equal(got[1][1], mask)
    dx = np.zeros_like(x).reshape(shape[0] * shape[1], -1)  # each output's gradient at its Caffe mask pixel
    np.add.at(dx, (np.arange(dx.shape[0])[:, None], mask.reshape(dx.shape[0], -1).astype(int)),
              top[0].diff.reshape(dx.shape[0], -1))
    np.testing.assert_allclose(got[1][2], dx.reshape(shape), rtol=1e-12)


def test_pooled_size_formula_and_clipping():
    assert pooled_size(6, 3, 2, 0) == 3 and pooled_size(6, 3, 2, 0, ceil_mode=False) == 2
    # ceil((5 + 2 - 2) / 2) + 1 = 4, but the 4th window would start at 6 >= 5 + 1 (in the padding): 3
    assert pooled_size(5, 2, 2, 1) == 3
    assert pooled_size(13, 3, 2, 0) == 6  # AlexNet pool5


def test_global_pooling_and_max_backward_routes_to_first_maximum():
    x = np.array([[[[1.0, 3.0], [3.0, 0.0]]]])
    layer, bottom, top = run('type: "Pooling" pooling_param { pool: MAX global_pooling: true }', x, num_top=2)
    assert top[0].data.ravel().tolist() == [3.0] and top[1].data.ravel().tolist() == [1.0]
    top[0].diff[...] = 5
    layer.run_backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, [[[[0, 5], [0, 0]]]])
    _, _, top = run('type: "Pooling" pooling_param { pool: AVE global_pooling: true }', x)
    assert top[0].data.ravel().tolist() == [7 / 4]


def test_stochastic_test_phase_is_probability_weighted_average():
    x = np.random.default_rng(8).uniform(0, 2, size=(2, 2, 5, 5))
    _, _, top = run('type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 3 stride: 2 }', x,
                    phase=caffe_pb2.TEST)
    want = np.zeros((2, 2, 2, 2))
    for i, j in itertools.product(range(2), range(2)):
        win = x[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
        want[:, :, i, j] = (win ** 2).sum(axis=(2, 3)) / (win.sum(axis=(2, 3)) + np.finfo(np.float32).tiny)
    np.testing.assert_allclose(top[0].data, want, rtol=1e-12)


def test_stochastic_train_samples_in_proportion_to_activations():
    # every window is the same four values: the output frequencies must follow x / sum(x)
    vals = np.array([[1.0, 2.0], [3.0, 0.0]])
    x = np.tile(vals, (1, 1, 40, 40))
    layer, bottom, top = run('type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 2 stride: 2 }', x)
    out = top[0].data.ravel()
    assert set(np.unique(out)) <= {1.0, 2.0, 3.0}
    freq = np.array([(out == v).mean() for v in (1.0, 2.0, 3.0)])
    np.testing.assert_allclose(freq, [1 / 6, 2 / 6, 3 / 6], atol=0.04)
    # the gradient goes to the sampled pixel
    top[0].diff[...] = 1
    layer.run_backward(top, [True], bottom)
    dx = bottom[0].diff.reshape(40, 2, 40, 2).transpose(0, 2, 1, 3).reshape(-1, 4)
    assert (dx.sum(axis=1) == 1).all()
    np.testing.assert_array_equal(vals.ravel()[dx.argmax(axis=1)], out)


# --- SPP -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pool", ["MAX", "AVE"])
def test_spp_is_flattened_pyramid_of_poolings(pool):
    x = np.random.default_rng(9).normal(size=(2, 3, 7, 9))
    _, _, top = run('type: "SPP" spp_param { pyramid_height: 3 pool: %s }' % pool, x)
    parts = []
    for level in range(3):
        bins = 2 ** level
        k = [-(-d // bins) for d in (7, 9)]
        p = [(kk * bins - d + 1) // 2 for kk, d in zip(k, (7, 9))]
        y, _ = ref_pool(x, pool, k, k, p)
        assert y.shape[2:] == (bins, bins)
        parts.append(y.reshape(2, -1))
    np.testing.assert_allclose(top[0].data, np.concatenate(parts, axis=1), rtol=1e-12)


def test_spp_single_level_keeps_pooled_shape():
    _, _, top = run('type: "SPP" spp_param { pyramid_height: 1 pool: MAX }', np.ones((2, 3, 4, 5)))
    assert top[0].shape == (2, 3, 1, 1)


# --- LRN ---------------------------------------------------------------------------------------------------------
def test_lrn_across_channels_formula():
    x = np.random.default_rng(10).normal(size=(2, 7, 2, 3))
    _, _, top = run('type: "LRN" lrn_param { local_size: 5 alpha: 0.25 beta: 0.625 k: 2 }', x)
    want = np.empty_like(x)
    for c in range(7):
        lo, hi = max(c - 2, 0), min(c + 3, 7)
        scale = 2 + 0.25 / 5 * (x[:, lo:hi] ** 2).sum(axis=1)
        want[:, c] = x[:, c] * scale ** -0.625
    np.testing.assert_allclose(top[0].data, want, rtol=1e-12)


@pytest.mark.parametrize("beta", [0.75, 0.5])
def test_lrn_within_channel_formula_uses_shift_one(beta):
    x = np.random.default_rng(11).normal(size=(1, 2, 5, 4))
    _, _, top = run('type: "LRN" lrn_param { local_size: 3 alpha: 0.375 beta: %g k: 5 norm_region: WITHIN_CHANNEL }'
                    % beta, x)
    xp = np.pad(x ** 2, ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = np.empty_like(x)
    for i, j in itertools.product(range(5), range(4)):
        scale = 1 + 0.375 / 9 * xp[:, :, i:i + 3, j:j + 3].sum(axis=(2, 3))  # Caffe's Power shift is 1, not k
        want[:, :, i, j] = x[:, :, i, j] * scale ** -beta
    np.testing.assert_allclose(top[0].data, want, rtol=1e-12)


# --- Crop -----------------------------------------------------------------------------------------------------------
def test_crop_forward_backward_and_no_gradient_to_shape_input():
    x = np.random.default_rng(12).normal(size=(2, 3, 6, 7))
    layer, bottom, top = run('type: "Crop" crop_param { axis: 2 offset: 1 offset: 2 }', x, np.zeros((2, 3, 4, 4)))
    np.testing.assert_array_equal(top[0].data, x[:, :, 1:5, 2:6])
    top[0].diff[...] = 1
    layer.run_backward(top, [True, False], bottom)
    want = np.zeros_like(x)
    want[:, :, 1:5, 2:6] = 1
    np.testing.assert_array_equal(bottom[0].diff, want)
    assert not layer.allow_force_backward(1)
    with pytest.raises(LayerError, match="cannot backpropagate"):
        layer.run_backward(top, [True, True], bottom)


def test_crop_single_offset_applies_to_every_axis_from_axis():
    x = np.arange(2 * 4 * 5 * 5, dtype=float).reshape(2, 4, 5, 5)
    _, _, top = run('type: "Crop" crop_param { axis: -3 offset: 1 }', x, np.zeros((2, 2, 3, 3)))
    np.testing.assert_array_equal(top[0].data, x[:, 1:3, 1:4, 1:4])


# --- error messages --------------------------------------------------------------------------------------------------
ERRORS = [
    ('type: "Convolution" convolution_param { num_output: 2 kernel_size: 5 }', (1, 1, 3, 3),
     ShapeError, "kernel extent 5 .* larger than the padded input 3"),
    ('type: "Convolution" convolution_param { num_output: 3 kernel_size: 1 group: 2 }', (1, 4, 3, 3),
     LayerError, "Number of output should be multiples of group"),
    ('type: "Convolution" convolution_param { num_output: 2 kernel_size: 1 group: 2 }', (1, 3, 3, 3),
     LayerError, r"channels \(3\) must be a multiple of group \(2\)"),
    ('type: "Convolution" convolution_param { num_output: 2 kernel_size: 3 kernel_h: 3 kernel_w: 3 }', (1, 1, 5, 5),
     LayerError, "Either kernel_size or kernel/w should be specified; not both"),
    ('type: "Convolution" convolution_param { num_output: 2 kernel_h: 3 kernel_w: 3 }', (1, 1, 5, 5, 5),
     LayerError, "kernel_h & kernel_w can only be used for 2D convolution"),
    ('type: "Convolution" convolution_param { num_output: 2 kernel_size: 3 kernel_size: 3 kernel_size: 3 }',
     (1, 1, 5, 5), LayerError, r"kernel_size must be specified once, or once per spatial dimension \(kernel_size "
                               r"specified 3 times; 2 spatial dims\)"),
    ('type: "Convolution" convolution_param { num_output: 2 }', (1, 1, 5, 5),
     LayerError, "kernel_size must be specified once"),
    ('type: "Convolution" convolution_param { num_output: 2 kernel_size: 3 stride: 0 }', (1, 1, 5, 5),
     LayerError, "Stride dimensions must be nonzero"),
    ('type: "Convolution" convolution_param { kernel_size: 3 }', (1, 1, 5, 5), LayerError, "num_output must be > 0"),
    ('type: "Pooling" pooling_param { kernel_size: 3 pad: 3 }', (1, 1, 5, 5),
     LayerError, "pad must be smaller than kernel"),
    ('type: "Pooling" pooling_param { global_pooling: true kernel_size: 2 }', (1, 1, 5, 5),
     LayerError, "With Global_pooling: true Filter size cannot specified"),
    ('type: "Pooling" pooling_param { kernel_size: 2 kernel_h: 2 kernel_w: 2 }', (1, 1, 5, 5),
     LayerError, "Filter size is kernel_size OR kernel_h and kernel_w; not both"),
    ('type: "Pooling" pooling_param { kernel_h: 2 }', (1, 1, 5, 5),
     LayerError, "For non-square filters both kernel_h and kernel_w are required"),
    ('type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 2 pad: 1 }', (1, 1, 5, 5),
     LayerError, "Padding implemented only for average and max pooling"),
    ('type: "Pooling" pooling_param { kernel_size: 2 }', (1, 5, 5), ShapeError, "Input must have 4 axes"),
    ('type: "LRN" lrn_param { local_size: 4 }', (1, 5, 2, 2), LayerError, "LRN only supports odd values"),
    ('type: "SPP" spp_param { pyramid_height: 3 }', (1, 1, 3, 3), LayerError, "too small for 4 bins"),
]


@pytest.mark.parametrize("spec,shape,error,message", ERRORS)
def test_bad_parameters_raise_caffe_messages(spec, shape, error, message):
    with pytest.raises(error, match=message):
        run(spec, np.zeros(shape))


def test_crop_errors():
    with pytest.raises(LayerError, match="number of offset values specified must be equal"):
        run('type: "Crop" crop_param { axis: 1 offset: 1 offset: 1 }', np.zeros((1, 3, 5, 5)), np.zeros((1, 2, 2, 2)))
    with pytest.raises(ShapeError, match="invalid crop parameters in dimension: 3"):
        run('type: "Crop" crop_param { offset: 0 offset: 4 }', np.zeros((1, 3, 5, 5)), np.zeros((1, 3, 2, 2)))


def test_wrong_weight_shape_is_reported():
    layer = make_layer('type: "Convolution" convolution_param { num_output: 2 kernel_size: 3 }')
    layer.blobs = [Blob(2, 1, 2, 2), Blob(2)]
    with pytest.raises(LayerError, match=r"Incorrect weight shape: expected shape 2 1 3 3 \(18\); instead, shape "
                                         r"was 2 1 2 2 \(8\)"):
        layer.run_setup([Blob(1, 1, 5, 5)], [Blob()])


@pytest.mark.parametrize("spec", [
    'type: "Convolution" convolution_param { num_output: 4 kernel_size: 3 pad: 1 group: 2 %s }' % GAUSS,
    'type: "Convolution" convolution_param { num_output: 3 kernel_size: 3 stride: 2 %s }' % GAUSS,
    'type: "Deconvolution" convolution_param { num_output: 4 kernel_size: 3 stride: 2 group: 2 %s }' % GAUSS,
])
def test_chunking_does_not_change_gradients(spec, monkeypatch):
    x = np.random.default_rng(13).normal(size=(3, 4, 5, 5))
    grads = []
    for chunk_bytes in (1, 1 << 30):
        monkeypatch.setattr(vision, "CHUNK_BYTES", chunk_bytes)
        layer, bottom, top = run(spec, x)
        top[0].diff[...] = np.random.default_rng(14).normal(size=top[0].shape)
        layer.run_backward(top, [True], bottom)
        grads.append([top[0].data.copy(), bottom[0].diff.copy()] + [b.diff.copy() for b in layer.blobs])
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_max_pooling_padding_never_wins_on_negative_inputs():
    x = -1 - np.random.default_rng(15).random(size=(2, 3, 7, 6))
    for _ in range(3):  # fresh buffers each time: padding must be written, not assumed
        _, _, top = run('type: "Pooling" pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 }', x, num_top=2)
        want, mask = ref_pool(x, "MAX", (3, 3), (2, 2), (1, 1))
        np.testing.assert_array_equal(top[0].data, want)
        np.testing.assert_array_equal(top[1].data, mask)


@pytest.mark.parametrize("spec,num_top", [
    ('type: "Pooling" pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 }', 2),
    ('type: "Pooling" pooling_param { pool: AVE kernel_size: 3 stride: 2 }', 1),
    ('type: "LRN" lrn_param { local_size: 3 alpha: 0.5 }', 1),
    ('type: "LRN" lrn_param { local_size: 3 alpha: 0.5 norm_region: WITHIN_CHANNEL }', 1),
])
def test_batch_parts_in_threads_give_the_same_numbers(spec, num_top, monkeypatch):
    import caffelite.compute.parallel as parallel
    x = np.random.default_rng(16).normal(size=(5, 3, 6, 7))
    results = []
    for parallel_min, workers in ((1 << 40, 1), (0, 3)):
        monkeypatch.setattr(parallel, "PARALLEL_MIN", parallel_min)
        monkeypatch.setattr(parallel, "WORKERS", workers)
        layer, bottom, top = run(spec, x, num_top=num_top)
        top[0].diff[...] = np.random.default_rng(17).normal(size=top[0].shape)
        layer.run_backward(top, [True], bottom)
        results.append([t.data.copy() for t in top] + [bottom[0].diff.copy()])
    if "Pooling" in spec:
        assert len(layer.parts) == 3
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("params", ["num_output: 4 kernel_size: 3 pad: 1 group: 2",
                                    "num_output: 3 kernel_size: 3 stride: 2",
                                    "num_output: 2 kernel_size: 2 pad: 1"])
def test_convolution_chunks_in_threads_give_identical_numbers(params, monkeypatch):
    import caffelite.compute.parallel as parallel
    monkeypatch.setattr(vision, "CHUNK_BYTES", 1)
    monkeypatch.setattr(parallel, "PARALLEL_MIN", 0)
    monkeypatch.setattr(parallel, "CHUNK_THREADS", True)
    x = np.random.default_rng(18).normal(size=(5, 4, 5, 6))
    results = []
    for workers in (1, 3):
        monkeypatch.setattr(parallel, "WORKERS", workers)
        layer, bottom, top = run('type: "Convolution" convolution_param { %s %s }' % (params, GAUSS), x)
        top[0].diff[...] = np.random.default_rng(19).normal(size=top[0].shape)
        layer.run_backward(top, [True], bottom)
        layer.run_backward(top, [True], bottom)  # parameter diffs accumulate
        results.append([top[0].data.copy(), bottom[0].diff.copy()] + [b.diff.copy() for b in layer.blobs])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("channels", [2, 16])  # kernel dims 18 and 144: both weight-gradient products
def test_convolution_weight_gradient_matches_correlation_formula(channels):
    rng = np.random.default_rng(20)
    x = rng.normal(size=(2, channels, 5, 4))
    layer, bottom, top = run('type: "Convolution" convolution_param { num_output: 3 kernel_size: 3 pad: 1 %s }'
                             % GAUSS, x)
    dy = rng.normal(size=top[0].shape)
    top[0].diff[...] = dy
    layer.run_backward(top, [True], bottom)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = np.zeros((3, channels, 3, 3))
    for i, j in itertools.product(range(3), range(3)):
        want[:, :, i, j] = np.einsum("noyx,ncyx->oc", dy, xp[:, :, i:i + 5, j:j + 4])
    np.testing.assert_allclose(layer.blobs[0].diff, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.blobs[1].diff, dy.sum(axis=(0, 2, 3)), rtol=1e-12)
