"""Layer facts (loss or not, label bottom, default normalization, what a loss_weight does): one home, the classes.

The checker's lists are derived from the layer classes, so they cannot drift from what ``Net`` runs.
"""

import numpy as np

from caffelite.checker import check_file, net_rules
from caffelite.layer_factory import layer_class, layer_type_list
from caffelite.layers.loss import LossLayer
from caffelite.net import Net
from caffelite.proto import caffe_pb2

NET = ('layer { name: "in" type: "Input" top: "x" top: "y" input_param { shape { dim: 2 dim: 3 } } '
       'loss_weight: 1 loss_weight: 0 }\n'
       'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param { num_output: 3 '
       'weight_filler { type: "xavier" } } }\n'
       'layer { name: "l" type: "EuclideanLoss" bottom: "ip" bottom: "y" top: "l" }\n')


def test_loss_weight_on_input_top_is_accepted_as_caffe_and_net_do(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(NET)
    result = check_file(str(path))
    assert "loss-weight-no-backward" not in result.codes(), result.format_text()
    assert result.exit_status == 0
    net = Net(str(path), phase=caffe_pb2.TRAIN)  # caffelite's Net runs it: the input counts in the loss
    net.blobs["x"].data[...] = 1.0
    net.blobs["y"].data[...] = 0.0
    net.forward()
    net.backward()
    assert np.isfinite(net.blobs["l"].data).all()


def test_checker_lists_are_derived_from_the_layer_classes():
    classes = {t: layer_class(t) for t in layer_type_list()}
    assert net_rules.LOSS_TYPES == {t for t, c in classes.items() if issubclass(c, LossLayer)}
    assert net_rules.LABELED_TYPES == net_rules.LOSS_TYPES | {"Accuracy"}
    assert net_rules.NORMALIZED_LOSSES == {"SoftmaxWithLoss": caffe_pb2.LossParameter.VALID,
                                           "InfogainLoss": caffe_pb2.LossParameter.VALID,
                                           "SigmoidCrossEntropyLoss": caffe_pb2.LossParameter.BATCH_SIZE}
    # a loss_weight aborts Caffe only where Backward is NOT_IMPLEMENTED, never on data layers or Input
    assert {"Accuracy", "ArgMax", "Threshold"} <= net_rules.NO_BACKWARD
    assert not {"Input", "Data", "DummyData", "MemoryData", "HDF5Data", "ImageData"} & net_rules.NO_BACKWARD
    assert net_rules.FILE_DATA_TYPES == {"Data", "ImageData", "HDF5Data", "WindowData"}
    for t in net_rules.WEIGHTED_TYPES:
        assert classes[t].weight_param in caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
