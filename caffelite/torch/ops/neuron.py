r"""Neuron layers (one top per bottom, elementwise) as torch operations.

Caffe: src/caffe/layers/{relu,sigmoid,tanh,absval,bnll,power,exp,log,threshold,dropout,elu,clip,swish,prelu}_layer.cpp.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from caffelite.torch._caffelite import TRAIN
from caffelite.torch.ops.registry import channel_view, register


def _one(f):
    return lambda xs, params: [f(xs[0])]


@register("ReLU")
def relu(layer, bottom, top):
    """:math:`y = \\max(x, 0) + \\nu \\min(x, 0)`; gradient :math:`\\nu` at :math:`x \\le 0`, as Caffe's."""
    slope = float(layer.layer_param.relu_param.negative_slope)
    if slope == 0:
        return _one(F.relu)
    return _one(lambda x: torch.where(x > 0, x, x * slope))


@register("Sigmoid")
def sigmoid(layer, bottom, top):
    return _one(torch.sigmoid)


@register("TanH")
def tanh(layer, bottom, top):
    return _one(torch.tanh)


@register("AbsVal")
def absval(layer, bottom, top):
    return _one(torch.abs)


@register("BNLL")
def bnll(layer, bottom, top):
    """:math:`y = \\log(1 + e^x)` (Caffe computes it as ``x + log(1 + exp(-x))`` for positive x)."""
    return _one(F.softplus)


@register("Power")
def power(layer, bottom, top):
    """:math:`y = (\\alpha x + \\beta)^p` (scale, shift, power)."""
    p = layer.layer_param.power_param
    scale, shift, pw = float(p.scale), float(p.shift), float(p.power)
    if pw == 1:
        return _one(lambda x: x * scale + shift)
    return _one(lambda x: torch.pow(x * scale + shift, pw))


@register("Exp")
def exp(layer, bottom, top):
    """:math:`y = \\gamma^{\\alpha x + \\beta}` (base -1 means e)."""
    p = layer.layer_param.exp_param
    log_base = 1.0 if p.base == -1 else math.log(p.base)
    scale, shift = float(p.scale) * log_base, float(p.shift) * log_base
    return _one(lambda x: torch.exp(x * scale + shift))


@register("Log")
def log(layer, bottom, top):
    """:math:`y = \\log_\\gamma(\\alpha x + \\beta)` (base -1 means e)."""
    p = layer.layer_param.log_param
    inv_log_base = 1.0 if p.base == -1 else 1.0 / math.log(p.base)
    scale, shift = float(p.scale), float(p.shift)
    return _one(lambda x: torch.log(x * scale + shift) * inv_log_base)


@register("Threshold")
def threshold(layer, bottom, top):
    """:math:`y = [x > t]` (no gradient: Caffe's backward is NOT_IMPLEMENTED)."""
    t = float(layer.layer_param.threshold_param.threshold)
    return _one(lambda x: (x > t).to(x.dtype))


@register("Dropout")
def dropout(layer, bottom, top):
    """TRAIN: :math:`y = x m / (1 - r)`, :math:`m \\sim \\mathrm{Bernoulli}(1 - r)` (torch's generator,
    not caffelite's: the same law, other draws); TEST: :math:`y = x` (``scale_train: false``:
    TRAIN :math:`y = x m`, TEST :math:`y = x (1 - r)`)."""
    p = layer.layer_param.dropout_param
    ratio = float(p.dropout_ratio)
    scale_train = getattr(p, "scale_train", True)  # a fork field, absent from BVLC's schema
    if layer.phase == TRAIN:
        scale = 1.0 / (1.0 - ratio) if scale_train else 1.0

        def f(x):
            mask = torch.rand_like(x) > ratio  # Caffe: keep where uniform > ratio
            return x * mask.to(x.dtype) * scale
        return _one(f)
    if scale_train:
        return _one(lambda x: x)
    return _one(lambda x: x * (1.0 - ratio))


@register("ELU")
def elu(layer, bottom, top):
    alpha = float(layer.layer_param.elu_param.alpha)
    return _one(lambda x: F.elu(x, alpha))


@register("Clip")
def clip(layer, bottom, top):
    """:math:`y = \\min(\\max(x, lo), hi)`; gradient where :math:`lo \\le x \\le hi`."""
    p = layer.layer_param.clip_param
    lo, hi = float(p.min), float(p.max)
    return _one(lambda x: torch.clamp(x, lo, hi))


@register("Swish")
def swish(layer, bottom, top):
    """:math:`y = x \\, \\sigma(\\beta x)`."""
    beta = float(layer.layer_param.swish_param.beta)
    return _one(lambda x: x * torch.sigmoid(x * beta))


@register("PReLU")
def prelu(layer, bottom, top):
    """:math:`y = \\max(x, 0) + a_c \\min(x, 0)`, one slope per channel (axis 1) or one shared."""
    shared = layer.layer_param.prelu_param.channel_shared

    def f(xs, params):
        x, a = xs[0], params[0]
        a = a.reshape(()) if shared else channel_view(a, x.dim())
        return [torch.where(x > 0, x, x * a)]
    return f
