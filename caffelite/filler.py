r"""Fillers: how Caffe initialises parameter blobs (``weight_filler``, ``bias_filler``).

Caffe: include/caffe/filler.hpp.  With :math:`n` the fan chosen by ``variance_norm``
(``FAN_IN``: count/shape[0]; ``FAN_OUT``: count/shape[1]; ``AVERAGE``: their mean):

- ``constant``: :math:`x = value`
- ``uniform``: :math:`x \sim U(min, max)`
- ``gaussian``: :math:`x \sim N(mean, std^2)`, and with ``sparse`` = s >= 0 each value is kept with
  probability :math:`s / shape[0]` (else 0)
- ``positive_unitball``: :math:`x \sim U(0, 1)`, then each of the shape[0] rows divided by its sum
- ``xavier``: :math:`x \sim U(-a, a)`, :math:`a = \sqrt{3 / n}`
- ``msra``: :math:`x \sim N(0, 2 / n)`
- ``bilinear``: for a k×k kernel, :math:`f = \lceil k/2 \rceil`, :math:`c = (k-1) / 2f`,
  :math:`x_{yx} = (1 - |x/f - c|)(1 - |y/f - c|)` (upsampling weights for Deconvolution)
"""

from __future__ import annotations

import math

import numpy as np

from caffelite.blob import Blob
from caffelite.common import rng
from caffelite.errors import LayerError
from caffelite.proto import caffe_pb2

_VN = caffe_pb2.FillerParameter


def _no_sparse(param, kind):
    if param.sparse != -1:
        raise LayerError("Sparsity not supported by this Filler (%s)." % kind, field="sparse")


def _fans(blob: Blob) -> tuple[int, int]:
    shape = blob.shape
    count = blob.count
    fan_in = count // shape[0] if shape and shape[0] else count
    fan_out = count // shape[1] if len(shape) > 1 and shape[1] else count
    return fan_in, fan_out


def _norm(param, blob: Blob) -> float:
    fan_in, fan_out = _fans(blob)
    if param.variance_norm == _VN.AVERAGE:
        return (fan_in + fan_out) / 2.0
    if param.variance_norm == _VN.FAN_OUT:
        return float(fan_out)
    return float(fan_in)


def _uniform(g: np.random.Generator, data: np.ndarray, low: float, high: float) -> None:
    """U(low, high) straight into ``data`` (float32 draws for float32 blobs: no float64 temporary).

    Every value lies in [low, high), as Caffe's ``uniform_real`` draws in [a, b): a bound rounded
    outwards to float32 (``float32(-sqrt(3/2000)) < -sqrt(3/2000)``), or the rounding of the
    multiply-add, would otherwise step just outside the interval.
    """
    if data.dtype in (np.float32, np.float64):
        g.random(out=data.reshape(-1), dtype=data.dtype)
        data *= high - low
        data += low
        if high > low:
            np.clip(data, *_inner_bounds(data.dtype.type, low, high), out=data)
    else:
        data[...] = g.uniform(low, high, data.shape)


def _inner_bounds(dtype, low: float, high: float):
    """The least ``dtype`` value >= low and the greatest one < high."""
    lo, hi = dtype(low), dtype(high)
    if float(lo) < low:  # compared as Python floats: NumPy would round ``low`` to ``dtype`` first
        lo = np.nextafter(lo, dtype(np.inf))
    if float(hi) >= high:
        hi = np.nextafter(hi, dtype(-np.inf))
    return lo, hi


def _normal(g: np.random.Generator, data: np.ndarray, mean: float, std: float) -> None:
    """N(mean, std²) straight into ``data``."""
    if data.dtype in (np.float32, np.float64):
        g.standard_normal(out=data.reshape(-1), dtype=data.dtype)
        data *= std
        data += mean
    else:
        data[...] = g.normal(mean, std, data.shape)


def fill(blob: Blob, param=None) -> Blob:
    """Fill ``blob`` in place as the FillerParameter ``param`` says (default: constant 0)."""
    if param is None:
        param = caffe_pb2.FillerParameter()
    kind = param.type
    data = blob.data
    if blob.count == 0:
        raise LayerError("cannot fill an empty blob of shape %s" % (list(blob.shape),))
    g = rng()
    if kind == "constant":
        data[...] = param.value
        _no_sparse(param, kind)
    elif kind == "uniform":
        _uniform(g, data, param.min, param.max)
        _no_sparse(param, kind)
    elif kind == "gaussian":
        _normal(g, data, param.mean, param.std)
        if param.sparse < -1:
            raise LayerError("gaussian filler: sparse must be >= -1, got %d" % param.sparse, field="sparse")
        if param.sparse >= 0:
            p = param.sparse / float(blob.shape[0])
            data *= g.random(data.shape) < p
    elif kind == "positive_unitball":
        _uniform(g, data, 0.0, 1.0)
        rows = data.reshape(blob.shape[0] if blob.shape else 1, -1)
        rows /= rows.sum(axis=1, keepdims=True)
        _no_sparse(param, kind)
    elif kind == "xavier":
        scale = math.sqrt(3.0 / _norm(param, blob))
        _uniform(g, data, -scale, scale)
        _no_sparse(param, kind)
    elif kind == "msra":
        _normal(g, data, 0.0, math.sqrt(2.0 / _norm(param, blob)))
        _no_sparse(param, kind)
    elif kind == "bilinear":
        if len(blob.shape) != 4:
            raise LayerError("Blob must be 4 dim. (bilinear filler, shape %s)" % (list(blob.shape),))
        k = blob.shape[3]
        if blob.shape[2] != k:
            raise LayerError("Filter must be square (bilinear filler, shape %s)" % (list(blob.shape),))
        f = math.ceil(k / 2.0)
        c = (k - 1) / (2.0 * f)
        t = 1 - np.abs(np.arange(k) / f - c)
        data[...] = np.outer(t, t)
        _no_sparse(param, kind)
    else:
        raise LayerError("Unknown filler name: %s (known: constant, uniform, gaussian, positive_unitball, "
                         "xavier, msra, bilinear)" % kind, field="type")
    return blob
