"""The classic pycaffe Python layer (Caffe's examples/pycaffe/layers/pyloss.py), written for pycaffe:
``import caffe`` and a ``caffe.Layer`` subclass.  Under caffelite, ``import caffe`` gives caffelite's
pycaffe-compatible module.  Unlike the classic example, backward scales by the loss weight (the top's
diff) and the buffer follows the input dtype, so the numeric gradient check accepts it.
"""

import caffe
import numpy as np


class EuclideanLossLayer(caffe.Layer):
    """Half the mean squared distance between two inputs; records param_str and phase for the tests."""

    def setup(self, bottom, top):
        if len(bottom) != 2:
            raise Exception("Need two inputs to compute distance.")
        self.seen_param_str = self.param_str
        self.seen_phase = self.phase

    def reshape(self, bottom, top):
        if bottom[0].count != bottom[1].count:
            raise Exception("Inputs must have the same dimension.")
        self.diff = np.zeros_like(bottom[0].data)
        top[0].reshape(1)

    def forward(self, bottom, top):
        self.diff[...] = bottom[0].data - bottom[1].data
        top[0].data[...] = np.sum(self.diff ** 2) / bottom[0].num / 2.0

    def backward(self, top, propagate_down, bottom):
        for i in range(2):
            if not propagate_down[i]:
                continue
            sign = 1 if i == 0 else -1
            bottom[i].diff[...] = sign * top[0].diff[0] * self.diff / bottom[i].num


class FailingSetup(caffe.Layer):
    """A layer whose setup raises, to test the error message."""

    def setup(self, bottom, top):
        raise RuntimeError("this layer refuses to set up")


class ParamLayer(caffe.Layer):
    """Scales its input by a learnable scalar made with pycaffe's ``blobs.add_blob``."""

    def setup(self, bottom, top):
        self.blobs.add_blob(1)
        self.blobs[0].data[...] = float(self.param_str or 1.0)

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.blobs[0].data[0] * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        self.blobs[0].diff[0] += np.sum(top[0].diff * bottom[0].data)
        if propagate_down[0]:
            bottom[0].diff[...] = self.blobs[0].data[0] * top[0].diff


class NotALayer:
    """Not a caffe.Layer subclass."""
