"""Converters for the element-wise, shape, normalisation, indexing and fully connected layers.

Each follows the formula of the caffelite layer it mirrors; where ONNX has the same operator it
is used (Relu, Softmax, Concat, ...), otherwise the formula is composed from ONNX operators.
"""

from __future__ import annotations

import sys

import numpy as np

from caffelite.onnx.registry import converter
from caffelite.proto import caffe_pb2


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


# --- neurons ---------------------------------------------------------------------------------------
@converter("ReLU")
def relu(ctx):
    r""":math:`y = \max(x, 0) + \nu \min(x, 0)`: Relu, or LeakyRelu with :math:`\nu` = negative_slope."""
    slope = ctx.lp.relu_param.negative_slope
    if slope:
        return [ctx.op("LeakyRelu", ctx.bottoms[0], alpha=slope)]
    return [ctx.op("Relu", ctx.bottoms[0])]


def _unary(onnx_op):
    def convert(ctx):
        return [ctx.op(onnx_op, ctx.bottoms[0])]
    return convert


converter("Sigmoid")(_unary("Sigmoid"))
converter("TanH")(_unary("Tanh"))
converter("AbsVal")(_unary("Abs"))


@converter("ELU")
def elu(ctx):
    r""":math:`y = x` for :math:`x > 0`, else :math:`\alpha (e^x - 1)`."""
    return [ctx.op("Elu", ctx.bottoms[0], alpha=ctx.lp.elu_param.alpha)]


@converter("BNLL")
def bnll(ctx):
    r""":math:`y = \max(x, 0) + \log(1 + e^{-|x|})`, Caffe's overflow-free form of :math:`\log(1 + e^x)`."""
    x = ctx.bottoms[0]
    e = ctx.op("Exp", ctx.op("Neg", ctx.op("Abs", x)))
    return [ctx.op("Add", ctx.op("Relu", x), ctx.op("Log", ctx.add(e, 1.0, "one")), tag="y")]


@converter("PReLU")
def prelu(ctx):
    r""":math:`y = \max(x, 0) + a_c \min(x, 0)`, one slope per channel (axis 1) or one shared."""
    shape = ctx.bottom_shapes[0]
    slope = ctx.params[0].reshape(-1)
    if not ctx.lp.prelu_param.channel_shared and len(shape) > 2:
        slope = slope.reshape((-1,) + (1,) * (len(shape) - 2))
    return [ctx.op("PRelu", ctx.bottoms[0], ctx.const(slope, "slope"))]


@converter("Power")
def power(ctx):
    r""":math:`y = (s x + t)^p`; the constant :math:`t^p` (1 when :math:`p = 0`) when :math:`p s = 0`."""
    p = ctx.lp.power_param
    x = ctx.bottoms[0]
    if p.power * p.scale == 0:
        value = 1.0 if p.power == 0 else float(p.shift) ** p.power
        return [ctx.op("Expand", ctx.const(np.float32(value), "value"), ctx.op("Shape", x), tag="const")]
    y = ctx.add(ctx.mul(x, p.scale, "scale"), p.shift, "shift")
    if p.power != 1:
        y = ctx.op("Pow", y, ctx.const(np.float32(p.power), "power"))
    return [ctx.op("Identity", y)] if y == x else [y]


def _log_base(base: float) -> float:
    return 1.0 if base == -1 else float(np.log(base))


@converter("Exp")
def exp(ctx):
    r""":math:`y = b^{s x + t} = b^t e^{(s \ln b) x}` (``base`` -1 means e)."""
    p = ctx.lp.exp_param
    inner = _log_base(p.base) * p.scale
    outer = 1.0 if p.shift == 0 else (float(np.exp(p.shift)) if p.base == -1 else float(p.base) ** p.shift)
    return [ctx.mul(ctx.op("Exp", ctx.mul(ctx.bottoms[0], inner, "inner")), outer, "outer")]


@converter("Log")
def log(ctx):
    r""":math:`y = \log_b(s x + t)` = :math:`\ln(s x + t) / \ln b`."""
    p = ctx.lp.log_param
    y = ctx.op("Log", ctx.add(ctx.mul(ctx.bottoms[0], p.scale, "scale"), p.shift, "shift"))
    return [ctx.mul(y, 1.0 / _log_base(p.base), "base")]


@converter("Threshold")
def threshold(ctx):
    r""":math:`y = [x > \theta]` as 0/1 floats."""
    theta = ctx.const(np.float32(ctx.lp.threshold_param.threshold), "theta")
    return [ctx.op("Cast", ctx.op("Greater", ctx.bottoms[0], theta), to=1)]


@converter("Clip")
def clip(ctx):
    r""":math:`y = \max(a, \min(x, b))`."""
    p = ctx.lp.clip_param
    return [ctx.op("Clip", ctx.bottoms[0], ctx.const(np.float32(p.min), "min"), ctx.const(np.float32(p.max), "max"))]


@converter("Swish")
def swish(ctx):
    r""":math:`y = x \sigma(\beta x)`."""
    x = ctx.bottoms[0]
    return [ctx.op("Mul", x, ctx.op("Sigmoid", ctx.mul(x, ctx.lp.swish_param.beta, "beta")), tag="y")]


@converter("Dropout")
def dropout(ctx):
    """TEST: the identity (Caffe scales at TRAIN); forks' ``scale_train: false`` scale by 1 - ratio."""
    p = ctx.lp.dropout_param
    if getattr(p, "scale_train", True):
        return [ctx.bottoms[0]]
    return [ctx.mul(ctx.bottoms[0], 1.0 - p.dropout_ratio, "scale")]


# --- fully connected, softmax, eltwise -------------------------------------------------------------
@converter("InnerProduct")
def inner_product(ctx):
    r""":math:`y = x W^T + b` over the axes from ``axis`` on (``transpose``: :math:`W` is stored K × N).

    ``axis`` 1 exports as Flatten + Gemm; other axes as Reshape + MatMul + Add."""
    p = ctx.lp.inner_product_param
    shape = ctx.bottom_shapes[0]
    axis = _axis(p.axis, len(shape))
    k = int(np.prod(shape[axis:], dtype=np.int64))
    w = ctx.params[0]
    bias = ctx.params[1].reshape(-1) if len(ctx.params) > 1 else None
    x = ctx.bottoms[0]
    if axis == 1:
        if len(shape) != 2:
            x = ctx.op("Flatten", x, axis=1)
        inputs = [x, ctx.const(w, "W")] + ([ctx.const(bias, "b")] if bias is not None else [])
        return [ctx.op("Gemm", *inputs, transB=0 if p.transpose else 1)]
    x = ctx.reshape(x, shape, list(shape[:axis]) + [k])
    y = ctx.op("MatMul", x, ctx.const(w if p.transpose else w.T, "W"))
    if bias is not None:
        y = ctx.op("Add", y, ctx.const(bias, "b"), tag="bias")
    return [y]


@converter("Softmax")
def softmax(ctx):
    r""":math:`y_j = e^{x_j - \max x} / \sum_k e^{x_k - \max x}` along ``axis``."""
    return [ctx.op("Softmax", ctx.bottoms[0], axis=_axis(ctx.lp.softmax_param.axis, len(ctx.bottom_shapes[0])))]


@converter("Eltwise")
def eltwise(ctx):
    r"""SUM :math:`\sum_i c_i x_i`, PROD :math:`\prod_i x_i`, MAX :math:`\max_i x_i`."""
    p = ctx.lp.eltwise_param
    E = caffe_pb2.EltwiseParameter
    xs = list(ctx.bottoms)
    if p.operation == E.PROD:
        op = "Mul"
    elif p.operation == E.MAX:
        return [ctx.op("Max", *xs)]
    else:
        op = "Add"
        coeff = list(p.coeff) or [1.0] * len(xs)
        xs = [ctx.mul(x, c, "coeff%d" % i) for i, (x, c) in enumerate(zip(xs, coeff))]
    y = xs[0]
    for i, x in enumerate(xs[1:]):
        y = ctx.op(op, y, x, tag="%s%d" % (op, i + 1))
    return [y]


# --- shapes ----------------------------------------------------------------------------------------
@converter("Concat")
def concat(ctx):
    p = ctx.lp.concat_param
    axis = p.concat_dim if p.HasField("concat_dim") else p.axis
    if len(ctx.bottoms) == 1:
        return [ctx.bottoms[0]]
    return [ctx.op("Concat", *ctx.bottoms, axis=_axis(axis, len(ctx.bottom_shapes[0])))]


@converter("Slice")
def slice_(ctx):
    p = ctx.lp.slice_param
    axis = _axis(p.slice_dim if p.HasField("slice_dim") else p.axis, len(ctx.bottom_shapes[0]))
    if len(ctx.top_shapes) == 1:
        return [ctx.bottoms[0]]
    sizes = [s[axis] for s in ctx.top_shapes]
    return ctx.op("Split", ctx.bottoms[0], ctx.ints(sizes, "split"), axis=axis, n_out=len(sizes))


def _view(ctx):
    return [ctx.reshape(ctx.bottoms[0], ctx.bottom_shapes[0], ctx.top_shapes[0])]


converter("Flatten")(_view)
converter("Reshape")(_view)


@converter("Tile")
def tile(ctx):
    shape = ctx.bottom_shapes[0]
    p = ctx.lp.tile_param
    repeats = [1] * len(shape)
    repeats[_axis(p.axis, len(shape))] = p.tiles
    return [ctx.op("Tile", ctx.bottoms[0], ctx.ints(repeats, "repeats"))]


@converter("Parameter")
def parameter(ctx):
    """The stored blob, as a constant."""
    return [ctx.op("Identity", ctx.const(ctx.params[0], "value"))]


# --- normalisation ---------------------------------------------------------------------------------
@converter("BatchNorm")
def batch_norm(ctx):
    r""":math:`y = (x - \mu) / \sqrt{\sigma^2 + \epsilon}` per channel (axis 1).

    Global statistics (the default at TEST): :math:`\mu, \sigma^2` = blobs[0], blobs[1] times
    :math:`1/s` (s = blobs[2]; 0 gives 0), exported as ONNX BatchNormalization.  Otherwise the batch's
    own statistics, composed from ReduceMean."""
    p = ctx.lp.batch_norm_param
    shape = ctx.bottom_shapes[0]
    x = ctx.bottoms[0]
    use_global = p.use_global_stats if p.HasField("use_global_stats") else True
    if use_global:
        s = float(ctx.params[2].reshape(-1)[0])
        factor = 0.0 if s == 0 else 1.0 / s
        mean = (ctx.params[0] * factor).astype(np.float32).reshape(-1)
        var = (ctx.params[1] * factor).astype(np.float32).reshape(-1)
        if len(shape) >= 2:
            c = mean.size
            return [ctx.op("BatchNormalization", x, ctx.const(np.ones(c), "scale"), ctx.const(np.zeros(c), "bias"),
                           ctx.const(mean, "mean"), ctx.const(var, "var"), epsilon=p.eps)]
        centred = ctx.op("Sub", x, ctx.const(mean, "mean"))
        std = np.sqrt(var + np.float32(p.eps)).astype(np.float32)
        return [ctx.op("Div", centred, ctx.const(std, "std"))]
    axes = [0] + list(range(2, len(shape)))
    centred = ctx.op("Sub", x, ctx.reduce("ReduceMean", x, axes, 1, tag="mean"), tag="centred")
    var = ctx.reduce("ReduceMean", ctx.op("Mul", centred, centred, tag="sq"), axes, 1, tag="var")
    return [ctx.op("Div", centred, ctx.op("Sqrt", ctx.add(var, p.eps, "eps")), tag="y")]


@converter("MVN")
def mvn(ctx):
    r""":math:`y = x - \mu`, or :math:`(x - \mu)/(\sigma + \epsilon)` with ``normalize_variance``; over each
    (num, channel) plane, or each item ``across_channels``."""
    p = ctx.lp.mvn_param
    rank = len(ctx.bottom_shapes[0])
    x = ctx.bottoms[0]
    axes = list(range(1 if p.across_channels else 2, rank))
    if not axes:  # each group holds one value: x - x
        return [ctx.op("Sub", x, x, tag="y")]
    y = ctx.op("Sub", x, ctx.reduce("ReduceMean", x, axes, 1, tag="mean"), tag="centred")
    if p.normalize_variance:
        var = ctx.reduce("ReduceMean", ctx.op("Mul", y, y, tag="sq"), axes, 1, tag="var")
        y = ctx.op("Div", y, ctx.add(ctx.op("Sqrt", var), p.eps, "eps"), tag="y")
    return [y]


def _operand_shape(ctx, operand_shape, axis: int) -> list[int]:
    """``operand_shape`` placed at ``axis`` of bottom[0], trailing ones so that ONNX broadcasting applies."""
    rank = len(ctx.bottom_shapes[0])
    if not operand_shape:
        return []
    return list(operand_shape) + [1] * (rank - axis - len(operand_shape))


def _scale_or_bias(ctx, p, onnx_op, tag):
    rank = len(ctx.bottom_shapes[0])
    if len(ctx.bottoms) > 1:
        shape = list(ctx.bottom_shapes[1])
        axis = 0 if not shape else _axis(p.axis, rank)
        target = _operand_shape(ctx, shape, axis)
        operand = ctx.bottoms[1] if target == shape else ctx.op("Reshape", ctx.bottoms[1], ctx.ints(target), tag=tag)
        return ctx.op(onnx_op, ctx.bottoms[0], operand, tag=onnx_op), 0
    value = ctx.params[0]
    axis = 0 if value.ndim == 0 else _axis(p.axis, rank)
    value = value.reshape(_operand_shape(ctx, value.shape, axis))
    return ctx.op(onnx_op, ctx.bottoms[0], ctx.const(value, tag), tag=onnx_op), 1


@converter("Scale")
def scale(ctx):
    r""":math:`y = x \odot \gamma\ [+ \beta]`, :math:`\gamma` (a blob, or bottom[1]) over axes ``axis`` ..
    ``axis + num_axes``, broadcast over the others."""
    p = ctx.lp.scale_param
    y, used = _scale_or_bias(ctx, p, "Mul", "scale")
    if p.bias_term:
        bias = ctx.params[used]
        axis = 0 if bias.ndim == 0 else _axis(p.axis, len(ctx.bottom_shapes[0]))
        y = ctx.op("Add", y, ctx.const(bias.reshape(_operand_shape(ctx, bias.shape, axis)), "bias"), tag="bias")
    return [y]


@converter("Bias")
def bias(ctx):
    r""":math:`y = x + \beta`, :math:`\beta` (a blob, or bottom[1]) broadcast as in Scale."""
    return [_scale_or_bias(ctx, ctx.lp.bias_param, "Add", "bias")[0]]


# --- reductions and indexing -----------------------------------------------------------------------
@converter("Reduction")
def reduction(ctx):
    r"""SUM :math:`c \sum x`, ASUM :math:`c \sum |x|`, SUMSQ :math:`c \sum x^2`, MEAN :math:`\frac{c}{D} \sum x`
    over the axes from ``axis`` on."""
    p = ctx.lp.reduction_param
    R = caffe_pb2.ReductionParameter
    shape = ctx.bottom_shapes[0]
    axis = _axis(p.axis, len(shape))
    dim = int(np.prod(shape[axis:], dtype=np.int64))
    x = ctx.bottoms[0]
    op = {R.SUM: "ReduceSum", R.ASUM: "ReduceL1", R.SUMSQ: "ReduceSumSquare", R.MEAN: "ReduceSum"}[p.operation]
    if axis == len(shape):
        y = ctx.op("Abs", x) if p.operation == R.ASUM else ctx.op("Mul", x, x) if p.operation == R.SUMSQ else x
    else:
        y = ctx.reduce(op, x, list(range(axis, len(shape))), 0)
    coeff = p.coeff / dim if p.operation == R.MEAN and dim else p.coeff
    y = ctx.mul(y, coeff, "coeff")
    return [ctx.op("Identity", y)] if y == x else [y]


@converter("ArgMax")
def argmax(ctx):
    r"""The ``top_k`` largest values' indices (or values, or both) along ``axis`` (or per item).

    Caffe breaks ties towards the larger index; ONNX TopK towards the smaller, so TopK runs on the
    reversed axis and indices map back as :math:`D - 1 - j`."""
    p = ctx.lp.argmax_param
    shape = ctx.bottom_shapes[0]
    x = ctx.bottoms[0]
    if p.HasField("axis"):
        axis = _axis(p.axis, len(shape))
    else:
        axis = 1
        x = ctx.reshape(x, shape, [shape[0], int(np.prod(shape[1:], dtype=np.int64))], tag="flat")
    dim = shape[axis] if p.HasField("axis") else int(np.prod(shape[1:], dtype=np.int64))
    rev = ctx.op("Slice", x, ctx.ints([-1], "start"), ctx.ints([-sys.maxsize], "end"), ctx.ints([axis], "axis"),
                 ctx.ints([-1], "step"), tag="reverse")
    values, idx = ctx.op("TopK", rev, ctx.ints([p.top_k], "k"), axis=axis, largest=1, sorted=1, n_out=2)
    idx = ctx.op("Cast", ctx.op("Sub", ctx.ints([dim - 1], "last"), idx, tag="index"), to=1, tag="indexf")
    if p.HasField("axis"):
        return [values if p.out_max_val else idx]
    y = ctx.op("Concat", idx, values, axis=1) if p.out_max_val else idx
    return [ctx.reshape(y, None, ctx.top_shapes[0], tag="top")]


@converter("Embed")
def embed(ctx):
    r""":math:`y = W_{x} + b`: row :math:`x` of the K × N table, for each (integer-valued) input."""
    idx = ctx.op("Cast", ctx.bottoms[0], to=7, tag="index")
    y = ctx.op("Gather", ctx.const(ctx.params[0], "W"), idx, axis=0)
    if len(ctx.params) > 1:
        y = ctx.op("Add", y, ctx.const(ctx.params[1].reshape(-1), "b"), tag="bias")
    return [y]


@converter("BatchReindex")
def batch_reindex(ctx):
    r""":math:`y_i = x_{\text{idx}_i}` along axis 0."""
    return [ctx.op("Gather", ctx.bottoms[0], ctx.op("Cast", ctx.bottoms[1], to=7, tag="index"), axis=0)]
