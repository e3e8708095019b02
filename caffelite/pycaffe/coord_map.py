r"""pycaffe's ``caffe.coord_map``: how spatial coordinates map between the tops of a NetSpec.

pycaffe: python/caffe/coord_map.py.  Works on :mod:`caffelite.net_spec` ``Top``/``Function``
objects (``top.fn.type_name``, ``fn.inputs``, ``fn.params``).

A map is ``(axis, a, b)``: output coordinate :math:`y` and input coordinate :math:`x` relate as
:math:`y = a x + b` along every axis from ``axis`` + 1 on (``a`` and ``b`` are arrays with one
entry per spatial axis, or scalars).  Per layer, with kernel extent
:math:`k' = (k - 1) d + 1` (dilation :math:`d`), stride :math:`s` and padding :math:`p`:

- Convolution, Pooling, Im2col: :math:`a = 1/s`, :math:`b = (p - (k' - 1)/2) / s`
- Deconvolution: :math:`a = s`, :math:`b = (k' - 1)/2 - p`
- Crop with offsets :math:`o`: :math:`a = 1`, :math:`b = -o`
- pointwise layers (ReLU, Eltwise, BatchNorm, ...): the identity ``(None, 1, 0)``.

Maps compose as :math:`(a_1, b_1) \circ (a_2, b_2) = (a_1 a_2, a_1 b_2 + b_1)` and invert as
:math:`(1/a, -b/a)`.  The errors pycaffe raises keep their types (``crop`` raises an
``AssertionError`` subclass, unconnected tops a ``RuntimeError`` subclass), and are caffelite
errors too.
"""

from __future__ import annotations

import numpy as np

from caffelite.errors import CaffeliteError

__all__ = [
    "PASS_THROUGH_LAYERS", "conv_params", "crop_params", "coord_map", "compose", "inverse",
    "coord_map_from_to", "crop", "UndefinedMapException", "AxisMismatchException",
    "CropError", "UnconnectedTopsError",
]

PASS_THROUGH_LAYERS = ["AbsVal", "BatchNorm", "Bias", "BNLL", "Dropout", "Eltwise", "ELU", "Log", "LRN",
                       "Exp", "MVN", "Power", "ReLU", "PReLU", "Scale", "Sigmoid", "Split", "TanH",
                       "Threshold"]

_LEGACY_FIELDS = {"pad_h", "pad_w", "kernel_h", "kernel_w", "stride_h", "stride_w"}


class UndefinedMapException(CaffeliteError):
    """A layer type without a coordinate mapping (e.g. InnerProduct)."""

    def __init__(self, message: str = "layer has no coordinate mapping", **where):
        super().__init__(message, **where)


class AxisMismatchException(CaffeliteError):
    """Two maps over different axes cannot be composed."""

    def __init__(self, message: str = "coordinate maps over different axes", **where):
        super().__init__(message, **where)


class CropError(CaffeliteError, AssertionError):
    """``crop`` cannot define a Crop between these tops (pycaffe raises AssertionError)."""


class UnconnectedTopsError(CaffeliteError, RuntimeError):
    """The tops share no ancestor reachable through spatial layers (pycaffe: RuntimeError)."""


def _layer_params(fn, nested: tuple[str, ...]) -> dict:
    for key in nested:
        if key in fn.params:
            return dict(fn.params[key])
    return dict(fn.params)


def conv_params(fn):
    """``(axis, stride, kernel extent, pad)`` of a Convolution/Deconvolution/Im2col/Pooling ``Function``.

    Parameters may be given flat (``L.Convolution(x, kernel_size=3)``) or nested
    (``convolution_param=dict(...)``; ``pooling_param`` too).  The kernel extent includes
    dilation: :math:`(k - 1) d + 1`.  The legacy ``_h``/``_w`` fields are not supported.
    """
    params = _layer_params(fn, ("convolution_param", "pooling_param"))
    legacy = _LEGACY_FIELDS & (set(fn.params) | set(params))
    if legacy:
        raise CropError("cropping does not support legacy _h/_w params (%s in %s layer)"
                        % (", ".join(sorted(legacy)), fn.type_name))
    if "kernel_size" not in params:
        raise UndefinedMapException("%s layer without kernel_size has no coordinate mapping (global "
                                    "pooling?)" % fn.type_name)
    axis = params.get("axis", 1)
    ks = np.array(params["kernel_size"], ndmin=1)
    dilation = np.array(params.get("dilation", 1), ndmin=1)
    return (axis, np.array(params.get("stride", 1), ndmin=1), (ks - 1) * dilation + 1,
            np.array(params.get("pad", 0), ndmin=1))


def crop_params(fn):
    """``(axis, offset)`` of a Crop ``Function`` (axis defaults to 2: crop H and W of N x C x H x W)."""
    params = _layer_params(fn, ("crop_param",))
    return params.get("axis", 2), np.array(params.get("offset", 0), ndmin=1)


def coord_map(fn):
    """The map ``(axis, a, b)`` of one layer (see the module docstring).

    Raises
    ------
    UndefinedMapException
        For layer types without a spatial mapping.
    """
    if fn.type_name in ("Convolution", "Pooling", "Im2col"):
        axis, stride, ks, pad = conv_params(fn)
        return axis, 1 / stride, (pad - (ks - 1) / 2) / stride
    if fn.type_name == "Deconvolution":
        axis, stride, ks, pad = conv_params(fn)
        return axis, stride, (ks - 1) / 2 - pad
    if fn.type_name in PASS_THROUGH_LAYERS:
        return None, 1, 0
    if fn.type_name == "Crop":
        axis, offset = crop_params(fn)
        return axis - 1, 1, -offset  # -1: the last axis that is not a coordinate
    raise UndefinedMapException("%s layer has no coordinate mapping" % fn.type_name)


def compose(base_map, next_map):
    """Apply ``next_map`` after ``base_map``: scales multiply, the next shift is scaled by the base scale."""
    ax1, a1, b1 = base_map
    ax2, a2, b2 = next_map
    if ax1 is None:
        ax = ax2
    elif ax2 is None or ax1 == ax2:
        ax = ax1
    else:
        raise AxisMismatchException("cannot compose coordinate maps over axis %s and axis %s" % (ax1, ax2))
    return ax, a1 * a2, a1 * b2 + b1


def inverse(coord_map):
    """The inverse map (de-scale and un-shift): the backward mapping."""
    ax, a, b = coord_map
    return ax, 1 / a, -b / a


def _mappable_bottoms(top):
    # every bottom maps alike, except Crop's second (reference-shape) bottom
    bottoms = top.fn.inputs
    return bottoms[:1] if top.fn.type_name == "Crop" else bottoms


def coord_map_from_to(top_from, top_to):
    """The map taking coordinates of ``top_from`` to coordinates of ``top_to``.

    Walks back from both tops to a common ancestor, composing maps on the way, and inverts the
    ``from`` side.

    Raises
    ------
    UnconnectedTopsError
        (a ``RuntimeError``) when no common ancestor is reachable through spatial layers.
    """
    from_maps = {top_from: (None, 1, 0)}
    frontier = {top_from}
    while frontier:
        top = frontier.pop()
        try:
            for bottom in _mappable_bottoms(top):
                from_maps[bottom] = compose(from_maps[top], coord_map(top.fn))
                frontier.add(bottom)
        except UndefinedMapException:
            pass

    to_maps = {top_to: (None, 1, 0)}
    frontier = {top_to}
    while frontier:
        top = frontier.pop()
        if top in from_maps:
            return compose(to_maps[top], inverse(from_maps[top]))
        try:
            for bottom in _mappable_bottoms(top):
                to_maps[bottom] = compose(to_maps[top], coord_map(top.fn))
                frontier.add(bottom)
        except UndefinedMapException:
            continue
    raise UnconnectedTopsError("Could not compute map between tops; are they connected by spatial layers?")


def crop(top_from, top_to):
    """A Crop layer (a new NetSpec ``Top``) cutting ``top_from`` to the coordinates of ``top_to``.

    Raises
    ------
    CropError
        (an ``AssertionError``) when the scales differ, or the offset would be negative or
        fractional.
    """
    from caffelite.net_spec import layers as L

    ax, a, b = coord_map_from_to(top_from, top_to)
    if not np.all(np.asarray(a) == 1):
        raise CropError(f"scale mismatch on crop (a = {a})")
    if not np.all(np.asarray(b) <= 0):
        raise CropError(f"cannot crop negative offset (b = {b})")
    if not np.all(np.round(b) == b):
        raise CropError(f"cannot crop noninteger offset (b = {b})")
    offset = [int(v) for v in np.atleast_1d(-np.round(b)).astype(int)]
    return L.Crop(top_from, top_to, crop_param=dict(axis=ax + 1, offset=offset))  # +1: first cropped axis
