"""Inference paths: a layer whose backward the net never runs keeps nothing for it, and its top holds
exactly the numbers of the training path (MAX pooling without the argmax, BatchNorm and Scale without
their copies, Eltwise SUM without the multiply by 1)."""

import numpy as np
import pytest
from google.protobuf import text_format

import caffelite
import caffelite.layers.vision as vision
from caffelite.blob import Blob
from caffelite.compute import winograd
from caffelite.compute.im2col import Workspace
from caffelite.layers.vision import convolution_reference
from caffelite.proto import caffe_pb2
from caffelite.testing import make_layer

DEPLOY = """
input: "data" input_shape { dim: 1 dim: 2 dim: 6 dim: 6 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 3 kernel_size: 3 weight_filler { type: "gaussian" } } }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { pool: MAX kernel_size: 2 } }
"""


@pytest.mark.parametrize("force", [False, True])
def test_net_tells_layers_whether_backward_runs(force):
    param = text_format.Parse(DEPLOY, caffe_pb2.NetParameter())
    param.force_backward = force
    net = caffelite.Net(param, caffelite.TEST)
    assert [layer.need_backward for layer in net.layers] == net.layer_need_backward
    assert all(layer.need_backward == force for layer in net.layers[1:])


def both_ways(spec, shapes, in_place=False, seed=0):
    """Tops of the layer with need_backward True and False (fresh layers, same weights and inputs)."""
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=s).astype(np.float32) for s in shapes]
    outs, params = [], None
    for need in (True, False):
        layer = make_layer(spec, caffe_pb2.TEST)
        bottom = [Blob(data=x.copy()) for x in xs]
        top = bottom[:1] if in_place else [Blob()]
        layer.run_setup(bottom, top)
        if params is None:
            params = [rng.normal(size=b.shape).astype(np.float32) for b in layer.blobs]
        for b, p in zip(layer.blobs, params):
            b.data[...] = p
        layer.need_backward = need
        for _ in range(1 if in_place else 2):  # twice when not in place: reused scratch
            layer.run_forward(bottom, top)
        outs.append(top[0].data.copy())
    return outs


@pytest.mark.parametrize("params, shape", [("kernel_size: 3 stride: 2", (2, 3, 9, 10)),
                                           ("kernel_size: 3 stride: 2 pad: 1", (1, 4, 7, 8)),
                                           ("kernel_size: 2 stride: 2", (1, 2, 5, 5)),
                                           ("kernel_h: 3 kernel_w: 2 stride_h: 1 stride_w: 3", (1, 3, 6, 11)),
                                           ("global_pooling: true", (1, 5, 4, 6)),
                                           # CEIL rounding leaves a last window wholly outside: -FLT_MAX
                                           ("kernel_size: 1 stride: 2", (1, 2, 5, 6))])
def test_max_pooling_without_argmax_gives_the_same_top(params, shape):
    trained, inferred = both_ways('type: "Pooling" pooling_param { pool: MAX %s }' % params, [shape])
    np.testing.assert_array_equal(trained, inferred)


def test_batchnorm_and_scale_inference_give_the_same_top():
    bn = 'type: "BatchNorm" batch_norm_param { use_global_stats: true }'
    shape = (2, 4, 5, 3)
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape).astype(np.float32)
    outs = []
    for need in (True, False):
        layer = make_layer(bn, caffe_pb2.TEST)
        blob = Blob(data=x.copy())
        layer.run_setup([blob], [blob])
        layer.blobs[0].data[...] = np.arange(4) * 0.5
        layer.blobs[1].data[...] = np.arange(1, 5) * 0.25
        layer.blobs[2].data[...] = 2.0
        layer.need_backward = need
        layer.run_forward([blob], [blob])  # in place, as in ResNet
        outs.append(blob.data.copy())
    np.testing.assert_array_equal(*outs)
    want = (x - (np.arange(4) * 0.25)[:, None, None].astype(np.float32)) / np.sqrt(
        (np.arange(1, 5) * 0.125).astype(np.float32) + np.float32(1e-5))[:, None, None]
    np.testing.assert_allclose(outs[0], want, rtol=1e-6)
    trained, inferred = both_ways('type: "Scale" scale_param { bias_term: true }', [shape], in_place=True)
    np.testing.assert_array_equal(trained, inferred)


@pytest.mark.parametrize("coeff", ["", "coeff: 1 coeff: 1 coeff: 1", "coeff: 2 coeff: -1 coeff: 1",
                                   "coeff: 1 coeff: 0.5 coeff: 1"])
def test_eltwise_sum_matches_the_formula(coeff):
    layer = make_layer('type: "Eltwise" eltwise_param { operation: SUM %s }' % coeff, caffe_pb2.TEST)
    rng = np.random.default_rng(2)
    xs = [rng.normal(size=(2, 3, 4)).astype(np.float32) for _ in range(3)]
    bottom, top = [Blob(data=x) for x in xs], [Blob()]
    layer.run_setup(bottom, top)
    layer.run_forward(bottom, top)
    c = [float(v) for v in coeff.split()[1::2]] or [1.0, 1.0, 1.0]
    want = np.float32(c[0]) * xs[0]
    for ci, x in zip(c[1:], xs[1:]):
        want = want + np.float32(ci) * x
    np.testing.assert_array_equal(top[0].data, want)


# --- Winograd F(2x2, 3x3) ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape, out_c, pad", [((1, 3, 7, 9), 4, (1, 1)), ((2, 5, 8, 8), 3, (0, 0)),
                                               ((1, 2, 5, 6), 2, (2, 1)), ((3, 4, 3, 3), 5, (0, 2)),
                                               ((1, 6, 12, 11), 7, (1, 0))])
@pytest.mark.parametrize("band_bytes", [1 << 20, 64])  # one band, or one per tile row
def test_winograd_matches_the_reference(shape, out_c, pad, band_bytes, monkeypatch):
    monkeypatch.setattr(winograd, "BAND_BYTES", band_bytes)
    rng = np.random.default_rng(3)
    x, w = rng.normal(size=shape), rng.normal(size=(out_c, shape[1], 3, 3))
    want = convolution_reference(x, w, None, (1, 1), pad, (1, 1))
    out = np.empty_like(want)
    winograd.conv3x3(x, winograd.transform_weights(w), pad, out, Workspace())
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)


def test_winograd_in_a_layer_follows_its_weights(monkeypatch):
    monkeypatch.setattr(vision, "WINOGRAD_CHANNELS", 1)
    monkeypatch.setattr(vision, "WINOGRAD_SIDES", range(1, 100))
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1, 6, 9, 10)).astype(np.float32)
    layer = make_layer('type: "Convolution" convolution_param { num_output: 5 kernel_size: 3 pad: 1 '
                       'weight_filler { type: "gaussian" } bias_filler { type: "gaussian" } }', caffe_pb2.TEST)
    bottom, top = [Blob(data=x)], [Blob()]
    layer.run_setup(bottom, top)
    layer.need_backward = False
    assert layer.winograd_fits
    for _ in range(3):  # new weights written into the blob are seen at the next forward
        layer.blobs[0].data[...] = rng.normal(size=layer.blobs[0].shape)
        layer.run_forward(bottom, top)
        want = convolution_reference(x.astype(np.float64), layer.blobs[0].data.astype(np.float64),
                                     layer.blobs[1].data.astype(np.float64), (1, 1), (1, 1), (1, 1))
        np.testing.assert_allclose(top[0].data, want, rtol=1e-4, atol=1e-4)
        assert layer._winograd is not None  # the Winograd path ran


# --- shared scratch: a padded copy of the input is one array for all layers, its border zeroed each call ----
@pytest.mark.parametrize("params", ["num_output: 3 kernel_size: 3 pad: %d",
                                    "num_output: 3 kernel_size: 3 stride: 2 pad: %d",
                                    "num_output: 4 group: 4 kernel_size: 3 pad: %d",
                                    "num_output: 4 group: 4 kernel_size: 3 stride: 2 pad: %d"])
@pytest.mark.parametrize("ndim", [2, 3])
def test_layers_sharing_padded_scratch_see_zero_borders(params, ndim, monkeypatch):
    monkeypatch.setattr(vision, "WINOGRAD_CHANNELS", 1)
    monkeypatch.setattr(vision, "WINOGRAD_SIDES", range(1, 100))
    rng = np.random.default_rng(5)
    layers = []
    for pad, side in ((2, 9), (1, 6), (2, 9)):  # the big one fills the shared arrays with non-zeros first
        x = rng.normal(size=(1, 4) + (side,) * ndim).astype(np.float32) + 3
        layer = make_layer('type: "Convolution" convolution_param { %s weight_filler { type: "gaussian" } }'
                           % (params % pad), caffe_pb2.TEST)
        bottom, top = [Blob(data=x)], [Blob()]
        layer.run_setup(bottom, top)
        layer.need_backward = False
        layers.append((layer, bottom, top, x))
    for _ in range(2):
        for layer, bottom, top, x in layers:
            layer.run_forward(bottom, top)
            g = layer.geom
            want = convolution_reference(x.astype(np.float64), layer.blobs[0].data.astype(np.float64),
                                         layer.blobs[1].data.astype(np.float64), g.stride, g.pad, g.dilation,
                                         layer.group)
            np.testing.assert_allclose(top[0].data, want, rtol=1e-4, atol=1e-4)
