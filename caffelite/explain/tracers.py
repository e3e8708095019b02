"""Tracers of ``caffelite explain``: each loss layer recomputed step by step in float64 NumPy, printed.

A tracer takes ``(trace, layer, bottom, top, bottom_names, need_backward)`` of a layer the net has
run forward and backward, and prints each step next to what the layer itself produced.
"""

from __future__ import annotations

import numpy as np

from caffelite.explain.messages import MESSAGES
from caffelite.layers.loss import get_normalizer, resolved_normalization
from caffelite.proto import caffe_pb2

__all__ = ["Trace", "TRACERS", "MAX_POSITIONS", "trace_softmax_loss", "trace_euclidean", "trace_sigmoid_ce",
           "trace_accuracy", "trace_generic"]

_Norm = caffe_pb2.LossParameter
_norm_name = _Norm.NormalizationMode.Name  # LossParameter.NormalizationMode value -> its name
MAX_POSITIONS = 8  # positions printed in full; the rest are summarised


def _f(x) -> str:
    s = "%.4f" % float(x)
    return "0.0000" if s == "-0.0000" else s


def _v(values) -> str:
    return "[" + ", ".join(_f(x) for x in np.ravel(values)) + "]"


class Trace:
    """The lines printed so far, in one language; steps are numbered."""

    def __init__(self, lang: str):
        self.m = MESSAGES[lang]
        self.lines: list[str] = []
        self.step = 0

    def say(self, key: str, indent: int = 1, **kw) -> None:
        self.lines.append("  " * indent + self.m[key].format(**kw))

    def next_step(self, key: str, **kw) -> None:
        self.step += 1
        self.say(key, indent=1, k=self.step, **kw)


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
    t.say("layer_says", 2, value=_f(top[0].data.ravel()[0]), top=_top_name(layer, 0))
    w = layer.loss(0)
    t.say("weight", 2, w=_f(w), v=_f(w * float(top[0].data.ravel()[0])))


def trace_softmax_loss(t: Trace, layer, bottom, top, bottom_names, need_backward) -> None:
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
    shown = [pos for _, pos in zip(range(MAX_POSITIONS), _positions(outer, inner))]
    hidden = outer * inner - len(shown)

    def each(fn):
        for n, i in shown:
            t.lines.append("    " + t.m["position"].format(pos=_pos_name(n, i, inner)) + ": " + fn(n, i))
        if hidden:
            t.say("more", 2, n=hidden)

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
    mode, text = _mode_text(t, lp.loss_param, _Norm.VALID)
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
    if need_backward:  # the layer's own gradient, position by position like the lines above
        diff = bottom[0].diff.reshape(outer, channels, inner)
        each(lambda n, i: t.m["layer_grad"].format(g=_v(diff[n, :, i])))
    else:
        t.say("no_grad", 2, bottom=bottom_names[0])


def _layer_grad(t: Trace, blob, name, need_backward) -> None:
    if need_backward:
        t.say("layer_grad", 2, g=_v(blob.diff.ravel()[:MAX_POSITIONS * 4]))
    else:
        t.say("no_grad", 2, bottom=name)


def trace_euclidean(t: Trace, layer, bottom, top, bottom_names, need_backward) -> None:
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
    t.next_step("eu_step_grad")
    t.say("d", 2, v=_v((layer.loss(0) * d / n).ravel()[:MAX_POSITIONS * 4]))
    _layer_grad(t, bottom[0], bottom_names[0], need_backward)


def trace_sigmoid_ce(t: Trace, layer, bottom, top, bottom_names, need_backward) -> None:
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
    mode, text = _mode_text(t, lp.loss_param, _Norm.BATCH_SIZE, sigmoid=True)
    t.lines.append("    " + text)
    z = _normalizer_lines(t, mode, outer, inner, int(valid.sum()), int((~valid).sum()))
    total = float(losses[valid].sum())
    t.next_step("step_loss")
    t.say("loss", 2, what="Σ loss", s=_f(total), z=_f(z), loss=_f(total / z))
    _loss_footer(t, layer, top, total / z)
    t.next_step("sce_step_grad")
    t.say("d", 2, v=_v((layer.loss(0) * (sig - tgt) * valid / z)[:MAX_POSITIONS * 4]))
    _layer_grad(t, bottom[0], bottom_names[0], need_backward)


def trace_accuracy(t: Trace, layer, bottom, top, bottom_names, need_backward) -> None:
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
    t.say("acc_result", 2, c=correct, n=counted, a=_f(correct / counted if counted else 0.0))
    t.say("layer_says", 2, value=_f(top[0].data.ravel()[0]), top=_top_name(layer, 0))


def trace_generic(t: Trace, layer, bottom, top, bottom_names, need_backward) -> None:
    t.say("generic", loss=_f(top[0].data.ravel()[0]), bottom=bottom_names[0],
          g=_v(bottom[0].diff.ravel()[:MAX_POSITIONS]) if need_backward else "-")
    t.say("weight", 2, w=_f(layer.loss(0)), v=_f(layer.loss(0) * float(top[0].data.ravel()[0])))


TRACERS = {"SoftmaxWithLoss": trace_softmax_loss, "EuclideanLoss": trace_euclidean,
           "SigmoidCrossEntropyLoss": trace_sigmoid_ce, "Accuracy": trace_accuracy}
