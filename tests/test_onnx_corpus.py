"""Every corpus net that Caffe could build, and every train/val net with its data layers as inputs, exports to
ONNX and onnxruntime computes caffelite's numbers (random He-scaled weights, batch 1).

Deploy nets keep their declared input except for the batch (1) and, for fully convolutional nets, a smaller
image; train/val nets get their data shapes here (they come from data files).  NOT_EXPORTABLE lists the
corpus nets that cannot be exported, with the reason; the test fails if the list grows.

Many corpus files are the same net (a train and a val prototxt that differ only in their data layers, a V1
file and its V2 successor): a net whose TEST forward is identical, layer by layer (types, blobs, shapes and
parameters: see ``fingerprint``), to one already exported and verified in this session is built and
fingerprinted but not exported again, which keeps the suite within its time budget.
"""

import csv
import json
import os

import pytest

import caffelite
from tests.onnx_helpers import (
    assert_close,
    conx,
    fingerprint,
    normalize_scale,
    prepare_net,
    randomize,
    round_trip,
    softmax_bottoms,
    to_onnx,
)
from tests.test_onnx_opencv import OPENCV_NETS

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
with open(os.path.join(CORPUS, "caffe_shapes.json")) as f:
    SHAPES = json.load(f)
with open(os.path.join(CORPUS, "MANIFEST.tsv")) as f:
    MANIFEST = {row["file"]: row for row in csv.DictReader(f, delimiter="\t")}

# the nets of the OpenCV test (tests/test_onnx_opencv.py) are checked there, in onnxruntime and OpenCV 5
IN_OPENCV_TEST = {rel for rel, _ in OPENCV_NETS.values()}
BUILT = sorted(k for k, v in SHAPES.items() if "caffe_error" not in v)

# fully convolutional deploy nets: a smaller image than declared keeps the test quick
SPATIAL = {
    "fyu__dilation/models/dilation10_cityscapes_deploy.prototxt": 376,  # the smallest these nets allow
    "fyu__dilation/models/dilation8_pascal_voc_deploy.prototxt": 376,
    "shelhamer__fcn.berkeleyvision.org/voc-fcn8s/deploy.prototxt": 64,
    "BVLC__caffe/examples/net_surgery/bvlc_caffenet_full_conv.prototxt": 227,
    "BVLC__caffe@rc/examples/imagenet/bvlc_caffenet_full_conv.prototxt": 227,
}

MNIST, CIFAR, IMAGENET = {"data": (1, 1, 28, 28)}, {"data": (1, 3, 32, 32)}, {"data": (1, 3, 227, 227)}
FCN = {"data": (1, 3, 16, 16)}
# train/val nets: (input shapes, NetState stages)
TRAIN_VAL = {
    "BVLC__caffe/examples/cifar10/cifar10_full_sigmoid_train_test.prototxt": (CIFAR, None),
    "BVLC__caffe/examples/cifar10/cifar10_full_sigmoid_train_test_bn.prototxt": (CIFAR, None),
    "BVLC__caffe/examples/cifar10/cifar10_full_train_test.prototxt": (CIFAR, None),
    "BVLC__caffe/examples/cifar10/cifar10_quick_train_test.prototxt": (CIFAR, None),
    "BVLC__caffe/examples/feature_extraction/imagenet_val.prototxt": (IMAGENET, None),
    "BVLC__caffe/examples/finetune_pascal_detection/pascal_finetune_trainval_test.prototxt": (IMAGENET, None),
    "BVLC__caffe/examples/hdf5_classification/nonlinear_auto_test.prototxt": ({"data": (2, 4)}, None),
    "BVLC__caffe/examples/hdf5_classification/nonlinear_auto_train.prototxt": ({"data": (2, 4)}, None),
    "BVLC__caffe/examples/hdf5_classification/nonlinear_train_val.prototxt": ({"data": (2, 4)}, None),
    "BVLC__caffe/examples/hdf5_classification/train_val.prototxt": ({"data": (2, 4)}, None),
    "BVLC__caffe/examples/mnist/lenet_train_test.prototxt": (MNIST, None),
    "BVLC__caffe/examples/mnist/mnist_autoencoder.prototxt": (MNIST, ["test-on-test"]),
    "BVLC__caffe/examples/siamese/mnist_siamese_train_test.prototxt": ({"pair_data": (1, 2, 28, 28)}, None),
    "BVLC__caffe/models/bvlc_alexnet/train_val.prototxt": (IMAGENET, None),
    "BVLC__caffe/models/bvlc_googlenet/train_val.prototxt": ({"data": (1, 3, 224, 224)}, None),
    "BVLC__caffe/models/bvlc_reference_caffenet/train_val.prototxt": (IMAGENET, None),
    "BVLC__caffe/models/finetune_flickr_style/train_val.prototxt": (IMAGENET, None),
    "BVLC__caffe@rc/examples/cifar10/cifar10_full_train_test.prototxt": (CIFAR, None),
    "BVLC__caffe@rc/examples/cifar10/cifar10_quick_train_test.prototxt": (CIFAR, None),
    "BVLC__caffe@rc/examples/hdf5_classification/train_val2.prototxt": ({"data": (2, 4)}, None),
    "BVLC__caffe@rc/examples/mnist/lenet_train_test.prototxt": (MNIST, None),
    "BVLC__caffe@rc/examples/mnist/mnist_autoencoder.prototxt": (MNIST, ["test-on-test"]),
    "BVLC__caffe@rc/examples/siamese/mnist_siamese_train_test.prototxt": ({"pair_data": (1, 2, 28, 28)}, None),
    "BVLC__caffe@rc/models/bvlc_alexnet/train_val.prototxt": (IMAGENET, None),
    "BVLC__caffe@rc/models/finetune_flickr_style/train_val.prototxt": (IMAGENET, None),
    "BVLC__caffe@v0.99/examples/cifar10/cifar10_quick_train.prototxt": (CIFAR, None),
    "BVLC__caffe@v0.99/examples/lenet/lenet_train.prototxt": (MNIST, None),
    "CSAILVision__places365/train_val_vgg16.prototxt": ({"data": (1, 3, 224, 224)}, None),
    "ethereon__netscope/presets/nin.prototxt": ({"data": (1, 3, 224, 224)}, None),
    "forresti__SqueezeNet/SqueezeNet_v1.0/train_val.prototxt": (IMAGENET, None),
    "forresti__SqueezeNet/SqueezeNet_v1.1/train_val.prototxt": (IMAGENET, None),
    "rbgirshick__rcnn/finetuning/voc_2007_prototxt/pascal_finetune_train.prototxt": (IMAGENET, None),
    "shelhamer__fcn.berkeleyvision.org/nyud-fcn32s-color-hha/test.prototxt":
        ({"color": (1, 3, 16, 16), "hha": (1, 3, 16, 16)}, None),
    "shelhamer__fcn.berkeleyvision.org/nyud-fcn32s-color-hha/trainval.prototxt":
        ({"color": (1, 3, 16, 16), "hha": (1, 3, 16, 16)}, None),
    "shelhamer__fcn.berkeleyvision.org/pascalcontext-fcn8s/train.prototxt": (FCN, None),
    "shelhamer__fcn.berkeleyvision.org/siftflow-fcn8s/test.prototxt": (FCN, None),
    "shelhamer__fcn.berkeleyvision.org/siftflow-fcn8s/trainval.prototxt": (FCN, None),
    "shelhamer__fcn.berkeleyvision.org/voc-fcn-alexnet/train.prototxt": (FCN, None),
    "shelhamer__fcn.berkeleyvision.org/voc-fcn-alexnet/val.prototxt": (FCN, None),
    "shelhamer__fcn.berkeleyvision.org/voc-fcn16s/train.prototxt": (FCN, None),
    "shelhamer__fcn.berkeleyvision.org/voc-fcn16s/val.prototxt": (FCN, None),
    "shelhamer__fcn.berkeleyvision.org/voc-fcn32s/train.prototxt": (FCN, None),
    "shelhamer__fcn.berkeleyvision.org/voc-fcn32s/val.prototxt": (FCN, None),
    "shelhamer__fcn.berkeleyvision.org/voc-fcn8s-atonce/train.prototxt": (FCN, None),
    "shelhamer__fcn.berkeleyvision.org/voc-fcn8s/train.prototxt": (FCN, None),
    "shelhamer__fcn.berkeleyvision.org/voc-fcn8s/val.prototxt": (FCN, None),
}

# corpus nets (stock BVLC layers) that cannot be exported, and why: this list may only shrink
NOT_EXPORTABLE = {
    "BVLC__caffe/examples/pycaffe/linreg.prototxt": "its loss is a Python layer (pyloss.EuclideanLossLayer)",
    "NVIDIA__DIGITS/digits/standard-networks/caffe/alexnet.prototxt":
        "a DIGITS template: DIGITS fills in the last InnerProduct's num_output (unset, so Caffe refuses it too)",
    "NVIDIA__DIGITS/digits/standard-networks/caffe/lenet.prototxt":
        "a DIGITS template: DIGITS fills in the last InnerProduct's num_output (unset, so Caffe refuses it too)",
}

# the fork nets (bvlc_only = no) fail to parse with the stock schema, so they are out of scope here
STOCK = sorted(k for k, row in MANIFEST.items() if row["bvlc_only"] == "yes" and k in SHAPES)


def test_every_stock_net_is_tested_or_listed():
    untested = [k for k in STOCK if k not in BUILT and k not in TRAIN_VAL and k not in NOT_EXPORTABLE]
    assert not untested, "corpus nets neither exported by a test nor listed as not exportable: %s" % untested


def _deploy_inputs(rel):
    want = SHAPES[rel]
    size = SPATIAL.get(rel)
    inputs = {}
    for name in want["inputs"]:
        shape = [1] + list(want["blobs"][name][1:])
        if size and len(shape) == 4:
            shape[2:] = [size, size]
        inputs[name] = shape
    return inputs


_VERIFIED = {}  # fingerprint -> the corpus file exported and verified with it


def check_net(rel, inputs, stages=None):
    prepared = prepare_net(os.path.join(CORPUS, rel), inputs=inputs, stages=stages)
    key = fingerprint(prepared.net)
    if key in _VERIFIED:
        return None  # the same forward as _VERIFIED[key], exported and verified in this session
    normalize_scale(randomize(prepared.net))
    exported = to_onnx(prepared, extra_outputs=softmax_bottoms(prepared.net))
    diffs, _, _ = round_trip(exported)
    assert_close(diffs, 1e-4)
    _VERIFIED[key] = rel
    return exported


@pytest.mark.parametrize("rel", [k for k in BUILT if k not in IN_OPENCV_TEST])
def test_deploy_net_exports_exactly(rel):
    check_net(rel, _deploy_inputs(rel))


@pytest.mark.parametrize("rel", sorted(TRAIN_VAL))
def test_train_val_net_exports_exactly(rel):
    inputs, stages = TRAIN_VAL[rel]
    exported = check_net(rel, inputs, stages)
    if exported is not None:  # the label tops are not graph inputs: only losses read them
        assert set(exported.inputs) == set(inputs)


@pytest.mark.parametrize("rel", sorted(NOT_EXPORTABLE))
def test_not_exportable_net_says_why(rel):
    with pytest.raises(caffelite.CaffeliteError) as err:
        conx.convert(os.path.join(CORPUS, rel))
    assert err.value.file and err.value.line and err.value.layer
