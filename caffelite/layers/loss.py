r"""Loss layers and Accuracy: SoftmaxWithLoss (the seed), EuclideanLoss, Accuracy.

Caffe: src/caffe/layers/{loss,softmax_loss,euclidean_loss,accuracy}_layer.cpp.
"""

from __future__ import annotations

import numpy as np

from caffelite.blob import Blob
from caffelite.compute import parallel
from caffelite.errors import BackwardError, LabelError, LayerError, ShapeError
from caffelite.layer import Layer, register_layer
from caffelite.layers.softmax import outer_channels_inner, softmax_exp
from caffelite.proto import caffe_pb2

FLT_MIN = np.float32(np.finfo(np.float32).tiny)
_Norm = caffe_pb2.LossParameter


class LossLayer(Layer):
    """Base of loss layers (Caffe's LossLayer): predictions and labels in, a scalar out.

    A loss top gets loss weight 1 unless the prototxt says otherwise; force_backward never sends
    a gradient to the label (bottom 1).
    """

    is_loss = True
    label_bottom = 1
    exact_bottoms = 2
    exact_tops = 1
    auto_tops = True

    def allow_force_backward(self, bottom_index):
        return bottom_index != 1

    def setup(self, bottom, top):
        if not len(self.layer_param.loss_weight):
            self.layer_param.loss_weight.append(1.0)

    def reshape(self, bottom, top):
        if bottom[0].shape[:1] != bottom[1].shape[:1]:
            raise ShapeError("The data and label should have the same first dimension. (%s vs %s)"
                             % (bottom[0].shape_string(), bottom[1].shape_string()))
        top[0].reshape(())

    def check_no_label_gradient(self, propagate_down, index=1, what="label"):
        if len(propagate_down) > index and propagate_down[index]:
            raise BackwardError("%s Layer cannot backpropagate to %s inputs." % (self.layer_type(), what))


def scalar_diff(top) -> float:
    """The loss top's diff: the loss weight times the gradient flowing in (Caffe's top[0]->cpu_diff()[0])."""
    return float(top[0].diff.ravel()[0])


def get_normalizer(mode: int, outer: int, inner: int, valid_count: int) -> float:
    """Caffe's LossLayer::GetNormalizer, never below 1.

    FULL: outer·inner; VALID: the count of non-ignored labels (outer·inner when -1);
    BATCH_SIZE: outer; NONE: 1.
    """
    if mode == _Norm.FULL:
        n = outer * inner
    elif mode == _Norm.VALID:
        n = outer * inner if valid_count == -1 else valid_count
    elif mode == _Norm.BATCH_SIZE:
        n = outer
    elif mode == _Norm.NONE:
        n = 1
    else:
        raise LayerError("Unknown normalization mode: %s" % mode, field="loss_param.normalization")
    return max(1.0, float(n))


def resolved_normalization(loss_param, default: int = _Norm.VALID) -> int:
    """The normalization Caffe uses: ``normalization`` when set, else the legacy ``normalize``
    (true → VALID, false → BATCH_SIZE), else ``default``."""
    if not loss_param.HasField("normalization") and loss_param.HasField("normalize"):
        return _Norm.VALID if loss_param.normalize else _Norm.BATCH_SIZE
    if loss_param.HasField("normalization"):
        return loss_param.normalization
    return default


def read_labels(label: np.ndarray, num_classes: int, ignore_label: int | None, shape_for_msg) -> np.ndarray:
    """Labels as int64 (truncated toward zero, as Caffe's static_cast<int>), validated.

    A label outside [0, num_classes) that is not the ignore label is an error naming the value,
    its position and the valid range (Caffe would read out of bounds).
    """
    with np.errstate(invalid="ignore"):  # NaN and inf cast to garbage, caught as out of range below
        ints = label.astype(np.int64)
    bad = (ints < 0) | (ints >= num_classes)
    if ignore_label is not None:
        bad &= ints != ignore_label
    if bad.any():
        if not np.all(np.isfinite(label)):
            flat = int(np.flatnonzero(~np.isfinite(label.ravel()))[0])
            pos = tuple(int(i) for i in np.unravel_index(flat, shape_for_msg))
            raise LabelError("label at position %s is %s, not a class index" % (pos, label.ravel()[flat]))
        flat = int(np.flatnonzero(bad.ravel())[0])
        pos = tuple(int(i) for i in np.unravel_index(flat, shape_for_msg))
        raise LabelError("label value %g at position %s is out of range: valid labels are 0..%d%s"
                         % (float(label.ravel()[flat]), pos, num_classes - 1,
                            "" if ignore_label is None else " or the ignore_label %d" % ignore_label))
    return ints


def softmax_loss_reference(scores: np.ndarray, labels: np.ndarray, axis: int = 1, ignore_label: int | None = None,
                           normalization: int = _Norm.VALID, loss_weight: float = 1.0):
    r"""SoftmaxWithLoss's formula in plain NumPy: the reference its threaded forward and backward are
    tested against (one pass per step, no threads, no folding of :math:`1/\sum`).

    Returns ``(loss, prob, dscores)``: :math:`E`, :math:`p` shaped like ``scores``, and
    :math:`w\,\partial E/\partial x` for the loss weight :math:`w` (formulas in the layer's docstring).
    """
    x = np.moveaxis(np.asarray(scores), axis, -1)  # (..., C): the softmax runs along the last axis
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    inner = int(np.prod(x.shape[axis:-1], dtype=np.int64))
    labels = np.asarray(labels).reshape(x.shape[:-1]).astype(np.int64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    p = e / e.sum(axis=-1, keepdims=True)
    valid = np.ones(labels.shape, bool) if ignore_label is None else labels != ignore_label
    picked = np.take_along_axis(p, np.where(valid, labels, 0)[..., None], axis=-1)[..., 0]
    normalizer = get_normalizer(normalization, outer, inner, int(valid.sum()))
    loss = -np.log(np.maximum(picked, FLT_MIN))[valid].sum() / normalizer
    onehot = np.arange(x.shape[-1]) == labels[..., None]
    dx = loss_weight * (p - onehot) * valid[..., None] / normalizer
    return loss, np.moveaxis(p, -1, axis), np.moveaxis(dx, -1, axis)


@register_layer
class SoftmaxWithLossLayer(LossLayer):
    r"""Softmax followed by the multinomial logistic loss, in one numerically stable layer.

    With scores :math:`x` of shape (outer, C, inner) around ``softmax_param.axis`` and labels
    :math:`l` of shape (outer, inner):

    .. math:: p_c = \frac{e^{x_c - \max_k x_k}}{\sum_j e^{x_j - \max_k x_k}}, \qquad
              E = \frac{-\sum_{n,i\,:\,l_{n,i} \ne \text{ignore}} \log \max(p_{n,l_{n,i},i},\ \text{FLT\_MIN})}
                       {\max(1, \text{normalizer})}

    .. math:: \frac{\partial E}{\partial x_{n,c,i}} = w\,\frac{p_{n,c,i} - [c = l_{n,i}]}{\max(1, \text{normalizer})}
              \quad (0 \text{ at ignored positions})

    where :math:`w` is the loss weight (the top's diff) and the normalizer is FULL: outer·inner,
    VALID (default): the number of non-ignored labels, BATCH_SIZE: outer, NONE: 1.  The legacy
    ``normalize`` is read only when ``normalization`` is unset (true → VALID, false → BATCH_SIZE).

    A second top, ``prob``, receives :math:`p` with loss weight 0 — the form of the seed article,
    which BVLC Caffe aborts on (its issue #2968); caffelite runs it.

    The forward and backward below split the work over worker threads and skip a pass over the scores;
    :func:`softmax_loss_reference` is the same formula written plainly, and the tests compare the two.

    Caffe: src/caffe/layers/softmax_loss_layer.cpp.
    """

    type = "SoftmaxWithLoss"
    default_normalization = _Norm.VALID
    exact_tops = -1
    min_tops = 1
    max_tops = 2

    def setup(self, bottom, top):
        weights = self.layer_param.loss_weight
        if not len(weights):
            weights.append(1.0)
        if len(top) == 2:
            if len(weights) == 1:
                weights.append(0.0)  # prob is an output, not a loss
            if len(weights) == 2 and weights[1] != 0:
                raise LayerError("SoftmaxWithLoss's second top (prob) carries no gradient; its loss_weight "
                                 "must be 0, got %g" % weights[1], field="loss_weight")
        lp = self.layer_param.loss_param
        self.ignore_label = lp.ignore_label if lp.HasField("ignore_label") else None
        self.normalization = resolved_normalization(lp, self.default_normalization)
        self.prob = Blob()

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.axis = bottom[0].canonical_axis_index(self.layer_param.softmax_param.axis)
        self.outer, self.channels, self.inner = outer_channels_inner(bottom[0].shape, self.axis)
        if self.outer * self.inner != bottom[1].count:
            raise LabelError(
                "Number of labels must match number of predictions; e.g., if softmax axis == 1 and "
                "prediction shape is (N, C, H, W), label count (number of labels) must be N*H*W, with "
                "integer values in {0, 1, ..., C-1}. (predictions %s with axis %d need %d labels; label "
                "blob %s has %d)" % (list(bottom[0].shape), self.axis, self.outer * self.inner,
                                     list(bottom[1].shape), bottom[1].count))
        prob = top[1] if len(top) >= 2 else self.prob
        prob.reshape(bottom[0].shape)

    def _prob(self, top) -> Blob:
        return top[1] if len(top) >= 2 else self.prob

    def _parts(self) -> list[tuple[slice, slice]]:
        """(outer, inner) slices splitting the work across threads along the longer of the two axes."""
        count = self.outer * self.channels * self.inner
        if self.outer >= self.inner:
            return [(sl, slice(None)) for sl in parallel.batch_parts(self.outer, count)]
        return [(slice(None), sl) for sl in parallel.batch_parts(self.inner, count)]

    def forward(self, bottom, top):
        shape3 = (self.outer, self.channels, self.inner)
        x = bottom[0].data.reshape(shape3)
        p = self._prob(top).data.reshape(shape3)
        # With one top the probabilities are internal: keep e = exp(x - max) and 1/sum, and normalise
        # only the picked values (backward folds 1/sum into its one pass) — a pass fewer over the scores.
        self._normalized = len(top) >= 2
        inv = np.empty((self.outer, 1, self.inner), p.dtype)

        def part_softmax(part):  # on worker threads: each part is a set of whole softmax columns
            o, i = part
            sums = softmax_exp(x[o, :, i], 1, p[o, :, i])
            if self._normalized:
                np.divide(p[o, :, i], sums, out=p[o, :, i])
            else:
                np.divide(1.0, sums, out=inv[o, :, i])

        softmax_done = parallel.start_parts(part_softmax, self._parts())
        try:  # read the labels while the workers compute the softmax
            labels = read_labels(bottom[1].data.reshape(self.outer, self.inner), self.channels,
                                 self.ignore_label, (self.outer, self.inner))
            valid = None if self.ignore_label is None else labels != self.ignore_label
            idx = labels if valid is None else np.where(valid, labels, 0)
            # flat index of each position's labelled score: (n·C + label)·inner + i
            if getattr(self, "_base_shape", None) != shape3:
                self._base_shape = shape3
                self._base = (np.arange(self.outer)[:, None] * (self.channels * self.inner)
                              + np.arange(self.inner)[None, :])
            flat = self._base + idx * self.inner
        finally:
            softmax_done()
        self._inv = None if self._normalized else inv.reshape(self.outer, self.inner)
        p_flat = p.reshape(-1)

        def part_log_loss(part):  # -Σ log max(p_label, FLT_MIN) over this part's valid positions
            o, i = part
            logs = p_flat.take(flat[o, i])
            if self._inv is not None:
                logs *= self._inv[o, i]
            np.maximum(logs, FLT_MIN, out=logs)  # Caffe clamps at FLT_MIN in any precision
            np.log(logs, out=logs)
            if valid is not None:
                logs *= valid[o, i]  # ignored positions add nothing
            return float(logs.sum(dtype=np.float64))

        loss = -sum(parallel.map_parts(part_log_loss, self._parts()))
        count = self.outer * self.inner if valid is None else int(np.count_nonzero(valid))
        self._flat, self._valid, self._count = flat, valid, count
        top[0].data[...] = loss / get_normalizer(self.normalization, self.outer, self.inner, count)

    def backward(self, top, propagate_down, bottom):
        self.check_no_label_gradient(propagate_down)
        if not propagate_down[0]:
            return
        shape3 = (self.outer, self.channels, self.inner)
        dx = bottom[0].diff.reshape(shape3)
        p = self._prob(top).data.reshape(shape3)
        scale = float(top[0].diff.ravel()[0]) / get_normalizer(self.normalization, self.outer, self.inner,
                                                                self._count)
        # dx = w·(p - onehot) in one pass over the scores: w·p, then -w at each label
        w = np.full((self.outer, self.inner), scale, dx.dtype) if self._valid is None \
            else (self._valid * scale).astype(dx.dtype)
        factor = w if self._inv is None else w * self._inv  # w/sum when p holds unnormalised exponentials
        flat_dx = dx.reshape(-1)

        def part_gradient(part):
            o, i = part
            np.multiply(p[o, :, i], factor[o, None, i], out=dx[o, :, i])
            flat_dx[self._flat[o, i]] -= w[o, i]  # this part's positions only: parts never collide

        parallel.map_parts(part_gradient, self._parts())


@register_layer
class EuclideanLossLayer(LossLayer):
    r"""Half the mean squared distance per example.

    .. math:: E = \frac{1}{2N} \sum_n \lVert x^{(1)}_n - x^{(2)}_n \rVert^2, \qquad
              \frac{\partial E}{\partial x^{(1)}} = \frac{w}{N}(x^{(1)} - x^{(2)})
              = -\frac{\partial E}{\partial x^{(2)}}

    with :math:`N` the first dimension and :math:`w` the loss weight.  Both inputs may get a
    gradient (force_backward reaches the second too, as in Caffe).

    Caffe: src/caffe/layers/euclidean_loss_layer.cpp.
    """

    type = "EuclideanLoss"

    def allow_force_backward(self, bottom_index):
        return True

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if bottom[0].count_range(1) != bottom[1].count_range(1):
            raise ShapeError("Inputs must have the same dimension. (%s vs %s)"
                             % (bottom[0].shape_string(), bottom[1].shape_string()))

    def forward(self, bottom, top):
        self.diff = bottom[0].data - bottom[1].data.reshape(bottom[0].shape)
        d = self.diff.ravel()
        top[0].data[...] = np.dot(d, d) / bottom[0].num / 2.0

    def backward(self, top, propagate_down, bottom):
        for i in (0, 1):
            if propagate_down[i]:
                alpha = (1 if i == 0 else -1) * float(top[0].diff.ravel()[0]) / bottom[i].num
                np.multiply(self.diff.reshape(bottom[i].shape), alpha, out=bottom[i].diff)


@register_layer
class AccuracyLayer(Layer):
    r"""Top-k classification accuracy (forward only), with an optional per-class second top.

    A prediction counts as correct when :math:`|\{c : x_c \ge x_l\}| \le k`, with :math:`l` the
    label and :math:`k` = ``top_k`` (the true class counts itself; ties count against it, as in
    Caffe's loop).  Ignored labels are skipped; the result is correct / counted
    (0 when nothing is counted).  The second top holds each class's accuracy.

    Caffe: src/caffe/layers/accuracy_layer.cpp.
    """

    type = "Accuracy"
    has_backward = False
    label_bottom = 1
    exact_bottoms = 2
    min_tops = 1
    max_tops = 2

    def setup(self, bottom, top):
        p = self.layer_param.accuracy_param
        self.top_k = p.top_k
        self.ignore_label = p.ignore_label if p.HasField("ignore_label") else None

    def reshape(self, bottom, top):
        if bottom[1].count == 0 or self.top_k > bottom[0].count // bottom[1].count:
            raise LayerError("top_k must be less than or equal to the number of classes. (top_k %d, "
                             "predictions %s, labels %s)" % (self.top_k, list(bottom[0].shape),
                                                             list(bottom[1].shape)), field="accuracy_param.top_k")
        self.axis = bottom[0].canonical_axis_index(self.layer_param.accuracy_param.axis)
        self.outer, self.channels, self.inner = outer_channels_inner(bottom[0].shape, self.axis)
        if self.outer * self.inner != bottom[1].count:
            raise LabelError(
                "Number of labels must match number of predictions; e.g., if label axis == 1 and "
                "prediction shape is (N, C, H, W), label count (number of labels) must be N*H*W, with "
                "integer values in {0, 1, ..., C-1}. (predictions %s need %d labels; label blob %s has %d)"
                % (list(bottom[0].shape), self.outer * self.inner, list(bottom[1].shape), bottom[1].count))
        top[0].reshape(())
        if len(top) > 1:
            top[1].reshape((self.channels,))

    def forward(self, bottom, top):
        x = bottom[0].data.reshape(self.outer, self.channels, self.inner)
        labels = read_labels(bottom[1].data.reshape(self.outer, self.inner), self.channels,
                             self.ignore_label, (self.outer, self.inner))
        valid = np.ones(labels.shape, bool) if self.ignore_label is None else labels != self.ignore_label
        idx = np.where(valid, labels, 0)
        true_score = np.take_along_axis(x, idx[:, None, :], axis=1)
        correct = (x >= true_score).sum(axis=1) <= self.top_k
        correct &= valid
        count = int(valid.sum())
        top[0].data[...] = correct.sum() / count if count else 0.0
        if len(top) > 1:
            seen = np.bincount(idx[valid], minlength=self.channels).astype(np.float64)
            hits = np.bincount(idx[correct], minlength=self.channels).astype(np.float64)
            top[1].data[...] = np.divide(hits, seen, out=np.zeros_like(hits), where=seen > 0)
