r"""Spatial pyramid pooling (SPP): Pooling's windows at several bin counts, concatenated.

Caffe: src/caffe/layers/spp_layer.cpp.
"""

from __future__ import annotations

import math

import numpy as np

from caffelite.errors import LayerError, ShapeError
from caffelite.layer import TRAIN, Layer, register_layer
from caffelite.layers.pooling import Pool2d, check_4d
from caffelite.proto import caffe_pb2

_P = caffe_pb2.PoolingParameter


@register_layer
class SPPLayer(Layer):
    r"""Spatial pyramid pooling: level :math:`l < L` pools into :math:`2^l \times 2^l` bins with
    kernel :math:`k = \lceil i / 2^l \rceil`, stride :math:`k`, pad :math:`\lfloor (k 2^l - i + 1)/2 \rfloor`;
    the levels are flattened and concatenated along axis 1 (with :math:`L = 1`, the single pooled
    (N, C, 1, 1) blob).  Same numbers as Caffe's internal Split/Pooling/Flatten/Concat net.

    Caffe: src/caffe/layers/spp_layer.cpp.
    """

    type = "SPP"
    exact_bottoms = 1
    exact_tops = 1

    def setup(self, bottom, top):
        p = self.layer_param.spp_param
        self.height = p.pyramid_height
        if self.height <= 0:
            raise LayerError("pyramid_height must be > 0 (got %d)" % self.height, field="spp_param.pyramid_height")
        if bottom[0].num_axes == 4 and (bottom[0].shape[2] <= 0 or bottom[0].shape[3] <= 0):
            raise ShapeError("Input dimensions cannot be zero. (bottom %s)" % list(bottom[0].shape))
        self.method = {caffe_pb2.SPPParameter.MAX: _P.MAX, caffe_pb2.SPPParameter.AVE: _P.AVE,
                       caffe_pb2.SPPParameter.STOCHASTIC: _P.STOCHASTIC}[p.pool]

    def _level(self, level: int, h: int, w: int) -> Pool2d:
        bins = 2 ** level
        kernel, pad = [], []
        for size in (h, w):
            k = -(-size // bins)
            kernel.append(k)
            pad.append((k * bins - size + 1) // 2)
        if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
            raise LayerError("SPP level %d: pad %s must be smaller than kernel %s (input %dx%d is too small for "
                             "%d bins)" % (level, pad, kernel, h, w, bins), field="spp_param.pyramid_height")
        if any(pad) and self.method == _P.STOCHASTIC:
            raise LayerError("Padding implemented only for average and max pooling. (SPP level %d)" % level,
                             field="spp_param.pool")
        return Pool2d(self.method, kernel, kernel, pad)

    def reshape(self, bottom, top):
        check_4d(bottom[0])
        n, c, h, w = bottom[0].shape
        self.levels = [self._level(i, h, w) for i in range(self.height)]
        sizes = [c * math.prod(lv.out_shape((h, w))) for lv in self.levels]
        self.bounds = np.cumsum([0] + sizes)
        if self.height == 1:
            top[0].reshape((n, c) + self.levels[0].out_shape((h, w)))
        else:
            top[0].reshape(n, int(self.bounds[-1]))

    def forward(self, bottom, top):
        n = bottom[0].shape[0]
        y = top[0].data.reshape(n, -1)
        for lv, a, b in zip(self.levels, self.bounds[:-1], self.bounds[1:]):
            y[:, a:b] = lv.forward(bottom[0].data, self.phase == TRAIN).reshape(n, -1)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        n = bottom[0].shape[0]
        dy = top[0].diff.reshape(n, -1)
        dx = bottom[0].diff
        for k, (lv, a, b) in enumerate(zip(self.levels, self.bounds[:-1], self.bounds[1:])):
            g = lv.backward(np.ascontiguousarray(dy[:, a:b]).reshape((n, -1) + lv.out), self.phase == TRAIN)
            if k == 0:
                dx[...] = g
            else:
                dx += g
