r"""Vision layers as torch operations: Convolution, Deconvolution, Pooling, SPP, LRN, Im2col, Crop.

Caffe: src/caffe/layers/{conv,deconv,pooling,spp,lrn,im2col,crop}_layer.cpp.

Pooling keeps Caffe's geometry: the output size rounds up (``round_mode`` CEIL, the default) and the
last window is dropped when it would start in the padding; AVE divides each sum by the window clipped
to the padded image.  torch's ``max_pool2d``/``avg_pool2d`` (``ceil_mode``, ``count_include_pad``)
follow these rules where torch accepts the padding (at most half the kernel); for a larger padding
(Caffe allows up to kernel - 1) the input is padded explicitly (``-inf`` for MAX, 0 for AVE) so every
window fits, torch pools without padding, and AVE divides by Caffe's divisor:

.. math:: o = \lceil (i + 2p - k) / s \rceil + 1, \qquad
          d_j = \min(js - p + k,\ i + p) - (js - p)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from caffelite.torch._caffelite import TRAIN, ConvGeometry, ShapeError, caffe_pb2, pooled_size, pooling_setup
from caffelite.torch.ops.registry import Fallback, canonical_axis, register

_P = caffe_pb2.PoolingParameter
FLT_MIN = float(torch.finfo(torch.float32).tiny)
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_DECONV = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _batched(fn, axis: int, n_spatial: int):
    """Apply an NCHW-style ``fn`` to a tensor whose channel axis is ``axis``: fold the axes before it."""
    if axis == 1:
        return fn

    def f(x):
        lead = x.shape[:axis]
        y = fn(x.reshape((-1,) + tuple(x.shape[axis:])))
        return y.reshape(tuple(lead) + tuple(y.shape[1:]))
    return f


@register("Convolution", "Deconvolution")
def convolution(layer, bottom, top):
    """:math:`y = W \\star x + b` (Deconvolution: the transposed convolution, torch's ``conv_transpose``);
    Caffe's weight layouts are torch's: (out, in/g, k...) and, for Deconvolution, (in, out/g, k...)."""
    p = layer.layer_param.convolution_param
    g = ConvGeometry(p, bottom[0])
    n = g.num_spatial
    if n not in _CONV:
        raise Fallback("%d spatial axes" % n)
    deconv = layer.layer_param.type == "Deconvolution"
    op = (_DECONV if deconv else _CONV)[n]
    kw = dict(stride=g.stride, padding=g.pad, dilation=g.dilation, groups=p.group)

    def f(xs, params):
        w = params[0]
        b = params[1] if p.bias_term else None
        conv = _batched(lambda x: op(x, w, b, **kw), g.channel_axis, n)
        return [conv(x) for x in xs]
    return f


# --- pooling -------------------------------------------------------------------------------------
def _window_ends(size: int, kernel: int, stride: int, pad: int, out: int) -> int:
    """Padding after the input so that all ``out`` windows lie inside the padded tensor."""
    return max(0, (out - 1) * stride + kernel - size - pad)


def _ave_divisor(size, kernel, stride, pad, out, like):
    start = torch.arange(out, device=like.device, dtype=like.dtype) * stride - pad
    return torch.clamp(start + kernel, max=size + pad) - start


def pool2d(x, method: int, kernel, stride, pad, ceil_mode: bool = True, train: bool = False, want_mask=False):
    """Caffe's 2-D pooling of an (N, C, H, W) tensor; returns (y, mask or None)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    out = (pooled_size(x.shape[2], kh, sh, ph, ceil_mode), pooled_size(x.shape[3], kw, sw, pw, ceil_mode))
    if method != _P.STOCHASTIC and 2 * ph <= kh and 2 * pw <= kw:
        # torch's own pooling has Caffe's rules (it took them from Caffe): the output size (ceil, then
        # drop a window starting in the padding), MAX's implicit -inf padding, first maximum and its index
        # h*W + w, AVE's divisor clipped to the padded image.  Unlike Caffe, torch also drops a last
        # window starting past an unpadded image (kernel < stride): then the explicit path runs.
        if method == _P.MAX:
            y, idx = F.max_pool2d(x, kernel, stride, pad, ceil_mode=ceil_mode, return_indices=True)
            if tuple(y.shape[2:]) == out:
                return y, (idx.to(x.dtype) if want_mask else None)
        else:
            y = F.avg_pool2d(x, kernel, stride, pad, ceil_mode=ceil_mode, count_include_pad=True)
            if tuple(y.shape[2:]) == out:
                return y, None
    return pool2d_padded(x, method, kernel, stride, pad, ceil_mode, train, want_mask)


def pool2d_padded(x, method: int, kernel, stride, pad, ceil_mode: bool = True, train: bool = False, want_mask=False):
    """:func:`pool2d` with the padding made explicit: any padding Caffe accepts, and STOCHASTIC."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    oh, ow = pooled_size(h, kh, sh, ph, ceil_mode), pooled_size(w, kw, sw, pw, ceil_mode)
    eh, ew = _window_ends(h, kh, sh, ph, oh), _window_ends(w, kw, sw, pw, ow)
    if method == _P.MAX:
        xp = F.pad(x, (pw, ew, ph, eh), value=float("-inf")) if (pw or ew or ph or eh) else x
        if want_mask:
            y, idx = F.max_pool2d(xp, (kh, kw), (sh, sw), return_indices=True)
            y, idx = y[:, :, :oh, :ow], idx[:, :, :oh, :ow]
            wp = w + pw + ew
            mask = ((idx // wp - ph) * w + (idx % wp - pw)).to(x.dtype)
            return y, mask
        return F.max_pool2d(xp, (kh, kw), (sh, sw))[:, :, :oh, :ow], None
    xp = F.pad(x, (pw, ew, ph, eh)) if (pw or ew or ph or eh) else x
    if method == _P.AVE:
        s = F.avg_pool2d(xp, (kh, kw), (sh, sw), divisor_override=1)[:, :, :oh, :ow]
        div = _ave_divisor(h, kh, sh, ph, oh, x)[:, None] * _ave_divisor(w, kw, sw, pw, ow, x)[None, :]
        return s / div, None
    # STOCHASTIC (Caffe: GPU only; no padding)
    if not train:
        total = F.avg_pool2d(xp, (kh, kw), (sh, sw), divisor_override=1)[:, :, :oh, :ow] + FLT_MIN
        sq = F.avg_pool2d(xp * xp, (kh, kw), (sh, sw), divisor_override=1)[:, :, :oh, :ow]
        return sq / total, None
    cols = F.unfold(xp, (kh, kw), stride=(sh, sw))  # (N, C*kh*kw, L) over the padded grid
    gh = (xp.shape[2] - kh) // sh + 1
    gw = (xp.shape[3] - kw) // sw + 1
    cols = cols.reshape(n, c, kh * kw, gh, gw)[:, :, :, :oh, :ow]
    cum = cols.detach().cumsum(dim=2)
    thres = torch.rand((n, c, 1, oh, ow), device=x.device, dtype=x.dtype) * cum[:, :, -1:]
    pick = (cum < thres).sum(dim=2, keepdim=True).clamp(max=kh * kw - 1)  # first tap whose sum reaches it
    return torch.gather(cols, 2, pick).squeeze(2), None


@register("Pooling")
def pooling(layer, bottom, top):
    """MAX (first maximum in row-major order; a second top holds its index :math:`hW + w` as floats),
    AVE (Caffe's divisor), STOCHASTIC (TRAIN samples with probability :math:`x_j / \\sum x` from torch's
    generator; TEST :math:`\\sum x^2 / \\sum x`)."""
    p = layer.layer_param.pooling_param
    kernel, stride, pad = pooling_setup(p)
    ceil_mode = p.round_mode == _P.CEIL
    train = layer.phase == TRAIN
    want_mask = len(top) > 1

    def f(xs, params):
        x = xs[0]
        k = tuple(x.shape[2:]) if p.global_pooling else kernel
        y, mask = pool2d(x, p.pool, k, stride, pad, ceil_mode, train, want_mask)
        return [y, mask] if want_mask else [y]
    return f


@register("SPP")
def spp(layer, bottom, top):
    """Level :math:`l` pools into :math:`2^l \\times 2^l` bins (kernel and stride :math:`\\lceil i/2^l \\rceil`,
    pad :math:`\\lfloor (k 2^l - i + 1)/2 \\rfloor`), flattened and concatenated (one level: not flattened)."""
    p = layer.layer_param.spp_param
    method = {caffe_pb2.SPPParameter.MAX: _P.MAX, caffe_pb2.SPPParameter.AVE: _P.AVE,
              caffe_pb2.SPPParameter.STOCHASTIC: _P.STOCHASTIC}[p.pool]
    height, train = p.pyramid_height, layer.phase == TRAIN

    def f(xs, params):
        x = xs[0]
        n, _, h, w = x.shape
        outs = []
        for level in range(height):
            bins = 2 ** level
            k = [-(-s // bins) for s in (h, w)]
            pad = [(kk * bins - s + 1) // 2 for kk, s in zip(k, (h, w))]
            y, _ = pool2d(x, method, k, k, pad, True, train)
            outs.append(y)
        if height == 1:
            return [outs[0]]
        return [torch.cat([y.reshape(n, -1) for y in outs], dim=1)]
    return f


@register("LRN")
def lrn(layer, bottom, top):
    """ACROSS_CHANNELS: :math:`y = x (k + \\frac{\\alpha}{n} \\sum_{c' \\in window(c)} x_{c'}^2)^{-\\beta}`;
    WITHIN_CHANNEL: :math:`y = x (1 + \\alpha \\operatorname{AVE}_{n \\times n}(x^2))^{-\\beta}` with Caffe's
    padded AVE pooling (Caffe builds it from Power, Pooling and Eltwise layers: shift 1, not k)."""
    p = layer.layer_param.lrn_param
    size, alpha, beta, k = p.local_size, float(p.alpha), float(p.beta), float(p.k)
    pre = (size - 1) // 2

    if p.norm_region == caffe_pb2.LRNParameter.ACROSS_CHANNELS:
        def f(xs, params):
            x = xs[0]
            sq = F.pad((x * x).unsqueeze(1), (0, 0, 0, 0, pre, size - pre - 1))
            window = F.avg_pool3d(sq, (size, 1, 1), stride=1, divisor_override=1).squeeze(1)
            return [x * torch.pow(window * (alpha / size) + k, -beta)]
        return f

    def g(xs, params):
        x = xs[0]
        pooled, _ = pool2d(x * x, _P.AVE, (size, size), (1, 1), (pre, pre))
        return [x * torch.pow(pooled * alpha + 1.0, -beta)]
    return g


@register("Im2col")
def im2col(layer, bottom, top):
    """The columns of a 2-D convolution: (N, C·kh·kw, oh, ow), channel-major as torch's ``unfold``."""
    p = layer.layer_param.convolution_param
    g = ConvGeometry(p, bottom[0])
    if g.num_spatial != 2 or g.channel_axis != 1:
        raise Fallback("N-d im2col")

    def f(xs, params):
        x = xs[0]
        n, _, h, w = x.shape
        oh, ow = g.out_shape((h, w))
        cols = F.unfold(x, g.kernel, dilation=g.dilation, padding=g.pad, stride=g.stride)
        return [cols.reshape(n, -1, oh, ow)]
    return f


@register("Crop")
def crop(layer, bottom, top):
    """:math:`y_{\\mathbf{i}} = x_{\\mathbf{i} + \\mathbf{o}}` on the axes from ``axis`` on, to bottom[1]'s
    shape; bottom[1] gives only a shape."""
    p = layer.layer_param.crop_param
    offsets = list(p.offset)

    def f(xs, params):
        x, ref = xs
        start = canonical_axis(p.axis, x.dim())
        window = []
        for i in range(x.dim()):
            if i < start:
                window.append(slice(None))
                continue
            off = offsets[0] if len(offsets) == 1 else (offsets[i - start] if offsets else 0)
            if off + ref.shape[i] > x.shape[i]:
                raise ShapeError("Crop: offset %d + size %d exceeds axis %d of %s"
                                       % (off, ref.shape[i], i, list(x.shape)))
            window.append(slice(off, off + ref.shape[i]))
        return [x[tuple(window)]]
    return f
