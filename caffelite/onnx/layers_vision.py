r"""Converters for convolution, pooling, LRN, Im2col and Crop, with Caffe's geometry made explicit.

Pooling (Caffe rounds the output size up, then drops a last window that would start in the trailing
padding) is exported with explicit, possibly asymmetric pads chosen so that ONNX's floor rule
gives caffelite's output size exactly: for an output of size :math:`o`, the trailing pad is
:math:`(o-1)s + k - i - p` (a negative value crops the input first).  AVE divides by the window size
clipped at the padded border, :math:`(\min(a + k, i + p) - a)` per axis with :math:`a = o_x s - p`;
the export averages with ``count_include_pad`` and multiplies by the constant map
:math:`k_h k_w / \text{size}` wherever the two differ.
"""

from __future__ import annotations

import math

import numpy as np

from caffelite.onnx.registry import converter
from caffelite.proto import caffe_pb2

_P = caffe_pb2.PoolingParameter
FLT_MIN = float(np.finfo(np.float32).tiny)  # Caffe's STOCHASTIC test-time guard against 0/0


def _per_axis(values, h, w, has_hw: bool, default: int, n: int) -> list[int]:
    if has_hw:
        return [int(h), int(w)]
    values = [int(v) for v in values] or [default]
    return values * n if len(values) == 1 else values


def conv_geometry(p, n: int):
    """(kernel, stride, pad, dilation) per spatial axis from a ConvolutionParameter, as Caffe reads it."""
    kernel = _per_axis(p.kernel_size, p.kernel_h, p.kernel_w, p.HasField("kernel_h") or p.HasField("kernel_w"), 0, n)
    stride = _per_axis(p.stride, p.stride_h, p.stride_w, p.HasField("stride_h") or p.HasField("stride_w"), 1, n)
    pad = _per_axis(p.pad, p.pad_h, p.pad_w, p.HasField("pad_h") or p.HasField("pad_w"), 0, n)
    dilation = _per_axis(p.dilation, 0, 0, False, 1, n)
    return kernel, stride, pad, dilation


def _check_channel_axis(ctx, p):
    axis = p.axis if p.axis >= 0 else p.axis + len(ctx.bottom_shapes[0])
    if axis != 1:
        ctx.fail("convolution over channel axis %d: ONNX convolves with channels on axis 1" % p.axis,
                 field="convolution_param.axis")


@converter("Convolution")
def convolution(ctx):
    r""":math:`y = W \star x + b`, groups, dilation, pad/stride per axis: ONNX Conv with explicit pads
    (Caffe's output size :math:`\lfloor (i + 2p - d(k-1) - 1)/s \rfloor + 1` is ONNX's)."""
    p = ctx.lp.convolution_param
    _check_channel_axis(ctx, p)
    n = len(ctx.bottom_shapes[0]) - 2
    kernel, stride, pad, dilation = conv_geometry(p, n)
    inputs = [ctx.const(ctx.params[0], "W")] + ([ctx.const(ctx.params[1], "b")] if len(ctx.params) > 1 else [])
    return [ctx.op("Conv", b, *inputs, kernel_shape=kernel, strides=stride, pads=pad + pad, dilations=dilation,
                   group=p.group or 1, tag="Conv") for b in ctx.bottoms]


@converter("Deconvolution")
def deconvolution(ctx):
    r"""Transposed convolution: output :math:`s(i-1) + d(k-1) + 1 - 2p`; Caffe's weights
    (C_in, C_out / group, k...) are ONNX ConvTranspose's layout."""
    p = ctx.lp.convolution_param
    _check_channel_axis(ctx, p)
    n = len(ctx.bottom_shapes[0]) - 2
    kernel, stride, pad, dilation = conv_geometry(p, n)
    inputs = [ctx.const(ctx.params[0], "W")] + ([ctx.const(ctx.params[1], "b")] if len(ctx.params) > 1 else [])
    return [ctx.op("ConvTranspose", b, *inputs, kernel_shape=kernel, strides=stride, pads=pad + pad,
                   dilations=dilation, group=p.group or 1, tag="ConvTranspose") for b in ctx.bottoms]


@converter("Im2col")
def im2col(ctx):
    r"""Im2col as a grouped convolution with one-hot kernels: output channel :math:`c K + j` holds tap
    :math:`j` (row-major over the kernel) of channel :math:`c`, Caffe's column order."""
    p = ctx.lp.convolution_param
    _check_channel_axis(ctx, p)
    shape = ctx.bottom_shapes[0]
    n = len(shape) - 2
    kernel, stride, pad, dilation = conv_geometry(p, n)
    channels, taps = shape[1], math.prod(kernel)
    w = np.zeros((channels * taps, 1) + tuple(kernel), np.float32)
    w.reshape(channels, taps, taps)[:, np.arange(taps), np.arange(taps)] = 1
    return [ctx.op("Conv", ctx.bottoms[0], ctx.const(w, "onehot"), kernel_shape=kernel, strides=stride,
                   pads=pad + pad, dilations=dilation, group=channels, tag="Im2col")]


def pooling_geometry(p, hw):
    """(kernel, stride, pad) per axis from a PoolingParameter (global pooling: the whole input)."""
    if p.global_pooling:
        return list(hw), [1, 1], [0, 0]
    kernel = _per_axis([p.kernel_size] if p.HasField("kernel_size") else [], p.kernel_h, p.kernel_w,
                       p.HasField("kernel_h"), 0, 2)
    stride = _per_axis([p.stride] if p.HasField("stride") else [], p.stride_h, p.stride_w, p.HasField("stride_h"),
                       1, 2)
    pad = _per_axis([p.pad] if p.HasField("pad") else [], p.pad_h, p.pad_w, p.HasField("pad_h"), 0, 2)
    return kernel, stride, pad


def pool2d(ctx, x, method, kernel, stride, pad, in_hw, out_hw, tag="pool", mask=False):
    """Caffe's 2-D pooling of ``x`` into ``out_hw``; returns the output (and the MAX index map when ``mask``)."""
    if method == _P.STOCHASTIC:
        pad = [0, 0]  # TEST-time stochastic pooling: windows start at o s, no leading padding
    ends = [(o - 1) * s + k - i - q for o, s, k, i, q in zip(out_hw, stride, kernel, in_hw, pad)]
    src_hw = list(in_hw)
    if any(e < 0 for e in ends):  # the last window ends inside the input: crop what no window reads
        src_hw = [i + min(e, 0) for i, e in zip(in_hw, ends)]
        x = ctx.op("Slice", x, ctx.ints([0, 0]), ctx.ints(src_hw), ctx.ints([2, 3]), tag=tag + "/crop")
        ends = [max(e, 0) for e in ends]
    if any(e >= k for e, k in zip(ends, kernel)):
        # a last window wholly outside the input (stride > kernel, no padding): Caffe gives MAX -FLT_MAX
        # and AVE 0 / 0; ONNX pooling wants pads below the kernel, so the input is padded explicitly
        if mask:
            ctx.fail("the MAX mask top of a pooling window wholly outside the input (kernel %s, stride %s, input %s)"
                     % (kernel, stride, list(in_hw)))
        fill = -float(np.finfo(np.float32).max) if method == _P.MAX else 0.0
        x = ctx.op("Pad", x, ctx.ints([0, 0] + list(pad) + [0, 0] + ends), ctx.const(np.float32(fill), tag + "/fill"),
                   mode="constant", tag=tag + "/pad")
        pads = [0, 0, 0, 0]
    else:
        pads = list(pad) + ends
    attrs = dict(kernel_shape=list(kernel), strides=list(stride), pads=pads)
    if method == _P.MAX:
        if not mask:
            return ctx.op("MaxPool", x, tag=tag, **attrs)
        y, idx = ctx.op("MaxPool", x, n_out=2, tag=tag, **attrs)
        # ONNX indexes the whole (N, C, H', W') tensor; Caffe's mask is h W + w in the input plane
        plane = ctx.op("Mod", idx, ctx.ints([src_hw[0] * src_hw[1]]), tag=tag + "/plane")
        if src_hw[1] != in_hw[1]:
            row = ctx.op("Div", plane, ctx.ints([src_hw[1]]), tag=tag + "/row")
            col = ctx.op("Mod", plane, ctx.ints([src_hw[1]]), tag=tag + "/col")
            plane = ctx.op("Add", ctx.op("Mul", row, ctx.ints([in_hw[1]]), tag=tag + "/rowW"), col, tag=tag + "/hw")
        return y, ctx.op("Cast", plane, to=1, tag=tag + "/mask")
    avg = dict(attrs, count_include_pad=1)
    area = kernel[0] * kernel[1]
    if method == _P.AVE:
        y = ctx.op("AveragePool", x, tag=tag, **avg)
        sizes = [np.minimum(np.arange(o) * s - q + k, i + q) - (np.arange(o) * s - q)
                 for o, s, k, i, q in zip(out_hw, stride, kernel, in_hw, pad)]
        divisor = np.outer(sizes[0], sizes[1])
        if np.any(divisor != area):  # Caffe divides by the window clipped at the padded border
            with np.errstate(divide="ignore"):  # an empty window: 0 / 0, as in Caffe
                factor = area / divisor
            y = ctx.op("Mul", y, ctx.const(factor.reshape(1, 1, *out_hw), tag + "/divisor"), tag=tag + "/fix")
        return y
    # STOCHASTIC at TEST: sum x^2 / (FLT_MIN + sum x) over each window
    num = ctx.op("AveragePool", ctx.op("Mul", x, x, tag=tag + "/sq"), tag=tag + "/sumsq", **avg)
    den = ctx.op("AveragePool", x, tag=tag + "/sum", **avg)
    return ctx.op("Div", num, ctx.add(den, FLT_MIN / area, tag + "/eps"), tag=tag)


@converter("Pooling")
def pooling(ctx):
    """MAX / AVE / STOCHASTIC (TEST: the weighted average), Caffe's sizes and divisors; global pooling."""
    p = ctx.lp.pooling_param
    in_hw, out_hw = ctx.bottom_shapes[0][2:], ctx.top_shapes[0][2:]
    kernel, stride, pad = pooling_geometry(p, in_hw)
    mask = len(ctx.top_shapes) > 1
    if p.global_pooling and not mask and p.pool in (_P.MAX, _P.AVE):
        return [ctx.op("GlobalMaxPool" if p.pool == _P.MAX else "GlobalAveragePool", ctx.bottoms[0])]
    y = pool2d(ctx, ctx.bottoms[0], p.pool, kernel, stride, pad, in_hw, out_hw, mask=mask)
    return list(y) if mask else [y]


def pooled_size(size: int, kernel: int, stride: int, pad: int) -> int:
    out = int(math.ceil((size + 2 * pad - kernel) / stride)) + 1
    return out - 1 if pad and (out - 1) * stride >= size + pad else out


@converter("SPP")
def spp(ctx):
    r"""Spatial pyramid: level :math:`l` pools into :math:`2^l` bins per axis (kernel
    :math:`\lceil i/2^l \rceil`, stride = kernel, pad :math:`\lfloor (k 2^l - i + 1)/2 \rfloor`), flattened
    and concatenated on axis 1."""
    p = ctx.lp.spp_param
    method = {caffe_pb2.SPPParameter.MAX: _P.MAX, caffe_pb2.SPPParameter.AVE: _P.AVE,
              caffe_pb2.SPPParameter.STOCHASTIC: _P.STOCHASTIC}[p.pool]
    shape = ctx.bottom_shapes[0]
    in_hw = shape[2:]
    levels = []
    for level in range(p.pyramid_height):
        bins = 2 ** level
        kernel = [-(-i // bins) for i in in_hw]
        pad = [(k * bins - i + 1) // 2 for k, i in zip(kernel, in_hw)]
        out_hw = [pooled_size(i, k, k, q) for i, k, q in zip(in_hw, kernel, pad)]
        y = pool2d(ctx, ctx.bottoms[0], method, kernel, kernel, pad, in_hw, out_hw, tag="level%d" % level)
        if p.pyramid_height == 1:
            return [y]
        levels.append(ctx.reshape(y, shape, [shape[0], shape[1] * out_hw[0] * out_hw[1]], tag="flat%d" % level))
    return [ctx.op("Concat", *levels, axis=1)]


@converter("LRN")
def lrn(ctx):
    r"""ACROSS_CHANNELS: ONNX LRN (:math:`y = x (k + \frac{\alpha}{n}\sum x^2)^{-\beta}`, the same centred
    window).  WITHIN_CHANNEL: :math:`y = x (1 + \frac{\alpha}{n^2} \sum_{n \times n} x^2)^{-\beta}`, composed
    from a zero-padded average pool."""
    p = ctx.lp.lrn_param
    x = ctx.bottoms[0]
    if p.norm_region == caffe_pb2.LRNParameter.ACROSS_CHANNELS:
        return [ctx.op("LRN", x, size=p.local_size, alpha=p.alpha, beta=p.beta, bias=p.k)]
    n, half = p.local_size, (p.local_size - 1) // 2
    mean = ctx.op("AveragePool", ctx.op("Mul", x, x, tag="sq"), kernel_shape=[n, n], strides=[1, 1],
                  pads=[half] * 4, count_include_pad=1, tag="boxmean")
    scale = ctx.add(ctx.mul(mean, p.alpha, "alpha"), 1.0, "one")
    return [ctx.op("Mul", x, ctx.op("Pow", scale, ctx.const(np.float32(-p.beta), "negbeta"), tag="pow"), tag="y")]


@converter("Crop")
def crop(ctx):
    """bottom[0] cut to bottom[1]'s shape from ``axis`` on, at ``offset``: one ONNX Slice."""
    p = ctx.lp.crop_param
    shape, ref = ctx.bottom_shapes[0], ctx.bottom_shapes[1]
    nd = len(shape)
    start = p.axis if p.axis >= 0 else p.axis + nd
    offsets = list(p.offset)
    axes, begins, ends = [], [], []
    for i in range(start, nd):
        off = offsets[0] if len(offsets) == 1 else (offsets[i - start] if offsets else 0)
        if off == 0 and ref[i] == shape[i]:
            continue
        axes.append(i)
        begins.append(off)
        ends.append(off + ref[i])
    if not axes:
        return [ctx.bottoms[0]]
    return [ctx.op("Slice", ctx.bottoms[0], ctx.ints(begins), ctx.ints(ends), ctx.ints(axes))]
