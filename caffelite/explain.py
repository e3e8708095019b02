r"""``caffelite explain``: run a net and print, step by step, what Caffe computes in its loss layers.

The net runs on the values given (``values``: blob name -> array) or on random inputs; blobs a
layer needs but nothing produces (``fc1`` and ``label`` of a lone SoftmaxWithLoss block) become
inputs.  For each loss and Accuracy layer a tracer recomputes the layer in plain NumPy (float64)
and prints each step next to what the layer itself produced.  For SoftmaxWithLoss, at each
position:

.. math:: x - \max_k x_k, \quad e^{x - \max}, \quad p = e / \textstyle\sum e, \quad
          -\log p_{label}, \quad E = \sum (-\log p_{label}) / \text{normalizer}, \quad
          \frac{\partial E}{\partial x} = w\,(p - \text{onehot}) / \text{normalizer}

with the seed article's example: scores [1.2, 0.8] → [0, −0.4] → p = [0.5987, 0.4013];
label 1 → loss 0.9130.  ``lang="zh"`` prints the trace in Chinese.
"""

from __future__ import annotations

import json

import numpy as np

from caffelite.errors import CaffeliteError, NetError
from caffelite.layer import TRAIN
from caffelite.layer_factory import layer_class
from caffelite.layers.loss import get_normalizer, resolved_normalization
from caffelite.net import Net, filter_net
from caffelite.proto import caffe_pb2
from caffelite.upgrade import read_net_param

__all__ = ["explain_file", "explain_param", "parse_values", "MESSAGES"]

_Norm = caffe_pb2.LossParameter
NORM_NAMES = {v: k for k, v in _Norm.NormalizationMode.items()}
LABELED = {"SoftmaxWithLoss", "Accuracy", "InfogainLoss", "MultinomialLogisticLoss", "HingeLoss"}
MAX_POSITIONS = 8  # positions printed in full; the rest are summarised

MESSAGES = {
    "en": {
        "layer": "Layer '{name}' ({type})",
        "inputs": "inputs: {items}",
        "shape3": "softmax axis {axis}: N = {outer} (before the axis) × C = {channels} classes × {inner} position(s) "
                  "after it",
        "position": "position {pos}",
        "step_max": "Step {k}. Subtract each position's maximum score (numerical stability: the largest "
                    "exponent becomes 0, so exp never overflows)",
        "x": "x = {v}, max = {m}, x − max = {d}",
        "step_exp": "Step {k}. Exponentials",
        "exp": "exp(x − max) = {v}, sum = {s}",
        "step_norm": "Step {k}. Normalise: p = exp / sum (the softmax probabilities)",
        "p": "p = {v}",
        "step_pick": "Step {k}. Pick the probability of the labelled class and take −log",
        "pick": "label {label}: p[{label}] = {p}, −log p = {nl}",
        "ignored": "label {label} = ignore_label: skipped (adds nothing to the loss, gradient 0)",
        "more": "… {n} more position(s) not shown",
        "step_normalizer": "Step {k}. Normalization",
        "mode_explicit": "normalization: {mode} (set explicitly{extra})",
        "mode_legacy": "normalize: {value} → {mode}{extra}",
        "mode_default": "{mode} (the default{extra})",
        "not_none": ", not NONE",
        "normalize_ignored": "; normalize is ignored when normalization is set",
        "scb_default": " of SigmoidCrossEntropyLoss",
        "normalizer": "normalizer = {formula} = {value}",
        "f_FULL": "N × positions = {outer} × {inner}",
        "f_VALID": "number of non-ignored labels = {valid}",
        "f_BATCH_SIZE": "N = {outer}",
        "f_NONE": "1",
        "ignored_count": "ignored positions: {n}",
        "step_loss": "Step {k}. Loss",
        "loss": "loss = {what} / normalizer = {s} / {z} = {loss}",
        "sum_nl": "Σ(−log p)",
        "layer_says": "the layer computed {value} (top '{top}')",
        "weight": "loss_weight = {w}: adds {v} to the net's loss",
        "step_grad": "Step {k}. Gradient sent to '{bottom}': loss_weight · (p − onehot(label)) / normalizer",
        "grad": "({p} − {onehot}) × {w} / {z} = {g}",
        "grad_ignored": "ignored: gradient {g}",
        "layer_grad": "the layer's backward gave {g}",
        "no_grad": "(no gradient reaches '{bottom}' in this net)",
        "eu_step_diff": "Step {k}. Difference d = a − b ('{a}' − '{b}')",
        "eu_step_loss": "Step {k}. Loss = Σ d² / (2N), N = {n} (EuclideanLoss always divides by the batch size)",
        "eu_loss": "Σ d² = {s}; loss = {s} / (2 × {n}) = {loss}",
        "eu_step_grad": "Step {k}. Gradients: ∂E/∂a = loss_weight · d / N, ∂E/∂b = −loss_weight · d / N",
        "d": "d = {v}",
        "sce_step": "Step {k}. Per element: loss = max(x, 0) − x·t + log(1 + exp(−|x|)) "
                    "(= −[t log σ(x) + (1 − t) log(1 − σ(x))], computed without overflow)",
        "sce_elem": "x = {x}, t = {t}, σ(x) = {s}, loss = {l}",
        "sce_step_grad": "Step {k}. Gradient: loss_weight · (σ(x) − t) / normalizer",
        "acc_step": "Step {k}. For each position: the label's score, and how many classes score at least as high "
                    "(the label itself included); correct when that count ≤ top_k = {k_}",
        "acc_pos": "scores = {v}, label {label} (score {s}): {c} class(es) ≥ it → {verdict}",
        "correct": "correct",
        "wrong": "wrong",
        "acc_result": "accuracy = correct / counted = {c} / {n} = {a}",
        "generic": "Step 1. Forward: loss = {loss}; Step 2. gradient of '{bottom}' (first values): {g}",
        "no_layers": "no loss or Accuracy layer to explain; pick one with --layer NAME",
        "random": "inputs not given were drawn at random (seed {seed}): {names}",
    },
    "zh": {
        "layer": "层 '{name}'({type})",
        "inputs": "输入:{items}",
        "shape3": "softmax 轴 {axis}:N = {outer}(轴之前)× C = {channels} 个类别 × 每个样本 {inner} 个位置",
        "position": "位置 {pos}",
        "step_max": "第 {k} 步:每个位置的得分减去其最大值(数值稳定:最大的指数变为 0,exp 不会上溢)",
        "x": "x = {v},最大值 = {m},x − 最大值 = {d}",
        "step_exp": "第 {k} 步:求指数",
        "exp": "exp(x − 最大值) = {v},求和 = {s}",
        "step_norm": "第 {k} 步:归一化 p = exp / 和(即 softmax 概率)",
        "p": "p = {v}",
        "step_pick": "第 {k} 步:取标签所对应类别的概率,再取 −log",
        "pick": "标签 {label}:p[{label}] = {p},−log p = {nl}",
        "ignored": "标签 {label} 等于 ignore_label:跳过(不计入损失,梯度为 0)",
        "more": "…… 另有 {n} 个位置未显示",
        "step_normalizer": "第 {k} 步:归一化方式",
        "mode_explicit": "normalization: {mode}(显式设置{extra})",
        "mode_legacy": "normalize: {value} → {mode}{extra}",
        "mode_default": "{mode}(默认值{extra})",
        "not_none": ",而不是 NONE",
        "normalize_ignored": ";设置了 normalization 时 normalize 不起作用",
        "scb_default": ",SigmoidCrossEntropyLoss 的默认值",
        "normalizer": "除数 = {formula} = {value}",
        "f_FULL": "N × 位置数 = {outer} × {inner}",
        "f_VALID": "未被忽略的标签个数 = {valid}",
        "f_BATCH_SIZE": "N = {outer}",
        "f_NONE": "1",
        "ignored_count": "被忽略的位置:{n} 个",
        "step_loss": "第 {k} 步:损失",
        "loss": "损失 = {what} / 除数 = {s} / {z} = {loss}",
        "sum_nl": "Σ(−log p)",
        "layer_says": "该层实际算出 {value}(top '{top}')",
        "weight": "loss_weight = {w}:为网络总损失贡献 {v}",
        "step_grad": "第 {k} 步:传给 '{bottom}' 的梯度:loss_weight · (p − onehot(标签)) / 除数",
        "grad": "({p} − {onehot}) × {w} / {z} = {g}",
        "grad_ignored": "被忽略:梯度 {g}",
        "layer_grad": "该层反向传播实际给出 {g}",
        "no_grad": "(在此网络中没有梯度传到 '{bottom}')",
        "eu_step_diff": "第 {k} 步:差 d = a − b('{a}' − '{b}')",
        "eu_step_loss": "第 {k} 步:损失 = Σ d² / (2N),N = {n}(EuclideanLoss 总是除以批大小)",
        "eu_loss": "Σ d² = {s};损失 = {s} / (2 × {n}) = {loss}",
        "eu_step_grad": "第 {k} 步:梯度 ∂E/∂a = loss_weight · d / N,∂E/∂b = −loss_weight · d / N",
        "d": "d = {v}",
        "sce_step": "第 {k} 步:逐元素损失 = max(x, 0) − x·t + log(1 + exp(−|x|))"
                    "(即 −[t log σ(x) + (1 − t) log(1 − σ(x))],避免溢出的写法)",
        "sce_elem": "x = {x},t = {t},σ(x) = {s},损失 = {l}",
        "sce_step_grad": "第 {k} 步:梯度 loss_weight · (σ(x) − t) / 除数",
        "acc_step": "第 {k} 步:每个位置取标签类别的得分,数一数有几个类别的得分不低于它(含标签本身);"
                    "个数 ≤ top_k = {k_} 即为正确",
        "acc_pos": "得分 = {v},标签 {label}(得分 {s}):{c} 个类别不低于它 → {verdict}",
        "correct": "正确",
        "wrong": "错误",
        "acc_result": "准确率 = 正确数 / 计数 = {c} / {n} = {a}",
        "generic": "第 1 步:前向:损失 = {loss};第 2 步:'{bottom}' 的梯度(前几个值):{g}",
        "no_layers": "没有可解释的损失层或 Accuracy 层;请用 --layer NAME 指定",
        "random": "未给出的输入取随机值(种子 {seed}):{names}",
    },
}


def _f(x) -> str:
    s = "%.4f" % float(x)
    return "0.0000" if s == "-0.0000" else s


def _v(values) -> str:
    return "[" + ", ".join(_f(x) for x in np.ravel(values)) + "]"


class _Trace:
    def __init__(self, lang: str):
        self.m = MESSAGES[lang]
        self.lines: list[str] = []
        self.step = 0

    def say(self, key: str, indent: int = 1, **kw) -> None:
        self.lines.append("  " * indent + self.m[key].format(**kw))

    def next_step(self, key: str, **kw) -> None:
        self.step += 1
        self.say(key, indent=1, k=self.step, **kw)


def parse_values(items) -> dict[str, np.ndarray]:
    """``BLOB=JSON`` strings (``fc1=[[1.2,0.8]]``) as arrays."""
    out = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise ValueError("expected BLOB=VALUES (JSON nested lists), got %r" % item)
        try:
            out[name] = np.asarray(json.loads(text), dtype=np.float64)
        except (json.JSONDecodeError, ValueError) as e:
            raise ValueError("values of %s are not JSON numbers: %s" % (name, e)) from None
    return out


# --- building the net ---------------------------------------------------------------------------
def _prepare(param, values: dict, shapes: dict, allow_python_layers: bool) -> caffe_pb2.NetParameter:
    """Filter for TRAIN, turn given or missing blobs into Input tops, force backward.

    ``values`` (name -> array) and ``shapes`` (name -> shape, values drawn at random) may feed any
    blob no layer computes, and replace data layers whose tops they all give.
    """
    known = {n: tuple(int(d) for d in s) for n, s in shapes.items()}
    known.update((n, v.shape) for n, v in values.items())
    copy = caffe_pb2.NetParameter()
    copy.CopyFrom(param)
    copy.state.phase = TRAIN
    net = filter_net(copy)
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)
    del out.layer[:]
    del out.input[:], out.input_shape[:], out.input_dim[:]
    produced: set[str] = set()
    inputs: list[tuple[str, tuple]] = []
    for name, shape in _net_inputs(net):
        inputs.append((name, known.get(name, shape)))
        produced.add(name)
    layers = []
    for lp in net.layer:
        if not len(lp.bottom) and lp.top and all(t in known for t in lp.top) and lp.type != "Input":
            for t in lp.top:  # a data layer whose tops are given: feed them instead of reading files
                inputs.append((t, known[t]))
                produced.add(t)
            continue
        if lp.type == "Python" and not allow_python_layers:
            raise NetError("layer '%s' is a Python layer (%s.%s); explain does not import it unless "
                           "--allow-python-layers (or give its tops with --set)"
                           % (lp.name, lp.python_param.module, lp.python_param.layer), layer=lp.name)
        for b in lp.bottom:
            if b not in produced:
                if b not in known:
                    raise NetError("blob '%s' (bottom of layer '%s') has no producer and no value: give it "
                                   "with --set %s=[...] or --input %s=SHAPE" % (b, lp.name, b, b),
                                   layer=lp.name, field="bottom")
                inputs.append((b, known[b]))
                produced.add(b)
        copy = caffe_pb2.LayerParameter()
        copy.CopyFrom(lp)
        if lp.type == "Input":
            shapes = list(lp.input_param.shape)
            del copy.input_param.shape[:]
            for i, t in enumerate(lp.top):
                dims = (known[t] if t in known else
                        tuple(shapes[0 if len(shapes) == 1 else i].dim) if shapes else None)
                if dims is None:
                    raise NetError("input '%s' has no shape: give it with --set %s=[...]" % (t, t), layer=lp.name)
                copy.input_param.shape.add().dim.extend(dims)
        produced.update(lp.top)
        layers.append(copy)
    if inputs:
        feed = out.layer.add()
        feed.name, feed.type = "explain_inputs", "Input"
        for name, shape in inputs:
            feed.top.append(name)
            feed.input_param.shape.add().dim.extend(int(d) for d in shape)
    out.layer.extend(layers)
    out.force_backward = True
    return out


def _net_inputs(net):
    for i, name in enumerate(net.input):
        if i < len(net.input_shape):
            yield name, tuple(net.input_shape[i].dim)
        else:
            yield name, tuple(net.input_dim[4 * i:4 * i + 4])


def _fill_inputs(net: Net, param, values: dict, seed: int) -> list[str]:
    """Write given values; draw the others (labels as valid class indices). Returns random names."""
    rng = np.random.default_rng(seed)
    label_classes = {}
    for lp in param.layer:
        if lp.type in LABELED and len(lp.bottom) > 1 and lp.bottom[0] in net.blobs:
            shape = net.blobs[lp.bottom[0]].shape
            axis = (lp.accuracy_param.axis if lp.type == "Accuracy" else lp.softmax_param.axis) % max(1, len(shape))
            label_classes[lp.bottom[1]] = shape[axis] if shape else 2
        if lp.type == "SigmoidCrossEntropyLoss" and len(lp.bottom) > 1:
            label_classes[lp.bottom[1]] = 2
    drawn = []
    for name in net.inputs:
        blob = net.blobs[name]
        if name in values:
            blob.data[...] = values[name].reshape(blob.shape)
        elif name in label_classes:
            blob.data[...] = rng.integers(0, label_classes[name], blob.shape)
            drawn.append(name)
        else:
            blob.data[...] = rng.standard_normal(blob.shape)
            drawn.append(name)
    return drawn


# --- tracers ---------------------------------------------------------------------------------------
def _positions(outer: int, inner: int):
    for n in range(outer):
        for i in range(inner):
            yield n, i


def _pos_name(n: int, i: int, inner: int) -> str:
    return "n=%d" % n if inner == 1 else "n=%d, i=%d" % (n, i)


def _mode_text(t: _Trace, loss_param, default: int, sigmoid: bool = False) -> tuple[int, str]:
    mode = resolved_normalization(loss_param, default)
    if loss_param.HasField("normalization"):
        extra = t.m["normalize_ignored"] if loss_param.HasField("normalize") else ""
        return mode, t.m["mode_explicit"].format(mode=NORM_NAMES[mode], extra=extra)
    if loss_param.HasField("normalize"):
        extra = "" if loss_param.normalize else t.m["not_none"]
        return mode, t.m["mode_legacy"].format(value=str(loss_param.normalize).lower(), mode=NORM_NAMES[mode],
                                               extra=extra)
    return mode, t.m["mode_default"].format(mode=NORM_NAMES[mode], extra=t.m["scb_default"] if sigmoid else "")


def _normalizer_lines(t: _Trace, mode, outer, inner, valid, n_ignored) -> float:
    z = get_normalizer(mode, outer, inner, valid)
    formula = t.m["f_" + NORM_NAMES[mode]].format(outer=outer, inner=inner, valid=valid)
    t.say("normalizer", 2, formula=formula, value=_f(z))
    if n_ignored:
        t.say("ignored_count", 2, n=n_ignored)
    return z


def _top_name(layer, top_id: int) -> str:
    """The top's name; Caffe's AppendTop names an anonymous (auto_top_blobs) top "(automatic)"."""
    tops = layer.layer_param.top
    return tops[top_id] if top_id < len(tops) else "(automatic)"


def _loss_footer(t: _Trace, layer, top, loss_value) -> None:
    t.say("layer_says", 2, value=_f(top[0].data.ravel()[0]), top=_top_name(layer, 0))
    w = layer.loss(0)
    t.say("weight", 2, w=_f(w), v=_f(w * float(top[0].data.ravel()[0])))


def trace_softmax_loss(t: _Trace, layer, bottom, top, bottom_names, need_backward) -> None:
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


def _layer_grad(t: _Trace, blob, name, need_backward) -> None:
    if need_backward:
        t.say("layer_grad", 2, g=_v(blob.diff.ravel()[:MAX_POSITIONS * 4]))
    else:
        t.say("no_grad", 2, bottom=name)


def trace_euclidean(t: _Trace, layer, bottom, top, bottom_names, need_backward) -> None:
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


def trace_sigmoid_ce(t: _Trace, layer, bottom, top, bottom_names, need_backward) -> None:
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


def trace_accuracy(t: _Trace, layer, bottom, top, bottom_names, need_backward) -> None:
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


def trace_generic(t: _Trace, layer, bottom, top, bottom_names, need_backward) -> None:
    t.say("generic", loss=_f(top[0].data.ravel()[0]), bottom=bottom_names[0],
          g=_v(bottom[0].diff.ravel()[:MAX_POSITIONS]) if need_backward else "-")
    t.say("weight", 2, w=_f(layer.loss(0)), v=_f(layer.loss(0) * float(top[0].data.ravel()[0])))


TRACERS = {"SoftmaxWithLoss": trace_softmax_loss, "EuclideanLoss": trace_euclidean,
           "SigmoidCrossEntropyLoss": trace_sigmoid_ce, "Accuracy": trace_accuracy}


def _is_explained(lp) -> bool:
    if lp.type in TRACERS:
        return True
    try:
        cls = layer_class(lp.type)
    except CaffeliteError:
        return False
    from caffelite.layers.loss import LossLayer
    return issubclass(cls, LossLayer)


def explain_param(param, *, layers: list[str] | None = None, values: dict | None = None,
                  shapes: dict | None = None, lang: str = "en", seed: int = 0, allow_python_layers: bool = False,
                  source: str | None = None) -> str:
    """The trace, as text, of the named layers (default: every loss and Accuracy layer).

    ``values``: blob -> array; ``shapes``: blob -> shape of inputs drawn at random (data layers
    whose files are not here can be replaced this way).
    """
    values = dict(values or {})
    shapes = dict(shapes or {})
    prepared = _prepare(param, values, shapes, allow_python_layers)
    net = Net(prepared, phase=TRAIN)
    unused = sorted((set(values) | set(shapes)) - set(net.inputs))
    if unused:
        raise NetError("--set %s: not an input of the net (inputs: %s); only blobs that no layer computes can be "
                       "set" % (", ".join(unused), ", ".join(net.inputs)), file=source)
    drawn = _fill_inputs(net, prepared, values, seed)
    net.forward()
    net.backward()
    t = _Trace(lang)
    if drawn:
        t.say("random", 0, seed=seed, names=", ".join(drawn))
    names = net._layer_names
    targets = layers or [n for n, layer in zip(names, net.layers) if _is_explained(layer.layer_param)]
    if not targets:
        t.say("no_layers", 0)
    for name in targets:
        i = net._layer_index(name, 0)
        layer = net.layers[i]
        bottom, top = net._layer_blobs(i)
        bottom_names = [net._blob_names[b] for b in net._bottom_ids[i]]
        t.lines.append("")
        t.say("layer", 0, name=name, type=layer.layer_type())
        t.say("inputs", 1, items=", ".join("%s %s" % (n, "x".join(map(str, b.shape)) or "scalar")
                                            for n, b in zip(bottom_names, bottom)))
        need = bool(net._bottom_need_backward[i][0]) if bottom else False
        tracer = TRACERS.get(layer.layer_type(), trace_generic if top and len(bottom) else None)
        if tracer is not None:
            tracer(t, layer, bottom, top, bottom_names, need)
    return "\n".join(t.lines).strip("\n") + "\n"


def explain_file(path: str, **kwargs) -> str:
    """Read a net prototxt (upgraded as Caffe does) and explain it: see :func:`explain_param`."""
    return explain_param(read_net_param(path), source=path, **kwargs)
