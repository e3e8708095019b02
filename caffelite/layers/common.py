r"""Common layers: InnerProduct, Softmax, Eltwise, Split, Silence.

Caffe: src/caffe/layers/{inner_product,softmax,eltwise,split,silence}_layer.cpp.
"""

from __future__ import annotations

import numpy as np

from caffelite.blob import Blob
from caffelite.errors import LayerError, ShapeError
from caffelite.filler import fill
from caffelite.layer import Layer, register_layer
from caffelite.layers import parallel
from caffelite.proto import caffe_pb2


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
        self.M = bottom[0].count_range(0, axis)
        top[0].reshape(bottom[0].shape[:axis] + (self.N,))

    def _weight(self) -> np.ndarray:
        """W as N×K (a transposed view when the blob is stored K×N)."""
        w = self.blobs[0].data
        return w.T if self.transpose else w

    def forward(self, bottom, top):
        x = bottom[0].data.reshape(self.M, self.K)
        y = top[0].data.reshape(self.M, self.N)
        _matmul(x, self._weight().T, y)
        if self.bias_term:
            y += self.blobs[1].data

    def backward(self, top, propagate_down, bottom):
        dy = top[0].diff.reshape(self.M, self.N)
        x = bottom[0].data.reshape(self.M, self.K)
        dx = bottom[0].diff.reshape(self.M, self.K) if propagate_down[0] else None  # not in the threads
        if self.param_propagate_down_at(0):
            if self.transpose:
                _add_product(self.blobs[0].diff, x.T, dy)
            else:
                _add_product(self.blobs[0].diff, dy.T, x)
        if self.bias_term and self.param_propagate_down_at(1):
            self.blobs[1].diff += dy.sum(axis=0)
        if dx is not None:
            _matmul(dy, self._weight(), dx)


# Products run with a one-thread OpenBLAS: its idle threads spin for a while after each multi-threaded
# call and slow down the other layers' threads (measured on 2 cores: LeNet 30 -> 21 ms, CIFAR10-quick
# 172 -> 126 ms).  Those of at least THREADED_MIN multiply-adds are split over our threads by output
# columns (or rows) instead (below, the hand-off costs more: CIFAR10's ip1).  Every output value is the
# same dot product as in one call (OpenBLAS may pick another kernel for a part: float32 round-off).
THREADED_MIN = 1 << 24
# The weight gradient is added in row blocks of about this many bytes: one reused, cache-sized product
# instead of a weight-sized temporary (AlexNet fc6, 151 MB: 48 -> 27 ms).
ADD_BLOCK_BYTES = 1 << 20


def _split(n: int) -> list[slice]:
    bounds = [n * i // parallel.WORKERS for i in range(parallel.WORKERS + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out = a @ b``; big products in threads, by blocks of columns."""
    with parallel.single_threaded_blas() as threads:
        if threads and a.shape[0] * a.shape[1] * b.shape[1] >= THREADED_MIN:
            parallel.map_parts(lambda s: np.matmul(a, b[:, s], out=out[:, s]), _split(b.shape[1]))
        else:
            np.matmul(a, b, out=out)


def _add_product(out: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """``out += a @ b`` in row blocks (threads for big products), without a temporary the size of ``out``."""
    rows = max(1, ADD_BLOCK_BYTES // max(out.shape[1] * out.itemsize, 1))

    def part(s: slice) -> None:
        if s.stop - s.start <= rows:
            out[s] += a[s] @ b
            return
        tmp = np.empty((rows, out.shape[1]), out.dtype)
        for r0 in range(s.start, s.stop, rows):
            r1 = min(r0 + rows, s.stop)
            out[r0:r1] += np.matmul(a[r0:r1], b, out=tmp[:r1 - r0])
    with parallel.single_threaded_blas() as threads:
        if threads and a.shape[0] * a.shape[1] * b.shape[1] >= THREADED_MIN:
            parallel.map_parts(part, _split(out.shape[0]))
        else:
            part(slice(0, out.shape[0]))


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
            np.multiply(bottom[0].data, self.coeffs[0], out=y)
            for c, b in zip(self.coeffs[1:], bottom[1:]):
                y += c * b.data if c != 1 else b.data
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


@register_layer
class SplitLayer(Layer):
    r"""Copies one bottom to several tops (sharing its data); the net inserts it for fan-out.

    .. math:: y_k = x, \qquad \frac{\partial E}{\partial x} = \sum_k \frac{\partial E}{\partial y_k}

    Caffe: src/caffe/layers/split_layer.cpp.
    """

    type = "Split"
    exact_bottoms = 1
    min_tops = 1

    def reshape(self, bottom, top):
        for i, t in enumerate(top):
            if t is bottom[0]:
                raise LayerError("Split Layer does not allow in-place computation. (top %d)" % i, field="top")
            t.alias(bottom[0])

    def forward(self, bottom, top):
        for t in top:  # the bottom may have been reallocated since reshape
            if t.data is not bottom[0].data:
                t.alias(bottom[0])

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dx = bottom[0].diff
        if len(top) == 1:
            np.copyto(dx, top[0].diff)
            return
        np.add(top[0].diff, top[1].diff, out=dx)
        for t in top[2:]:
            dx += t.diff


@register_layer
class SilenceLayer(Layer):
    """Consumes bottoms so they are not net outputs; backward writes zero gradients.

    Caffe: src/caffe/layers/silence_layer.cpp.
    """

    type = "Silence"
    min_bottoms = 1
    exact_tops = 0

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        for pd, b in zip(propagate_down, bottom):
            if pd:
                b.diff[...] = 0
