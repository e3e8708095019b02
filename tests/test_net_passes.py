"""The net's wiring rules in caffelite.net_passes, alone and as Net applies them."""

import textwrap

import pytest

import caffelite
from caffelite.layer_factory import create_layer
from caffelite.net_passes import (
    filter_net,
    is_in_place,
    layer_included,
    num_top_blobs,
    propagate_down_count_error,
)
from caffelite.proto import caffe_pb2
from caffelite.protoio import parse_text

RULES = """
layer { name: "plain" type: "ReLU" }
layer { name: "train" type: "ReLU" include { phase: TRAIN } }
layer { name: "not_test" type: "ReLU" exclude { phase: TEST } }
layer { name: "staged" type: "ReLU" include { stage: "s" } }
layer { name: "both" type: "ReLU" include { phase: TRAIN } exclude { phase: TRAIN } }
"""


def layer_param(text):
    return parse_text(text, caffe_pb2.LayerParameter())


@pytest.mark.parametrize("phase,stages", [(caffe_pb2.TRAIN, []), (caffe_pb2.TEST, []), (caffe_pb2.TEST, ["s"])])
def test_layer_included_is_filter_nets_verdict(phase, stages):
    param = parse_text(RULES, caffe_pb2.NetParameter())
    param.state.phase = phase
    param.state.stage.extend(stages)
    del param.layer[-1]  # filter_net refuses include+exclude
    kept = [lp.name for lp in filter_net(param).layer]
    assert kept == [lp.name for lp in param.layer if layer_included(param.state, lp)]


def test_layer_included_with_include_and_exclude_reads_the_include_rules():
    # pycaffe's draw ignores exclude then; FilterNet refuses the layer
    lp = parse_text(RULES, caffe_pb2.NetParameter()).layer[-1]
    assert layer_included(caffe_pb2.NetState(phase=caffe_pb2.TRAIN), lp)
    assert not layer_included(caffe_pb2.NetState(phase=caffe_pb2.TEST), lp)


def test_in_place_is_same_name_at_the_same_index():
    lp = layer_param('name: "x" type: "Slice" bottom: "a" bottom: "b" top: "a" top: "c" top: "b"')
    assert [is_in_place(lp, j) for j in range(3)] == [True, False, False]


def test_num_top_blobs_adds_automatic_tops_only_for_auto_top_layers():
    loss = create_layer(layer_param('name: "l" type: "SoftmaxWithLoss" bottom: "x" bottom: "y"'))
    assert num_top_blobs(loss, 0) == 1
    assert num_top_blobs(loss, 1) == 1
    relu = create_layer(layer_param('name: "r" type: "ReLU" bottom: "x"'))
    assert num_top_blobs(relu, 0) == 0


def test_propagate_down_count():
    assert propagate_down_count_error(layer_param('name: "x" bottom: "a" bottom: "b"')) is None
    assert propagate_down_count_error(
        layer_param('name: "x" bottom: "a" bottom: "b" propagate_down: true propagate_down: false')) is None
    message = propagate_down_count_error(layer_param('name: "x" bottom: "a" bottom: "b" propagate_down: true'))
    assert message.startswith("propagate_down param must be specified either 0 or bottom_size times")


SHARED = """
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "a" type: "InnerProduct" bottom: "x" top: "ya" param { name: "w" } param { }
  inner_product_param { num_output: 4 weight_filler { type: "gaussian" } bias_filler { type: "gaussian" } } }
layer { name: "b" type: "InnerProduct" bottom: "x" top: "yb" param { name: "w" } param { }
  inner_product_param { num_output: 4 weight_filler { type: "gaussian" } bias_filler { type: "gaussian" } } }
layer { name: "c" type: "InnerProduct" bottom: "x" top: "yc" param { name: "w" } param { name: "bias" }
  inner_product_param { num_output: 4 weight_filler { type: "gaussian" } bias_filler { type: "gaussian" } } }
"""


def test_param_owners_and_layer_indices_as_caffe(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(textwrap.dedent(SHARED))
    net = caffelite.Net(str(path), caffelite.TEST)
    assert net._layer_names[1] == "x_in_0_split"
    assert net.param_layer_indices == [(2, 0), (2, 1), (3, 0), (3, 1), (4, 0), (4, 1)]
    assert net.param_owners == [-1, -1, 0, -1, 0, -1]
    assert len(net.learnable_params) == 4


def test_hdf5_writes_a_shared_param_once_and_loads_it_back(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "net.prototxt"
    path.write_text(textwrap.dedent(SHARED))
    net = caffelite.Net(str(path), caffelite.TEST)
    net.save_hdf5(str(tmp_path / "w.h5"))
    with h5py.File(tmp_path / "w.h5", "r") as f:
        assert {name: sorted(f["data"][name]) for name in f["data"]} == {
            "in": [], "x_in_0_split": [], "a": ["0", "1"], "b": ["1"], "c": ["1"]}
    other = caffelite.Net(str(path), caffelite.TEST)
    assert not (other.params["a"][0].data == net.params["a"][0].data).all()
    other.copy_from(str(tmp_path / "w.h5"))
    for name in "abc":
        for mine, theirs in zip(other.params[name], net.params[name]):
            assert (mine.data == theirs.data).all()
