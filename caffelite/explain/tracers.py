"""Tracers of ``caffelite explain``: each loss layer recomputed step by step in float64 NumPy, printed.

A tracer takes ``(trace, layer, bottom, top, bottom_names, need)`` of a layer the net has run forward
and backward (``need``: whether each bottom got a gradient), and prints each step next to what the
layer itself produced; ``Trace.compare`` flags any difference.
"""

from __future__ import annotations

import numpy as np

from caffelite.explain.messages import MESSAGES
from caffelite.layers.cross_entropy_loss import LOG_THRESHOLD
from caffelite.layers.loss import get_normalizer, resolved_normalization
from caffelite.proto import caffe_pb2

__all__ = ["Trace", "TRACERS", "MAX_POSITIONS", "trace_softmax_loss", "trace_euclidean", "trace_sigmoid_ce",
           "trace_accuracy", "trace_hinge", "trace_contrastive", "trace_multinomial_logistic", "trace_infogain",
           "trace_generic"]

_Norm = caffe_pb2.LossParameter
_norm_name = _Norm.NormalizationMode.Name  # LossParameter.NormalizationMode value -> its name
MAX_POSITIONS = 8  # positions printed in full; the rest are summarised


def _f(x) -> str:
    s = "%.4f" % float(x)
    return "0.0000" if s == "-0.0000" else s


def _v(values) -> str:
    return "[" + ", ".join(_f(x) for x in np.ravel(values)) + "]"


class Trace:
    """The lines printed so far, in one language; steps are numbered from 1 in each layer.

    ``compare`` checks explain's own recomputation against what the layer produced and counts
    the differences (``mismatches``), each flagged where it occurs.
    """

    def __init__(self, lang: str):
        self.m = MESSAGES[lang]
        self.lines: list[str] = []
        self.step = 0
        self.mismatches = 0

    def say(self, key: str, indent: int = 1, **kw) -> None:
        self.lines.append("  " * indent + self.m[key].format(**kw))

    def warn(self, key: str, indent: int = 1, **kw) -> None:
        self.lines.append("  " * indent + "⚠ " + self.m[key].format(**kw))

    def start_layer(self) -> None:
        self.step = 0

    def next_step(self, key: str, **kw) -> None:
        self.step += 1
        self.say(key, indent=1, k=self.step, **kw)

    def compare(self, what: str, ours, theirs, indent: int = 2) -> bool:
        """Flag (and count) a difference between explain's value and the layer's; float32 round-off is not one."""
        a = np.asarray(ours, dtype=np.float64).ravel()
        b = np.asarray(theirs, dtype=np.float64).ravel()
        scale = max(1.0, float(np.abs(a).max(initial=0.0)))
        if a.shape == b.shape and np.allclose(a, b, rtol=1e-4, atol=1e-5 * scale):
            return True
        self.mismatches += 1
        at = int(np.argmax(np.abs(a - b))) if a.shape == b.shape else 0
        self.warn("mismatch", indent, what=what, at=at, ours=_f(a[at]) if a.size else "-",
                  theirs=_f(b[at]) if b.size > at else "-")
        return False


def _positions(outer: int, inner: int):
    for n in range(outer):
        for i in range(inner):
            yield n, i


def _pos_name(n: int, i: int, inner: int) -> str:
    return "n=%d" % n if inner == 1 else "n=%d, i=%d" % (n, i)


def _mode_text(t: Trace, loss_param, default: int, sigmoid: bool = False) -> tuple[int, str]:
    mode = resolved_normalization(loss_param, default)
    if loss_param.HasField("normalization"):
        extra = t.m["normalize_ignored"] if loss_param.HasField("normalize") else ""
        return mode, t.m["mode_explicit"].format(mode=_norm_name(mode), extra=extra)
    if loss_param.HasField("normalize"):
        extra = "" if loss_param.normalize else t.m["not_none"]
        return mode, t.m["mode_legacy"].format(value=str(loss_param.normalize).lower(), mode=_norm_name(mode),
                                               extra=extra)
    return mode, t.m["mode_default"].format(mode=_norm_name(mode), extra=t.m["scb_default"] if sigmoid else "")


def _normalizer_lines(t: Trace, mode, outer, inner, valid, n_ignored) -> float:
    z = get_normalizer(mode, outer, inner, valid)
    formula = t.m["f_" + _norm_name(mode)].format(outer=outer, inner=inner, valid=valid)
    t.say("normalizer", 2, formula=formula, value=_f(z))
    if n_ignored:
        t.say("ignored_count", 2, n=n_ignored)
    return z


def _top_name(layer, top_id: int) -> str:
    """The top's name; Caffe's AppendTop names an anonymous (auto_top_blobs) top "(automatic)"."""
    tops = layer.layer_param.top
    return tops[top_id] if top_id < len(tops) else "(automatic)"


def _loss_footer(t: Trace, layer, top, loss_value) -> None:
    """The layer's own value next to explain's, the difference flagged; then what loss_weight makes of it."""
    value = float(top[0].data.ravel()[0])
    t.say("layer_says", 2, value=_f(value), top=_top_name(layer, 0))
    t.compare(t.m["what_loss"], loss_value, value)
    w = layer.loss(0)
    t.say("weight", 2, w=_f(w), v=_f(w * value))


def _grad_lines(t: Trace, ours, blob, name, need_backward) -> None:
    """Explain's gradient (first values), the layer's, and a flag where they differ."""
    t.say("grad_ours", 2, bottom=name, v=_v(np.ravel(ours)[:MAX_POSITIONS * 4]))
    if need_backward:
        t.say("layer_grad", 2, g=_v(blob.diff.ravel()[:MAX_POSITIONS * 4]))
        t.compare(t.m["what_grad"].format(bottom=name), ours, blob.diff)
    else:
        t.say("no_grad", 2, bottom=name)


def _default_mode(layer) -> int:
    mode = type(layer).default_normalization
    return _Norm.VALID if mode is None else mode


def trace_softmax_loss(t: Trace, layer, bottom, top, bottom_names, need) -> None:
    lp = layer.layer_param
    x = bottom[0].data.astype(np.float64)
    axis = bottom[0].canonical_axis_index(lp.softmax_param.axis)
    outer, channels = int(np.prod(x.shape[:axis], dtype=np.int64)), x.shape[axis]
    inner = int(np.prod(x.shape[axis + 1:], dtype=np.int64))
    t.say("shape3", axis=axis, outer=outer, channels=channels, inner=inner)
    x3 = x.reshape(outer, channels, inner)
    labels = bottom[1].data.reshape(outer, inner).astype(np.int64)
    ignore = lp.loss_param.ignore_label if lp.loss_param.HasField("ignore_label") else None
    shifted = x3 - x3.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    p = e / e.sum(axis=1, keepdims=True)
    valid = np.ones((outer, inner), bool) if ignore is None else labels != ignore
    each = _each(t, outer, inner)
    t.next_step("step_max")
    each(lambda n, i: t.m["x"].format(v=_v(x3[n, :, i]), m=_f(x3[n, :, i].max()), d=_v(shifted[n, :, i])))
    t.next_step("step_exp")
    each(lambda n, i: t.m["exp"].format(v=_v(e[n, :, i]), s=_f(e[n, :, i].sum())))
    t.next_step("step_norm")
    each(lambda n, i: t.m["p"].format(v=_v(p[n, :, i])))
    safe = np.where(valid, labels, 0).clip(0, channels - 1)
    picked = np.take_along_axis(p, safe[:, None, :], axis=1)[:, 0, :]
    neglog = -np.log(np.maximum(picked, np.finfo(np.float32).tiny))
    t.next_step("step_pick")
    each(lambda n, i: (t.m["pick"].format(label=labels[n, i], p=_f(picked[n, i]), nl=_f(neglog[n, i]))
                       if valid[n, i] else t.m["ignored"].format(label=labels[n, i])))
    t.next_step("step_normalizer")
    mode, text = _mode_text(t, lp.loss_param, _default_mode(layer))
    t.lines.append("    " + text)
    count = int(valid.sum())
    z = _normalizer_lines(t, mode, outer, inner, count, int((~valid).sum()))
    total = float(neglog[valid].sum())
    t.next_step("step_loss")
    t.say("loss", 2, what=t.m["sum_nl"], s=_f(total), z=_f(z), loss=_f(total / z))
    _loss_footer(t, layer, top, total / z)
    w = layer.loss(0)
    t.next_step("step_grad", bottom=bottom_names[0])
    onehot = np.zeros_like(p)
    np.put_along_axis(onehot, safe[:, None, :], 1.0, axis=1)
    grad = w * (p - onehot) / z * valid[:, None, :]
    each(lambda n, i: (t.m["grad"].format(p=_v(p[n, :, i]), onehot=_v(onehot[n, :, i]).replace(".0000", ""),
                                          w=_f(w), z=_f(z), g=_v(grad[n, :, i]))
                       if valid[n, i] else t.m["grad_ignored"].format(g=_v(grad[n, :, i]))))
    if need[0]:  # the layer's own gradient, position by position like the lines above
        diff = bottom[0].diff.reshape(outer, channels, inner)
        each(lambda n, i: t.m["layer_grad"].format(g=_v(diff[n, :, i])))
        t.compare(t.m["what_grad"].format(bottom=bottom_names[0]), grad, diff)
    else:
        t.say("no_grad", 2, bottom=bottom_names[0])


def _each(t: Trace, outer: int, inner: int):
    """A printer of one line per shown position (the first MAX_POSITIONS), then a count of the rest."""
    shown = [pos for _, pos in zip(range(MAX_POSITIONS), _positions(outer, inner))]
    hidden = outer * inner - len(shown)

    def each(fn):
        for n, i in shown:
            t.lines.append("    " + t.m["position"].format(pos=_pos_name(n, i, inner)) + ": " + fn(n, i))
        if hidden:
            t.say("more", 2, n=hidden)
    return each


def trace_euclidean(t: Trace, layer, bottom, top, bottom_names, need) -> None:
    a = bottom[0].data.astype(np.float64)
    b = bottom[1].data.astype(np.float64).reshape(a.shape)
    d = a - b
    n = a.shape[0] if a.ndim else 1
    t.next_step("eu_step_diff", a=bottom_names[0], b=bottom_names[1])
    t.say("d", 2, v=_v(d.ravel()[:MAX_POSITIONS * 4]))
    s = float((d * d).sum())
    t.next_step("eu_step_loss", n=n)
    t.say("eu_loss", 2, s=_f(s), n=n, loss=_f(s / n / 2))
    _loss_footer(t, layer, top, s / n / 2)
    w = layer.loss(0)
    t.next_step("eu_step_grad_a", a=bottom_names[0], w=_f(w), n=n)
    _grad_lines(t, w * d / n, bottom[0], bottom_names[0], need[0])
    t.next_step("eu_step_grad_b", b=bottom_names[1], w=_f(w), n=n)
    _grad_lines(t, (-w * d / n).reshape(bottom[1].shape), bottom[1], bottom_names[1], need[1])


def trace_sigmoid_ce(t: Trace, layer, bottom, top, bottom_names, need) -> None:
    lp = layer.layer_param
    x = bottom[0].data.astype(np.float64).ravel()
    tgt = bottom[1].data.astype(np.float64).ravel()
    ignore = lp.loss_param.ignore_label if lp.loss_param.HasField("ignore_label") else None
    valid = np.ones(x.shape, bool) if ignore is None else np.trunc(tgt) != ignore
    sig = 0.5 * np.tanh(0.5 * x) + 0.5
    losses = np.maximum(x, 0) - x * tgt + np.log1p(np.exp(-np.abs(x)))
    t.next_step("sce_step")
    for k in range(min(x.size, MAX_POSITIONS)):
        t.say("sce_elem" if valid[k] else "ignored", 2, x=_f(x[k]), t=_f(tgt[k]), s=_f(sig[k]), l=_f(losses[k]),
              label=int(tgt[k]))
    if x.size > MAX_POSITIONS:
        t.say("more", 2, n=x.size - MAX_POSITIONS)
    outer = bottom[0].shape[0]
    inner = x.size // max(1, outer)
    t.next_step("step_normalizer")
    mode, text = _mode_text(t, lp.loss_param, _default_mode(layer), sigmoid=True)
    t.lines.append("    " + text)
    z = _normalizer_lines(t, mode, outer, inner, int(valid.sum()), int((~valid).sum()))
    total = float(losses[valid].sum())
    t.next_step("step_loss")
    t.say("loss", 2, what="Σ loss", s=_f(total), z=_f(z), loss=_f(total / z))
    _loss_footer(t, layer, top, total / z)
    t.next_step("sce_step_grad")
    _grad_lines(t, layer.loss(0) * (sig - tgt) * valid / z, bottom[0], bottom_names[0], need[0])


def trace_hinge(t: Trace, layer, bottom, top, bottom_names, need) -> None:
    l2 = layer.layer_param.hinge_loss_param.norm == caffe_pb2.HingeLossParameter.L2
    num = bottom[0].shape[0]
    x = bottom[0].data.astype(np.float64).reshape(num, -1)
    labels = bottom[1].data.ravel()[:num].astype(np.int64)
    delta = -np.ones_like(x)
    delta[np.arange(num), labels] = 1
    m = np.maximum(0, 1 - delta * x)
    t.say("hinge_norm", 1, norm="L2" if l2 else "L1", n=num, k=x.shape[1])
    t.next_step("hinge_step_margin")
    shown = min(num, MAX_POSITIONS)
    for n in range(shown):
        t.say("hinge_item", 2, n=n, label=labels[n], x=_v(x[n]), delta=_v(delta[n]).replace(".0000", ""), m=_v(m[n]))
    if num > shown:
        t.say("more", 2, n=num - shown)
    s = float((m * m).sum() if l2 else m.sum())
    t.next_step("hinge_step_loss_l2" if l2 else "hinge_step_loss_l1", n=num)
    t.say("hinge_loss", 2, s=_f(s), n=num, loss=_f(s / num))
    _loss_footer(t, layer, top, s / num)
    w = layer.loss(0)
    grad = (-2 * w * delta * m / num) if l2 else (-w * delta * np.sign(m) / num)
    t.next_step("hinge_step_grad_l2" if l2 else "hinge_step_grad_l1", bottom=bottom_names[0])
    _grad_lines(t, grad.reshape(bottom[0].shape), bottom[0], bottom_names[0], need[0])


def trace_contrastive(t: Trace, layer, bottom, top, bottom_names, need) -> None:
    p = layer.layer_param.contrastive_loss_param
    margin, legacy = float(p.margin), p.legacy_version
    num = bottom[0].shape[0]
    d = (bottom[0].data.astype(np.float64) - bottom[1].data.astype(np.float64).reshape(bottom[0].shape)).reshape(
        num, -1)
    dist_sq = (d * d).sum(axis=1)
    dist = np.sqrt(dist_sq)
    similar = np.trunc(bottom[2].data.ravel()[:num]) != 0
    dissimilar = np.maximum(margin - dist_sq, 0) if legacy else np.maximum(margin - dist, 0) ** 2
    per = np.where(similar, dist_sq, dissimilar)
    t.next_step("con_step_dist", a=bottom_names[0], b=bottom_names[1])
    shown = min(num, MAX_POSITIONS)
    for n in range(shown):
        t.say("con_dist", 2, n=n, d=_f(dist[n]), d2=_f(dist_sq[n]))
    if num > shown:
        t.say("more", 2, n=num - shown)
    t.next_step("con_step_pair_legacy" if legacy else "con_step_pair", m=_f(margin), y=bottom_names[2])
    for n in range(shown):
        t.say("con_pair", 2, n=n, y=int(similar[n]), kind=t.m["con_similar" if similar[n] else "con_dissimilar"],
              v=_f(per[n]))
    if num > shown:
        t.say("more", 2, n=num - shown)
    s = float(per.sum())
    t.next_step("con_step_loss", n=num)
    t.say("con_loss", 2, s=_f(s), n=num, loss=_f(s / num / 2))
    _loss_footer(t, layer, top, s / num / 2)
    w = layer.loss(0)
    if legacy:
        beta = -(margin - dist_sq > 0).astype(np.float64)
    else:
        beta = -(margin - dist) / (dist + 1e-4) * (margin - dist > 0)
    coeff = np.where(similar, 1.0, beta)[:, None]
    t.next_step("con_step_grad_legacy" if legacy else "con_step_grad", a=bottom_names[0], b=bottom_names[1],
                m=_f(margin))
    t.say("con_coeff", 2, c=_v(coeff[:MAX_POSITIONS * 4]))
    for j in (0, 1):
        g = (1 if j == 0 else -1) * w / num * coeff * d
        _grad_lines(t, g.reshape(bottom[j].shape), bottom[j], bottom_names[j], need[j])


def trace_multinomial_logistic(t: Trace, layer, bottom, top, bottom_names, need) -> None:
    num = bottom[0].shape[0]
    prob = bottom[0].data.astype(np.float64).reshape(num, -1)
    labels = bottom[1].data.ravel()[:num].astype(np.int64)
    picked = prob[np.arange(num), labels]
    floored = np.maximum(picked, LOG_THRESHOLD)
    neglog = -np.log(floored)
    t.next_step("mll_step_pick", thr="%g" % LOG_THRESHOLD)
    shown = min(num, MAX_POSITIONS)
    for n in range(shown):
        t.say("mll_item", 2, n=n, p=_v(prob[n]), label=labels[n], pl=_f(picked[n]), nl=_f(neglog[n]))
    if num > shown:
        t.say("more", 2, n=num - shown)
    s = float(neglog.sum())
    t.next_step("mll_step_loss", n=num)
    t.say("mll_loss", 2, s=_f(s), n=num, loss=_f(s / num))
    _loss_footer(t, layer, top, s / num)
    w = layer.loss(0)
    grad = np.zeros_like(prob)
    grad[np.arange(num), labels] = -w / num / floored
    t.next_step("mll_step_grad", bottom=bottom_names[0])
    _grad_lines(t, grad.reshape(bottom[0].shape), bottom[0], bottom_names[0], need[0])


def trace_infogain(t: Trace, layer, bottom, top, bottom_names, need) -> None:
    lp = layer.layer_param
    x = bottom[0].data.astype(np.float64)
    axis = bottom[0].canonical_axis_index(lp.infogain_loss_param.axis)
    outer, channels = int(np.prod(x.shape[:axis], dtype=np.int64)), x.shape[axis]
    inner = int(np.prod(x.shape[axis + 1:], dtype=np.int64))
    h = (bottom[2].data if len(bottom) == 3 else layer.infogain).astype(np.float64).reshape(channels, channels)
    t.say("ig_h", 1, source=bottom_names[2] if len(bottom) == 3 else lp.infogain_loss_param.source,
          k=channels, h=_v(h.ravel()[:MAX_POSITIONS * 2]))
    x3 = x.reshape(outer, channels, inner)
    labels = bottom[1].data.reshape(outer, inner).astype(np.int64)
    ignore = lp.loss_param.ignore_label if lp.loss_param.HasField("ignore_label") else None
    valid = np.ones((outer, inner), bool) if ignore is None else labels != ignore
    safe = np.where(valid, labels, 0).clip(0, channels - 1)
    e = np.exp(x3 - x3.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    logp = np.log(np.maximum(p, LOG_THRESHOLD))
    rows = h[safe].transpose(0, 2, 1)  # (outer, K, inner): H's row of each label
    per = -(rows * logp).sum(axis=1)
    each = _each(t, outer, inner)
    t.next_step("ig_step_softmax", axis=axis)
    each(lambda n, i: t.m["p"].format(v=_v(p[n, :, i])))
    t.next_step("ig_step_row", thr="%g" % LOG_THRESHOLD)
    each(lambda n, i: (t.m["ig_row"].format(label=labels[n, i], row=_v(rows[n, :, i]), lp=_v(logp[n, :, i]),
                                            v=_f(per[n, i]))
                       if valid[n, i] else t.m["ignored"].format(label=labels[n, i])))
    t.next_step("step_normalizer")
    mode, text = _mode_text(t, _no_legacy(lp.loss_param), _default_mode(layer))
    t.lines.append("    " + text)
    count = int(valid.sum())
    z = _normalizer_lines(t, mode, outer, inner, count, int((~valid).sum()))
    s = float(per[valid].sum())
    t.next_step("step_loss")
    t.say("loss", 2, what="Σ(−Σ_k H[l,k] log p_k)", s=_f(s), z=_f(z), loss=_f(s / z))
    _loss_footer(t, layer, top, s / z)
    w = layer.loss(0)
    grad = w / z * (p * rows.sum(axis=1, keepdims=True) - rows) * valid[:, None, :]
    t.next_step("ig_step_grad", bottom=bottom_names[0])
    _grad_lines(t, grad.reshape(bottom[0].shape), bottom[0], bottom_names[0], need[0])


def _no_legacy(loss_param):
    """InfogainLoss reads only ``normalization`` (the layer refuses ``normalize``)."""
    copy = caffe_pb2.LossParameter()
    copy.CopyFrom(loss_param)
    copy.ClearField("normalize")
    return copy


def trace_accuracy(t: Trace, layer, bottom, top, bottom_names, need) -> None:
    p = layer.layer_param.accuracy_param
    x = bottom[0].data.astype(np.float64)
    axis = bottom[0].canonical_axis_index(p.axis)
    outer, channels = int(np.prod(x.shape[:axis], dtype=np.int64)), x.shape[axis]
    inner = int(np.prod(x.shape[axis + 1:], dtype=np.int64))
    x3 = x.reshape(outer, channels, inner)
    labels = bottom[1].data.reshape(outer, inner).astype(np.int64)
    ignore = p.ignore_label if p.HasField("ignore_label") else None
    t.next_step("acc_step", k_=p.top_k)
    correct = counted = 0
    shown = 0
    for n, i in _positions(outer, inner):
        label = int(labels[n, i])
        if ignore is not None and label == ignore:
            if shown < MAX_POSITIONS:
                t.say("ignored", 2, label=label)
                shown += 1
            continue
        s = x3[n, label, i]
        c = int((x3[n, :, i] >= s).sum())
        ok = c <= p.top_k
        correct += ok
        counted += 1
        if shown < MAX_POSITIONS:
            t.lines.append("    " + t.m["position"].format(pos=_pos_name(n, i, inner)) + ": " + t.m["acc_pos"].format(
                v=_v(x3[n, :, i]), label=label, s=_f(s), c=c, verdict=t.m["correct" if ok else "wrong"]))
            shown += 1
    if outer * inner > shown:
        t.say("more", 2, n=outer * inner - shown)
    acc = correct / counted if counted else 0.0
    t.say("acc_result", 2, c=correct, n=counted, a=_f(acc))
    t.say("layer_says", 2, value=_f(top[0].data.ravel()[0]), top=_top_name(layer, 0))
    t.compare(t.m["what_acc"], acc, top[0].data.ravel()[0])


def trace_generic(t: Trace, layer, bottom, top, bottom_names, need) -> None:
    """A layer without a formula here (a Python loss layer, say): its forward value and its gradients."""
    value = float(top[0].data.ravel()[0])
    t.say("generic_note", 1, type=layer.layer_type())
    t.next_step("gen_step_forward")
    t.say("gen_value", 2, top=_top_name(layer, 0), v=_f(value))
    w = layer.loss(0)
    t.say("weight", 2, w=_f(w), v=_f(w * value))
    t.next_step("gen_step_grad", w=_f(w))
    for j, blob in enumerate(bottom):
        if need[j]:
            t.say("gen_grad", 2, bottom=bottom_names[j], g=_v(blob.diff.ravel()[:MAX_POSITIONS * 4]))
        else:
            t.say("no_grad", 2, bottom=bottom_names[j])


TRACERS = {"SoftmaxWithLoss": trace_softmax_loss, "EuclideanLoss": trace_euclidean,
           "SigmoidCrossEntropyLoss": trace_sigmoid_ce, "Accuracy": trace_accuracy, "HingeLoss": trace_hinge,
           "ContrastiveLoss": trace_contrastive, "MultinomialLogisticLoss": trace_multinomial_logistic,
           "InfogainLoss": trace_infogain}
