"""The fast paths equal the plain NumPy references beside them, on random shapes.

SoftmaxWithLoss (threaded forward, folded 1/sum, one-pass gradient) against ``softmax_loss_reference``;
Convolution (chunked im2col products in threads, four input-gradient paths, two weight-gradient
products) against ``convolution_reference``.
"""

import itertools
import zlib

import numpy as np
import pytest

import caffelite.layers.vision as vision
from caffelite.blob import Blob
from caffelite.compute import parallel
from caffelite.layers.loss import softmax_loss_reference
from caffelite.layers.vision import convolution_reference
from caffelite.proto import caffe_pb2
from caffelite.testing import make_layer

_Norm = caffe_pb2.LossParameter
NORMALIZATIONS = ["FULL", "VALID", "BATCH_SIZE", "NONE"]


def threads(monkeypatch, on: bool) -> None:
    """Force the threaded paths (every batch split, chunk threads allowed) or the serial ones."""
    monkeypatch.setattr(parallel, "PARALLEL_MIN", 0 if on else 1 << 60)
    monkeypatch.setattr(parallel, "WORKERS", 3 if on else 1)
    monkeypatch.setattr(parallel, "CHUNK_THREADS", on)


# --- SoftmaxWithLoss ------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, axis", [((3, 5, 7, 2), 1), ((1, 4, 9), 1), ((6, 3), 1), ((2, 3, 5, 4), 2),
                                         ((4, 2, 3), -1), ((5, 7, 1, 11), 1)])
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("ignore", [None, 2])
@pytest.mark.parametrize("two_tops", [False, True])
@pytest.mark.parametrize("threaded", [False, True])
def test_softmax_loss_matches_its_reference(shape, axis, normalization, ignore, two_tops, threaded, monkeypatch):
    threads(monkeypatch, threaded)
    rng = np.random.default_rng(zlib.crc32(repr((shape, axis, normalization, ignore)).encode()))
    x = rng.normal(scale=4, size=shape)
    ax = axis % len(shape)
    label_shape = shape[:ax] + shape[ax + 1:]
    labels = rng.integers(0, shape[ax], size=label_shape).astype(np.float64)
    if ignore is not None:
        labels[rng.random(label_shape) < 0.3] = ignore
    weight = 0.75  # exact in the float32 loss_weight field
    loss_param = "normalization: %s" % normalization + ("" if ignore is None else " ignore_label: %d" % ignore)
    spec = ('type: "SoftmaxWithLoss" loss_weight: %g %s softmax_param { axis: %d } loss_param { %s }'
            % (weight, "loss_weight: 0" if two_tops else "", axis, loss_param))
    layer = make_layer(spec)
    bottom = [Blob(data=x, dtype=np.float64), Blob(data=labels, dtype=np.float64)]
    top = [Blob(dtype=np.float64) for _ in range(2 if two_tops else 1)]
    layer.run_setup(bottom, top)
    layer.run_forward(bottom, top)
    layer.run_backward(top, [True, False], bottom)
    loss, prob, dx = softmax_loss_reference(x, labels, axis, ignore, getattr(_Norm, normalization), weight)
    # with one top the probabilities live in the layer's own blob, which is float32 (Caffe's precision)
    tol = dict(rtol=1e-12, atol=1e-14) if two_tops else dict(rtol=2e-6, atol=4e-7)
    np.testing.assert_allclose(top[0].data, loss, **tol)
    np.testing.assert_allclose(bottom[0].diff, dx, **tol)
    if two_tops:
        np.testing.assert_allclose(top[1].data, prob, rtol=1e-12, atol=1e-15)


def test_softmax_loss_reference_is_the_formula():
    """The reference itself, on a case worked by hand: two classes, one position ignored."""
    x = np.array([[0.0, np.log(3.0)], [5.0, 1.0]])  # p = (1/4, 3/4) at position 0
    loss, prob, dx = softmax_loss_reference(x, np.array([1, 9]), 1, 9, _Norm.VALID)
    np.testing.assert_allclose(loss, -np.log(0.75))
    np.testing.assert_allclose(prob[0], [0.25, 0.75])
    np.testing.assert_allclose(dx, [[0.25, -0.25], [0.0, 0.0]])


# --- Convolution ----------------------------------------------------------------------------------
# (params, input shape, the input-gradient path the layer must take: each of the four is covered)
CONV_CASES = [
    ("num_output: 4 kernel_size: 1", (3, 5, 6, 7), "direct 1x1"),
    ("num_output: 6 kernel_size: 1 group: 3", (2, 6, 5, 3), "col2im"),
    ("num_output: 2 kernel_size: 3 pad: 1", (3, 4, 7, 9), "flipped kernel"),
    ("num_output: 2 kernel_h: 3 kernel_w: 2 pad_h: 1 pad_w: 1 dilation: 2 group: 2", (2, 6, 9, 8), "flipped kernel"),
    ("num_output: 2 kernel_size: 5 pad: 1", (2, 3, 9, 11), "flipped kernel"),
    ("num_output: 4 kernel_size: 3 pad: 2", (3, 2, 7, 9), "wide col2im"),
    ("num_output: 4 kernel_h: 3 kernel_w: 2 pad_h: 1 pad_w: 1 dilation: 2 group: 2", (2, 4, 9, 8), "wide col2im"),
    ("num_output: 3 kernel_size: 3 pad: 0", (2, 5, 7, 6), "wide col2im"),
    ("num_output: 6 kernel_size: 3 stride: 2 pad: 1 group: 3", (3, 3, 9, 7), "col2im"),
    ("num_output: 5 kernel_h: 2 kernel_w: 3 stride_h: 3 stride_w: 2 dilation: 2 pad: 1", (2, 3, 11, 10), "col2im"),
    ("num_output: 4 kernel_size: 3 stride: 2 pad: 1", (2, 3, 5, 7, 6), "col2im"),  # 3-D
    ("num_output: 2 kernel_size: 2 pad: 1", (2, 4, 13), "flipped kernel"),  # 1-D
    ("num_output: 3 kernel_size: 2 pad: 1", (2, 2, 13), "wide col2im"),  # 1-D
    ("num_output: 8 kernel_size: 2", (1, 1, 40, 40), "wide col2im"),  # long images: the transposed dW product
    ("num_output: 16 kernel_size: 3 stride: 2", (2, 2, 5, 5), "col2im"),  # few positions: the plain dW product
]


def backward_path(layer) -> str:
    if layer.geom.is_1x1 and layer.group == 1:
        return "direct 1x1"
    if layer.back is not None:
        return "flipped kernel"
    return "wide col2im" if layer.wide is not None else "col2im"


@pytest.mark.parametrize("params, shape, path", CONV_CASES)
@pytest.mark.parametrize("threaded, wide, forward", [(False, True, "wide"), (True, True, "wide"), (True, True, "exact"),
                                                     (True, False, "exact"), (False, True, "patches"),
                                                     (True, False, "patches")])
def test_convolution_matches_its_reference(params, shape, path, threaded, wide, forward, monkeypatch):
    threads(monkeypatch, threaded)
    monkeypatch.setattr(vision, "CHUNK_BYTES", 1 if threaded else 1 << 30)  # one image per chunk, or one chunk
    monkeypatch.setattr(vision, "WIDE", wide)
    # the forward on the wide columns wherever they exist, or on exact ones (beside a wide backward), or on
    # channels-last patches (with the weight gradient) wherever the layer allows them
    monkeypatch.setattr(vision, "WIDE_FORWARD_MAX", 1e9 if forward == "wide" else 1.0)
    monkeypatch.setattr(vision, "PATCHES", forward == "patches")
    monkeypatch.setattr(vision, "PATCH_RUN", 1)
    rng = np.random.default_rng(len(params) + sum(shape))
    spec = ('type: "Convolution" convolution_param { %s weight_filler { type: "gaussian" std: 1 } '
            'bias_filler { type: "gaussian" std: 1 } }' % params)
    layer = make_layer(spec)
    x = rng.normal(size=shape)
    bottom, top = [Blob(data=x, dtype=np.float64)], [Blob(dtype=np.float64)]
    layer.run_setup(bottom, top)
    for b in layer.blobs:
        b.astype(np.float64)
        b.data[...] = rng.normal(size=b.shape)
    g = layer.geom
    allowed = len(g.kernel) == 2 and layer.group == 1 and not g.is_1x1 and g.dilation == (1, 1)
    assert (layer.patches is not None) == (forward == "patches" and allowed)
    flippable = (g.stride == (1, 1) and all(p <= k - 1 for k, p in zip(g.kernel, g.pad))
                 and np.prod(layer.in_spatial) <= np.prod(layer.out_spatial))
    assert (layer.back_patches is not None) == (layer.patches is not None and flippable)
    if wide:
        assert backward_path(layer) == path
        if layer.wide is not None:  # 1-D: the wide columns are the exact ones
            assert (layer.fwd_wide is None) == (forward != "wide" and layer.wide.run > np.prod(layer.out_spatial))
    layer.run_forward(bottom, top)
    dy = rng.normal(size=top[0].shape)
    top[0].diff[...] = dy
    layer.run_backward(top, [True], bottom)
    g = layer.geom
    y, dx, dw, db = convolution_reference(x, layer.blobs[0].data, layer.blobs[1].data, g.stride, g.pad,
                                          g.dilation, layer.group, dy)
    for got, want in zip([top[0].data, bottom[0].diff, layer.blobs[0].diff, layer.blobs[1].diff], [y, dx, dw, db]):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_every_backward_path_is_covered():
    assert {path for _, _, path in CONV_CASES} == {"direct 1x1", "flipped kernel", "wide col2im", "col2im"}


def test_convolution_reference_is_the_formula():
    """The reference itself, against the textbook sum over output positions and taps (2-D, one group)."""
    rng = np.random.default_rng(3)
    x, w, b = rng.normal(size=(2, 3, 6, 5)), rng.normal(size=(4, 3, 3, 2)), rng.normal(size=4)
    stride, pad, dilation = (2, 1), (1, 2), (1, 2)
    y = convolution_reference(x, w, b, stride, pad, dilation)
    xp = np.pad(x, [(0, 0), (0, 0), (1, 1), (2, 2)])
    want = np.empty(y.shape)
    for n, o, i, j in itertools.product(*map(range, y.shape)):
        taps = xp[n, :, i * 2:i * 2 + 3, j:j + 2 * 2:2]
        want[n, o, i, j] = b[o] + np.sum(w[o] * taps)
    np.testing.assert_allclose(y, want, rtol=1e-12)
