r"""The Eltwise layer: bottoms combined elementwise (product, sum with coefficients, max).

Caffe: src/caffe/layers/eltwise_layer.cpp.
"""

from __future__ import annotations

import numpy as np

from caffelite.compute.parallel import map_parts, value_parts
from caffelite.errors import LayerError, ShapeError
from caffelite.layer import Layer, register_layer
from caffelite.proto import caffe_pb2


@register_layer
class EltwiseLayer(Layer):
    r"""Elementwise PROD, SUM (with ``coeff``) or MAX over two or more bottoms of one shape.

    .. math:: \text{SUM: } y = \sum_i c_i x_i, \quad \text{PROD: } y = \prod_i x_i, \quad
              \text{MAX: } y = \max_i x_i

    Backward: SUM gives :math:`c_i\,\partial E/\partial y`; PROD gives
    :math:`\prod_{j \ne i} x_j\,\partial E/\partial y` (``stable_prod_grad``, the default) or
    :math:`(y / x_i)\,\partial E/\partial y`; MAX routes the gradient to the arg max (ties between
    the first two bottoms go to the second, later ties keep the earlier, as Caffe's loop does).

    Caffe: src/caffe/layers/eltwise_layer.cpp.
    """

    type = "Eltwise"
    min_bottoms = 2
    exact_tops = 1

    def setup(self, bottom, top):
        p = self.layer_param.eltwise_param
        self.op = p.operation
        if len(p.coeff) and self.op != caffe_pb2.EltwiseParameter.SUM:
            raise LayerError("Eltwise layer only takes coefficients for summation.", field="eltwise_param.coeff")
        if len(p.coeff) and len(p.coeff) != len(bottom):
            raise LayerError("Eltwise Layer takes one coefficient per bottom blob. (%d coeff, %d bottoms)"
                             % (len(p.coeff), len(bottom)), field="eltwise_param.coeff")
        self.coeffs = list(p.coeff) if len(p.coeff) else [1.0] * len(bottom)
        self.stable_prod_grad = p.stable_prod_grad

    def reshape(self, bottom, top):
        for i in range(1, len(bottom)):
            if bottom[i].shape != bottom[0].shape:
                raise ShapeError("bottom[0]: %s, bottom[%d]: %s" % (bottom[0].shape_string(), i,
                                                                  bottom[i].shape_string()))
        top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        y = top[0].data
        op = self.op
        if op == caffe_pb2.EltwiseParameter.PROD:
            np.multiply(bottom[0].data, bottom[1].data, out=y)
            for b in bottom[2:]:
                y *= b.data
        elif op == caffe_pb2.EltwiseParameter.SUM:
            flat, xs = y.reshape(-1), [b.data.reshape(-1) for b in bottom]

            def part(s):
                if self.coeffs[0] == 1 and self.coeffs[1] == 1:  # x·1 + b is x + b exactly: one pass less
                    np.add(xs[0][s], xs[1][s], out=flat[s])
                    rest = zip(self.coeffs[2:], xs[2:])
                else:
                    np.multiply(xs[0][s], self.coeffs[0], out=flat[s])
                    rest = zip(self.coeffs[1:], xs[1:])
                for c, x in rest:
                    flat[s] += c * x[s] if c != 1 else x[s]
            map_parts(part, value_parts(flat.size, 1), self.tuner("sum", flat.size))
        elif op == caffe_pb2.EltwiseParameter.MAX:
            mask = np.zeros(y.shape, np.int32)
            take = bottom[1].data >= bottom[0].data
            np.copyto(y, np.where(take, bottom[1].data, bottom[0].data))
            mask[take] = 1
            for i, b in enumerate(bottom[2:], start=2):
                take = b.data > y
                np.copyto(y, b.data, where=take)
                mask[take] = i
            self.max_idx = mask
        else:
            raise LayerError("Unknown elementwise operation %d" % op, field="eltwise_param.operation")

    def backward(self, top, propagate_down, bottom):
        dy, y = top[0].diff, top[0].data
        for i, b in enumerate(bottom):
            if not propagate_down[i]:
                continue
            if self.op == caffe_pb2.EltwiseParameter.PROD:
                if self.stable_prod_grad:
                    others = [bottom[j].data for j in range(len(bottom)) if j != i]
                    prod = others[0].copy()
                    for o in others[1:]:
                        prod *= o
                    np.multiply(prod, dy, out=b.diff)
                else:
                    np.multiply(y / b.data, dy, out=b.diff)
            elif self.op == caffe_pb2.EltwiseParameter.SUM:
                np.multiply(dy, self.coeffs[i], out=b.diff)
            else:
                np.multiply(dy, self.max_idx == i, out=b.diff)
