r"""Softmax: the layer, and the softmax functions the loss layers share.

Caffe: src/caffe/layers/softmax_layer.cpp.
"""

from __future__ import annotations

import numpy as np

from caffelite.layer import Layer, register_layer


def softmax(x: np.ndarray, axis: int, out: np.ndarray) -> np.ndarray:
    r"""Stable softmax along ``axis`` into ``out`` (may be ``x``):
    :math:`p_c = e^{x_c - \max_k x_k} / \sum_j e^{x_j - \max_k x_k}`.

    Works in place in ``out``; the only temporaries are the per-position max and sum.
    """
    np.divide(out, softmax_exp(x, axis, out), out=out)
    return out


def softmax_exp(x: np.ndarray, axis: int, out: np.ndarray) -> np.ndarray:
    r"""The unnormalised half of :func:`softmax`: :math:`e^{x_c - \max_k x_k}` into ``out``;
    returns the sums :math:`\sum_j e^{x_j - \max_k x_k}` (keepdims) that normalise it."""
    m = x.max(axis=axis, keepdims=True)
    np.subtract(x, m, out=out)
    np.exp(out, out=out)
    return out.sum(axis=axis, keepdims=True)


def outer_channels_inner(shape, axis):
    """(outer, channels, inner) counts around ``axis`` (Caffe's count(0, axis), shape(axis), count(axis+1))."""
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    return outer, shape[axis], inner


@register_layer
class SoftmaxLayer(Layer):
    r"""Softmax along ``softmax_param.axis`` (default 1).

    .. math:: y_c = \frac{e^{x_c - \max_k x_k}}{\sum_j e^{x_j - \max_k x_k}}, \qquad
              \frac{\partial E}{\partial x_c} = y_c\left(\frac{\partial E}{\partial y_c}
              - \sum_j \frac{\partial E}{\partial y_j} y_j\right)

    Caffe: src/caffe/layers/softmax_layer.cpp.
    """

    type = "Softmax"
    exact_bottoms = 1
    exact_tops = 1

    def reshape(self, bottom, top):
        self.axis = bottom[0].canonical_axis_index(self.layer_param.softmax_param.axis)
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)

    def _view(self, a: np.ndarray) -> np.ndarray:
        return a.reshape(outer_channels_inner(a.shape, self.axis))

    def forward(self, bottom, top):
        softmax(self._view(bottom[0].data), 1, self._view(top[0].data))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        y, dy = self._view(top[0].data), self._view(top[0].diff)
        dot = np.einsum("ocj,ocj->oj", dy, y)[:, None, :]
        np.multiply(dy - dot, y, out=self._view(bottom[0].diff))
