"""A client other than onnxruntime: OpenCV 5's ``cv2.dnn.readNetFromONNX`` (OpenCV 5 has no Caffe importer
any more) loads the exported classic nets and computes caffelite's numbers.

Each net is first checked in onnxruntime (so these nets are covered even where OpenCV 5 is missing; the
corpus test leaves them to this module); the OpenCV part skips, with the reason, only where OpenCV 5
cannot be imported.
"""

import os

import numpy as np
import pytest

from tests.onnx_helpers import assert_close, compare, conx, export_random, random_feeds, round_trip

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

OPENCV_NETS = {
    "AlexNet": ("BVLC__caffe/models/bvlc_alexnet/deploy.prototxt", {"data": (1, 3, 227, 227)}),
    "CaffeNet": ("BVLC__caffe/models/bvlc_reference_caffenet/deploy.prototxt", {"data": (1, 3, 227, 227)}),
    "GoogLeNet": ("BVLC__caffe/models/bvlc_googlenet/deploy.prototxt", {"data": (1, 3, 224, 224)}),
    "ResNet-50": ("KaimingHe__deep-residual-networks/prototxt/ResNet-50-deploy.prototxt", {"data": (1, 3, 224, 224)}),
    "SqueezeNet-1.1": ("forresti__SqueezeNet/SqueezeNet_v1.1/deploy.prototxt", {"data": (1, 3, 227, 227)}),
    "MobileNet": ("shicai__MobileNet-Caffe/mobilenet_deploy.prototxt", {"data": (1, 3, 224, 224)}),
    "FCN-8s": ("shelhamer__fcn.berkeleyvision.org/voc-fcn8s/deploy.prototxt", {"data": (1, 3, 64, 64)}),
}


def opencv5():
    try:
        import cv2
    except ImportError as e:
        pytest.skip("OpenCV 5 is not installed (pip install 'opencv-python-headless>=5'): %s" % e)
    if int(cv2.__version__.split(".")[0]) < 5:
        pytest.skip("OpenCV %s is installed; this test needs OpenCV 5 (its Caffe importer is gone)" % cv2.__version__)
    return cv2


@pytest.mark.parametrize("name", sorted(OPENCV_NETS))
def test_opencv5_runs_the_export(name, tmp_path):
    rel, inputs = OPENCV_NETS[name]
    exported = export_random(os.path.join(CORPUS, rel), inputs=inputs)
    feeds = random_feeds(exported)
    diffs, _, ref = round_trip(exported, feeds)
    assert_close(diffs, 1e-4)
    cv2 = opencv5()
    path = str(tmp_path / "model.onnx")
    conx.save(exported.model, path)
    net = cv2.dnn.readNetFromONNX(path)
    for input_name, value in feeds.items():
        net.setInput(value, input_name)
    outs = net.forward(exported.outputs)
    diffs = {o: compare(o, np.asarray(got).reshape(ref[o].shape), ref[o]) for o, got in zip(exported.outputs, outs)}
    assert_close(diffs, 1e-4)
