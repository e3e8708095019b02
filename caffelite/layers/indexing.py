r"""Indexing and reduction layers: Reduction, ArgMax, Embed, Filter, BatchReindex, Parameter.

Inputs that hold indices (Embed's bottom, Filter's selector, BatchReindex's permutation) have
no gradient: ``force_backward`` skips them and an explicit ``propagate_down`` is an error.

Caffe: src/caffe/layers/{reduction,argmax,embed,filter,batch_reindex,parameter}_layer.cpp.
"""

from __future__ import annotations

import numpy as np

from caffelite.blob import Blob
from caffelite.errors import BackwardError, LabelError, LayerError, ShapeError
from caffelite.filler import fill
from caffelite.layer import Layer, register_layer
from caffelite.proto import caffe_pb2

_OP = caffe_pb2.ReductionParameter


@register_layer
class ReductionLayer(Layer):
    r"""Reduces all axes from ``axis`` on to one value per leading index, times ``coeff`` = c.

    .. math:: \text{SUM: } y = c \sum_j x_j, \quad \text{ASUM: } c \sum_j |x_j|, \quad
              \text{SUMSQ: } c \sum_j x_j^2, \quad \text{MEAN: } \frac{c}{D} \sum_j x_j

    with gradients :math:`c`, :math:`c\,\operatorname{sign}(x_j)`, :math:`2 c x_j` and
    :math:`c / D` times :math:`\partial E / \partial y` (:math:`D` values reduced per output).
    The top has bottom[0]'s shape up to ``axis`` (a scalar for ``axis`` 0).

    Caffe: src/caffe/layers/reduction_layer.cpp.
    """

    type = "Reduction"
    exact_bottoms = 1
    exact_tops = 1

    def setup(self, bottom, top):
        self.op = self.layer_param.reduction_param.operation
        if self.op not in (_OP.SUM, _OP.ASUM, _OP.SUMSQ, _OP.MEAN):
            raise LayerError("Unknown reduction op: %d" % self.op, field="reduction_param.operation")

    def reshape(self, bottom, top):
        axis = bottom[0].canonical_axis_index(self.layer_param.reduction_param.axis)
        self.num = bottom[0].count_range(0, axis)
        self.dim = bottom[0].count_range(axis)
        top[0].reshape(bottom[0].shape[:axis])
        coeff = self.layer_param.reduction_param.coeff
        self.coeff = coeff / self.dim if self.op == _OP.MEAN and self.dim else coeff

    def forward(self, bottom, top):
        x = bottom[0].data.reshape(self.num, self.dim)
        if self.op == _OP.ASUM:
            r = np.abs(x).sum(axis=1)
        elif self.op == _OP.SUMSQ:
            r = np.einsum("ij,ij->i", x, x)
        else:
            r = x.sum(axis=1)
        np.multiply(r, self.coeff, out=top[0].data.reshape(self.num))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy = top[0].diff.reshape(self.num, 1) * self.coeff
        x = bottom[0].data.reshape(self.num, self.dim)
        dx = bottom[0].diff.reshape(self.num, self.dim)
        if self.op == _OP.ASUM:
            np.multiply(np.sign(x), dy, out=dx)
        elif self.op == _OP.SUMSQ:
            np.multiply(x, 2 * dy, out=dx)
        else:
            dx[...] = dy


@register_layer
class ArgMaxLayer(Layer):
    r"""Indices (and with ``out_max_val`` the values) of the ``top_k`` largest values.

    Without ``axis``, over each item's flattened values: the top is (N, 1, k), or (N, 2, k) with
    the indices then the values when ``out_max_val``.  With ``axis``, along that axis: the top
    is bottom[0]'s shape with k at ``axis``, holding indices, or values when ``out_max_val``.
    Ties go to the larger index (Caffe sorts (value, index) pairs in descending order).

    Caffe: src/caffe/layers/argmax_layer.cpp (forward only).
    """

    type = "ArgMax"
    has_backward = False
    exact_bottoms = 1
    exact_tops = 1

    def setup(self, bottom, top):
        p = self.layer_param.argmax_param
        self.top_k = p.top_k
        self.out_max_val = p.out_max_val
        self.axis = bottom[0].canonical_axis_index(p.axis) if p.HasField("axis") else None
        if self.top_k < 1:
            raise LayerError("top k must not be less than 1.", field="argmax_param.top_k")
        if self.axis is not None:
            if self.top_k > bottom[0].shape[self.axis]:
                raise ShapeError("top_k must be less than or equal to the dimension of the axis. (top_k %d, "
                                 "axis %d of %s)" % (self.top_k, self.axis, bottom[0].shape_string()),
                                 field="argmax_param.top_k")
        elif self.top_k > bottom[0].count_range(1):
            raise ShapeError("top_k must be less than or equal to the dimension of the flattened bottom blob "
                             "per instance. (top_k %d, bottom %s)" % (self.top_k, bottom[0].shape_string()),
                             field="argmax_param.top_k")

    def reshape(self, bottom, top):
        if self.axis is not None:
            shape = list(bottom[0].shape)
            shape[self.axis] = self.top_k
        else:
            shape = [1] * max(bottom[0].num_axes, 3)
            shape[0] = bottom[0].shape[0]
            shape[1] = 2 if self.out_max_val else 1
            shape[2] = self.top_k
        top[0].reshape(shape)

    def _top_k(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Indices and values of the k largest along the last axis, ties to the larger index."""
        dim = v.shape[-1]
        # a stable ascending sort of -v over the reversed axis orders equal values by descending index
        order = np.argsort(-v[..., ::-1], axis=-1, kind="stable")[..., :self.top_k]
        idx = dim - 1 - order
        return idx, np.take_along_axis(v, idx, axis=-1)

    def forward(self, bottom, top):
        x = bottom[0].data
        if self.axis is not None:
            idx, val = self._top_k(np.moveaxis(x, self.axis, -1))
            out = val if self.out_max_val else idx
            np.copyto(top[0].data, np.moveaxis(out, -1, self.axis), casting="unsafe")
            return
        idx, val = self._top_k(x.reshape(x.shape[0], -1))
        y = top[0].data.reshape(x.shape[0], -1)
        y[:, :self.top_k] = idx
        if self.out_max_val:
            y[:, self.top_k:] = val


class _IndexInputLayer(Layer):
    """A layer whose bottom ``index_bottom`` holds indices: no gradient flows to it."""

    def index_bottom(self, num_bottom: int) -> int:
        raise NotImplementedError

    num_bottom = 0  # set by setup; the net and the checker ask allow_force_backward after it

    def allow_force_backward(self, bottom_index):
        return bottom_index != self.index_bottom(self.num_bottom or len(self.layer_param.bottom))

    def setup(self, bottom, top):
        self.num_bottom = len(bottom)

    def check_no_index_gradient(self, propagate_down, text: str) -> None:
        i = self.index_bottom(len(propagate_down))
        if propagate_down[i]:
            raise BackwardError("%s Layer cannot backpropagate to index inputs (bottom %d). (Caffe: %s)"
                                % (self.layer_type(), i, text))


def _as_indices(values: np.ndarray, limit: int, layer: Layer, what: str, truncate: bool) -> np.ndarray:
    """Float indices as ints, refusing ones outside [0, limit) (and non-integers unless ``truncate``)."""
    flat = values.reshape(-1)
    idx = np.trunc(flat)
    bad = np.flatnonzero(~np.isfinite(flat) | (flat < 0) | (idx >= limit) | (~truncate & (idx != flat)))
    if bad.size:
        j = int(bad[0])
        raise LabelError("%s Layer: %s %r at position %d is not an integer in the valid range [0, %d)"
                         % (layer.layer_type(), what, float(flat[j]), j, limit))
    return idx.astype(np.int64).reshape(values.shape)


@register_layer
class EmbedLayer(_IndexInputLayer):
    r"""A lookup table: each index :math:`k` in the bottom selects row :math:`k` of
    :math:`W \in \mathbb{R}^{K \times N}` (``input_dim`` × ``num_output``), plus a bias.

    .. math:: y_{m,:} = W_{x_m,:} + b, \qquad
              \frac{\partial E}{\partial W_{k,:}} \mathrel{+}= \sum_{m: x_m = k} \frac{\partial E}{\partial y_{m,:}}

    The top has the bottom's shape with N appended.  An index outside [0, K) or not an integer is
    a LabelError (Caffe only checks it in debug builds).

    Caffe: src/caffe/layers/embed_layer.cpp.
    """

    type = "Embed"
    weight_param = "embed_param"
    exact_bottoms = 1
    exact_tops = 1

    def index_bottom(self, num_bottom):
        return 0

    def setup(self, bottom, top):
        super().setup(bottom, top)
        p = self.layer_param.embed_param
        self.N, self.K, self.bias_term = p.num_output, p.input_dim, p.bias_term
        if self.N <= 0:
            raise LayerError("EmbedLayer num_output must be positive.", field="embed_param.num_output")
        if self.K <= 0:
            raise LayerError("EmbedLayer input_dim must be positive.", field="embed_param.input_dim")
        if not self.blobs:
            self.blobs = [fill(Blob(self.K, self.N), p.weight_filler)]
            if self.bias_term:
                self.blobs.append(fill(Blob(self.N), p.bias_filler))
        self.param_propagate_down = [True] * len(self.blobs)

    def reshape(self, bottom, top):
        top[0].reshape(bottom[0].shape + (self.N,))

    def forward(self, bottom, top):
        self.idx = _as_indices(bottom[0].data, self.K, self, "index", truncate=False).reshape(-1)
        y = top[0].data.reshape(-1, self.N)
        y[...] = self.blobs[0].data[self.idx]
        if self.bias_term:
            y += self.blobs[1].data

    def backward(self, top, propagate_down, bottom):
        self.check_no_index_gradient(propagate_down, "Can't backpropagate to EmbedLayer input.")
        dy = top[0].diff.reshape(-1, self.N)
        if self.param_propagate_down_at(0):
            np.add.at(self.blobs[0].diff, self.idx, dy)
        if self.bias_term and self.param_propagate_down_at(1):
            self.blobs[1].diff += dy.sum(axis=0)


@register_layer
class FilterLayer(_IndexInputLayer):
    r"""Keeps the items (along axis 0) whose selector, the last bottom, is non-zero.

    Each of the other bottoms gives one top holding its selected items in order; with none
    selected the tops have 0 items.  Backward copies the top diffs back to the selected items and
    writes 0 to the others; the selector gets no gradient.

    Caffe: src/caffe/layers/filter_layer.cpp.
    """

    type = "Filter"
    min_bottoms = 2
    min_tops = 1

    def index_bottom(self, num_bottom):
        return num_bottom - 1

    def setup(self, bottom, top):
        super().setup(bottom, top)
        if len(top) != len(bottom) - 1:
            raise LayerError("Filter Layer needs one top per filtered bottom: top.size() == bottom.size() - 1 "
                             "(%d tops, %d bottoms)" % (len(top), len(bottom)), field="top")
        self.first_reshape = True

    def reshape(self, bottom, top):
        selector = bottom[-1]
        if any(d != 1 for d in selector.shape[1:]):
            raise ShapeError("Selector blob dimensions must be singletons (1), except the first (selector %s)"
                             % selector.shape_string())
        for i, b in enumerate(bottom[:-1]):
            if b.shape[0] != selector.shape[0]:
                raise ShapeError("Each bottom should have the same 0th dimension as the selector blob "
                                 "(bottom[%d] %s, selector %s)" % (i, b.shape_string(), selector.shape_string()))
        self.indices = np.flatnonzero(selector.data.reshape(-1))
        n = len(self.indices)
        if self.first_reshape:  # at setup the selector is not filled yet: size the tops for the whole batch
            n = bottom[0].shape[0]
            self.first_reshape = False
        for t, b in zip(top, bottom):
            t.reshape((n,) + b.shape[1:])

    def forward(self, bottom, top):
        for t, b in zip(top, bottom):
            t.data[...] = b.data[self.indices]

    def backward(self, top, propagate_down, bottom):
        self.check_no_index_gradient(propagate_down, "Layer cannot backpropagate to filter index inputs")
        for pd, t, b in zip(propagate_down, top, bottom):
            if pd:
                dx = b.diff
                dx[...] = 0
                dx[self.indices] = t.diff


@register_layer
class BatchReindexLayer(_IndexInputLayer):
    r"""Gathers items of bottom[0] along axis 0 by the indices in bottom[1] (1-D, repeats allowed).

    .. math:: y_i = x_{p_i}, \qquad \frac{\partial E}{\partial x_j} = \sum_{i: p_i = j}
              \frac{\partial E}{\partial y_i}

    Indices are truncated to integers as Caffe's cast does; a negative one or one past the batch is
    a LabelError.

    Caffe: src/caffe/layers/batch_reindex_layer.cpp.
    """

    type = "BatchReindex"
    exact_bottoms = 2
    exact_tops = 1

    def index_bottom(self, num_bottom):
        return 1

    def reshape(self, bottom, top):
        if bottom[1].num_axes != 1:
            raise ShapeError("BatchReindex: the index bottom must have 1 axis (got %s)" % bottom[1].shape_string())
        top[0].reshape(bottom[1].shape[:1] + bottom[0].shape[1:])

    def forward(self, bottom, top):
        if top[0].count == 0:
            return
        x = bottom[1].data
        if np.any(x < 0):
            j = int(np.flatnonzero(x < 0)[0])
            raise LabelError("Index specified for reindex layer was negative. (index %g at position %d)"
                             % (x[j], j))
        self.idx = _as_indices(x, bottom[0].shape[0], self, "index (greater than batch size?)", truncate=True)
        top[0].data[...] = bottom[0].data[self.idx]

    def backward(self, top, propagate_down, bottom):
        self.check_no_index_gradient(propagate_down, "Cannot backprop to index.")
        if not propagate_down[0]:
            return
        dx = bottom[0].diff
        dx[...] = 0
        if top[0].count:
            np.add.at(dx, self.idx, top[0].diff)


@register_layer
class ParameterLayer(Layer):
    r"""Outputs its one learnable blob (shape ``parameter_param.shape``, zeros until trained or
    loaded); backward adds the top diff to the blob's diff.

    Caffe: src/caffe/layers/parameter_layer.cpp.
    """

    type = "Parameter"
    exact_bottoms = 0
    exact_tops = 1

    def setup(self, bottom, top):
        if not self.blobs:
            self.blobs = [Blob(tuple(self.layer_param.parameter_param.shape.dim))]
        self.param_propagate_down = [True]

    def reshape(self, bottom, top):
        top[0].reshape(self.blobs[0].shape)

    def forward(self, bottom, top):
        np.copyto(top[0].data, self.blobs[0].data)

    def backward(self, top, propagate_down, bottom):
        if self.param_propagate_down_at(0):
            self.blobs[0].diff += top[0].diff
