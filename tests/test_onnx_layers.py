"""Each layer type, exported alone (or in a small net) to ONNX, computes caffelite's forward in onnxruntime.

Two sources of cases: every golden case (BVLC Caffe's own layer tests: the pooling shapes that exercise the
ceil/clip rule, strides that do not divide, pads, groups, dilation, axis choices), run on the case's inputs
and weights; and swept or random parameters per layer type below.  Relative difference (to the output's
largest magnitude) at most 1e-5; ArgMax indices exactly.
"""

import itertools
import os

import numpy as np
import pytest
from google.protobuf import text_format

import caffelite
from caffelite.errors import NetError, UnsupportedError
from caffelite.proto import caffe_pb2
from tests.golden_runner import GOLDEN, case_names, in_case_folder
from tests.onnx_helpers import assert_close, conx, randomize, round_trip

TOL = 1e-5

# golden cases that export no graph: a loss or a data layer alone (nothing computed from inputs), or a
# layer that cannot be expressed
NOT_EXPORTED = {name: NetError for name in case_names() if name.startswith(("sml_", "hinge_", "sigmoid_ce_", "data_"))}
NOT_EXPORTED.update({name: NetError for name in ["accuracy_topk", "contrastive_legacy_false", "contrastive_legacy_true",
                                                 "dummy_data", "euclidean_loss", "infogain_loss",
                                                 "multinomial_logistic"]})
NOT_EXPORTED.update({"filter": UnsupportedError, "python_layer_loss": UnsupportedError,
                     "sml_axis2": None, "sml_extreme_logits": None, "sml_two_tops_default_weights": None,
                     "sml_two_tops_two_weights": None})
NOT_EXPORTED = {k: v for k, v in NOT_EXPORTED.items() if v is not None}


def _golden(case):
    folder = os.path.join(GOLDEN, "layers", case)
    with np.load(os.path.join(folder, "arrays.npz")) as z:
        inputs = {k[3:]: v.astype(np.float32) for k, v in z.items() if k.startswith("in/")}
    weights = os.path.join(folder, "weights.caffemodel")
    return folder, inputs, weights if os.path.exists(weights) else None


@pytest.mark.parametrize("case", [c for c in case_names() if c not in NOT_EXPORTED])
def test_golden_case_exports_exactly(case):
    folder, inputs, weights = _golden(case)
    with in_case_folder(folder):
        exported = conx.convert(os.path.join(folder, "net.prototxt"), weights,
                                inputs={k: v.shape for k, v in inputs.items()} or None)
    diffs, got, ref = round_trip(exported, {k: v for k, v in inputs.items() if k in exported.inputs})
    assert_close(diffs, TOL)
    for layer in exported.net.layers:  # ArgMax indices: exactly
        if layer.layer_param.type == "ArgMax" and layer.layer_param.top[0] in got:
            top = layer.layer_param.top[0]
            np.testing.assert_array_equal(got[top], ref[top])


@pytest.mark.parametrize("case", sorted(NOT_EXPORTED))
def test_golden_case_without_graph_is_a_typed_error(case):
    folder, inputs, weights = _golden(case)
    with in_case_folder(folder), pytest.raises(NOT_EXPORTED[case]) as err:
        conx.convert(os.path.join(folder, "net.prototxt"), weights,
                     inputs={k: v.shape for k, v in inputs.items()} or None)
    assert err.value.file
    if NOT_EXPORTED[case] is UnsupportedError:
        assert err.value.line and err.value.layer


# --- swept and random parameters ---------------------------------------------------------------------
def _net(text: str, inputs: dict, seed: int = 0) -> caffelite.Net:
    param = caffe_pb2.NetParameter()
    for name, shape in inputs.items():
        param.layer.add(name="in_" + name, type="Input", top=[name]).input_param.shape.add().dim.extend(shape)
    text_format.Merge(text, param)
    return randomize(caffelite.Net(param, caffelite.TEST), seed)


def check(text: str, inputs: dict, feeds=None, tol: float = TOL, **kwargs):
    exported = conx.convert(_net(text, inputs), **kwargs)
    diffs, got, ref = round_trip(exported, feeds)
    assert_close(diffs, tol)
    return exported, got, ref


def _pool_cases():
    rng = np.random.default_rng(1701)
    cases = []
    for size, k, s, method in itertools.product((5, 6, 7, 8), (1, 2, 3, 4), (1, 2, 3), ("MAX", "AVE")):
        if k > size or (method == "AVE" and s > k):  # an AVE window outside the input is 0 / 0 in Caffe
            continue
        pad = int(rng.integers(0, k))
        mode = "CEIL" if rng.random() < 0.75 else "FLOOR"
        w = size + int(rng.integers(0, 3))
        cases.append((method, size, w, k, s, pad, mode))
    return cases


@pytest.mark.parametrize("method,h,w,k,s,pad,mode", _pool_cases())
def test_pooling_geometry(method, h, w, k, s, pad, mode):
    """Caffe's ceil rounding, the last-window clip and AVE's border divisor on many geometries."""
    check('layer { name: "p" type: "Pooling" bottom: "x" top: "y" pooling_param { pool: %s kernel_size: %d '
          'stride: %d pad: %d round_mode: %s } }' % (method, k, s, pad, mode), {"x": [2, 3, h, w]})


@pytest.mark.parametrize("text", [
    "pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0",
    "pool: AVE kernel_h: 2 kernel_w: 3 stride_h: 1 stride_w: 2 pad_h: 1 pad_w: 2",
    "pool: AVE global_pooling: true", "pool: MAX global_pooling: true",
])
def test_pooling_rectangular_and_global(text):
    check('layer { name: "p" type: "Pooling" bottom: "x" top: "y" pooling_param { %s } }' % text, {"x": [2, 3, 7, 9]})


def test_pooling_max_mask_top():
    exported, got, ref = check('layer { name: "p" type: "Pooling" bottom: "x" top: "y" top: "mask" '
                               'pooling_param { pool: MAX kernel_size: 3 stride: 2 } }', {"x": [2, 3, 8, 9]},
                               outputs=["y", "mask"])
    np.testing.assert_array_equal(got["mask"], ref["mask"])


@pytest.mark.parametrize("k,s,size", [(2, 2, 6), (3, 2, 7), (3, 1, 5), (2, 3, 8)])
def test_pooling_stochastic_at_test(k, s, size):
    """TEST-time STOCHASTIC: sum x^2 / sum x over windows that start at o s (activations non-negative)."""
    check('layer { name: "abs" type: "AbsVal" bottom: "x" top: "a" } layer { name: "p" type: "Pooling" '
          'bottom: "a" top: "y" pooling_param { pool: STOCHASTIC kernel_size: %d stride: %d } }' % (k, s),
          {"x": [2, 3, size, size + 1]})


@pytest.mark.parametrize("height,method", [(1, "MAX"), (3, "MAX"), (2, "AVE"), (3, "AVE")])
def test_spp(height, method):
    check('layer { name: "spp" type: "SPP" bottom: "x" top: "y" spp_param { pyramid_height: %d pool: %s } }'
          % (height, method), {"x": [2, 3, 9, 11]})


CONV = [
    "num_output: 4 kernel_size: 3",
    "num_output: 6 kernel_size: 3 stride: 2 pad: 1 group: 3",
    "num_output: 4 kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 pad_h: 2 pad_w: 1",
    "num_output: 4 kernel_size: 3 dilation: 2 pad: 2 group: 2",
    "num_output: 5 kernel_size: 1 bias_term: false",
    "num_output: 6 kernel_size: 4 stride: 3 pad: 2 dilation: 2",
]


@pytest.mark.parametrize("conv", CONV)
@pytest.mark.parametrize("layer_type", ["Convolution", "Deconvolution"])
def test_convolution_and_deconvolution(layer_type, conv):
    check('layer { name: "c" type: "%s" bottom: "x" top: "y" convolution_param { %s weight_filler { type: '
          '"gaussian" } bias_filler { type: "gaussian" } } }' % (layer_type, conv), {"x": [2, 6, 9, 10]})


@pytest.mark.parametrize("layer_type", ["Convolution", "Deconvolution"])
def test_convolution_nd(layer_type):
    check('layer { name: "c" type: "%s" bottom: "x" top: "y" convolution_param { num_output: 4 kernel_size: 2 '
          'kernel_size: 3 kernel_size: 2 stride: 2 stride: 1 stride: 1 pad: 1 group: 2 } }' % layer_type,
          {"x": [2, 4, 5, 6, 5]})


@pytest.mark.parametrize("conv", ["kernel_size: 3", "kernel_h: 2 kernel_w: 3 stride: 2 pad: 1",
                                  "kernel_size: 2 dilation: 2 pad: 1 stride: 3"])
def test_im2col(conv):
    check('layer { name: "c" type: "Im2col" bottom: "x" top: "y" convolution_param { %s } }' % conv,
          {"x": [2, 3, 7, 8]})


@pytest.mark.parametrize("params,shape", [("", [3, 4, 2, 2]), ("axis: 2", [2, 3, 4, 5]),
                                          ("transpose: true", [3, 5]), ("axis: 2 transpose: true", [2, 3, 4]),
                                          ("bias_term: false axis: -1", [2, 3, 4])])
def test_inner_product(params, shape):
    check('layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 7 %s } }'
          % params, {"x": shape})


@pytest.mark.parametrize("region,size", [("ACROSS_CHANNELS", 3), ("ACROSS_CHANNELS", 5), ("WITHIN_CHANNEL", 3),
                                         ("WITHIN_CHANNEL", 5)])
def test_lrn(region, size):
    check('layer { name: "n" type: "LRN" bottom: "x" top: "y" lrn_param { local_size: %d alpha: 0.7 beta: 0.6 '
          'k: 1.5 norm_region: %s } }' % (size, region), {"x": [2, 7, 6, 5]})


@pytest.mark.parametrize("params", ["", "use_global_stats: false", "eps: 0.1"])
def test_batch_norm(params):
    check('layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y" batch_norm_param { %s } }' % params,
          {"x": [3, 4, 5, 2]})


def test_batch_norm_zero_scale_factor():
    net = _net('layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y" }', {"x": [2, 3, 4]})
    net.params["bn"][2].data[...] = 0  # Caffe: a zero scale factor means zero statistics
    diffs, _, _ = round_trip(conx.convert(net))
    assert_close(diffs, TOL)


@pytest.mark.parametrize("text,inputs", [
    ('layer { name: "s" type: "Scale" bottom: "x" top: "y" scale_param { bias_term: true } }', {"x": [2, 3, 4, 5]}),
    ('layer { name: "s" type: "Scale" bottom: "x" top: "y" scale_param { axis: 2 num_axes: 2 } }', {"x": [2, 3, 4, 5]}),
    ('layer { name: "s" type: "Scale" bottom: "x" top: "y" scale_param { num_axes: 0 bias_term: true } }',
     {"x": [2, 3, 4]}),
    ('layer { name: "s" type: "Scale" bottom: "x" bottom: "g" top: "y" scale_param { axis: 1 bias_term: true } }',
     {"x": [2, 3, 4, 5], "g": [3, 4]}),
    ('layer { name: "s" type: "Scale" bottom: "x" bottom: "g" top: "y" scale_param { axis: 0 } }',
     {"x": [2, 3, 4], "g": [2]}),
    ('layer { name: "b" type: "Bias" bottom: "x" top: "y" bias_param { axis: 1 num_axes: -1 } }', {"x": [2, 3, 4]}),
    ('layer { name: "b" type: "Bias" bottom: "x" bottom: "c" top: "y" bias_param { axis: 2 } }',
     {"x": [2, 3, 4, 5], "c": [4, 5]}),
])
def test_scale_and_bias(text, inputs):
    check(text, inputs)


@pytest.mark.parametrize("params", ["operation: SUM", "operation: SUM coeff: 0.5 coeff: -2 coeff: 3",
                                    "operation: PROD", "operation: MAX"])
def test_eltwise(params):
    check('layer { name: "e" type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "y" eltwise_param { %s } }'
          % params, {"a": [2, 3, 4], "b": [2, 3, 4], "c": [2, 3, 4]})


@pytest.mark.parametrize("text,inputs", [
    ('layer { name: "c" type: "Concat" bottom: "a" bottom: "b" top: "y" concat_param { axis: 2 } }',
     {"a": [2, 3, 4], "b": [2, 3, 5]}),
    ('layer { name: "c" type: "Concat" bottom: "a" bottom: "b" top: "y" concat_param { axis: -3 } }',
     {"a": [2, 3, 4], "b": [2, 3, 4]}),
    ('layer { name: "s" type: "Slice" bottom: "a" top: "y" top: "z" top: "w" slice_param { axis: 1 slice_point: 1 '
     'slice_point: 4 } }', {"a": [2, 6, 3]}),
    ('layer { name: "s" type: "Slice" bottom: "a" top: "y" top: "z" slice_param { axis: -1 } }', {"a": [2, 3, 4]}),
    ('layer { name: "f" type: "Flatten" bottom: "a" top: "y" flatten_param { axis: 2 } }', {"a": [2, 3, 4, 5]}),
    ('layer { name: "f" type: "Flatten" bottom: "a" top: "y" flatten_param { axis: 0 end_axis: 1 } }',
     {"a": [2, 3, 4]}),
    ('layer { name: "r" type: "Reshape" bottom: "a" top: "y" reshape_param { shape { dim: 0 dim: -1 dim: 2 } } }',
     {"a": [2, 3, 4]}),
    ('layer { name: "r" type: "Reshape" bottom: "a" top: "y" reshape_param { axis: 1 num_axes: 1 shape { dim: 3 '
     'dim: 1 } } }', {"a": [2, 3, 4]}),
    ('layer { name: "c" type: "Crop" bottom: "a" bottom: "b" top: "y" crop_param { axis: 2 offset: 1 offset: 2 } }',
     {"a": [2, 3, 7, 8], "b": [1, 1, 4, 5]}),
    ('layer { name: "c" type: "Crop" bottom: "a" bottom: "b" top: "y" crop_param { axis: 1 offset: 1 } }',
     {"a": [2, 3, 7, 8], "b": [2, 2, 4, 5]}),
    ('layer { name: "t" type: "Tile" bottom: "a" top: "y" tile_param { axis: 1 tiles: 3 } }', {"a": [2, 3, 4]}),
    ('layer { name: "sp" type: "Split" bottom: "a" top: "y" top: "z" }', {"a": [2, 3]}),
    ('layer { name: "s" type: "Softmax" bottom: "a" top: "y" softmax_param { axis: 2 } }', {"a": [2, 3, 4, 5]}),
    ('layer { name: "s" type: "Softmax" bottom: "a" top: "y" }', {"a": [2, 6]}),
])
def test_shape_layers(text, inputs):
    check(text, inputs)


NEURONS = [
    ("ReLU", ""), ("ReLU", "relu_param { negative_slope: 0.1 }"), ("Sigmoid", ""), ("TanH", ""), ("AbsVal", ""),
    ("BNLL", ""), ("ELU", "elu_param { alpha: 0.7 }"), ("PReLU", ""), ("PReLU", "prelu_param { channel_shared: true }"),
    ("Power", "power_param { power: 2 scale: 0.5 shift: 1 }"), ("Power", "power_param { power: 3 }"),
    ("Power", "power_param { power: 0 scale: 2 shift: 3 }"), ("Power", "power_param { power: 2 scale: 0 shift: 3 }"),
    ("Exp", ""), ("Exp", "exp_param { base: 2 scale: 0.5 shift: 1 }"),
    ("Log", "log_param { shift: 10 }"), ("Log", "log_param { base: 10 scale: 2 shift: 9 }"),
    ("Threshold", "threshold_param { threshold: 0.3 }"), ("Clip", "clip_param { min: -0.5 max: 0.7 }"),
    ("Swish", ""), ("Swish", "swish_param { beta: 1.5 }"), ("Dropout", "dropout_param { dropout_ratio: 0.3 }"),
]


@pytest.mark.parametrize("layer_type,params,in_place", [
    (t, p, in_place) for in_place in (False, True) for t, p in NEURONS
    if not (in_place and t == "AbsVal")])  # Caffe's AbsVal refuses in-place computation
def test_neurons(layer_type, params, in_place):
    """Out of place, and in place on an intermediate blob (its final value keeps the blob's name)."""
    if in_place:
        text = 'layer { name: "pre" type: "Power" bottom: "x" top: "y" power_param { scale: 1.5 } } ' \
               'layer { name: "n" type: "%s" bottom: "y" top: "y" %s }' % (layer_type, params)
    else:
        text = 'layer { name: "n" type: "%s" bottom: "x" top: "y" %s }' % (layer_type, params)
    exported, _, _ = check(text, {"x": [2, 3, 4, 5]})
    assert exported.outputs == ["y"]


def test_in_place_names():
    """An in-place chain gets unique tensor names; its final value keeps the blob's name; an in-place layer on an
    input leaves the input its name and calls the output NAME:out."""
    text = ('layer { name: "c" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 2 '
            'kernel_size: 1 } } layer { name: "r" type: "ReLU" bottom: "conv" top: "conv" } '
            'layer { name: "s" type: "Scale" bottom: "conv" top: "conv" } '
            'layer { name: "t" type: "TanH" bottom: "raw" top: "raw" }')
    exported, _, _ = check(text, {"data": [1, 3, 4, 4], "raw": [2, 3]})
    assert set(exported.inputs) == {"data", "raw"}
    assert exported.blobs == {"conv": "conv", "raw:out": "raw"}
    names = [o for node in exported.model.graph.node for o in node.output]
    assert len(names) == len(set(names)) and "conv" in names


@pytest.mark.parametrize("params,shape", [("top_k: 1", [3, 10]), ("top_k: 3 out_max_val: true", [3, 2, 5]),
                                          ("axis: 1 top_k: 2", [2, 6, 3]), ("axis: -1 out_max_val: true", [2, 3, 4])])
def test_argmax_including_ties(params, shape):
    """Ties go to the larger index, as in Caffe; the input has many ties."""
    feeds = {"x": np.random.default_rng(3).integers(0, 3, shape).astype(np.float32)}
    exported, got, ref = check('layer { name: "a" type: "ArgMax" bottom: "x" top: "y" argmax_param { %s } }' % params,
                               {"x": shape}, feeds=feeds)
    np.testing.assert_array_equal(got["y"], ref["y"])


@pytest.mark.parametrize("op", ["SUM", "ASUM", "SUMSQ", "MEAN"])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_reduction(op, axis):
    check('layer { name: "r" type: "Reduction" bottom: "x" top: "y" reduction_param { operation: %s axis: %d '
          'coeff: 0.7 } }' % (op, axis), {"x": [2, 3, 4]})


@pytest.mark.parametrize("params", ["", "across_channels: true", "normalize_variance: false", "eps: 0.01"])
def test_mvn(params):
    check('layer { name: "m" type: "MVN" bottom: "x" top: "y" mvn_param { %s } }' % params, {"x": [2, 3, 4, 5]})


def test_embed_parameter_batch_reindex_silence():
    text = ('layer { name: "e" type: "Embed" bottom: "i" top: "emb" embed_param { num_output: 4 input_dim: 7 } } '
            'layer { name: "p" type: "Parameter" top: "par" parameter_param { shape { dim: 2 dim: 3 } } } '
            'layer { name: "r" type: "BatchReindex" bottom: "x" bottom: "j" top: "re" } '
            'layer { name: "s" type: "Silence" bottom: "k" }')
    feeds = {"i": np.array([[0, 6, 3], [2, 2, 5]], np.float32), "x": np.random.default_rng(0).normal(size=(3, 4)),
             "j": np.array([2, 0, 2, 1], np.float32)}
    feeds = {k: np.asarray(v, np.float32) for k, v in feeds.items()}
    exported, _, _ = check(text, {"i": [2, 3], "x": [3, 4], "j": [4], "k": [2]}, feeds=feeds)
    assert set(exported.outputs) == {"emb", "par", "re"} and "k" not in exported.inputs  # Silence reads k: no output


@pytest.mark.parametrize("layer_type", ["RNN", "LSTM"])
@pytest.mark.parametrize("variant", ["plain", "static", "expose"])
def test_recurrent(layer_type, variant):
    states = ["h0"] + (["c0"] if layer_type == "LSTM" else [])
    bottoms = ["x", "cont"] + (["xs"] if variant == "static" else []) + (states if variant == "expose" else [])
    tops = ["y"] + (["hT", "cT"][:len(states)] if variant == "expose" else [])
    inputs = {"x": [4, 3, 2, 2], "cont": [4, 3], "xs": [3, 5], "h0": [1, 3, 6], "c0": [1, 3, 6]}
    text = ('layer { name: "r" type: "%s" %s %s recurrent_param { num_output: 6 expose_hidden: %s } }'
            % (layer_type, " ".join('bottom: "%s"' % b for b in bottoms), " ".join('top: "%s"' % t for t in tops),
               "true" if variant == "expose" else "false"))
    feeds = {b: np.random.default_rng(5).normal(size=inputs[b]).astype(np.float32) for b in bottoms}
    feeds["cont"] = np.array([[0, 0, 0], [1, 1, 0], [1, 0, 1], [1, 1, 1]], np.float32)  # sequence starts inside
    check(text, {b: inputs[b] for b in bottoms}, feeds=feeds)


def test_lstm_unit():
    rng = np.random.default_rng(1)
    feeds = {"c": rng.normal(size=(1, 3, 4)), "g": rng.normal(size=(1, 3, 16)), "cont": np.array([[1, 0, 1]])}
    check('layer { name: "u" type: "LSTMUnit" bottom: "c" bottom: "g" bottom: "cont" top: "c1" top: "h1" }',
          {"c": [1, 3, 4], "g": [1, 3, 16], "cont": [1, 3]}, feeds={k: v.astype(np.float32) for k, v in feeds.items()})


def test_every_stock_layer_type_has_a_converter_or_a_reason():
    from caffelite.onnx.convert import UNEXPORTABLE

    handled = set(conx.supported_types()) | set(UNEXPORTABLE)
    missing = sorted(set(caffelite.layer_type_list()) - handled)
    assert not missing, "layer types with neither an ONNX export nor a stated reason: %s" % missing
