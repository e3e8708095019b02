r"""Neuron layers: elementwise functions, one bottom and one top of the same shape (in-place allowed).

Caffe: include/caffe/layers/neuron_layer.hpp and the ``*_layer.cpp`` of each type below.
"""

from __future__ import annotations

import numpy as np

from caffelite.layer import Layer, register_layer


class NeuronLayer(Layer):
    """Base of elementwise layers: one bottom, one top shaped like it (Caffe's NeuronLayer)."""

    def exact_num_bottom_blobs(self) -> int:
        return 1

    def exact_num_top_blobs(self) -> int:
        return 1

    def reshape(self, bottom, top):
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)


@register_layer
class ReLULayer(NeuronLayer):
    r"""Rectified linear unit, leaky when ``negative_slope`` = :math:`\nu` is non-zero.

    .. math:: y = \max(0, x) + \nu \min(0, x), \qquad
              \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y}\,([x > 0] + \nu [x \le 0])

    Caffe: src/caffe/layers/relu_layer.cpp.  In place, ``x`` is read back from ``y``, whose sign
    is the same for :math:`\nu \ge 0`.
    """

    type = "ReLU"

    def forward(self, bottom, top):
        x = bottom[0].data
        slope = self.layer_param.relu_param.negative_slope
        if slope:
            np.copyto(top[0].data, np.where(x > 0, x, x * slope))
        else:
            np.maximum(x, 0, out=top[0].data)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        x, dy = bottom[0].data, top[0].diff
        slope = self.layer_param.relu_param.negative_slope
        if slope:
            np.copyto(bottom[0].diff, np.where(x > 0, dy, dy * slope))
        else:
            np.multiply(dy, x > 0, out=bottom[0].diff)


@register_layer
class SigmoidLayer(NeuronLayer):
    r"""Logistic sigmoid.

    .. math:: y = \frac{1}{1 + e^{-x}} = \tfrac12 \tanh(\tfrac x2) + \tfrac12, \qquad
              \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y}\, y (1 - y)

    Caffe: src/caffe/layers/sigmoid_layer.cpp (the tanh form, which never overflows).
    """

    type = "Sigmoid"

    def forward(self, bottom, top):
        y = top[0].data
        np.multiply(bottom[0].data, 0.5, out=y)
        np.tanh(y, out=y)
        y *= 0.5
        y += 0.5

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            y = top[0].data
            np.multiply(top[0].diff, y * (1 - y), out=bottom[0].diff)


@register_layer
class TanHLayer(NeuronLayer):
    r"""Hyperbolic tangent.

    .. math:: y = \tanh x, \qquad \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y}(1 - y^2)

    Caffe: src/caffe/layers/tanh_layer.cpp.
    """

    type = "TanH"

    def forward(self, bottom, top):
        np.tanh(bottom[0].data, out=top[0].data)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            y = top[0].data
            np.multiply(top[0].diff, 1 - y * y, out=bottom[0].diff)
