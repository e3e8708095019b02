r"""Local response normalisation (LRN), across channels or within each channel.

Caffe: src/caffe/layers/lrn_layer.cpp.
"""

from __future__ import annotations

import numpy as np

from caffelite.compute.parallel import batch_parts, map_parts, value_parts
from caffelite.errors import LayerError
from caffelite.layer import Layer, register_layer
from caffelite.layers.pooling import _window_sum, check_4d
from caffelite.proto import caffe_pb2


def _channel_window_sum(a: np.ndarray, half: int) -> np.ndarray:
    """Sum over channels c - half .. c + half (zero beyond the edges) of ``a`` (N, C, ...)."""
    out = a.copy()
    for off in range(1, half + 1):
        out[:, off:] += a[:, :-off]
        out[:, :-off] += a[:, off:]
    return out


def _box_sum(a: np.ndarray, size: int) -> np.ndarray:
    """Sum over the size × size spatial neighbourhood (centred, zero padded) of ``a`` (N, C, H, W)."""
    half = (size - 1) // 2
    return _window_sum(a, (size, size), (1, 1), a.shape[2:], (half, half))


def _neg_pow(s: np.ndarray, beta: float) -> np.ndarray:
    """:math:`s^{-\beta}`; the common β = 0.75 as square roots (several times faster than power)."""
    if beta == 0.75:
        r = np.sqrt(s)
        r *= s
        np.sqrt(r, out=r)
        return np.reciprocal(r, out=r)
    return np.power(s, -beta)


@register_layer
class LRNLayer(Layer):
    r"""Local response normalisation.

    ACROSS_CHANNELS (window of ``local_size`` = n channels centred on c):
    :math:`s = k + \frac{\alpha}{n} \sum_{c'} x_{c'}^2`, :math:`y = x s^{-\beta}`,
    :math:`\frac{\partial E}{\partial x_c} = \frac{\partial E}{\partial y_c} s_c^{-\beta}
    - \frac{2 \alpha \beta}{n} x_c \sum_{c'} \frac{\partial E}{\partial y_{c'}} \frac{y_{c'}}{s_{c'}}`.

    WITHIN_CHANNEL (n × n spatial window, zero padded; Caffe builds it from Power, AVE Pooling and
    Eltwise, whose shift is 1, not k): :math:`s = 1 + \frac{\alpha}{n^2} \sum x^2`, :math:`y = x s^{-\beta}`.

    Caffe: src/caffe/layers/lrn_layer.cpp.
    """

    type = "LRN"
    exact_bottoms = 1
    exact_tops = 1

    def setup(self, bottom, top):
        p = self.layer_param.lrn_param
        self.size = p.local_size
        if self.size % 2 != 1:
            raise LayerError("LRN only supports odd values for local_size (got %d)" % self.size,
                             field="lrn_param.local_size")
        self.alpha, self.beta, self.k = float(p.alpha), float(p.beta), float(p.k)
        self.across = p.norm_region == caffe_pb2.LRNParameter.ACROSS_CHANNELS

    def reshape(self, bottom, top):
        check_4d(bottom[0])
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)

    def _scale(self, x: np.ndarray) -> np.ndarray:
        sq = x * x
        if self.across:
            sq *= self.alpha / self.size
            s = _channel_window_sum(sq, (self.size - 1) // 2)
            s += self.k
        else:
            s = _box_sum(sq, self.size)
            s *= self.alpha / (self.size * self.size)
            s += 1.0
        return s

    def forward(self, bottom, top):
        x = bottom[0].data
        self.scale = np.empty_like(x)
        self.scale_pow = np.empty_like(x)
        y = top[0].data

        def part(n):
            self.scale[n] = self._scale(x[n])
            self.scale_pow[n] = _neg_pow(self.scale[n], self.beta)
            np.multiply(x[n], self.scale_pow[n], out=y[n])
        parts = batch_parts(x.shape[0], x.size)
        if len(parts) < 2:  # a small batch: ranges of rows (across channels) or of channels (within each)
            axis = 2 if self.across else 1
            parts = [(slice(None),) * axis + (r,) for r in value_parts(x.shape[axis], x.size // x.shape[axis])]
        map_parts(part, parts, self.tuner("forward", x.size))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        x_all, y_all, dy_all, dx_all = bottom[0].data, top[0].data, top[0].diff, bottom[0].diff  # diffs are lazy

        def part(n):
            x, y, dy = x_all[n], y_all[n], dy_all[n]
            ratio = dy * y
            ratio /= self.scale[n]
            if self.across:
                acc = _channel_window_sum(ratio, (self.size - 1) // 2)
                coeff = 2.0 * self.alpha * self.beta / self.size
            else:
                acc = _box_sum(ratio, self.size)
                coeff = 2.0 * self.alpha * self.beta / (self.size * self.size)
            acc *= x
            acc *= -coeff
            ratio = np.multiply(dy, self.scale_pow[n], out=ratio)
            np.add(acc, ratio, out=dx_all[n])
        map_parts(part, batch_parts(bottom[0].shape[0], bottom[0].count))
