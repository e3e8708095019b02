"""Shape inference without running the net: the shapes Net itself gives, unknowns that propagate."""

import pytest

from caffelite.common import TRAIN
from caffelite.errors import ShapeError
from caffelite.layer_factory import layer_class
from caffelite.net import Net
from caffelite.net_passes import filter_net
from caffelite.proto import caffe_pb2
from caffelite.protoio import parse_text
from caffelite.shape_inference import (
    ShapeInference,
    infer_shapes,
    infer_shapes_in_phase,
    layer_top_shapes,
    stage_variants,
    zero_random_fillers,
)

NET = '''name: "tiny"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 2 dim: 3 dim: 9 dim: 7 } shape { dim: 2 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1 weight_filler { type: "xavier" } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "pool" top: "ip" inner_product_param { num_output: 5 } }
layer { name: "slice" type: "Slice" bottom: "ip" top: "a" top: "b" slice_param { slice_point: 2 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc" include { phase: TEST } }
'''


def net_param(text=NET, phase=TRAIN):
    param = parse_text(text, caffe_pb2.NetParameter())
    param.state.phase = phase
    return filter_net(param)


def test_shapes_are_those_net_builds():
    param = net_param()
    shapes = infer_shapes(param)
    net = Net(param, phase=TRAIN)
    assert shapes == {name: list(net.blobs[name].shape) for name in shapes}
    assert all("_split_" in name for name in set(net.blobs) - set(shapes))  # Net's InsertSplits adds those
    assert shapes["conv"] == [2, 4, 5, 4] and shapes["loss"] == [] and "acc" not in shapes


def test_unknown_shapes_propagate_and_inputs_fill_them():
    text = ('layer { name: "d" type: "Python" top: "x" python_param { module: "no_such_module" layer: "L" } }\n'
            'layer { name: "r" type: "ReLU" bottom: "x" top: "y" }\n'
            'layer { name: "t" type: "NoSuchType" bottom: "y" top: "z" }\n'
            'layer { name: "s" type: "Sigmoid" bottom: "z" top: "w" }\n')
    param = net_param(text)
    assert infer_shapes(param) == {"x": None, "y": None, "z": None, "w": None}
    assert infer_shapes(param, {"x": (3, 2)}) == {"x": [3, 2], "y": [3, 2], "z": None, "w": None}
    assert infer_shapes(param, {"x": (3, 2), "z": (4,)}) == {"x": [3, 2], "y": [3, 2], "z": [4], "w": [4]}


def test_a_refusing_layer_leaves_its_tops_unknown_and_says_why():
    text = ('layer { name: "in" type: "Input" top: "a" top: "b"\n'
            '  input_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 4 } } }\n'
            'layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "c" }\n'
            'layer { name: "r" type: "ReLU" bottom: "c" top: "d" }\n'
            'layer { name: "g" type: "ReLU" bottom: "ghost" top: "e" }\n')
    param = net_param(text)
    inference = ShapeInference(param)
    errors = [inference.add_layer(lp, layer_class(lp.type)) for lp in param.layer]
    assert errors[0] is None and isinstance(errors[1], ShapeError) and errors[2:] == [None, None]
    # a bottom nothing produces stays absent (the checker reports it), its layer's tops are unknown
    assert inference.shapes == {"a": (2, 3), "b": (2, 4), "c": None, "d": None, "e": None}


def test_net_level_inputs_and_in_place_tops():
    param = parse_text('input: "data" input_dim: 1 input_dim: 3 input_dim: 4 input_dim: 4\n'
                       'layer { name: "drop" type: "Dropout" bottom: "data" top: "data" }\n',
                       caffe_pb2.NetParameter())
    assert infer_shapes(param) == {"data": [1, 3, 4, 4]}
    assert infer_shapes(param, {"data": (2, 3)}) == {"data": [2, 3]}


def test_automatic_top_of_a_loss_without_tops():
    lp = parse_text('name: "l" type: "EuclideanLoss" bottom: "a" bottom: "b"', caffe_pb2.LayerParameter())
    assert layer_top_shapes(lp, layer_class("EuclideanLoss"), [(2, 3), (2, 3)]) == [()]


@pytest.mark.parametrize("filler", ["xavier", "gaussian", "msra", "uniform", "positive_unitball"])
def test_random_fillers_become_zero_unknown_ones_stay(filler):
    lp = parse_text('type: "Convolution" convolution_param { weight_filler { type: "%s" std: 3 }\n'
                    '  bias_filler { type: "no_such_filler" } }' % filler, caffe_pb2.LayerParameter())
    zero_random_fillers(lp)
    weight = lp.convolution_param.weight_filler
    assert (weight.type, weight.value) == ("constant", 0.0)
    assert lp.convolution_param.bias_filler.type == "no_such_filler"


STAGED = '''layer { name: "train_in" type: "Input" top: "x" input_param { shape { dim: 8 dim: 3 } }
  include { stage: "train" } }
layer { name: "deploy_in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 3 } }
  include { stage: "deploy" } }
layer { name: "relu" type: "ReLU" bottom: "x" top: "y" }
layer { name: "extra" type: "Sigmoid" bottom: "y" top: "z" exclude { not_stage: "train" } }
'''


def test_stage_variants():
    param = parse_text(STAGED, caffe_pb2.NetParameter())
    assert stage_variants(param) == [(), ("deploy",), ("train",)]
    assert stage_variants(param, ["deploy"]) == [("deploy",)] and stage_variants(param, []) == [()]
    param.state.stage.append("train")
    assert stage_variants(param) == [("train",)]
    assert stage_variants(parse_text(NET, caffe_pb2.NetParameter())) == [()]


def test_shapes_in_a_phase_merge_the_stage_variants():
    param = parse_text(STAGED, caffe_pb2.NetParameter())
    assert infer_shapes_in_phase(param, TRAIN) == {"x": [1, 3], "y": [1, 3], "z": [8, 3]}  # deploy first
    param.state.stage.append("train")
    assert infer_shapes_in_phase(param, TRAIN) == {"x": [8, 3], "y": [8, 3], "z": [8, 3]}
