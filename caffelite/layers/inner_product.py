r"""The InnerProduct layer (fully connected).

Caffe: src/caffe/layers/inner_product_layer.cpp.
"""

from __future__ import annotations

import numpy as np

from caffelite.blob import Blob
from caffelite.compute import parallel
from caffelite.errors import LayerError, ShapeError
from caffelite.filler import fill
from caffelite.layer import Layer, register_layer


@register_layer
class InnerProductLayer(Layer):
    r"""Fully connected layer over the axes from ``axis`` on.

    With the bottom flattened to :math:`X \in \mathbb{R}^{M \times K}` and weights
    :math:`W \in \mathbb{R}^{N \times K}` (:math:`K \times N` when ``transpose``):

    .. math:: Y = X W^\top + \mathbf{1} b^\top, \quad
              \frac{\partial E}{\partial W} \mathrel{+}= \left(\frac{\partial E}{\partial Y}\right)^{\!\top} X,
              \quad \frac{\partial E}{\partial b} \mathrel{+}= \mathbf{1}^\top \frac{\partial E}{\partial Y},
              \quad \frac{\partial E}{\partial X} = \frac{\partial E}{\partial Y} W

    Caffe: src/caffe/layers/inner_product_layer.cpp.  Parameter diffs accumulate, as in Caffe.
    """

    type = "InnerProduct"
    weight_param = "inner_product_param"
    exact_bottoms = 1
    exact_tops = 1

    def setup(self, bottom, top):
        p = self.layer_param.inner_product_param
        if not p.HasField("num_output"):
            raise LayerError("inner_product_param.num_output must be set", field="inner_product_param.num_output")
        self.N = p.num_output
        self.bias_term = p.bias_term
        self.transpose = p.transpose
        axis = bottom[0].canonical_axis_index(p.axis)
        self.K = bottom[0].count_range(axis)
        if self.blobs:
            return  # given inline or already loaded
        weight = Blob((self.K, self.N) if self.transpose else (self.N, self.K))
        fill(weight, p.weight_filler)
        self.blobs = [weight]
        if self.bias_term:
            self.blobs.append(fill(Blob(self.N), p.bias_filler))
        self.param_propagate_down = [True] * len(self.blobs)

    def reshape(self, bottom, top):
        p = self.layer_param.inner_product_param
        axis = bottom[0].canonical_axis_index(p.axis)
        k = bottom[0].count_range(axis)
        if k != self.K:
            raise ShapeError("Input size incompatible with inner product parameters. (bottom %s gives "
                             "K = %d from axis %d; the weights expect K = %d)"
                             % (list(bottom[0].shape), k, axis, self.K))
        if getattr(self, "M", None) != bottom[0].count_range(0, axis):
            self.tuners = {"forward": parallel.Tuner(), "backward": parallel.Tuner()}  # timed for this shape
        self.M = bottom[0].count_range(0, axis)
        top[0].reshape(bottom[0].shape[:axis] + (self.N,))

    def _weight(self) -> np.ndarray:
        """W as N×K (a transposed view when the blob is stored K×N)."""
        w = self.blobs[0].data
        return w.T if self.transpose else w

    def forward(self, bottom, top):
        x = bottom[0].data.reshape(self.M, self.K)
        y = top[0].data.reshape(self.M, self.N)
        parallel.matmul(x, self._weight().T, y, self.tuners["forward"])
        if self.bias_term:
            y += self.blobs[1].data

    def backward(self, top, propagate_down, bottom):
        dy = top[0].diff.reshape(self.M, self.N)
        x = bottom[0].data.reshape(self.M, self.K)
        dx = bottom[0].diff.reshape(self.M, self.K) if propagate_down[0] else None  # not in the threads
        if self.param_propagate_down_at(0):
            if self.transpose:
                parallel.add_product(self.blobs[0].diff, x.T, dy)
            else:
                parallel.add_product(self.blobs[0].diff, dy.T, x)
        if self.bias_term and self.param_propagate_down_at(1):
            self.blobs[1].diff += dy.sum(axis=0)
        if dx is not None:
            parallel.matmul(dy, self._weight(), dx, self.tuners["backward"])
