r"""Cross-entropy losses over probabilities: SigmoidCrossEntropyLoss, InfogainLoss,
MultinomialLogisticLoss (SoftmaxWithLoss, the common one, is in caffelite/layers/loss.py).

Caffe: src/caffe/layers/{sigmoid_cross_entropy,infogain,multinomial_logistic}_loss_layer.cpp.
"""

from __future__ import annotations

import numpy as np

from caffelite.blob import Blob
from caffelite.errors import LabelError, LayerError, ShapeError
from caffelite.layer import register_layer
from caffelite.layers.loss import LossLayer, get_normalizer, read_labels, resolved_normalization, scalar_diff
from caffelite.layers.softmax import outer_channels_inner, softmax
from caffelite.proto import caffe_pb2
from caffelite.protoio import read_blob_proto

# Caffe's kLOG_THRESHOLD (loss_layer.hpp): the floor under probabilities before a log.


# Caffe's kLOG_THRESHOLD (loss_layer.hpp): the floor under probabilities before a log.
LOG_THRESHOLD = 1e-20
_Norm = caffe_pb2.LossParameter


def _check_legacy_label_shape(layer, label: Blob) -> None:
    """Caffe's CHECK_EQ(bottom[1]->channels/height/width(), 1): one label per example."""
    if label.num_axes > 4 or any(label.legacy_shape(i) != 1 for i in (1, 2, 3)):
        raise ShapeError("%s needs one label per example: the label blob must be N (x 1 x 1 x 1), got %s"
                         % (layer.layer_type(), label.shape_string()))


@register_layer
class SigmoidCrossEntropyLossLayer(LossLayer):
    r"""Cross-entropy of targets :math:`t \in [0, 1]` against :math:`\sigma(x)`, computed stably.

    .. math:: E = \frac{1}{\max(1, \text{normalizer})} \sum_{k\,:\,t_k \ne \text{ignore}}
              \left(\max(x_k, 0) - x_k t_k + \log(1 + e^{-|x_k|})\right), \qquad
              \frac{\partial E}{\partial x_k} = w\,\frac{\sigma(x_k) - t_k}{\max(1, \text{normalizer})}

    (0 at ignored targets; :math:`w` is the loss weight).  The normalizer follows
    ``loss_param.normalization`` (FULL: count, VALID: non-ignored count, BATCH_SIZE: first
    dimension, NONE: 1); unlike SoftmaxWithLoss the default is **BATCH_SIZE**.  The legacy
    ``normalize`` is read only when ``normalization`` is unset (true → VALID, false → BATCH_SIZE).
    A target is ignored when its integer part equals ``loss_param.ignore_label``.  The targets get
    no gradient.

    Caffe: src/caffe/layers/sigmoid_cross_entropy_loss_layer.cpp.
    """

    type = "SigmoidCrossEntropyLoss"
    default_normalization = _Norm.BATCH_SIZE

    def setup(self, bottom, top):
        super().setup(bottom, top)
        lp = self.layer_param.loss_param
        self.ignore_label = lp.ignore_label if lp.HasField("ignore_label") else None
        self.normalization = resolved_normalization(lp, self.default_normalization)

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if bottom[0].count != bottom[1].count:
            raise ShapeError("SIGMOID_CROSS_ENTROPY_LOSS layer inputs must have the same count. (%s vs %s)"
                             % (bottom[0].shape_string(), bottom[1].shape_string()))
        self.outer = bottom[0].shape[0]
        self.inner = bottom[0].count_range(1)

    def forward(self, bottom, top):
        x = bottom[0].data.ravel()
        t = bottom[1].data.ravel()
        # np.trunc is C's static_cast<int> without a cast warning on NaN
        self._valid = None if self.ignore_label is None else np.trunc(t) != self.ignore_label
        losses = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
        count = losses.size
        if self._valid is not None:
            losses = losses[self._valid]
            count = int(self._valid.sum())
        self._normalizer = get_normalizer(self.normalization, self.outer, self.inner, count)
        top[0].data[...] = float(losses.sum(dtype=np.float64)) / self._normalizer

    def backward(self, top, propagate_down, bottom):
        self.check_no_label_gradient(propagate_down)
        if not propagate_down[0]:
            return
        x = bottom[0].data
        dx = bottom[0].diff
        np.multiply(0.5, np.tanh(0.5 * x), out=dx)  # sigmoid(x) - 1/2, free of exp overflow
        dx += 0.5
        dx -= bottom[1].data.reshape(dx.shape)
        if self._valid is not None:
            dx *= self._valid.reshape(dx.shape)
        dx *= scalar_diff(top) / self._normalizer


@register_layer
class InfogainLossLayer(LossLayer):
    r"""Multinomial logistic loss weighted by an information-gain matrix :math:`H` (K × K).

    The input is turned into probabilities by a softmax along ``infogain_loss_param.axis``; with
    labels :math:`l` at every (outer, inner) position:

    .. math:: p = \operatorname{softmax}(x), \qquad
              E = \frac{-1}{\max(1, \text{normalizer})} \sum_{n,i\,:\,l_{n,i} \ne \text{ignore}}
              \sum_k H_{l_{n,i},k} \log \max(p_{n,k,i}, 10^{-20})

    .. math:: \frac{\partial E}{\partial x_{n,k,i}} = \frac{w}{\max(1, \text{normalizer})}
              \left(p_{n,k,i} \sum_j H_{l_{n,i},j} - H_{l_{n,i},k}\right)

    :math:`H` is the third bottom, or else the .binaryproto named by ``infogain_loss_param.source``.
    The normalizer follows ``loss_param.normalization`` (default VALID); the deprecated
    ``normalize`` is refused, as in Caffe.  An optional second top receives :math:`p` (loss weight
    0).  Neither the labels nor :math:`H` get a gradient: force_backward skips them, and an explicit
    ``propagate_down: true`` on them is an error.

    Caffe: src/caffe/layers/infogain_loss_layer.cpp.
    """

    type = "InfogainLoss"
    default_normalization = _Norm.VALID
    exact_bottoms = -1
    min_bottoms = 2
    max_bottoms = 3
    exact_tops = -1
    min_tops = 1
    max_tops = 2

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0

    def setup(self, bottom, top):
        super().setup(bottom, top)
        weights = self.layer_param.loss_weight
        if len(top) == 2 and len(weights) == 1:
            weights.append(0.0)  # prob is an output, not a loss (as SoftmaxWithLoss)
        lp = self.layer_param.loss_param
        if lp.HasField("normalize"):
            raise LayerError('normalize is deprecated. use "normalization"', field="loss_param.normalize")
        self.ignore_label = lp.ignore_label if lp.HasField("ignore_label") else None
        self.normalization = lp.normalization
        self.prob = Blob()
        self.infogain = None
        if len(bottom) < 3:
            p = self.layer_param.infogain_loss_param
            if not p.HasField("source"):
                raise LayerError("Infogain matrix source must be specified.", field="infogain_loss_param.source")
            self.infogain = read_blob_proto(p.source)

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.axis = bottom[0].canonical_axis_index(self.layer_param.infogain_loss_param.axis)
        self.outer, self.channels, self.inner = outer_channels_inner(bottom[0].shape, self.axis)
        if self.outer * self.inner != bottom[1].count:
            raise LabelError(
                "Number of labels must match number of predictions; e.g., if infogain axis == 1 and "
                "prediction shape is (N, C, H, W), label count (number of labels) must be N*H*W, with "
                "integer values in {0, 1, ..., C-1}. (predictions %s with axis %d need %d labels; label "
                "blob %s has %d)" % (list(bottom[0].shape), self.axis, self.outer * self.inner,
                                     list(bottom[1].shape), bottom[1].count))
        h_count = bottom[2].count if len(bottom) == 3 else self.infogain.size
        if h_count != self.channels ** 2:
            raise ShapeError("H must be %dx%d (the prediction axis %d has %d labels), got %d values"
                             % (self.channels, self.channels, self.axis, self.channels, h_count))
        if self.prob.dtype != bottom[0].data.dtype:  # float64 under the gradient checker
            self.prob = Blob(dtype=bottom[0].data.dtype)
        (top[1] if len(top) == 2 else self.prob).reshape(bottom[0].shape)

    def _matrix(self, bottom) -> np.ndarray:
        h = bottom[2].data if len(bottom) == 3 else self.infogain
        return h.reshape(self.channels, self.channels).astype(bottom[0].data.dtype, copy=False)

    def forward(self, bottom, top):
        shape3 = (self.outer, self.channels, self.inner)
        prob = top[1] if len(top) == 2 else self.prob
        p = softmax(bottom[0].data.reshape(shape3), 1, prob.data.reshape(shape3))
        labels = read_labels(bottom[1].data.reshape(self.outer, self.inner), self.channels,
                             self.ignore_label, (self.outer, self.inner))
        valid = np.ones(labels.shape, bool) if self.ignore_label is None else labels != self.ignore_label
        self._labels, self._valid = np.where(valid, labels, 0), valid
        rows = self._matrix(bottom)[self._labels]  # (outer, inner, K): H's row for each label
        logp = np.log(np.maximum(p, LOG_THRESHOLD)).transpose(0, 2, 1)
        loss = -float(np.sum((rows * logp)[valid], dtype=np.float64))
        self._count = int(valid.sum())
        top[0].data[...] = loss / get_normalizer(self.normalization, self.outer, self.inner, self._count)

    def backward(self, top, propagate_down, bottom):
        self.check_no_label_gradient(propagate_down)
        self.check_no_label_gradient(propagate_down, 2, "infogain")
        if not propagate_down[0]:
            return
        shape3 = (self.outer, self.channels, self.inner)
        h = self._matrix(bottom)
        p = (top[1] if len(top) == 2 else self.prob).data.reshape(shape3)
        rows = h[self._labels].transpose(0, 2, 1)  # (outer, K, inner)
        row_sums = h.sum(axis=1)[self._labels][:, None, :]
        dx = bottom[0].diff.reshape(shape3)
        np.multiply(p, row_sums, out=dx)
        dx -= rows
        scale = scalar_diff(top) / get_normalizer(self.normalization, self.outer, self.inner, self._count)
        np.multiply(dx, (self._valid * scale).astype(dx.dtype)[:, None, :], out=dx)


@register_layer
class MultinomialLogisticLossLayer(LossLayer):
    r"""Negative log-likelihood of probabilities given directly (e.g. a Softmax output).

    With :math:`N` examples of :math:`K` probabilities :math:`p` and labels :math:`l`:

    .. math:: E = -\frac{1}{N} \sum_n \log \max(p_{n,l_n}, 10^{-20}), \qquad
              \frac{\partial E}{\partial p_{n,k}} = -\frac{w\,[k = l_n]}{N \max(p_{n,l_n}, 10^{-20})}

    The floor is Caffe's kLOG_THRESHOLD (1e-20).  The labels get no gradient.

    Caffe: src/caffe/layers/multinomial_logistic_loss_layer.cpp.
    """

    type = "MultinomialLogisticLoss"

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        _check_legacy_label_shape(self, bottom[1])
        self.num = bottom[0].num
        self.dim = bottom[0].count // self.num if self.num else 0

    def _picked(self, bottom):
        labels = read_labels(bottom[1].data.reshape(self.num), self.dim, None, (self.num,))
        p = bottom[0].data.reshape(self.num, self.dim)
        return labels, np.maximum(p[np.arange(self.num), labels], LOG_THRESHOLD)

    def forward(self, bottom, top):
        _, prob = self._picked(bottom)
        top[0].data[...] = -float(np.sum(np.log(prob), dtype=np.float64)) / self.num

    def backward(self, top, propagate_down, bottom):
        self.check_no_label_gradient(propagate_down)
        if not propagate_down[0]:
            return
        labels, prob = self._picked(bottom)
        dp = bottom[0].diff.reshape(self.num, self.dim)
        dp[...] = 0
        dp[np.arange(self.num), labels] = -scalar_diff(top) / self.num / prob
