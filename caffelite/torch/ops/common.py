r"""Common, shape and normalization layers as torch operations.

Caffe: src/caffe/layers/{inner_product,softmax,eltwise,concat,slice,flatten,reshape,tile,split,silence,
reduction,argmax,embed,filter,batch_reindex,parameter,batch_norm,mvn,scale,bias}_layer.cpp.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from caffelite.torch._caffelite import caffe_pb2
from caffelite.torch.ops.registry import canonical_axis, register


@register("InnerProduct")
def inner_product(layer, bottom, top):
    """:math:`y = x W^\\top + b` over the axes from ``axis`` on (``transpose``: W is stored K x N)."""
    p = layer.layer_param.inner_product_param

    def f(xs, params):
        x = xs[0]
        axis = canonical_axis(p.axis, x.dim())
        flat = x.reshape(math.prod(x.shape[:axis]), -1)
        w = params[0].t() if p.transpose else params[0]
        y = F.linear(flat, w, params[1] if p.bias_term else None)
        return [y.reshape(tuple(x.shape[:axis]) + (y.shape[1],))]
    return f


@register("Softmax")
def softmax(layer, bottom, top):
    axis = layer.layer_param.softmax_param.axis
    return lambda xs, params: [torch.softmax(xs[0], dim=canonical_axis(axis, xs[0].dim()))]


@register("Split")
def split(layer, bottom, top):
    """Every top is the bottom; autograd sums the tops' gradients, as Caffe's Split backward does."""
    n = len(top)
    return lambda xs, params: [xs[0]] * n


@register("Silence")
def silence(layer, bottom, top):
    return lambda xs, params: []


@register("Eltwise")
def eltwise(layer, bottom, top):
    """PROD :math:`\\prod x_i`; SUM :math:`\\sum c_i x_i`; MAX :math:`\\max_i x_i`, the gradient to the first
    bottom holding the maximum (Caffe's mask; torch's ``maximum`` would split ties)."""
    p = layer.layer_param.eltwise_param
    E = caffe_pb2.EltwiseParameter
    coeffs = [float(c) for c in p.coeff] or [1.0] * len(bottom)

    def f(xs, params):
        if p.operation == E.PROD:
            y = xs[0]
            for x in xs[1:]:
                y = y * x
            return [y]
        if p.operation == E.SUM:
            y = xs[0] if coeffs[0] == 1 else xs[0] * coeffs[0]
            for c, x in zip(coeffs[1:], xs[1:]):
                y = y + (x if c == 1 else x * c)
            return [y]
        stacked = torch.stack(xs)
        first = torch.argmax(stacked.detach(), dim=0, keepdim=True)  # the first maximum
        return [torch.gather(stacked, 0, first).squeeze(0)]
    return f


@register("Concat")
def concat(layer, bottom, top):
    p = layer.layer_param.concat_param
    axis = p.concat_dim if p.HasField("concat_dim") else p.axis
    return lambda xs, params: [torch.cat(xs, dim=canonical_axis(axis, xs[0].dim()))]


@register("Slice")
def slice_(layer, bottom, top):
    p = layer.layer_param.slice_param
    axis = p.slice_dim if p.HasField("slice_dim") else p.axis
    points = list(p.slice_point)
    n_top = len(top)

    def f(xs, params):
        x = xs[0]
        a = canonical_axis(axis, x.dim())
        if points:
            bounds = [0] + points + [x.shape[a]]
            sizes = [b - a_ for a_, b in zip(bounds[:-1], bounds[1:])]
        else:
            sizes = [x.shape[a] // n_top] * n_top
        return list(torch.split(x, sizes, dim=a))
    return f


@register("Flatten")
def flatten(layer, bottom, top):
    p = layer.layer_param.flatten_param

    def f(xs, params):
        x = xs[0]
        return [torch.flatten(x, canonical_axis(p.axis, x.dim()), canonical_axis(p.end_axis, x.dim()))]
    return f


@register("Reshape")
def reshape(layer, bottom, top):
    """``shape`` replaces axes ``axis`` .. ``axis + num_axes``; 0 copies the bottom's dimension, -1 is inferred."""
    p = layer.layer_param.reshape_param
    dims = list(p.shape.dim)

    def f(xs, params):
        x = xs[0]
        n = x.dim()
        start = p.axis if p.axis >= 0 else n + p.axis + 1
        end = n if p.num_axes == -1 else start + p.num_axes
        new = [x.shape[start + i] if d == 0 else d for i, d in enumerate(dims)]
        return [x.reshape(tuple(x.shape[:start]) + tuple(new) + tuple(x.shape[end:]))]
    return f


@register("Tile")
def tile(layer, bottom, top):
    p = layer.layer_param.tile_param

    def f(xs, params):
        x = xs[0]
        reps = [1] * x.dim()
        reps[canonical_axis(p.axis, x.dim())] = p.tiles
        return [x.repeat(*reps)]
    return f


@register("Reduction")
def reduction(layer, bottom, top):
    """SUM :math:`c \\sum x`, ASUM :math:`c \\sum |x|`, SUMSQ :math:`c \\sum x^2`, MEAN :math:`c\\,\\bar x`
    over the axes from ``axis`` on."""
    p = layer.layer_param.reduction_param
    R = caffe_pb2.ReductionParameter
    op = {R.SUM: lambda v: v, R.ASUM: torch.abs, R.SUMSQ: lambda v: v * v, R.MEAN: lambda v: v}[p.operation]
    coeff = float(p.coeff)

    def f(xs, params):
        x = xs[0]
        axis = canonical_axis(p.axis, x.dim())
        v = op(x.reshape(tuple(x.shape[:axis]) + (-1,)))
        y = v.mean(dim=-1) if p.operation == R.MEAN else v.sum(dim=-1)
        return [y * coeff if coeff != 1 else y]
    return f


def _topk_last_index_first(x, k: int, dim: int):
    """Caffe's ``partial_sort`` of (value, index) pairs with ``greater``: ties go to the larger index."""
    n = x.shape[dim]
    flipped = torch.flip(x, dims=(dim,))
    values, idx = torch.sort(flipped, dim=dim, descending=True, stable=True)
    values, idx = values.narrow(dim, 0, k), idx.narrow(dim, 0, k)
    return values, (n - 1 - idx)


@register("ArgMax")
def argmax(layer, bottom, top):
    """The top-k indices (or values) along ``axis``; without an axis, per item: (N, 1, k), or (N, 2, k)
    indices then values with ``out_max_val``.  No gradient (Caffe: NOT_IMPLEMENTED)."""
    p = layer.layer_param.argmax_param
    k = p.top_k

    def f(xs, params):
        x = xs[0].detach()
        if p.HasField("axis"):
            axis = canonical_axis(p.axis, x.dim())
            values, idx = _topk_last_index_first(x, k, axis)
            return [values if p.out_max_val else idx.to(x.dtype)]
        values, idx = _topk_last_index_first(x.reshape(x.shape[0], -1), k, 1)
        if p.out_max_val:
            return [torch.stack([idx.to(x.dtype), values], dim=1)]
        return [idx.to(x.dtype).unsqueeze(1)]
    return f


@register("Embed")
def embed(layer, bottom, top):
    """:math:`y = W_{x} + b`: row x of the (input_dim x num_output) table per index."""
    p = layer.layer_param.embed_param

    def f(xs, params):
        idx = xs[0].detach().long()
        y = F.embedding(idx, params[0])
        return [y + params[1] if p.bias_term else y]
    return f


@register("Filter")
def filter_(layer, bottom, top):
    """The items (axis 0) whose selector, the last bottom, is non-zero."""
    def f(xs, params):
        keep = torch.nonzero(xs[-1].detach().reshape(xs[-1].shape[0], -1)[:, 0] != 0).reshape(-1)
        return [torch.index_select(x, 0, keep) for x in xs[:-1]]
    return f


@register("BatchReindex")
def batch_reindex(layer, bottom, top):
    """:math:`y_i = x_{p_i}` along axis 0 (repeated indices sum their gradients)."""
    return lambda xs, params: [torch.index_select(xs[0], 0, xs[1].detach().reshape(-1).long())]


@register("Parameter")
def parameter(layer, bottom, top):
    return lambda xs, params: [params[0]]


@register("BatchNorm")
def batch_norm(layer, bottom, top):
    """:math:`y = (x - \\mu_c)/\\sqrt{\\sigma_c^2 + \\epsilon}`; global statistics ``blobs[0]/s``, ``blobs[1]/s``
    with the scale factor :math:`s` = ``blobs[2]`` (0 means both 0), or batch statistics, updating the
    stored moving sums :math:`s \\leftarrow \\lambda s + 1`, :math:`b_0 \\leftarrow \\lambda b_0 + \\mu`,
    :math:`b_1 \\leftarrow \\lambda b_1 + \\frac{m}{m-1} \\sigma^2` in place (no gradient to them)."""
    p = layer.layer_param.batch_norm_param
    use_global = p.use_global_stats if p.HasField("use_global_stats") else layer.phase == caffe_pb2.TEST
    lam, eps = float(p.moving_average_fraction), float(p.eps)

    def f(xs, params):
        x = xs[0]
        c = 1 if x.dim() == 1 else x.shape[1]
        v = x.reshape(x.shape[0], c, -1)
        if use_global:
            s = params[2].detach().reshape(-1)[0]
            factor = torch.where(s == 0, torch.zeros_like(s), 1.0 / s)
            mean, var = params[0].detach() * factor, params[1].detach() * factor
            y = F.batch_norm(v, mean, var, training=False, eps=eps)  # (x - mean) / sqrt(var + eps), fused
        else:
            m = x.numel() // c
            if m > 1:
                y = F.batch_norm(v, None, None, training=True, eps=eps)  # batch statistics (biased variance)
            else:  # one value per channel: torch refuses, Caffe gives 0
                y = (v - v.mean(dim=(0, 2), keepdim=True)) / eps ** 0.5
            with torch.no_grad():
                var, mean = torch.var_mean(v.detach(), dim=(0, 2), correction=0)
                correction = m / (m - 1) if m > 1 else 1.0
                params[2].mul_(lam).add_(1.0)
                params[0].mul_(lam).add_(mean)
                params[1].mul_(lam).add_(var * correction)
        return [y.reshape(x.shape)]
    return f


@register("MVN")
def mvn(layer, bottom, top):
    """:math:`y = x - \\mu`, or :math:`(x - \\mu)/(\\sigma + \\epsilon)` with ``normalize_variance``, over each
    (num, channel) plane, or each item with ``across_channels``."""
    p = layer.layer_param.mvn_param

    def f(xs, params):
        x = xs[0]
        shape4 = tuple(x.shape) + (1,) * (2 - x.dim()) if x.dim() < 2 else tuple(x.shape)
        groups = shape4[0] if p.across_channels else shape4[0] * shape4[1]
        v = x.reshape(groups, -1)
        y = v - v.mean(dim=1, keepdim=True)
        if p.normalize_variance:
            y = y / (torch.sqrt(torch.square(y).mean(dim=1, keepdim=True)) + p.eps)
        return [y.reshape(x.shape)]
    return f


def _axis_view(v, x, axis: int):
    """``v`` (shape = x.shape[axis:axis+v.dim()]) shaped to broadcast against x."""
    return v.reshape((1,) * axis + tuple(v.shape) + (1,) * (x.dim() - axis - v.dim()))


@register("Scale")
def scale(layer, bottom, top):
    """:math:`y = x \\odot s + b`, s (a parameter, or bottom[1]) spanning axes ``axis`` .. ``axis + num_axes``."""
    p = layer.layer_param.scale_param
    two = len(bottom) > 1
    bias = p.bias_term

    def f(xs, params):
        x = xs[0]
        s = xs[1] if two else params[0]
        axis = canonical_axis(p.axis, x.dim())
        if s.dim() == 0:
            s = s.reshape(1) if x.dim() == 0 else s
        sv = _axis_view(s, x, axis) if s.dim() else s
        if not bias:
            return [x * sv]
        b = params[1] if not two else params[0]
        return [torch.addcmul(_axis_view(b, x, axis) if b.dim() else b, x, sv)]  # x * s + b, one pass
    return f


@register("Bias")
def bias(layer, bottom, top):
    """:math:`y = x + b`, b (a parameter, or bottom[1]) spanning axes ``axis`` .. ``axis + num_axes``."""
    p = layer.layer_param.bias_param

    def f(xs, params):
        x = xs[0]
        b = xs[1] if len(xs) > 1 else params[0]
        axis = canonical_axis(p.axis, x.dim())
        return [x + (_axis_view(b, x, axis) if b.dim() else b)]
    return f


