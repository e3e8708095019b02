"""NetSpec: pycaffe's net_spec semantics (python/caffe/net_spec.py), checked on corpus nets."""

import os

import pytest
from google.protobuf import text_format

from caffelite.net_spec import NetSpec, Top, assign_proto, param_name_dict, to_proto
from caffelite.net_spec import layers as L
from caffelite.net_spec import params as P
from caffelite.proto import caffe_pb2
from caffelite.upgrade import read_net_param
from tests.fixtures import committed

CORPUS = os.path.join(os.path.dirname(__file__), "corpus", "BVLC__caffe", "examples")


def corpus_net(rel):
    return read_net_param(committed("corpus", "BVLC__caffe", "examples", *rel.split("/")))


def learned():
    return [dict(lr_mult=1), dict(lr_mult=2)]


def test_lenet_round_trip():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[64, 1, 28, 28]))
    xavier, const = dict(type="xavier"), dict(type="constant")
    n.conv1 = L.Convolution(n.data, param=learned(), num_output=20, kernel_size=5, stride=1,
                            weight_filler=xavier, bias_filler=const)
    n.pool1 = L.Pooling(n.conv1, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.conv2 = L.Convolution(n.pool1, param=learned(), num_output=50, kernel_size=5, stride=1,
                            weight_filler=xavier, bias_filler=const)
    n.pool2 = L.Pooling(n.conv2, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.ip1 = L.InnerProduct(n.pool2, param=learned(), num_output=500, weight_filler=xavier, bias_filler=const)
    n.relu1 = L.ReLU(n.ip1, in_place=True)
    n.ip2 = L.InnerProduct(n.relu1, param=learned(), num_output=10, weight_filler=xavier, bias_filler=const)
    n.prob = L.Softmax(n.ip2)
    net = n.to_proto()
    net.name = "LeNet"
    assert net == corpus_net("mnist/lenet.prototxt")


def test_cifar10_quick_round_trip():
    n = NetSpec()
    n.data = L.Input(shape=[dict(dim=[1, 3, 32, 32])])
    bottom = n.data
    for i, (num, pool) in enumerate([(32, P.Pooling.MAX), (32, P.Pooling.AVE), (64, P.Pooling.AVE)], 1):
        conv = L.Convolution(bottom, param=learned(), num_output=num, pad=2, kernel_size=5, stride=1)
        n["conv%d" % i] = conv
        if i == 1:  # cifar10_quick pools before the first ReLU, after the others
            n.pool1 = L.Pooling(conv, pool=pool, kernel_size=3, stride=2)
            n.relu1 = L.ReLU(n.pool1, in_place=True)
            bottom = n.relu1
        else:
            n["relu%d" % i] = L.ReLU(conv, in_place=True)
            n["pool%d" % i] = L.Pooling(n["relu%d" % i], pool=pool, kernel_size=3, stride=2)
            bottom = n["pool%d" % i]
    n.ip1 = L.InnerProduct(bottom, param=learned(), num_output=64)
    n.ip2 = L.InnerProduct(n.ip1, param=learned(), num_output=10)
    n.prob = L.Softmax(n.ip2)
    net = n.to_proto()
    net.name = "CIFAR10_quick_test"
    assert net == corpus_net("cifar10/cifar10_quick.prototxt")


def test_seed_block_two_tops_and_enums():
    n = NetSpec()
    n.fc1, n.label = L.Input(ntop=2)
    n.loss, n.prob = L.SoftmaxWithLoss(n.fc1, n.label, ntop=2, loss_param=dict(
        ignore_label=0, normalize=True, normalization=P.Loss.FULL))
    layer = n.to_proto().layer[1]
    assert layer.name == "loss" and layer.type == "SoftmaxWithLoss"
    assert list(layer.bottom) == ["fc1", "label"] and list(layer.top) == ["loss", "prob"]
    assert layer.loss_param.ignore_label == 0 and layer.loss_param.normalize
    assert layer.loss_param.normalization == caffe_pb2.LossParameter.FULL
    assert P.Loss.FULL == caffe_pb2.LossParameter.FULL


def test_auto_names_and_free_to_proto():
    data = L.DummyData(shape=dict(dim=[2, 3]))
    ip = L.InnerProduct(data, num_output=4)
    act = L.TanH(ip)
    net = to_proto(act)
    assert [lp.name for lp in net.layer] == ["DummyData1", "InnerProduct1", "TanH1"]
    assert list(net.layer[2].bottom) == ["InnerProduct1"]
    assert isinstance(act, Top) and act.to_proto() == net


def test_ntop_zero_returns_function_and_is_named_by_type():
    n = NetSpec()
    n.a = L.DummyData(shape=dict(dim=[1]))
    n.silence = L.Silence(n.a, ntop=0)
    net = n.to_proto()
    assert net.layer[-1].type == "Silence" and net.layer[-1].name == "silence"
    assert len(net.layer[-1].top) == 0
    assert to_proto(L.Silence(n.a, ntop=0)).layer[-1].name == "Silence1"


def test_fields_outside_the_type_param_and_lists():
    n = NetSpec()
    n.data, n.label = L.DummyData(ntop=2, shape=[dict(dim=[4, 3]), dict(dim=[4])])
    n.loss = L.SoftmaxWithLoss(n.data, n.label, loss_weight=[2.0], propagate_down=[True, False],
                               include=dict(phase=caffe_pb2.TRAIN))
    text = text_format.MessageToString(n.to_proto())
    net = n.to_proto()
    assert len(net.layer[0].dummy_data_param.shape) == 2
    loss = net.layer[1]
    assert list(loss.loss_weight) == [2.0] and list(loss.propagate_down) == [True, False]
    assert loss.include[0].phase == caffe_pb2.TRAIN
    assert "loss_weight: 2" in text


def test_getitem_delitem_keys():
    n = NetSpec()
    n["x"] = L.DummyData(shape=dict(dim=[1]))
    assert n.keys() == ["x"] and n["x"] is n.x
    del n["x"]
    assert n.keys() == []
    with pytest.raises(AttributeError):
        n.missing  # noqa: B018


def test_bad_input_is_a_type_error():
    two = L.DummyData(ntop=2, shape=dict(dim=[1]))
    with pytest.raises(TypeError, match="not a Top"):
        L.ReLU(two)


def test_param_name_dict_and_assign_proto():
    names = param_name_dict()
    assert names["Convolution"] == "convolution" and names["InnerProduct"] == "inner_product"
    lp = caffe_pb2.LayerParameter()
    assign_proto(lp, "bottom", "x")  # a single value for a repeated field
    assign_proto(lp, "param", [dict(lr_mult=0), dict(lr_mult=0, decay_mult=1)])
    assert list(lp.bottom) == ["x"] and lp.param[1].decay_mult == 1
