"""What ``net.blobs`` shows, as Caffe and pycaffe show it: anonymous ``(automatic)`` loss tops,
pycaffe's ``outputs`` over collapsed keys, and tops that view their bottom's data and diff
(Reshape, Flatten, one-bottom Concat, one-top Slice)."""

import os
import textwrap

import numpy as np
import pytest

import caffelite
from caffelite.proto import caffe_pb2
from caffelite.protoio import parse_text
from tests.golden_runner import GOLDEN, case_names, read_json

LAYERS = os.path.join(GOLDEN, "layers")


def make_net(text, phase=caffelite.TRAIN):
    return caffelite.Net(parse_text(textwrap.dedent(text), caffe_pb2.NetParameter()), phase)


HEAD = """
layer { name: "d" type: "Input" top: "data" top: "label" input_param { shape { dim: 4 dim: 3 } shape { dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 5 weight_filler { type: "gaussian" } } }
"""


def test_an_anonymous_loss_top_is_a_blob_named_automatic_but_no_output():
    net = make_net(HEAD + 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" }')
    assert list(net.blobs) == ["data", "label", "ip", "(automatic)"]
    assert net.top_names["loss"] == ["(automatic)"]
    assert net.outputs == [] and net.output_blob_indices == []
    assert net.blob_loss_weights["(automatic)"] == 1.0
    net.blobs["label"].data[...] = [0, 1, 2, 3]
    loss = net.forward_from_to()
    assert net.forward() == {}  # pycaffe returns the outputs: there are none
    np.testing.assert_allclose(net.blobs["(automatic)"].data, loss, rtol=1e-6)
    net.backward()
    assert float(net.blobs["(automatic)"].diff) == 1.0  # the loss weight seeds backward


TWO_LOSSES = HEAD + """
layer { name: "loss1" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" }
layer { name: "loss2" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" loss_weight: 0.5 }
"""


def test_several_anonymous_tops_collapse_to_one_key_holding_the_last():
    net = make_net(TWO_LOSSES)
    names = net.blob_names
    assert names.count("(automatic)") == 2
    keys = list(net.blobs)
    assert keys.count("(automatic)") == 1 and len(keys) == len(names) - 1
    assert keys.index("(automatic)") == names.index("(automatic)")  # the first one's place
    last = net.top_names["loss2"][0]
    assert last == "(automatic)" and net.blobs["(automatic)"] is net._blob_list[len(names) - 1]
    assert net.blob_loss_weights["(automatic)"] == 0.5  # zip into an OrderedDict: the last value


def test_outputs_after_collapsed_keys_are_named_as_pycaffe_names_them():
    # pycaffe: [list(self.blobs.keys())[i] for i in self._outputs]; two (automatic) keys collapse,
    # so the output 'sig' (blob index k) is named by key k, which is 'th'; 'th' itself is silenced
    net = make_net(TWO_LOSSES + """
        layer { name: "sig" type: "Sigmoid" bottom: "ip" top: "sig" }
        layer { name: "th" type: "TanH" bottom: "ip" top: "th" }
        layer { name: "sil" type: "Silence" bottom: "th" }
    """)
    assert [net.blob_names[i] for i in net.output_blob_indices] == ["sig"]
    assert net.outputs == ["th"]
    net.blobs["label"].data[...] = 1
    out = net.forward()
    assert list(out) == ["th"] and out["th"] is net.blobs["th"].data
    assert [(name, blob) for name, blob, _ in net.output_blob_table()] == [("sig", net.blobs["sig"])]


def test_an_output_past_the_collapsed_keys_is_a_typed_error_where_pycaffe_raises_indexerror():
    net = make_net(TWO_LOSSES + 'layer { name: "sig" type: "Sigmoid" bottom: "ip" top: "sig" }')
    with pytest.raises(caffelite.NetError, match=r"output blob #\d+ 'sig'.*2 '\(automatic\)' blobs"):
        _ = net.outputs
    with pytest.raises(caffelite.NetError):
        net.forward()
    net.blobs["label"].data[...] = 2
    net.forward_from_to()  # Caffe's own loops and outputs are unaffected
    assert [name for name, _, _ in net.output_blob_table()] == ["sig"]


def test_solver_reports_caffes_outputs_by_index(caplog):
    param = caffe_pb2.SolverParameter()
    param.net_param.CopyFrom(parse_text(textwrap.dedent(TWO_LOSSES + """
        layer { name: "sig" type: "Sigmoid" bottom: "ip" top: "sig" }
    """), caffe_pb2.NetParameter()))
    param.test_net_param.add().CopyFrom(param.net_param)
    param.test_iter.append(1)
    param.test_interval = 1000
    param.base_lr = 0.01
    param.lr_policy = "fixed"
    solver = caffelite.get_solver(param)
    means = solver.test(0)
    assert len(means) == 4 * 5  # the sig output, found by its blob index


VIEW_NET = """
force_backward: true
layer { name: "d" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 2 } } }
layer { name: "up" type: "Power" bottom: "data" top: "up" }
layer { name: "rs" type: "%s" bottom: "up" top: "rs" %s }
"""
VIEWS = [("Reshape", 'reshape_param { shape { dim: 0 dim: -1 } }'), ("Flatten", ""),
         ("Concat", ""), ("Slice", "")]


@pytest.mark.parametrize("layer_type,extra", VIEWS)
def test_view_tops_share_data_and_diff_with_their_bottom(layer_type, extra):
    net = make_net(VIEW_NET % (layer_type, extra) + 'layer { name: "s" type: "Sigmoid" bottom: "rs" top: "rs" }')
    x = np.random.default_rng(0).standard_normal((2, 3, 2)).astype(np.float32)
    net.blobs["data"].data[...] = x
    net.forward()
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(net.blobs["up"].data, s, rtol=1e-6)  # the in-place Sigmoid wrote into 'up'
    assert np.shares_memory(net.blobs["rs"].data, net.blobs["up"].data)
    net.blobs["rs"].diff[...] = 1
    assert np.all(net.blobs["up"].diff == 1)  # one diff under two names
    net.backward()
    np.testing.assert_allclose(net.blobs["up"].diff.reshape(-1), net.blobs["rs"].diff.reshape(-1))
    np.testing.assert_allclose(net.blobs["data"].diff, s * (1 - s), rtol=1e-5)


def test_views_follow_a_reshaped_input():
    net = make_net(VIEW_NET % VIEWS[0])
    net.blobs["data"].reshape(4, 3, 2)
    net.reshape()
    net.blobs["data"].data[...] = 2
    net.forward()
    assert net.blobs["rs"].shape == (4, 6) and np.all(net.blobs["rs"].data == 2)
    net.blobs["rs"].diff[...] = 3
    assert net.blobs["up"].diff.shape == (4, 3, 2) and np.all(net.blobs["up"].diff == 3)


def test_concat_and_slice_of_several_blobs_still_copy():
    net = make_net("""
        force_backward: true
        layer { name: "d" type: "Input" top: "a" top: "b"
                input_param { shape { dim: 2 dim: 2 } shape { dim: 2 dim: 2 } } }
        layer { name: "cat" type: "Concat" bottom: "a" bottom: "b" top: "cat" }
        layer { name: "sl" type: "Slice" bottom: "cat" top: "s0" top: "s1" }
    """)
    assert not np.shares_memory(net.blobs["cat"].data, net.blobs["a"].data)
    assert not np.shares_memory(net.blobs["s0"].data, net.blobs["cat"].data)


# --- the derived golden cases (tests/make_derived_golden.py) and the real ones they rest on ------
DERIVED = [n for n in case_names("layers") if "derived" in read_json(os.path.join(LAYERS, n, "case.json"))["tags"]]
SHARING_TYPES = {"Reshape", "Flatten"}


def test_derived_cases_exist():
    assert {"v0_anonymous_loss", "v0_two_anonymous_losses", "sigmoid_inplace_then_reshape",
            "reshape_then_sigmoid_inplace", "shared_views_chain"} <= set(DERIVED)


@pytest.mark.parametrize("name", DERIVED)
def test_derived_case_blob_keys_and_outputs(name):
    meta = read_json(os.path.join(LAYERS, name, "case.json"))
    phase = caffelite.TRAIN if meta["phase"] == "TRAIN" else caffelite.TEST
    net = caffelite.Net(os.path.join(LAYERS, name, "net.prototxt"), phase)
    with np.load(os.path.join(LAYERS, name, "arrays.npz")) as z:
        recorded = [k[4:] for k in z.files if k.startswith("fwd/")]
    assert list(net.blobs) == meta.get("net_blobs", recorded)
    if "net_outputs" in meta:
        assert net.outputs == meta["net_outputs"]


def _sharing_pairs(name):
    with open(os.path.join(LAYERS, name, "net.prototxt")) as f:
        param = parse_text(f.read(), caffe_pb2.NetParameter())
    for lp in param.layer:
        if lp.type in SHARING_TYPES or (lp.type == "Concat" and len(lp.bottom) == 1) or (
                lp.type == "Slice" and len(lp.top) == 1):
            yield lp.bottom[0], lp.top[0]


WITH_SHARING = [n for n in case_names("layers") if list(_sharing_pairs(n))]


@pytest.mark.parametrize("name", WITH_SHARING)
def test_recorded_cases_obey_caffes_sharing_rule(name):
    """In every case (Caffe's records and the derived ones), a sharing layer's top and bottom hold one
    array, data and diff: the rule the derived cases are built on, checked on what Caffe recorded."""
    pairs = list(_sharing_pairs(name))
    with np.load(os.path.join(LAYERS, name, "arrays.npz")) as z:
        ref = dict(z)
    for bottom, top in pairs:
        for kind in ("fwd", "bwd"):
            b, t = ref.get("%s/%s" % (kind, bottom)), ref.get("%s/%s" % (kind, top))
            if b is not None and t is not None:
                np.testing.assert_array_equal(b.reshape(-1), t.reshape(-1), err_msg="%s %s" % (name, kind))


def test_real_caffe_records_include_sharing_layers():
    real = [n for n in WITH_SHARING if n not in DERIVED]
    assert {"reshape_axes", "reshape_infer", "flatten_axis2"} <= set(real)


def test_two_anonymous_losses_both_count_though_one_key_shows_the_last():
    folder = os.path.join(LAYERS, "v0_two_anonymous_losses")
    meta = read_json(os.path.join(folder, "case.json"))
    net = caffelite.Net(os.path.join(folder, "net.prototxt"), os.path.join(folder, "weights.caffemodel"),
                        caffelite.TRAIN)
    with np.load(os.path.join(folder, "arrays.npz")) as z:
        for name in ("data", "label", "target"):
            net.blobs[name].data[...] = z["in/" + name]
        shown = float(z["fwd/(automatic)"])
    total = net.forward_from_to()
    np.testing.assert_allclose(total, meta["loss"], rtol=1e-5)
    assert abs(total - shown) > 1e-3  # the key holds reg_loss's blob only


def test_caffes_layer_and_blob_index_accessors():
    net = make_net(TWO_LOSSES)
    assert net.layer_names == ["d", "label_d_1_split", "ip", "ip_ip_0_split", "loss1", "loss2"]
    for i, name in enumerate(net.layer_names):
        assert [net.blob_names[j] for j in net.bottom_ids(i)] == net.bottom_names[name]
        assert [net.blob_names[j] for j in net.top_ids(i)] == net.top_names[name]
        assert len(net.bottom_ids(i)) == len(net.bottom_vecs[i]) == len(net.bottom_need_backward[i])
    assert net.top_ids(len(net.layer_names) - 1) == [len(net.blob_names) - 1]  # loss2's (automatic), the last blob
