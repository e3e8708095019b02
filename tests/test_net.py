"""Net construction as Caffe does it: NetState rules, splits, in-place, sharing, backward flags."""

import textwrap

import numpy as np
import pytest

import caffelite
from caffelite.net import filter_net, insert_splits
from caffelite.proto import caffe_pb2
from caffelite.protoio import parse_text


def net_param(text):
    return parse_text(textwrap.dedent(text), caffe_pb2.NetParameter())


def write(tmp_path, text, name="net.prototxt"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


RULES = """
layer { name: "always" type: "Input" top: "a" input_param { shape { dim: 1 } } }
layer { name: "train" type: "ReLU" bottom: "a" top: "b" include { phase: TRAIN } }
layer { name: "test" type: "ReLU" bottom: "a" top: "c" include { phase: TEST } }
layer { name: "staged" type: "ReLU" bottom: "a" top: "d" include { stage: "s1" stage: "s2" } }
layer { name: "not_s1" type: "ReLU" bottom: "a" top: "e" include { not_stage: "s1" } }
layer { name: "lvl" type: "ReLU" bottom: "a" top: "f" include { min_level: 1 max_level: 2 } }
layer { name: "ex_test" type: "ReLU" bottom: "a" top: "g" exclude { phase: TEST } }
layer { name: "either" type: "ReLU" bottom: "a" top: "h" include { phase: TEST } include { stage: "s1" } }
"""


@pytest.mark.parametrize("phase,stages,level,expected", [
    (caffe_pb2.TRAIN, [], 0, ["always", "train", "not_s1", "ex_test"]),
    (caffe_pb2.TEST, [], 0, ["always", "test", "not_s1", "either"]),
    (caffe_pb2.TRAIN, ["s1"], 1, ["always", "train", "lvl", "ex_test", "either"]),
    (caffe_pb2.TEST, ["s1", "s2"], 3, ["always", "test", "staged", "either"]),
])
def test_filter_net_applies_netstate_rules(phase, stages, level, expected):
    param = net_param(RULES)
    param.state.phase = phase
    param.state.stage.extend(stages)
    param.state.level = level
    assert [layer.name for layer in filter_net(param).layer] == expected


def test_include_and_exclude_together_is_an_error():
    param = net_param('layer { name: "x" type: "ReLU" include { phase: TRAIN } exclude { phase: TEST } }')
    with pytest.raises(caffelite.NetError, match="Specify either include rules or exclude rules; not both"):
        filter_net(param)


def test_net_constructor_forms_and_stages(tmp_path):
    path = write(tmp_path, RULES)
    names = [n for n in caffelite.Net(path, caffelite.TEST)._layer_names if not n.endswith("_split")]
    assert names[:2] == ["always", "test"]
    net = caffelite.Net(path, caffelite.TRAIN, stages=["s1", "s2"], level=1)
    assert "staged" in net._layer_names and "lvl" in net._layer_names and "not_s1" not in net._layer_names
    with pytest.raises(TypeError):
        caffelite.Net(path)


def test_insert_splits_names_like_caffe():
    param = net_param("""
        layer { name: "data" type: "Input" top: "data" }
        layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" }
        layer { name: "a" type: "ReLU" bottom: "ip" top: "a" }
        layer { name: "b" type: "ReLU" bottom: "ip" top: "b" }
        layer { name: "c" type: "Eltwise" bottom: "a" bottom: "b" bottom: "ip" top: "c" }
    """)
    out = insert_splits(param)
    names = [(layer.name, layer.type) for layer in out.layer]
    assert names == [("data", "Input"), ("ip", "InnerProduct"), ("ip_ip_0_split", "Split"),
                     ("a", "ReLU"), ("b", "ReLU"), ("c", "Eltwise")]
    split = out.layer[2]
    assert list(split.top) == ["ip_ip_0_split_0", "ip_ip_0_split_1", "ip_ip_0_split_2"]
    assert list(out.layer[3].bottom) == ["ip_ip_0_split_0"]
    assert list(out.layer[5].bottom) == ["a", "b", "ip_ip_0_split_2"]
    assert list(split.loss_weight) == [0, 0, 0]


def test_insert_splits_counts_an_explicit_loss_weight_as_a_consumer():
    param = net_param("""
        layer { name: "data" type: "Input" top: "x" }
        layer { name: "l" type: "EuclideanLoss" bottom: "x" bottom: "x" top: "loss" loss_weight: 2 }
        layer { name: "r" type: "ReLU" bottom: "loss" top: "r" }
    """)
    out = insert_splits(param)
    split = [layer for layer in out.layer if layer.name == "loss_l_0_split"][0]
    assert list(split.loss_weight) == [2, 0]
    by_name = {layer.name: layer for layer in out.layer}
    assert len(by_name["l"].loss_weight) == 0
    assert list(by_name["r"].bottom) == ["loss_l_0_split_1"]


def test_unknown_bottom_and_duplicate_top_messages(tmp_path):
    path = write(tmp_path, 'layer { name: "r" type: "ReLU" bottom: "nope" top: "r" }')
    with pytest.raises(caffelite.NetError, match=r"Unknown bottom blob 'nope' \(layer 'r', bottom index 0\)"):
        caffelite.Net(path, caffelite.TEST)
    path = write(tmp_path, """
        layer { name: "d" type: "Input" top: "x" input_param { shape { dim: 2 } } }
        layer { name: "a" type: "ReLU" bottom: "x" top: "y" }
        layer { name: "b" type: "Sigmoid" bottom: "x" top: "y" }
    """)
    with pytest.raises(caffelite.NetError, match="Top blob 'y' produced by multiple sources."):
        caffelite.Net(path, caffelite.TEST)


def test_wrong_bottom_count_uses_caffes_text(tmp_path):
    path = write(tmp_path, """
        layer { name: "d" type: "Input" top: "x" input_param { shape { dim: 2 } } }
        layer { name: "r" type: "ReLU" bottom: "x" bottom: "x" top: "y" }
    """)
    with pytest.raises(caffelite.LayerError, match="ReLU Layer takes 1 bottom blob\\(s\\) as input.") as err:
        caffelite.Net(path, caffelite.TEST)
    assert err.value.layer == "r"


def test_unknown_layer_type_lists_known_and_suggests(tmp_path):
    path = write(tmp_path, 'layer { name: "p" type: "SoftmaxWithLos" }')
    with pytest.raises(caffelite.UnknownLayerTypeError) as err:
        caffelite.Net(path, caffelite.TEST)
    msg = str(err.value)
    assert "Unknown layer type: SoftmaxWithLos" in msg and "Did you mean 'SoftmaxWithLoss'" in msg
    assert "known types:" in msg and "layer 'p'" in msg and str(path) in msg


def test_malformed_prototxt_names_file_line_and_column(tmp_path):
    path = write(tmp_path, 'name: "x"\nlayer {\n  name: "a"\n  typo_field: 3\n}\n')
    with pytest.raises(caffelite.ProtoError) as err:
        caffelite.Net(path, caffelite.TEST)
    assert err.value.file == path and err.value.line == 4 and err.value.column >= 3
    assert str(err.value).startswith("%s:4:" % path)


def test_missing_file_is_a_typed_error(tmp_path):
    with pytest.raises(caffelite.CaffeFileNotFoundError, match="not found"):
        caffelite.Net(str(tmp_path / "nope.prototxt"), caffelite.TEST)


def test_huge_shape_is_refused_before_allocating(tmp_path):
    path = write(tmp_path, """
        layer { name: "d" type: "Input" top: "x" input_param { shape { dim: 64 dim: 4096 } } }
        layer { name: "fc" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 100000000 } }
    """)
    with pytest.raises(caffelite.BlobMemoryError) as err:
        caffelite.Net(path, caffelite.TEST)
    assert err.value.layer == "fc" and "GiB" in str(err.value)
    assert isinstance(err.value, MemoryError)


def test_in_place_layers_share_the_blob(tmp_path):
    path = write(tmp_path, """
        force_backward: true
        layer { name: "d" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
        layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y"
                inner_product_param { num_output: 3 weight_filler { type: "gaussian" } } }
        layer { name: "relu" type: "ReLU" bottom: "y" top: "y" }
    """)
    net = caffelite.Net(path, caffelite.TRAIN)
    assert list(net.blobs) == ["x", "y"]
    assert net.top_names["relu"] == ["y"] and net.bottom_names["relu"] == ["y"]
    net.blobs["x"].data[...] = np.arange(6).reshape(2, 3) - 2.5
    out = net.forward()
    assert np.all(out["y"] >= 0)


SHARED = """
force_backward: true
layer { name: "d" type: "Input" top: "x" top: "x2" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "a" type: "InnerProduct" bottom: "x" top: "ya"
        param { name: "w" lr_mult: 1 } param { name: "b" lr_mult: 2 }
        inner_product_param { num_output: 4 weight_filler { type: "gaussian" } bias_filler { type: "gaussian" } } }
layer { name: "b" type: "InnerProduct" bottom: "x2" top: "yb"
        param { name: "w" } param { name: "b" lr_mult: 2 }
        inner_product_param { num_output: 4 weight_filler { type: "gaussian" } } }
layer { name: "sum" type: "Eltwise" bottom: "ya" bottom: "yb" top: "s" }
"""


def test_weight_sharing_shares_data_and_diff(tmp_path):
    net = caffelite.Net(write(tmp_path, SHARED), caffelite.TRAIN)
    assert list(net.params) == ["a", "b"]
    assert net.params["a"][0] is net.params["b"][0]
    assert len(net.learnable_params) == 2 and net.params_lr == [1.0, 2.0]
    net.blobs["x"].data[...] = 1
    net.blobs["x2"].data[...] = 2
    net.forward()
    np.testing.assert_allclose(net.blobs["ya"].data * 0 + net.blobs["yb"].data - net.blobs["ya"].data,
                               np.tile(net.params["a"][0].data.sum(axis=1), (2, 1)), rtol=1e-5)
    net.blobs["s"].diff[...] = 1
    net.backward()
    # both uses accumulate into the one diff: d/dW = sum over both layers' inputs
    np.testing.assert_allclose(net.params["a"][0].diff, np.full((4, 3), 2 * (1 + 2)), rtol=1e-6)


def test_weight_sharing_mismatches(tmp_path):
    bad_lr = SHARED.replace('param { name: "w" }', 'param { name: "w" lr_mult: 3 }')
    with pytest.raises(caffelite.NetError, match="Shared param 'w' has mismatched lr_mult."):
        caffelite.Net(write(tmp_path, bad_lr), caffelite.TRAIN)
    bad_shape = SHARED.replace("num_output: 4 weight_filler { type: \"gaussian\" } }",
                               "num_output: 6 weight_filler { type: \"gaussian\" } }")
    with pytest.raises(caffelite.NetError, match="shape mismatch"):
        caffelite.Net(write(tmp_path, bad_shape), caffelite.TRAIN)


def test_permissive_sharing_needs_equal_counts_only(tmp_path):
    text = """
    layer { name: "d" type: "Input" top: "x" top: "x2" input_param { shape { dim: 2 dim: 6 } shape { dim: 2 dim: 3 } } }
    layer { name: "a" type: "InnerProduct" bottom: "x" top: "ya" param { name: "w" }
            inner_product_param { num_output: 2 bias_term: false weight_filler { type: "gaussian" } } }
    layer { name: "b" type: "InnerProduct" bottom: "x2" top: "yb" param { name: "w" share_mode: PERMISSIVE }
            inner_product_param { num_output: 4 bias_term: false } }
    """
    net = caffelite.Net(write(tmp_path, text), caffelite.TEST)
    a, b = net.params["a"][0], net.params["b"][0]
    assert a.shape == (2, 6) and b.shape == (4, 3)
    np.testing.assert_array_equal(a.data.ravel(), b.data.ravel())
    a.data[0, 0] = 42
    assert b.data[0, 0] == 42


def test_backward_flags_and_outputs_order(tmp_path):
    text = """
    layer { name: "d" type: "Input" top: "x" top: "label" input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } } }
    layer { name: "ip" type: "InnerProduct" bottom: "x" top: "z" inner_product_param { num_output: 3 } }
    layer { name: "frozen" type: "InnerProduct" bottom: "x" top: "q" param { lr_mult: 0 } param { lr_mult: 0 }
            inner_product_param { num_output: 2 } }
    layer { name: "loss" type: "SoftmaxWithLoss" bottom: "z" bottom: "label" top: "loss" }
    layer { name: "acc" type: "Accuracy" bottom: "z" bottom: "label" top: "acc" }
    """
    net = caffelite.Net(write(tmp_path, text), caffelite.TRAIN)
    need = dict(zip(net._layer_names, net.layer_need_backward))
    assert need["ip"] and need["loss"] and not need["frozen"] and not need["acc"] and not need["d"]
    assert net.outputs == ["acc", "loss", "q"]  # Caffe: sorted by name
    assert net.inputs == ["x", "label"]
    assert net.blob_loss_weights["loss"] == 1.0 and net.blob_loss_weights["acc"] == 0.0


def test_force_backward_skips_labels_and_forward_only_layers(tmp_path):
    text = """
    force_backward: true
    layer { name: "d" type: "Input" top: "x" top: "label" input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } } }
    layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "label" top: "loss" }
    """
    net = caffelite.Net(write(tmp_path, text), caffelite.TRAIN)
    net.blobs["x"].data[...] = np.random.default_rng(0).normal(size=(2, 3))
    net.forward()
    diffs = net.backward()
    assert set(diffs) == {"x", "label"}
    assert np.any(diffs["x"] != 0) and np.all(diffs["label"] == 0)


def test_explicit_propagate_down_to_a_label_is_an_error(tmp_path):
    text = """
    layer { name: "d" type: "Input" top: "x" top: "label"
            input_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 1 } } }
    layer { name: "ip" type: "InnerProduct" bottom: "label" top: "lab2" inner_product_param { num_output: 1 } }
    layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "lab2" top: "loss"
            propagate_down: false propagate_down: true }
    """
    with pytest.raises(caffelite.BackwardError, match="cannot backpropagate to bottom 1"):
        caffelite.Net(write(tmp_path, text), caffelite.TRAIN)


def test_forward_kwargs_start_end_and_backward_kwargs(tmp_path):
    text = """
    layer { name: "d" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
    layer { name: "a" type: "TanH" bottom: "x" top: "a" }
    layer { name: "b" type: "Sigmoid" bottom: "a" top: "b" }
    """
    net = caffelite.Net(write(tmp_path, text), caffelite.TEST)
    x = np.random.default_rng(1).normal(size=(2, 3)).astype(np.float32)
    out = net.forward(x=x)
    np.testing.assert_allclose(out["b"], 1 / (1 + np.exp(-np.tanh(x))), rtol=1e-6)
    assert set(net.forward(end="a")) == {"a"}
    assert set(net.forward(start="b", blobs=["a"])) == {"a", "b"}
    with pytest.raises(caffelite.NetError, match="Input blob arguments do not match net inputs"):
        net.forward(y=x)
    with pytest.raises(caffelite.ShapeError, match="not batch sized"):
        net.forward(x=np.zeros((3, 3)))
    diffs = net.backward(b=np.ones((2, 3), np.float32))
    assert set(diffs) == {"x"}


def test_reshape_propagates_new_input_shapes(tmp_path):
    text = """
    layer { name: "d" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
    layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 5 } }
    """
    net = caffelite.Net(write(tmp_path, text), caffelite.TEST)
    net.blobs["x"].reshape(7, 3)
    net.reshape()
    assert net.blobs["y"].shape == (7, 5)
    net.blobs["x"].reshape(7, 4)
    with pytest.raises(caffelite.ShapeError, match="Input size incompatible with inner product parameters"):
        net.reshape()


def test_save_and_copy_from_round_trip(tmp_path):
    net = caffelite.Net(write(tmp_path, SHARED), caffelite.TRAIN)
    path = str(tmp_path / "w.caffemodel")
    net.save(path)
    other = caffelite.Net(write(tmp_path, SHARED, "b.prototxt"), caffelite.TRAIN, weights=path)
    for name in net.params:
        for p, q in zip(net.params[name], other.params[name]):
            np.testing.assert_array_equal(p.data, q.data)
    same = caffelite.Net(write(tmp_path, SHARED, "c.prototxt"), path, caffelite.TRAIN)
    np.testing.assert_array_equal(same.params["a"][1].data, net.params["a"][1].data)


def test_copy_from_shape_mismatch_has_caffes_message(tmp_path):
    net = caffelite.Net(write(tmp_path, SHARED), caffelite.TRAIN)
    path = str(tmp_path / "w.caffemodel")
    net.save(path)
    other = SHARED.replace("num_output: 4", "num_output: 5")
    with pytest.raises(caffelite.WeightsError, match="Cannot copy param 0 weights from layer 'a'; shape mismatch"):
        caffelite.Net(write(tmp_path, other, "o.prototxt"), caffelite.TRAIN, weights=path)


def test_truncated_caffemodel_is_a_typed_error(tmp_path):
    net = caffelite.Net(write(tmp_path, SHARED), caffelite.TRAIN)
    path = tmp_path / "w.caffemodel"
    net.save(str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises((caffelite.FileFormatError, caffelite.WeightsError)):
        net.copy_from(str(path))


def test_legacy_4d_weights_load_into_2d_params(tmp_path):
    text = """
    layer { name: "d" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
    layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 2 } }
    """
    net = caffelite.Net(write(tmp_path, text), caffelite.TEST)
    legacy = caffe_pb2.NetParameter()
    layer = legacy.layer.add(name="ip")
    w = layer.blobs.add(num=1, channels=1, height=2, width=3)
    w.data.extend(range(6))
    b = layer.blobs.add(num=1, channels=1, height=1, width=2)
    b.data.extend([7, 8])
    net.copy_from(legacy)
    np.testing.assert_array_equal(net.params["ip"][0].data, np.arange(6).reshape(2, 3))
    np.testing.assert_array_equal(net.params["ip"][1].data, [7, 8])


def test_empty_weights_file_is_an_error_not_a_silent_no_op(tmp_path):
    path = tmp_path / "empty.caffemodel"
    path.write_bytes(b"")
    net = caffelite.Net(write(tmp_path, SHARED), caffelite.TRAIN)
    with pytest.raises(caffelite.FileFormatError, match="holds no layers"):
        net.copy_from(str(path))


def test_weights_truncated_anywhere_fail_cleanly(tmp_path):
    net = caffelite.Net(write(tmp_path, SHARED), caffelite.TRAIN)
    full = tmp_path / "w.caffemodel"
    net.save(str(full))
    data = full.read_bytes()
    cut = tmp_path / "cut.caffemodel"
    for n in range(0, len(data), max(1, len(data) // 50)):
        cut.write_bytes(data[:n])
        with pytest.raises(caffelite.CaffeliteError):
            net.copy_from(str(cut))


def test_forward_only_net_allocates_no_diffs():
    """Diffs are allocated lazily: a deploy net that only runs forward holds no gradient memory."""
    import os

    path = os.path.join(os.path.dirname(__file__), "corpus", "BVLC__caffe", "models", "bvlc_googlenet",
                        "deploy.prototxt")
    net = caffelite.Net(path, caffelite.TEST)
    net.blobs["data"].reshape(1, 3, 224, 224)
    net.reshape()
    net.forward()
    assert not [n for n, b in net.blobs.items() if b.has_diff]
    assert not [n for n, ps in net.params.items() for p in ps if p.has_diff]
