r"""Loss layers and Accuracy as torch operations, with Caffe's normalizations and thresholds.

Caffe: src/caffe/layers/{softmax_loss,euclidean_loss,sigmoid_cross_entropy_loss,infogain_loss,
multinomial_logistic_loss,hinge_loss,contrastive_loss,accuracy}_layer.cpp.

A loss top is the unweighted loss (a 0-d tensor); ``CaffeNet.total_loss`` applies the loss weights.
Where Caffe floors a probability before its log (``FLT_MIN``, ``kLOG_THRESHOLD`` = 1e-20) its
gradient still divides by the floored value: :func:`floored_log` keeps both, forward and backward.
"""

from __future__ import annotations

import math

import torch

from caffelite.torch._caffelite import LabelError, caffe_pb2
from caffelite.torch.ops.registry import canonical_axis, register

_Norm = caffe_pb2.LossParameter
FLT_MIN = float(torch.finfo(torch.float32).tiny)
LOG_THRESHOLD = 1e-20


def resolved_normalization(lp, default: int = _Norm.VALID) -> int:
    """``normalization`` when set, else the legacy ``normalize`` (true: VALID, false: BATCH_SIZE)."""
    if lp.HasField("normalization"):
        return lp.normalization
    if lp.HasField("normalize"):
        return _Norm.VALID if lp.normalize else _Norm.BATCH_SIZE
    return default


def normalizer(mode: int, outer: int, inner: int, valid):
    """Caffe's LossLayer::GetNormalizer, never below 1; ``valid`` is the valid count (a tensor) or None."""
    if mode == _Norm.FULL:
        return float(max(1, outer * inner))
    if mode == _Norm.VALID:
        return float(max(1, outer * inner)) if valid is None else torch.clamp(valid, min=1.0)
    if mode == _Norm.BATCH_SIZE:
        return float(max(1, outer))
    return 1.0


def floored_log(p, floor: float):
    """:math:`\\log \\max(p, floor)` whose gradient is :math:`1 / \\max(p, floor)`, as in Caffe's backward."""
    q = torch.clamp(p.detach(), min=floor)
    return torch.log(q) + (p - p.detach()) / q


def floored_log_softmax(x, dim: int):
    """:math:`\\log \\max(\\operatorname{softmax}(x), FLT\\_MIN)` with the gradient of the unfloored log-softmax
    (Caffe's SoftmaxWithLoss: ``prob - onehot`` whatever the floor did to the loss)."""
    logp = torch.log_softmax(x, dim=dim)
    return torch.clamp(logp.detach(), min=math.log(FLT_MIN)) + (logp - logp.detach())  # exact: x - x is 0


def read_labels(label, channels: int, ignore_label, outer: int, inner: int):
    """Labels as int64 (truncated toward zero, as Caffe's cast), checked against [0, channels)."""
    if label.numel() != outer * inner:
        raise LabelError("Number of labels must match number of predictions (%d predictions, label blob %s)"
                         % (outer * inner, list(label.shape)))
    lab = label.detach().reshape(outer, inner)
    if not torch.isfinite(lab).all():
        raise LabelError("a label is not finite, not a class index")
    ints = lab.long()
    bad = (ints < 0) | (ints >= channels)
    if ignore_label is not None:
        bad &= ints != ignore_label
    if bad.any():
        flat = int(torch.nonzero(bad.reshape(-1))[0])
        raise LabelError("label value %g at position %s is out of range: valid labels are 0..%d%s"
                         % (float(lab.reshape(-1)[flat]), (flat // inner, flat % inner), channels - 1,
                            "" if ignore_label is None else " or the ignore_label %d" % ignore_label))
    valid = None if ignore_label is None else ints != ignore_label
    return ints, valid


def _ignore_label(lp):
    return lp.ignore_label if lp.HasField("ignore_label") else None


def _oci(x, axis):
    return math.prod(x.shape[:axis]), x.shape[axis], math.prod(x.shape[axis + 1:])


@register("SoftmaxWithLoss")
def softmax_with_loss(layer, bottom, top):
    """:math:`E = -\\sum_{valid} \\log \\max(p_{l}, FLT\\_MIN) / \\max(1, normalizer)`, p the softmax along
    ``axis``; gradient :math:`(p - [c = l]) / \\max(1, normalizer)`, 0 at ignored positions.  A second top
    holds p."""
    lp = layer.layer_param
    axis_param = lp.softmax_param.axis
    ignore = _ignore_label(lp.loss_param)
    mode = resolved_normalization(lp.loss_param)
    two = len(top) > 1

    def f(xs, params):
        x, label = xs
        axis = canonical_axis(axis_param, x.dim())
        outer, c, inner = _oci(x, axis)
        labels, valid = read_labels(label, c, ignore, outer, inner)
        logp = floored_log_softmax(x.reshape(outer, c, inner), 1)
        idx = labels if valid is None else torch.where(valid, labels, torch.zeros_like(labels))
        picked = torch.gather(logp, 1, idx[:, None, :]).squeeze(1)
        if valid is not None:
            picked = picked * valid.to(picked.dtype)
        count = None if valid is None else valid.sum().to(x.dtype)
        loss = -picked.sum() / normalizer(mode, outer, inner, count)
        return [loss, torch.softmax(x, dim=axis)] if two else [loss]
    return f


@register("Accuracy")
def accuracy(layer, bottom, top):
    """Correct when :math:`|\\{c : x_c \\ge x_l\\}| \\le k`; correct / counted (ignored labels skipped);
    a second top holds each class's accuracy.  No gradient."""
    p = layer.layer_param.accuracy_param
    ignore = p.ignore_label if p.HasField("ignore_label") else None
    two = len(top) > 1

    def f(xs, params):
        x, label = xs[0].detach(), xs[1].detach()
        axis = canonical_axis(p.axis, x.dim())
        outer, c, inner = _oci(x, axis)
        labels, valid = read_labels(label, c, ignore, outer, inner)
        x3 = x.reshape(outer, c, inner)
        if valid is None:
            valid = torch.ones_like(labels, dtype=torch.bool)
        idx = torch.where(valid, labels, torch.zeros_like(labels))
        true_score = torch.gather(x3, 1, idx[:, None, :])
        correct = ((x3 >= true_score).sum(dim=1) <= p.top_k) & valid
        count = valid.sum()
        acc = torch.where(count > 0, correct.sum().to(x.dtype) / count.clamp(min=1).to(x.dtype),
                          torch.zeros((), dtype=x.dtype, device=x.device))
        if not two:
            return [acc]
        seen = torch.bincount(idx[valid], minlength=c).to(x.dtype)
        hits = torch.bincount(idx[correct], minlength=c).to(x.dtype)
        per_class = torch.where(seen > 0, hits / seen.clamp(min=1), torch.zeros_like(seen))
        return [acc, per_class]
    return f


@register("EuclideanLoss")
def euclidean_loss(layer, bottom, top):
    """:math:`E = \\frac{1}{2N} \\sum (a - b)^2` (gradients to both bottoms)."""
    def f(xs, params):
        a, b = xs
        d = a - b.reshape(a.shape)
        return [torch.sum(d * d) / a.shape[0] / 2]
    return f


@register("SigmoidCrossEntropyLoss")
def sigmoid_cross_entropy_loss(layer, bottom, top):
    """:math:`E = \\sum_{valid} [\\max(x, 0) - x t + \\log(1 + e^{-|x|})] / \\max(1, normalizer)` (default
    BATCH_SIZE); gradient :math:`(\\sigma(x) - t)/\\max(1, normalizer)`; the targets get none."""
    lp = layer.layer_param.loss_param
    ignore = _ignore_label(lp)
    mode = resolved_normalization(lp, default=_Norm.BATCH_SIZE)

    def f(xs, params):
        x, t = xs[0], xs[1].detach().reshape(xs[0].shape)
        losses = torch.clamp(x, min=0) - x * t + torch.log1p(torch.exp(-torch.abs(x)))
        count = None
        if ignore is not None:
            valid = torch.trunc(t) != ignore
            losses = losses * valid.to(x.dtype)
            count = valid.sum().to(x.dtype)
        outer = x.shape[0]
        return [losses.sum() / normalizer(mode, outer, x.numel() // max(outer, 1), count)]
    return f


@register("InfogainLoss")
def infogain_loss(layer, bottom, top):
    """:math:`E = -\\sum_{valid} \\sum_k H_{l,k} \\log \\max(p_k, 10^{-20}) / \\max(1, normalizer)`, p the softmax
    along ``axis``; H the third bottom or the ``source`` file (read by caffelite's layer).  A second top holds p."""
    lp = layer.layer_param
    ignore = _ignore_label(lp.loss_param)
    mode = lp.loss_param.normalization
    axis_param = lp.infogain_loss_param.axis
    stored = getattr(layer, "infogain", None)
    two = len(top) > 1

    def f(xs, params):
        x, label = xs[0], xs[1]
        axis = canonical_axis(axis_param, x.dim())
        outer, c, inner = _oci(x, axis)
        if len(xs) > 2:
            h = xs[2].detach().reshape(c, c)
        else:
            h = torch.as_tensor(stored, dtype=x.dtype, device=x.device).reshape(c, c)
        labels, valid = read_labels(label, c, ignore, outer, inner)
        prob = torch.softmax(x.reshape(outer, c, inner), dim=1)
        idx = labels if valid is None else torch.where(valid, labels, torch.zeros_like(labels))
        rows = h[idx].permute(0, 2, 1)  # (outer, c, inner): H[l, k]
        terms = (rows * floored_log(prob, LOG_THRESHOLD)).sum(dim=1)
        count = None
        if valid is not None:
            terms = terms * valid.to(x.dtype)
            count = valid.sum().to(x.dtype)
        loss = -terms.sum() / normalizer(mode, outer, inner, count)
        return [loss, torch.softmax(x, dim=axis)] if two else [loss]
    return f


@register("MultinomialLogisticLoss")
def multinomial_logistic_loss(layer, bottom, top):
    """:math:`E = -\\frac{1}{N} \\sum_n \\log \\max(p_{n,l_n}, 10^{-20})`."""
    def f(xs, params):
        p, label = xs
        n = p.shape[0]
        flat = p.reshape(n, -1)
        labels, _ = read_labels(label, flat.shape[1], None, n, 1)
        picked = torch.gather(flat, 1, labels)
        return [-floored_log(picked, LOG_THRESHOLD).sum() / n]
    return f


@register("HingeLoss")
def hinge_loss(layer, bottom, top):
    """:math:`E = \\frac{1}{N} \\sum \\max(0, 1 - \\delta x)` (L1) or its square (L2), :math:`\\delta = \\pm 1`
    for the true class or not."""
    l2 = layer.layer_param.hinge_loss_param.norm == caffe_pb2.HingeLossParameter.L2

    def f(xs, params):
        x, label = xs
        n = x.shape[0]
        flat = x.reshape(n, -1)
        labels, _ = read_labels(label, flat.shape[1], None, n, 1)
        delta = (-torch.ones_like(flat)).scatter(1, labels, 1.0)
        margin = torch.relu(1 - delta * flat)
        return [(margin * margin if l2 else margin).sum() / n]
    return f


@register("ContrastiveLoss")
def contrastive_loss(layer, bottom, top):
    """:math:`E = \\frac{1}{2N} \\sum_n d_n^2` (similar) or :math:`\\max(m - d_n, 0)^2` (dissimilar; legacy
    :math:`\\max(m - d_n^2, 0)`), with Caffe's gradient :math:`-(m - d)/(d + 10^{-4})\\,(a - b)/N`."""
    p = layer.layer_param.contrastive_loss_param
    margin, legacy = float(p.margin), p.legacy_version

    def f(xs, params):
        a, b, y = xs
        n = a.shape[0]
        diff = (a - b).reshape(n, -1)
        dist_sq = (diff * diff).sum(dim=1)
        similar = y.detach().reshape(n).long() != 0
        if legacy:
            dissimilar = torch.relu(margin - dist_sq)
        else:
            d = torch.sqrt(dist_sq.detach())
            dist = d + (dist_sq - dist_sq.detach()) / (2 * (d + 1e-4))  # Caffe's 1e-4 in the gradient only
            dissimilar = torch.relu(margin - dist) ** 2
        return [torch.where(similar, dist_sq, dissimilar).sum() / (2 * n)]
    return f
